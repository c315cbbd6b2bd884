"""Divergence and numerics: runs that blow up are frozen, marked with their step and left out of
basin statistics, without disturbing the other runs of their vmapped batch; float32 by default,
float64 on request (checked in a subprocess, since x64 is process-global).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxinit
from jaxinit.analysis import basins

STEPS = 40
BASE = {
    "name": "div",
    "task": {"name": "sinusoid", "n_points": 16},
    "model": {"widths": [4], "activation": "tanh"},
    "optimizer": {"name": "sgd"},
    "train": {"steps": STEPS, "log_every": 1, "diagnostics": []},
    "store": {"save_params": True},
}
CHUNK = 8  # every run of both sweeps in one vmapped call


def _sweep(scales, lrs):
    spec = {**BASE, "axes": {"init.scale": scales, "optimizer.learning_rate": lrs, "seed": 2}}
    return jaxinit.run(spec, chunk_size=CHUNK, progress=False)


@pytest.fixture(scope="module")
def pair():
    """Sweep A holds exploding runs (init scale 1e30 overflows the loss at step 0; lr 30 blows up
    after a few steps); sweep B replaces them with tame values. Same spec otherwise, same chunk."""
    a = _sweep([1.0, 1e30], [0.05, 30.0])
    b = _sweep([1.0, 2.0], [0.05, 0.1])
    return a, b


def test_diverged_runs_are_marked_with_their_step(pair):
    a, _ = pair
    div, step = a.diverged.values, a.diverged_step.values
    assert div[1].all()  # init scale 1e30: non-finite from the start
    assert (step[1] == 0).all()
    assert div[0, 1].all()  # lr 30: blows up later
    assert ((step[0, 1] > 0) & (step[0, 1] < STEPS)).all()
    assert not div[0, 0].any() and np.isnan(step[0, 0]).all()
    assert (div == ~np.isnan(step)).all()
    assert not a.success.values[div].any()


def test_diverged_runs_are_frozen_at_their_last_finite_parameters(pair):
    a, _ = pair
    loss = a.loss.values  # (scale, lr, seed, step): loss of the parameters at each step
    params = {k: a[k].values for k in a.data_vars if k.startswith("params/")}
    params0 = {k: a[k].values for k in a.data_vars if k.startswith("params0/")}
    assert params and params0
    for idx in zip(*np.nonzero(a.diverged.values)):
        d = int(a.diverged_step.values[idx])
        curve = loss[idx]
        assert np.isfinite(curve[:d]).all(), (idx, d, curve)  # finite until the recorded step
        # frozen from step d on at the last state with a finite loss (log_every = 1: step d - 1);
        # step d's own logged loss is the non-finite one that stopped it, when it was evaluated
        frozen = curve[d - 1] if d > 0 else curve[0]
        np.testing.assert_array_equal(curve[d + 1 : STEPS + 1], frozen)
        assert not np.isfinite(curve[d]) or curve[d] == frozen
        if d > 0:
            assert np.isfinite(a.final_loss.values[idx])
        for k, v in params.items():
            assert np.isfinite(v[idx]).all(), (idx, k)  # never a NaN/inf parameter
        if d == 0:  # frozen at the initial parameters
            for k, v in params.items():
                np.testing.assert_array_equal(
                    v[idx], params0[k.replace("params/", "params0/")][idx]
                )
    ok = ~a.diverged.values
    assert np.isfinite(loss[ok]).all() and np.isfinite(a.final_loss.values[ok]).all()


def test_other_runs_in_the_batch_are_bit_identical(pair):
    """Runs (scale 1, lr 0.05) shared by both sweeps: every variable identical bit for bit."""
    a, b = pair
    assert a.attrs["chunk_size"] == b.attrs["chunk_size"] == CHUNK
    assert not b.diverged.values.any()
    for name in a.data_vars:
        x, y = a[name].values[0, 0], b[name].values[0, 0]
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_diverged_runs_are_excluded_from_basins(pair):
    """``basins.find_basins`` labels diverged runs DIVERGED and counts only the others."""
    a, _ = pair
    b = basins.find_basins(a)
    label = b.label.values
    assert (label[a.diverged.values] == basins.DIVERGED).all()
    assert (label[~a.diverged.values] >= 0).all()
    assert not b.is_global.values[a.diverged.values].any()
    mask = a.done & ~a.diverged  # the convention every statistic uses
    assert int(mask.sum()) == int((label >= 0).sum()) == 2  # scale 1, lr 0.05, two seeds


@pytest.mark.slow
def test_float32_default_and_float64_option_in_a_subprocess(tmp_path):
    """float32 unless asked; ``train.dtype = "float64"`` runs under jax_enable_x64 (scoped to the
    sweep: the process's mode is off again after it) and every stored float (curves, finals,
    parameters) is float64; ``attrs["dtype"]`` says which."""
    script = textwrap.dedent(
        """
        import json, sys
        import jax, numpy as np, jaxinit
        spec = {"task": {"name": "xor"}, "model": {"widths": [3]}, "store": {"save_params": True},
                "train": {"steps": 20, "log_every": 5}, "axes": {"seed": 3}}
        out = {}
        ds = jaxinit.run(spec, sys.argv[1], progress=False)
        out["x64_after_f32"] = bool(jax.config.read("jax_enable_x64"))
        spec["train"]["dtype"] = "float64"
        ds64 = jaxinit.run(spec, sys.argv[2], progress=False)
        out["x64_after_f64"] = bool(jax.config.read("jax_enable_x64"))
        for tag, d in (("f32", ds), ("f64", ds64)):
            out[tag] = {"attr": d.attrs["dtype"],
                        "floats": sorted({str(v.dtype) for v in d.data_vars.values()
                                          if v.dtype.kind == "f"})}
        print(json.dumps(out))
        """
    )
    d32, d64 = tmp_path / "f32", tmp_path / "f64"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    r = subprocess.run(
        [sys.executable, "-c", script, str(d32), str(d64)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["x64_after_f32"] is False and out["x64_after_f64"] is False
    assert out["f32"] == {"attr": "float32", "floats": ["float32"]}
    assert out["f64"] == {"attr": "float64", "floats": ["float64"]}
    # on disk too, loaded in this (float32) process
    l32, l64 = jaxinit.load(d32), jaxinit.load(d64)
    assert l32.attrs["dtype"] == "float32" and l64.attrs["dtype"] == "float64"
    assert l32.final_loss.dtype == np.float32 and l64.final_loss.dtype == np.float64
    assert l64["params/layers/0/w"].dtype == np.float64
    # really computed in float64: the stored values carry more than float32's 24 bits
    for name in ("final_loss", "params/layers/0/w"):
        v = l64[name].values
        assert np.isfinite(v).all()
        assert not np.array_equal(v, v.astype(np.float32).astype(np.float64)), name
