"""Shared fixtures: one tiny sweep, computed once per test session."""

import pytest

import jaxinit

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
