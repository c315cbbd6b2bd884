"""The built-in CNN and the scikit-learn digits task (issue 11: a real data set, no download)."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinit
from jaxinit.blocks.initializers import expected_std
from jaxinit.blocks.models import MODELS, from_spec
from jaxinit.blocks.tasks import TASKS
from jaxinit.config.bundled import find_spec
from jaxinit.config.spec import InitSpec, ModelSpec, Spec, SpecError
from jaxinit.engine.executors import build_task, choose_layout


def _reference_cnn(params, x_BxI, side):
    """The CNN written with lax.conv and reduce_window (relu, 2×2 average pooling)."""
    x = x_BxI.reshape(-1, side, side, 1)
    for layer in params["layers"][:-1]:
        z = jax.lax.conv_general_dilated(
            x, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = jax.nn.relu(z + layer["b"])
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
    return x.reshape(x.shape[0], -1) @ params["layers"][-1]["w"] + params["layers"][-1]["b"]


def test_cnn_shapes_fans_and_reference_outputs():
    """Kernels are (3, 3, C_in, C_out) with the scheme's std at fan-in 9·C_in; outputs equal a
    lax.conv reference; hidden units are channels seen at every position."""
    model = from_spec(ModelSpec(name="cnn", widths=(8, 16), activation="relu"), 64, 10)
    spec = InitSpec("he_normal", bias_scheme="normal", bias_scale=0.1)
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), spec)
    shapes = [layer["w"].shape for layer in params["layers"]]
    assert shapes == [(3, 3, 1, 8), (3, 3, 8, 16), (2 * 2 * 16, 10)]
    w = np.asarray(params["layers"][1]["w"])
    assert np.std(w) == pytest.approx(expected_std("he_normal", w.shape), rel=0.1)
    assert expected_std("he_normal", w.shape) == pytest.approx(math.sqrt(2 / 72))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 64)), jnp.float32)
    got, want, hidden = jax.jit(
        lambda p, x: (model.apply(p, x), _reference_cnn(p, x, 8), model.hidden(p, x))
    )(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert [h.act_BxU.shape for h in hidden] == [(5 * 64, 8), (5 * 16, 16)]
    assert hidden[0].incoming_UxI.shape == (8, 9 + 1)
    other = jax.jit(model.init, static_argnums=1)(jax.random.key(1), spec)
    assert not np.allclose(params["layers"][0]["w"], other["layers"][0]["w"])


def test_cnn_needs_square_images():
    with pytest.raises(ValueError, match="square one-channel images"):
        MODELS["cnn"](ModelSpec(name="cnn"), 10, 2)


def test_digits_task():
    """Real digits from the installed scikit-learn: 64 pixels in [0, 1], a class subset, a
    seeded split with no image in both halves."""
    t = TASKS["digits"](n_classes=3, n_train=100, n_test=50)
    assert t.x_train.shape == (100, 64) and t.x_test.shape == (50, 64)
    assert t.x_train.dtype == np.float32 and 0 <= t.x_train.min() and t.x_train.max() <= 1
    assert set(np.unique(t.y_train)) == {0, 1, 2} and t.out_dim == 3 and t.loss == "ce"
    both = {r.tobytes() for r in t.x_train} & {r.tobytes() for r in t.x_test}
    assert len(both) <= 2  # the data set has a few duplicate images, no shared rows otherwise
    full = TASKS["digits"]()
    assert full.out_dim == 10 and len(full.x_train) + len(full.x_test) == 1797
    other = TASKS["digits"](n_classes=3, n_train=100, n_test=50, seed=1)
    assert not np.array_equal(t.x_train, other.x_train)
    with pytest.raises(ValueError, match="n_train"):
        TASKS["digits"](n_classes=2, n_train=400)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    from jaxinit.blocks import tasks

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    tasks._load_digits.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"jaxinit\[digits\]"):
            TASKS["digits"]()
        with pytest.raises(SpecError, match=r"jaxinit\[digits\]"):
            jaxinit.resolve_spec({"task": {"name": "digits", "n_train": 99}})
    finally:
        tasks._load_digits.cache_clear()


def test_cnn_learns_digits():
    """A tiny sweep trains: the loss falls, accuracy beats chance by far, runs differ by seed,
    and the cnn runs on the vmap layout (lanes are for the mlp)."""
    spec = {
        "task": {"name": "digits", "n_classes": 3, "n_train": 60, "n_test": 60},
        "model": {"name": "cnn", "widths": [2], "activation": "relu"},
        "init": {"scheme": "he_normal"},
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "train": {"steps": 60, "log_every": 30},
        "axes": {"seed": 3},
    }
    ds = jaxinit.run(spec, progress=False)
    loss = ds.loss.values
    assert (loss[:, -1] < 0.5 * loss[:, 0]).all()
    assert (ds.final_metric.values > 0.8).all()
    assert np.unique(loss[:, 0]).size == 3
    resolved = jaxinit.resolve_spec(spec)
    layout, why = choose_layout(resolved, build_task(resolved), None)
    assert layout == "vmap" and "cnn" in why


def test_digits_minima_spec_validates_and_plans():
    spec = jaxinit.resolve_spec(Spec.from_toml(find_spec("digits_minima")))
    assert spec.task.name == "digits" and spec.model.name == "cnn" and spec.store.save_params
    assert 50 <= spec.n_runs <= 2000
    prep = jaxinit.prepare(spec)
    assert prep.plan.n_runs == spec.n_runs
