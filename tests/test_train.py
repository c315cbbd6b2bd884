"""Training: jaxinit's SGD trajectory against a per-run NumPy reference, divergence, grad_tol,
time-to-threshold, and per-run random streams (minibatch order, dropout keys)."""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxinit
from jaxinit.blocks.models import Model
from jaxinit.engine.executors import build_task
from jaxinit.engine.train import Data, batch, make_run

STEPS = 100

XOR = {
    "task": {"name": "xor"},
    "model": {"widths": [4], "activation": "tanh"},
    "init": {"scheme": "he_normal", "bias_scheme": "normal", "bias_scale": 0.5},
    "optimizer": {"name": "sgd", "learning_rate": 1.0},
    "train": {"steps": STEPS, "log_every": 1, "threshold": 0.3, "diagnostics": []},
    "store": {"save_params": True},
    "axes": {"init.scale": [0.5, 1.5], "seed": 3},
}

LINEAR = {
    "task": {"name": "linear_regression", "n_points": 32},
    "model": {"widths": [], "activation": "linear"},
    "init": {"scheme": "normal"},
    "optimizer": {"name": "sgd"},
    "train": {"steps": STEPS, "log_every": 1, "threshold": 0.02, "diagnostics": ["grad_norm"]},
    "store": {"save_params": True},
    "axes": {"optimizer.learning_rate": [0.3, 50.0], "train.grad_tol": [0.0, 1e-3], "seed": 2},
}
"""A linear model on least squares: lr 0.3 converges, lr 50 blows up (Hessian ≈ I)."""

_ACT = {
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    "linear": (lambda a: a, lambda a: np.ones_like(a)),
}


def _reference(layers, x, y, loss, activation, lr, steps):
    """Plain full-batch SGD in float64 NumPy: returns (loss before each step + final, params)."""
    act, dact = _ACT[activation]
    layers = [(np.array(w, np.float64), np.array(b, np.float64)) for w, b in layers]
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def forward(layers):
        hs, pre = [x], []
        for k, (w, b) in enumerate(layers):
            a = hs[-1] @ w + b
            pre.append(a)
            hs.append(a if k == len(layers) - 1 else act(a))
        return hs, pre

    def loss_and_dz(z):
        if loss == "bce":
            return np.mean(np.sum(np.logaddexp(0, z) - y * z, 1)), (1 / (1 + np.exp(-z)) - y)
        return np.mean(np.sum((z - y) ** 2, 1)) / 2, (z - y)

    curve, trajectory = [], [layers]
    for _ in range(steps + 1):
        hs, pre = forward(layers)
        value, dz = loss_and_dz(hs[-1])
        curve.append(value)
        if len(curve) > steps:
            break
        delta = dz / len(x)
        grads = []
        for k in reversed(range(len(layers))):
            grads.append((hs[k].T @ delta, delta.sum(0)))
            if k:
                delta = (delta @ layers[k][0].T) * dact(pre[k - 1])
        grads.reverse()
        layers = [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(layers, grads)]
        trajectory.append(layers)
    return np.array(curve), trajectory


def _runs(ds, spec):
    """Yield ``(selector, initial layers, lr)`` for every run of a dataset."""
    lr0 = spec["optimizer"].get("learning_rate", 0.1)
    stacked = ds.stack(run=list(ds.done.dims))
    n_layers = sum(1 for k in ds.data_vars if k.startswith("params0/") and k.endswith("/w"))
    for r in range(stacked.sizes["run"]):
        sel = stacked.isel(run=r)
        layers = [
            (sel[f"params0/layers/{k}/w"].values, sel[f"params0/layers/{k}/b"].values)
            for k in range(n_layers)
        ]
        lr = float(sel["optimizer_learning_rate"]) if "optimizer_learning_rate" in sel else lr0
        yield sel, layers, lr


def _final_layers(sel):
    n = sum(1 for k in sel.data_vars if k.startswith("params/") and k.endswith("/w"))
    return [
        (sel[f"params/layers/{k}/w"].values, sel[f"params/layers/{k}/b"].values) for k in range(n)
    ]


def _trajectory_error(dtype):
    """Largest relative error of loss curves and final params against the NumPy reference."""
    spec = {**XOR, "train": {**XOR["train"], "dtype": dtype}}
    ds = jaxinit.run(spec, progress=False)
    task = build_task(jaxinit.Spec.from_dict(spec))
    worst = 0.0
    for sel, layers, lr in _runs(ds, spec):
        curve, traj = _reference(layers, task.x_train, task.y_train, "bce", "tanh", lr, STEPS)
        worst = max(worst, np.max(np.abs(sel.loss.values - curve) / np.abs(curve)))
        for (w, b), (rw, rb) in zip(_final_layers(sel), traj[-1]):
            for got, ref in ((w, rw), (b, rb)):
                worst = max(worst, np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    return float(worst), ds


@pytest.fixture(scope="module")
def xor_sweep():
    return _trajectory_error("float32")


@pytest.fixture(scope="module")
def linear_sweep():
    return jaxinit.run(LINEAR, progress=False)


def test_sgd_matches_numpy_reference(xor_sweep):
    worst, ds = xor_sweep
    assert ds.loss.shape == (2, 3, STEPS + 1)
    # the runs really move: the reference comparison is not a comparison of constants
    assert float((ds.loss[..., 0] - ds.loss[..., -1]).min()) > 0.02
    assert worst < 1e-5


def test_sgd_matches_numpy_reference_float64():
    """float64 switches x64 on for the whole process, so this variant runs in a subprocess."""
    code = (
        "import runpy, sys; print(runpy.run_path(sys.argv[1])['_trajectory_error']('float64')[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-12


def test_time_to_threshold_is_first_step_below(xor_sweep):
    ds = xor_sweep[1]
    thr = XOR["train"]["threshold"]
    below = ds.loss.values < thr  # loss at steps 0..STEPS (the last: after the final update)
    first = np.where(below.any(-1), below.argmax(-1), np.nan)  # NaN: never
    np.testing.assert_array_equal(ds.time_to_threshold.values, first)
    assert (first > 0).any()  # some runs cross the threshold while training


def test_time_to_threshold_counts_the_last_step(xor_sweep):
    """A threshold crossed only by the loss after the final update gives ``steps``, not never."""
    ds = xor_sweep[1].isel(init_scale=1, seed=0)
    curve = ds.loss.values
    assert curve[-1] < curve[:-1].min()  # still improving at the end
    thr = float((curve[-1] + curve[:-1].min()) / 2)
    spec = jaxinit.Spec.from_dict({**XOR, "train": {**XOR["train"], "threshold": thr}})
    run = jax.jit(make_run(spec, build_task(spec)))
    values = {"seed": jnp.int32(0), "init.scale": jnp.float32(ds.init_scale)}
    out = run(values, Data.from_task(build_task(spec)))
    assert int(out["final"]["time_to_threshold"]) == STEPS


def test_diverged_run_is_frozen_and_others_train(linear_sweep):
    ds = linear_sweep
    task = build_task(jaxinit.Spec.from_dict(LINEAR))
    blown = ds.sel(optimizer_learning_rate=50.0)
    assert bool(blown.diverged.all())
    steps = blown.diverged_step.values.astype(int)
    assert ((steps > 0) & (steps < STEPS)).all()
    # frozen at finite parameters with a finite loss: the last logged state before step d
    for var in ("params/layers/0/w", "params/layers/0/b"):
        assert np.isfinite(blown[var].values).all(), var
        assert np.abs(blown[var].values).max() > 1e6  # it did blow up before stopping
    assert np.isfinite(blown.final_loss.values).all()
    loss = blown.loss.transpose("train_grad_tol", "seed", "step").values
    for curve, d in zip(loss.reshape(-1, STEPS + 1), steps.ravel()):
        assert (np.diff(curve[:d]) > 0).all()  # blowing up until the step that overflowed
        # step d's loss is non-finite (or its parameters are, and it was never evaluated); from
        # then on the run is frozen at step d - 1, the last state with a finite loss (log_every=1)
        assert not np.isfinite(curve[d]) or curve[d] == curve[d - 1]
        np.testing.assert_array_equal(curve[d + 1 :], curve[d - 1])
    calm = ds.sel(optimizer_learning_rate=0.3, train_grad_tol=0.0)
    assert not bool(calm.diverged.any()) and np.isnan(calm.diverged_step.values).all()
    for sel, layers, lr in _runs(calm.expand_dims("optimizer_learning_rate"), LINEAR):
        curve, traj = _reference(layers, task.x_train, task.y_train, "mse", "linear", lr, STEPS)
        np.testing.assert_allclose(sel.loss.values, curve, rtol=1e-5)
        for got, ref in zip(_final_layers(sel), traj[-1]):
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-7)


def test_grad_tol_freezes_runs(linear_sweep):
    ds = linear_sweep.sel(optimizer_learning_rate=0.3)
    tol = LINEAR["axes"]["train.grad_tol"][1]
    free, stopped = ds.sel(train_grad_tol=0.0), ds.sel(train_grad_tol=tol)
    assert np.isnan(free.converged_step.values).all()
    conv = stopped.converged_step.values.astype(int)
    assert ((conv > 0) & (conv < STEPS)).all()
    gnorm = stopped.grad_norm.values  # gradient norm at the start of each step
    first = (gnorm[:, :STEPS] < tol).argmax(-1)
    np.testing.assert_array_equal(conv, first)
    for g, c in zip(gnorm, conv):
        np.testing.assert_array_equal(g[c:], g[c])  # frozen
    assert (stopped.final_grad_norm.values < tol).all()
    # before stopping, the two runs of a seed are the same run
    for k, c in enumerate(conv):
        np.testing.assert_array_equal(stopped.loss.values[k, : c + 1], free.loss.values[k, : c + 1])


def test_time_to_threshold_never_reached_is_nan(linear_sweep):
    blown = linear_sweep.sel(optimizer_learning_rate=50.0)
    below = blown.loss.values[..., :STEPS] < LINEAR["train"]["threshold"]
    assert not below.any()
    assert np.isnan(blown.time_to_threshold.values).all()


def test_batch_visits_a_permutation_each_epoch():
    data = Data.from_task(jaxinit.TASKS["parity"](n=3))  # 8 distinct inputs
    key = jax.random.key(0)
    batch_fn = jax.jit(batch, static_argnums=3)
    seen = [np.asarray(batch_fn(data, key, jnp.int32(t), 2)[0]) for t in range(8)]
    codes = [sorted((x @ [1, 2, 4]).astype(int)) for x in seen]
    assert sorted(sum(codes[:4], [])) == list(range(8))
    assert sorted(sum(codes[4:], [])) == list(range(8))
    assert codes[:4] != codes[4:]  # a fresh order in the next epoch
    full = batch(data, key, jnp.int32(3), 0)[0]
    np.testing.assert_array_equal(full, data.x_train)


def _recorder(use_key):
    """A model whose output is 0 but whose gradient is ``mean((1/2 - y) · features)``.

    With bce and SGD, ``(p_T - p_0) / lr`` is then the sum over steps of a statistic of each
    step's minibatch (and, with ``use_key``, of a mask drawn from the step's dropout key): equal
    for two runs exactly when they saw the same batches and masks. Whole epochs sum to the same
    statistic in any order, so the minibatch case stops mid-epoch (10 steps of 4 per epoch).
    """

    def init(key, init_spec):
        return {"p": init_spec.scale * jnp.ones(2)}

    def apply(params, x, *, key=None, train=False):
        p = params["p"]
        feats = x
        if train and key is not None and use_key:
            feats = x * jax.random.uniform(key, x.shape)
        return (feats @ (p - jax.lax.stop_gradient(p)))[:, None]

    return Model(init, apply)


@pytest.mark.parametrize("stream", ["minibatch", "dropout"])
def test_random_streams_depend_only_on_seed_and_step(stream):
    spec = {
        "task": {"name": "circles", "n_points": 32},
        "train": {"steps": 10, "log_every": 5, "batch_size": 8 if stream == "minibatch" else 0},
        "store": {"save_params": True},
        "axes": {"init.scale": [0.5, 1.0], "optimizer.learning_rate": [0.1, 0.3], "seed": 3},
    }
    ds = jaxinit.run(spec, model=_recorder(stream == "dropout"), progress=False)
    assert np.isfinite(ds.loss.values).all()
    order = ("seed", "init_scale", "optimizer_learning_rate", ...)
    p, p0 = (ds[v].transpose(*order).values for v in ("params/p", "params0/p"))
    lr = ds.optimizer_learning_rate.values[None, None, :, None]
    moved = ((p - p0) / lr).reshape(3, -1, 2)  # (seed, other runs, p)
    # p - p0 cancels in float32: a few ulps of p (≈1e-7) / lr, summed over 10 steps
    for s in range(3):
        np.testing.assert_allclose(
            moved[s], np.broadcast_to(moved[s, :1], moved[s].shape), atol=2e-5
        )
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(moved[a, 0] - moved[b, 0]).max() > 1e-3, (moved[a, 0], moved[b, 0])


PLANE_BASE = {
    "task": {"name": "xor"},
    "model": {"widths": [3]},
    "store": {"save_params": True},
    "train": {"steps": 10, "log_every": 10, "diagnostics": []},
}


def test_plane_through_three_given_inits():
    """plane_seed_a/b: the slice's corners (0,0), (1,0), (0,1) are the inits of the three seeds."""
    plane = {
        **PLANE_BASE,
        "init": {"plane_seed": 0, "plane_seed_a": 5, "plane_seed_b": 9},
        "axes": {"init.plane_a": [0.0, 1.0], "init.plane_b": [0.0, 1.0]},
    }
    ds = jaxinit.run(plane, progress=False)
    ref = jaxinit.run({**PLANE_BASE, "axes": {"seed": [0, 5, 9]}}, progress=False)
    for name in ("params0/layers/0/w", "params0/layers/1/w"):
        for (a, b), seed in (((0.0, 0.0), 0), ((1.0, 0.0), 5), ((0.0, 1.0), 9)):
            got = ds[name].sel(init_plane_a=a, init_plane_b=b).isel(seed=0).values
            np.testing.assert_allclose(got, ref[name].sel(seed=seed).values, atol=1e-6)


def test_random_plane_directions_are_filter_normalized():
    plane = {
        **PLANE_BASE,
        "init": {"plane_seed": 3},
        "axes": {"init.plane_a": [0.0, 1.0], "init.plane_b": [0.0, 1.0]},
    }
    ds = jaxinit.run(plane, progress=False)
    w = ds["params0/layers/0/w"]
    origin = w.sel(init_plane_a=0.0, init_plane_b=0.0).values
    for a, b in ((1.0, 0.0), (0.0, 1.0)):
        step = w.sel(init_plane_a=a, init_plane_b=b).values - origin
        np.testing.assert_allclose(np.linalg.norm(step), np.linalg.norm(origin), rtol=1e-5)
    d1 = w.sel(init_plane_a=1.0, init_plane_b=0.0).values - origin
    d2 = w.sel(init_plane_a=0.0, init_plane_b=1.0).values - origin
    assert abs(np.dot(d1.ravel(), d2.ravel())) < np.linalg.norm(d1) * np.linalg.norm(d2)  # distinct


def test_step_carries_each_epochs_order_as_drawing_it_every_step_would():
    """:func:`jaxinit.engine.train.step` draws a minibatch order once per epoch and carries it (issue
    21: a sort per step was the medium workload's first cost). The run must be bit-identical to
    one that draws the order at every step (:func:`batch`), over whole epochs and a part one."""
    from jaxinit.engine import train

    spec = jaxinit.resolve_spec(
        {
            "task": {"name": "circles", "n_points": 32},
            "model": {"widths": [4], "activation": "tanh"},
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "train": {"steps": 10, "log_every": 10, "batch_size": 8, "diagnostics": []},
        }
    )
    task = build_task(spec)
    data = Data.from_task(task)
    values = {"seed": jnp.int32(3)}
    params0 = train.init_params(spec, task, None, values)
    ctx = train.context(spec, task, None, values, params0)

    def carried(t_steps):
        state = train.init_state(ctx, params0, data)
        return jax.lax.scan(lambda s, t: train.step(ctx, data, s, t)[:2], state, t_steps)

    def per_step(t_steps):
        def one(s, t):
            x, y = batch(data, ctx.key_data, t, 8)
            loss, grads = jax.value_and_grad(ctx.loss)(s.params, x, y, None)
            return train.optimizer_step(ctx, s, loss, grads, optax.tree.norm)[0], loss

        return jax.lax.scan(one, train.init_state(ctx, params0), t_steps)

    t_steps = jnp.arange(10, dtype=jnp.int32)  # 4 steps an epoch: 2.5 epochs
    (a, loss_a), (b, loss_b) = jax.jit(carried)(t_steps), jax.jit(per_step)(t_steps)
    assert a.order.shape == (32,) and sorted(np.asarray(a.order)) == list(range(32))
    np.testing.assert_array_equal(loss_a, loss_b)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(u, v)


def test_one_runs_loss_evaluation_and_diagnostic_probe_agree():
    """:func:`train.run_loss` (the training loss without dropout), :func:`train.evaluate` (the
    final evaluation) and :func:`train.diagnostic_probe`'s loss are one run's same loss, bit for
    bit, and the probe looks at the training set with the layout's primitives."""
    from jaxinit.blocks.ops import PER_RUN
    from jaxinit.engine import train

    spec = jaxinit.resolve_spec(
        {"model": {"widths": [4]}, "train": {"steps": 2, "log_every": 1, "diagnostics": []}}
    )
    task = build_task(spec)
    data = Data.from_task(task)
    values = {"seed": jnp.int32(1)}
    params0 = train.init_params(spec, task, None, values)
    ctx = train.context(spec, task, None, values, params0)
    assert ctx.layout is train.VMAP_TRAIN
    loss = train.run_loss(ctx, params0, data.x_train, data.y_train)
    ev_loss, metric = train.evaluate(ctx, params0, data.x_train, data.y_train)
    probe = train.diagnostic_probe(ctx, data, params0, params0)
    assert probe.ops is PER_RUN and probe.x is data.x_train and probe.memo is None
    assert (
        float(loss)
        == float(ev_loss)
        == float(probe.loss(params0))
        == float(ctx.loss(params0, data.x_train, data.y_train))
    )
    assert 0.0 <= float(metric) <= 1.0 and metric.dtype == ev_loss.dtype
    moved = jax.tree.map(lambda p: p + 1.0, params0)
    assert float(train.run_loss(ctx, moved, data.x_train, data.y_train)) != float(loss)


@pytest.mark.parametrize("layout", ["vmap", "lanes"])
def test_a_loss_curve_is_the_same_with_and_without_diagnostics(layout):
    """Full batch, no dropout: the logged loss is the loss the block's first step computes,
    with a diagnostic on or off, bit for bit. (A second, separately compiled forward pass used
    to be logged with diagnostics on: on the lanes it rounded an ulp apart from the step's,
    and XLA fused it, unvectorised, into the curve's update: ~0.7 ms a logged step on 4,096
    lanes.) With minibatches no step computes the full-batch loss that is logged, so it is
    computed on its own, with diagnostics together with their gradient: on the lanes that
    rounds up to an ulp apart from the plain forward pass (seen: 6e-8 on 0.56)."""
    import jaxinit

    def spec(diagnostics, batch_size, every=1):
        return {
            "task": {"name": "xor"},
            "model": {"widths": [3]},
            "optimizer": {"learning_rate": 0.5},
            "train": {
                "steps": 70, "log_every": 10, "diagnostics": diagnostics, "layout": layout,
                "batch_size": batch_size, "sharpness_every": every,
            },
            "axes": {"seed": 3, "init.scale": [0.5, 1.0, 2.0]},
        }  # fmt: skip

    def curves(batch_size, diagnostic):
        specs = [spec([], batch_size), spec([diagnostic], batch_size, every=3)]
        return [jaxinit.run(s, progress=False).loss.values for s in specs]

    plain, probed = curves(0, "sharpness")
    assert np.isfinite(plain).all()
    np.testing.assert_array_equal(probed, plain)
    # any diagnostic's gradient does: grad_norm's program compiles in ~0.6 s, sharpness's in ~5.5 s
    plain, probed = curves(2, "grad_norm")
    np.testing.assert_allclose(probed, plain, rtol=2e-7)
