"""The bundled sharpness specs (issue 22: catapult, catapult_relu, edge_of_stability,
fractal_boundary) and the two pieces they needed from jaxinit.blocks: the MLP's
``model.parameterization`` (``ntk``, ``mean_field``) and ``digits`` with one-hot MSE targets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import train_in_both_layouts

import jaxinit
from jaxinit.blocks.models import PARAMETERIZATIONS, from_spec, layer_gains, mlp
from jaxinit.blocks.sharpness import ntk_top_eigenvalue
from jaxinit.blocks.tasks import digits
from jaxinit.config.bundled import find_spec
from jaxinit.config.spec import InitSpec, SpecError
from jaxinit.engine.executors import build_task
from jaxinit.plots import FIGURES

SHARPNESS_SPECS = ("catapult", "catapult_relu", "edge_of_stability", "fractal_boundary")


# -- model.parameterization ----------------------------------------------------------------------
def test_ntk_with_unit_normal_weights_is_lecun_at_init():
    """Same key: ``normal`` weights behind ``1/√fan_in`` gains give the function that
    ``lecun_normal`` weights (std ``1/√fan_in``) give in the standard parameterization."""
    x = jax.random.normal(jax.random.key(1), (5, 3))
    key = jax.random.key(0)
    ntk = mlp((16, 8), in_dim=3, out_dim=2, parameterization="ntk")
    std = mlp((16, 8), in_dim=3, out_dim=2)
    p_ntk = ntk.init(key, InitSpec(scheme="normal"))
    p_std = std.init(key, InitSpec(scheme="lecun_normal"))
    np.testing.assert_allclose(ntk.apply(p_ntk, x), std.apply(p_std, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(std.apply(p_ntk, x), std.apply(p_std, x))  # the gains matter


def test_uv_model_lambda0_is_width_free_in_ntk_parameterization(width=512):
    """The catapult's uv model ``f = v·u x / √n`` (linear 1-n-1, no bias, NTK): its NTK top
    eigenvalue is ``(|u|² + |v|²) x² / n`` ≈ 2 at every width (standard: ≈ n)."""
    uv = mlp((width,), in_dim=1, out_dim=1, activation="linear", bias=False,
             parameterization="ntk")  # fmt: skip
    p = uv.init(jax.random.key(3), InitSpec(scheme="normal"))
    u, v = p["layers"][0]["w"].ravel(), p["layers"][1]["w"].ravel()
    lam0 = jax.jit(lambda p: ntk_top_eigenvalue(uv.apply, p, jnp.ones((1, 1))).value)(p)
    want = (u @ u + v @ v) / width
    np.testing.assert_allclose(lam0, want, rtol=1e-4)
    assert abs(float(want) - 2.0) < 8 / np.sqrt(width)


def test_mean_field_output_is_ntk_over_sqrt_width():
    x = jax.random.normal(jax.random.key(1), (4, 8))
    nets = {k: mlp((32,), in_dim=8, out_dim=1, bias=False, parameterization=k)
            for k in ("ntk", "mean_field")}  # fmt: skip
    p = nets["ntk"].init(jax.random.key(0), InitSpec(scheme="normal"))
    np.testing.assert_allclose(
        nets["mean_field"].apply(p, x), nets["ntk"].apply(p, x) / np.sqrt(32), rtol=1e-5
    )
    assert layer_gains("mean_field", (8, 32)) == (1 / np.sqrt(8), 1 / 32)
    assert layer_gains("standard", (8, 32)) == (1.0, 1.0)


def test_unknown_parameterization_is_a_spec_error_naming_it():
    with pytest.raises(SpecError, match="unknown parameterization 'mup'.*standard"):
        jaxinit.resolve_spec({"task": {"name": "xor"}, "model": {"parameterization": "mup"}})
    with pytest.raises(SpecError, match="model.parameterization must be str"):
        jaxinit.resolve_spec({"task": {"name": "xor"}, "model": {"parameterization": 1}})
    assert PARAMETERIZATIONS == ("standard", "ntk", "mean_field")


def test_lanes_and_vmap_layouts_agree(parameterization="mean_field"):
    """Both gains (1/√n hidden, 1/n output) in both layouts (``Model.forward`` over the ops)."""
    spec = jaxinit.resolve_spec({
        "task": {"name": "circles", "n_points": 32},
        "model": {"widths": [6, 5], "parameterization": parameterization},
        "init": {"scheme": "normal"},
        "optimizer": {"learning_rate": 0.5},
        "train": {"steps": 20, "log_every": 10},
    })  # fmt: skip
    out = train_in_both_layouts(spec, 4)
    np.testing.assert_allclose(
        out["lanes"]["final"]["final_loss"], out["vmap"]["final"]["final_loss"], rtol=5e-5
    )
    task = build_task(spec)
    plain = dataclasses.replace(spec.model, params={})
    mine = from_spec(spec.model, task.in_dim, task.out_dim)
    std = from_spec(plain, task.in_dim, task.out_dim)
    p = mine.init(jax.random.key(0), spec.init)
    x = jnp.asarray(task.x_train)
    assert not np.allclose(mine.apply(p, x), std.apply(p, x))


# -- digits with the squared error ---------------------------------------------------------------
def test_digits_mse_targets_are_one_hot_rows_of_the_labels():
    ce, mse = digits(n_classes=4, n_train=50), digits(n_classes=4, n_train=50, loss="mse")
    assert mse.loss == "mse" and mse.y_train.shape == (50, 4) and mse.out_dim == 4
    np.testing.assert_array_equal(mse.y_train.argmax(1), ce.y_train)
    np.testing.assert_array_equal(mse.y_train.sum(1), 1.0)
    np.testing.assert_array_equal(mse.x_train, ce.x_train)
    with pytest.raises(SpecError, match="digits takes loss 'ce'.*or 'mse'.*got 'bce'"):
        jaxinit.resolve_spec({"task": {"name": "digits", "loss": "bce"}})


# -- the bundled specs ---------------------------------------------------------------------------
def _spec(name):
    return jaxinit.resolve_spec(jaxinit.Spec.from_toml(find_spec(name)))


@pytest.mark.parametrize("name", SHARPNESS_SPECS)
def test_bundled_sharpness_spec_validates_and_reports_known_figures(name):
    spec = _spec(name)
    assert spec.report and all(f in FIGURES for f in spec.report)
    assert spec.optimizer.name == "sgd" and spec.train.batch_size == 0  # full-batch GD
    assert build_task(spec).loss == "mse"


def test_catapult_specs_have_the_issues_sizes():
    for name in ("catapult", "catapult_relu"):
        spec = _spec(name)
        axes = dict(spec.axes)
        assert len(axes["seed"]) >= 64 and spec.model.widths[0] >= 512
        assert spec.model.params["parameterization"] == "ntk"
        c = 2 * np.asarray(axes["optimizer.learning_rate"])  # η·λ₀ in units of 2/λ₀
        assert spec.optimizer.lr_unit == "2/lambda0"
        assert c.min() == 0.5 and c.max() == 16
    uv = _spec("catapult")
    assert build_task(uv).x_train.tolist() == [[1.0]] and build_task(uv).y_train.tolist() == [[0]]
    assert uv.model.activation == "linear" and not uv.model.bias


def test_fractal_boundary_has_as_many_points_as_parameters_and_4_seeds():
    spec = _spec("fractal_boundary")
    task = build_task(spec)
    net = from_spec(spec.model, task.in_dim, task.out_dim)
    n_params = sum(a.size for a in jax.tree.leaves(net.init(jax.random.key(0), spec.init)))
    assert len(task.x_train) == n_params
    axes = dict(spec.axes)
    assert len(axes["seed"]) >= 4
    assert len(axes["init.scale"]) >= 64 and len(axes["optimizer.learning_rate"]) >= 64
    assert spec.model.params["parameterization"] == "mean_field"


def test_edge_of_stability_logs_sharpness_on_digits():
    spec = _spec("edge_of_stability")
    assert spec.task.name == "digits" and "sharpness" in spec.train.diagnostics
    assert spec.model.activation == "tanh" and len(dict(spec.axes)["optimizer.learning_rate"]) >= 3
    assert spec.train.log_every <= 20
