"""Shared fixtures: one tiny sweep, computed once per test session.

The suite's processes (this one and the CLI subprocesses, which inherit the environment) share
one persistent compilation cache in a fresh temporary directory, so a test never depends on
what an earlier session left in the user's cache (:mod:`jaxinit.engine.compile_cache`).
"""

import atexit
import json
import os
import shutil
import tempfile

import pytest

import jaxinit

if "JAXINIT_CACHE_DIR" not in os.environ:
    os.environ["JAXINIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxinit-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAXINIT_CACHE_DIR"], ignore_errors=True)

TINY = {
    "name": "tiny",
    "task": {"name": "xor"},
    "model": {"widths": [3]},
    "optimizer": {"learning_rate": 0.5},
    "train": {"steps": 20, "log_every": 5},
    "store": {"save_params": True},
    "axes": {"init.scheme": ["zeros", "he_normal"], "init.scale": [0.5, 1.0], "seed": 3},
}
"""XOR 2-3-1 tanh: 2 schemes (static) × 2 scales × 3 seeds (traced) = 12 runs, 2 compilations."""


def xor_spec(name: str, seeds: int) -> dict:
    """XOR 2-3-1 tanh, 3 init scales × ``seeds`` seeds, 20 steps: one static group (the sweep
    the multi-process, status and fault tests split into chunks of 2)."""
    return {
        "name": name,
        "task": {"name": "xor"},
        "model": {"widths": [3]},
        "optimizer": {"learning_rate": 0.5},
        "train": {"steps": 20, "log_every": 5},
        "axes": {"init.scale": [0.5, 1.0, 2.0], "seed": seeds},
    }


def train_in_both_layouts(spec, seeds: int = 4) -> dict[str, dict]:
    """``{layout: outputs}``: runs ``0 … seeds-1`` of ``spec`` (a ``Spec``) trained by the
    executor's chunk programs in the ``vmap`` and the ``lanes`` layout from the same initial
    parameters, fetched to the host."""
    import jax
    import jax.numpy as jnp

    from jaxinit.engine.executors import build_task, chunk_init, chunk_train
    from jaxinit.engine.train import Data

    task = build_task(spec)
    data = Data.from_task(task)
    values = {"seed": jnp.arange(seeds, dtype=jnp.int32)}
    params0 = chunk_init(spec, task, None)(values, data)
    return {
        layout: jax.device_get(chunk_train(layout, spec, task, None)(values, params0, data))
        for layout in ("vmap", "lanes")
    }


def spec_toml(spec: dict) -> str:
    """A spec dict as TOML text (top-level scalars, then one table per section; the values
    used in these tests are JSON-compatible TOML, booleans aside)."""

    def value(v):
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in spec.items() if not isinstance(v, dict)]
    for section, table in spec.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f'"{k}" = {value(v)}' for k, v in table.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tiny_sweep():
    return jaxinit.run(TINY, progress=False)


def pytest_collection_modifyitems(items):
    """Slow tests (subprocesses, notebooks, bundled specs) first, so that with several workers
    (pytest-xdist, ``-n auto`` in pyproject.toml) the long ones do not start last and leave the
    other workers idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
