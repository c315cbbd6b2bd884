"""from_dataset: a saved sweep's spec, task and model, at a cell's axis values."""

import json

import jax
import pytest
import xarray as xr

from jaxinit.blocks.models import mlp
from jaxinit.config.spec import Spec
from jaxinit.engine.rebuild import from_dataset

SPEC = {
    "task": {"name": "xor"},
    "model": {"widths": [3]},
    "axes": {"seed": 2, "model.widths": [[3], [4, 4]], "task.name": ["xor", "parity"]},
}


def _ds(spec=SPEC, model=None) -> xr.Dataset:
    s = Spec.from_dict(spec)
    attrs = {"spec": s.to_json(), "axes": json.dumps({"seed": "seed", "model_widths":
             "model.widths", "task_name": "task.name"})}  # fmt: skip
    if model is not None:
        attrs["model"] = json.dumps(model)
    return xr.Dataset(attrs=attrs)


def test_the_spec_task_and_model_of_a_dataset():
    got = from_dataset(_ds())
    assert got.spec == Spec.from_dict(SPEC)
    assert got.data["task"]["name"] == "xor"
    assert got.task.x_train.shape == (4, 2)
    assert [layer["w"].shape for layer in got.model().init(jax.random.key(0), got.spec.init)[
        "layers"]] == [(2, 3), (3, 1)]  # fmt: skip


def test_a_cell_fixes_axis_values_from_their_coordinates():
    """A widths coordinate is stored as "4-4": the cell's spec has the tuple back; a numpy
    string coordinate is a plain str."""
    ds = xr.Dataset(coords={"task_name": ["xor", "parity"]})
    got = from_dataset(_ds(), {"model_widths": "4-4", "task_name": ds.task_name.values[1]})
    assert got.spec.model.widths == (4, 4)
    assert got.spec.task.name == "parity" and type(got.spec.task.name) is str
    assert got.task.x_train.shape[1] == got.spec.task.params.get("n", 3)


def test_a_user_model_must_be_given_and_match_the_stored_shapes():
    user = mlp((3,), in_dim=2, out_dim=1)
    info = {"name": "user", "model_id": "m", "params": {"layers/0/w": [[2, 3], "float32"],
            "layers/0/b": [[3], "float32"], "layers/1/w": [[3, 1], "float32"],
            "layers/1/b": [[1], "float32"]}}  # fmt: skip
    got = from_dataset(_ds(model=info))
    with pytest.raises(ValueError, match="ran a user model"):
        got.model()
    assert got.model(user) is user
    with pytest.raises(ValueError, match="other parameter shapes"):
        got.model(mlp((5,), in_dim=2, out_dim=1))
