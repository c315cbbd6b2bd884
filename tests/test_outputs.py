"""The per-run outputs are declared once (jaxinit.config.outputs) and every run program returns them."""

import jax
import jax.numpy as jnp
import pytest

import jaxinit
from jaxinit.config import outputs
from jaxinit.engine.executors import build_task, chunk_init, chunk_train
from jaxinit.engine.results import FINAL_VARIABLES, STEP_VARIABLES, VARIABLE_ATTRS
from jaxinit.engine.train import Data


def test_results_read_the_declaration():
    assert list(FINAL_VARIABLES) == [f.name for f in outputs.FINALS]
    assert STEP_VARIABLES == tuple(n for n, k in FINAL_VARIABLES.items() if k == "step")
    for f in outputs.FINALS:
        assert VARIABLE_ATTRS[f.name]["long_name"] == f.long_name
        assert ("units" in VARIABLE_ATTRS[f.name]) == bool(f.units)


_DTYPES = {"float": jnp.floating, "bool": jnp.bool_, "step": jnp.integer}


@pytest.mark.parametrize(
    "layout, overrides",
    [
        ("vmap", {}),
        ("lanes", {}),
        ("vmap", {"algorithm": {"name": "kmeans", "init": "forgy", "k": 2}}),
        ("vmap", {"algorithm": {"name": "gmm_em", "init": "kmeans++", "k": 2}}),
    ],
)
def test_every_program_returns_the_declared_finals(layout, overrides):
    task_name = "blobs" if overrides else "xor"
    spec = jaxinit.resolve_spec(
        {"task": {"name": task_name}, "train": {"steps": 4, "log_every": 2}, **overrides}
    )
    task = build_task(spec)
    data = Data.from_task(task)
    values = {"seed": jax.ShapeDtypeStruct((3,), jnp.int32)}
    params0 = jax.eval_shape(chunk_init(spec, task, None), values, data)
    out = jax.eval_shape(chunk_train(layout, spec, task, None), values, params0, data)
    assert set(out["final"]) == {f.name for f in outputs.FINALS}
    for f in outputs.FINALS:
        got = out["final"][f.name]
        assert got.shape == (3,), f.name
        assert jnp.issubdtype(got.dtype, _DTYPES[f.kind]), (f.name, got.dtype)
