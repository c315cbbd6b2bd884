"""Shared fixtures: one tiny sweep, computed once per test session.

The suite's processes (this one and the CLI subprocesses, which inherit the environment) share
one persistent compilation cache in a fresh temporary directory, so a test never depends on
what an earlier session left in the user's cache (:mod:`jaxinit.compile_cache`).
"""

import atexit
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


@pytest.fixture(scope="session")
def tiny_sweep():
    return jaxinit.run(TINY, progress=False)
