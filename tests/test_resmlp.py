"""The built-in residual MLP (model.name = "resmlp"): skips every block, both layouts agree."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import train_in_both_layouts

import jaxinit
from jaxinit.blocks.models import from_spec
from jaxinit.engine.executors import build_task, choose_layout


def _spec(**train):
    return jaxinit.resolve_spec(
        {
            "task": {"name": "circles", "n_points": 32},
            "model": {"name": "resmlp", "widths": [6, 6, 6], "activation": "tanh"},
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "train": {"steps": 40, "log_every": 10, **train},
        }
    )


def test_every_block_after_the_first_adds_its_input():
    spec = _spec()
    task = build_task(spec)
    res = from_spec(spec.model, task.in_dim, task.out_dim)
    params = res.init(jax.random.key(0), spec.init)
    x = jnp.asarray(task.x_train)
    h = jnp.tanh(x @ params["layers"][0]["w"] + params["layers"][0]["b"])
    for layer in params["layers"][1:-1]:
        h = h + jnp.tanh(h @ layer["w"] + layer["b"])
    want = h @ params["layers"][-1]["w"] + params["layers"][-1]["b"]
    np.testing.assert_allclose(res.apply(params, x), want, rtol=1e-6)
    plain = from_spec(dataclasses.replace(spec.model, name="mlp"), task.in_dim, task.out_dim)
    assert not np.allclose(plain.apply(params, x), want)  # the skips matter
    assert res.symmetry is None and res.forward is not None


@pytest.mark.parametrize("train", [{}, {"diagnostics": ["grad_norm", "saturation"]}])
def test_lanes_and_vmap_layouts_agree(train):
    """Written once (Model.forward over the layout primitives), it runs on the lanes too, and
    the two layouts agree to the README's float32 tolerance (5e-5 relative)."""
    spec = _spec(**train)
    out = train_in_both_layouts(spec, 8)
    for name in ("final_loss", "test_loss", "final_grad_norm"):
        np.testing.assert_allclose(
            out["lanes"]["final"][name], out["vmap"]["final"][name], rtol=5e-5, err_msg=name
        )
    for name, curve in out["vmap"]["curves"].items():
        np.testing.assert_allclose(out["lanes"]["curves"][name], curve, rtol=5e-5, atol=1e-7)
    assert np.all(np.diff(out["vmap"]["curves"]["loss"], axis=1)[:, -1] <= 0)  # it trains


def test_auto_picks_lanes_for_it_on_cpu():
    spec = _spec()
    layout, why = choose_layout(spec, build_task(spec), None)
    assert layout == ("lanes" if jax.default_backend() == "cpu" else "vmap"), why
