"""Run identity (issue 12, defects 2 and 4): resume only what computes the same numbers; user
models are part of the identity, checked against the task, and warned about when they ignore
their key."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinit
from jaxinit.config.spec import SpecError
from jaxinit.engine import identity
from jaxinit.engine.store import StoreError

SPEC = {
    "name": "ident",
    "task": {"name": "xor"},
    "model": {"widths": [2]},
    "train": {"steps": 20, "log_every": 10, "diagnostics": []},
    "axes": {"seed": 3},
}


def _linear_model(model_id: str, bias: float = 0.0) -> jaxinit.Model:
    def init(key, init_spec):
        return {"w": init_spec.scale * jax.random.normal(key, (2, 1)), "b": jnp.full((1,), bias)}

    def apply(params, x, *, key=None, train=False):
        return x @ params["w"] + params["b"]

    return jaxinit.Model(init, apply, model_id=model_id)


def test_resume_with_another_user_model_is_refused(tmp_path):
    """Acceptance: a directory of model M1 is never resumed (or mixed) with model M2."""
    out = tmp_path / "sweep"
    jaxinit.run(SPEC, out, model=_linear_model("m1"), progress=False)
    with pytest.raises(StoreError, match="model.model_id.*m1.*m2"):
        jaxinit.run(SPEC, out, model=_linear_model("m2", bias=1.0), progress=False)
    with pytest.raises(StoreError, match="model.name"):  # the built-in MLP is another model too
        jaxinit.run(SPEC, out, progress=False)


def test_user_model_is_recorded_not_the_builtin_mlp(tmp_path):
    ds = jaxinit.run(SPEC, tmp_path / "s", model=_linear_model("m1"), progress=False)
    info = json.loads(ds.attrs["model"])
    assert info["name"] == "user" and info["model_id"] == "m1"
    assert info["params"] == {"w": [[2, 1], "float32"], "b": [[1], "float32"]}
    assert json.loads(jaxinit.load(tmp_path / "s").attrs["model"]) == info


def test_wrong_output_shape_is_refused_before_compiling():
    def apply(params, x, *, key=None, train=False):
        return (x @ params["w"])[:, 0]  # (B,) instead of (B, 1): would broadcast in the loss

    model = _linear_model("flat")._replace(apply=apply)
    with pytest.raises(SpecError, match=r"returns shape \(4,\).*needs \(4, 1\)"):
        jaxinit.run(SPEC, model=model, progress=False)


def test_an_init_that_ignores_its_key_is_warned_about():
    def init(key, init_spec):
        return {"w": jnp.full((2, 1), 0.3), "b": jnp.zeros((1,))}

    model = _linear_model("frozen")._replace(init=init)
    with pytest.warns(UserWarning, match="identical although their seeds differ"):
        jaxinit.run(SPEC, model=model, progress=False)
    with warnings.catch_warnings():  # a model that uses its key: no warning
        warnings.simplefilter("error")
        jaxinit.run(SPEC, model=_linear_model("ok"), progress=False)


@pytest.mark.parametrize(
    "change",
    [
        {"description": "now with a description"},
        {"name": "renamed"},
        {"report": ["final_loss"]},
        {"basins": {"f_tol": 0.2}},
    ],
)
def test_descriptive_edits_resume(tmp_path, change):
    """Defect 4: only what changes the numbers is the identity; the stored spec is updated."""
    out = tmp_path / "s"
    first = jaxinit.run(SPEC, out, progress=False)
    again = jaxinit.run({**SPEC, **change}, out, progress=False)
    assert np.array_equal(first.final_loss.values, again.final_loss.values)
    stored = json.loads((out / "spec.json").read_text())["spec"]
    key = next(iter(change))
    assert stored[key] == {**stored[key], **change[key]} if key == "basins" else change[key]


def test_a_training_change_is_refused_naming_the_field(tmp_path):
    out = tmp_path / "s"
    jaxinit.run(SPEC, out, progress=False)
    with pytest.raises(StoreError, match=r"train\.steps: 20 there, 40 here"):
        jaxinit.run({**SPEC, "train": {**SPEC["train"], "steps": 40}}, out, progress=False)


def test_another_jax_or_prng_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "s"
    jaxinit.run(SPEC, out, progress=False)
    real = identity.software()
    monkeypatch.setattr(identity, "software", lambda: {**real, "threefry_partitionable": False})
    with pytest.raises(StoreError, match="software.threefry_partitionable"):
        jaxinit.run(SPEC, out, progress=False)
    monkeypatch.setattr(identity, "software", lambda: {**real, "jax": "0.4.30"})
    with pytest.raises(StoreError, match=r"software\.jax: \"[0-9.]+\" there, \"0.4.30\" here"):
        jaxinit.run(SPEC, out, progress=False)


def test_identity_covers_layout_dtype_and_model_shapes():
    base = jaxinit.prepare(SPEC).record["identity"]
    assert (
        jaxinit.prepare({**SPEC, "train": {**SPEC["train"], "layout": "vmap"}}).record["identity"]
        != base
    )
    wide = jaxinit.prepare({**SPEC, "model": {"widths": [3]}}).record["identity"]
    assert {k for k in base if base[k] != wide[k]} == {"model.widths", "model.params"}
    assert "name" not in base and not any(k.startswith("basins.") for k in base)


def test_axes_order_survives_the_store_and_is_part_of_the_identity(tmp_path):
    """Axes not in alphabetical order: the stored spec keeps their order (it numbers the runs);
    a sorted-keys round trip made every chunk's run ids disagree with the plan on load."""
    spec = {
        **SPEC,
        "axes": {"seed": 2, "optimizer.learning_rate": [0.1, 0.5], "init.scale": [1.0, 2.0]},
    }
    mem = jaxinit.run(spec, progress=False)
    disk = jaxinit.run(spec, tmp_path / "s", progress=False)
    assert list(disk.final_loss.dims) == ["seed", "optimizer_learning_rate", "init_scale"]
    assert np.array_equal(mem.final_loss.values, disk.final_loss.values)
    swapped = {**spec, "axes": dict(reversed(list(spec["axes"].items())))}
    with pytest.raises(StoreError, match="axes.order"):
        jaxinit.run(swapped, tmp_path / "s", progress=False)


def test_layout_is_part_of_the_identity_and_lanes_runs_through_the_engine(tmp_path):
    """The executor seam: train.layout = "lanes" runs the lanes executor end to end (close to
    vmap, not bit-identical), and a directory of one layout is not resumed with another."""
    lanes = {**SPEC, "train": {**SPEC["train"], "layout": "lanes"}}
    a = jaxinit.run(lanes, tmp_path / "l", progress=False)
    b = jaxinit.run({**SPEC, "train": {**SPEC["train"], "layout": "vmap"}}, progress=False)
    np.testing.assert_allclose(a.final_loss.values, b.final_loss.values, rtol=1e-5)
    with pytest.raises(StoreError, match="train.layout"):
        jaxinit.run({**SPEC, "train": {**SPEC["train"], "layout": "vmap"}}, tmp_path / "l",
                    progress=False)  # fmt: skip
