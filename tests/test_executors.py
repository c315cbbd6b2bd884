"""The executor's default chunk shape (issue 21): several chunks for medium nets, chosen from the
spec and task alone, and what changing the chunk shape does to the numbers."""

from __future__ import annotations

import numpy as np
import pytest

import jaxinit
from jaxinit.engine import lanes
from jaxinit.engine.executors import (
    VMAP_CHUNK_MIN,
    VMAP_CHUNK_WORK,
    build_task,
    default_chunk_runs,
)
from jaxinit.engine.sweep import prepare


def _medium(seeds: int = 48, steps: int = 20, widths=(64, 64)) -> dict:
    """A small cousin of bench_engine's medium workload: minibatch SGD on teacher-student."""
    return {
        "task": {"name": "teacher_student", "in_dim": 8, "n_train": 128},
        "model": {"name": "mlp", "widths": list(widths), "activation": "tanh"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"steps": steps, "log_every": 10, "batch_size": 32, "layout": "vmap"},
        "axes": {"seed": seeds},
    }


def test_a_medium_vmap_sweep_is_planned_in_several_power_of_two_chunks():
    prep = prepare(_medium(steps=1000))  # planned only
    size = prep.plan.chunk_size
    assert size == VMAP_CHUNK_MIN  # 1.5e8 MACs per run: the floor decides
    assert size & (size - 1) == 0
    assert prep.plan.n_chunks == 2  # 48 runs in chunks of 32: both CPU devices get one


def test_the_vmap_chunk_grows_until_a_chunk_holds_its_share_of_work():
    spec = prepare(_medium(widths=(4,))).spec
    task = build_task(spec)
    runs = default_chunk_runs(spec, task, None, "vmap")
    work = lanes.step_cost(spec, task) * spec.train.steps
    assert runs * work >= VMAP_CHUNK_WORK > (runs // 2) * work
    assert runs > VMAP_CHUNK_MIN


def test_the_rule_leaves_lanes_user_models_and_algorithms_alone():
    spec = prepare(_medium()).spec
    task = build_task(spec)
    assert default_chunk_runs(spec, task, None, "lanes") == lanes.chunk_runs(spec, task)
    user = jaxinit.Model(init=lambda key, init: {}, apply=lambda params, x: x[:, :1])
    assert default_chunk_runs(spec, task, user, "vmap") is None
    kmeans = prepare(
        {"task": {"name": "blobs"}, "algorithm": {"name": "kmeans"}, "axes": {"seed": 8}},
    )
    assert default_chunk_runs(kmeans.spec, build_task(kmeans.spec), None, "vmap") is None


@pytest.mark.parametrize("chunk_size", [8, 48])
def test_other_chunk_shapes_agree_to_two_ulp(chunk_size):
    """Measured on the medium workload (256 runs x 300 steps, chunks of 256 against 32 and 8):
    final losses within 1.4e-7 relative, curves within 2.4e-7; most runs bit-identical. The
    same chunk shape is bit-identical (tests/test_sweep.py)."""
    base = jaxinit.run(_medium(), progress=False)  # chunks of 32
    other = jaxinit.run(_medium(), progress=False, chunk_size=chunk_size)
    a, b = base["final_loss"].values, other["final_loss"].values
    assert np.all(np.abs(a - b) <= 3e-7 * np.abs(a))
    assert np.allclose(base["loss"].values, other["loss"].values, rtol=3e-7, atol=0)
