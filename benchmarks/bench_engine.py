"""Side-by-side speed of the jaxinit engine against hand-written baselines, in one process.

Workloads (issue 2, acceptance item 6):

* ``tiny``: XOR, 2-2-1 tanh MLP, full batch, 2000 steps, 65,536 runs, SGD, loss curve every
  ``log_every`` steps.
* ``medium``: teacher-student regression, 16-64-64-1 tanh MLP, minibatch 256 of 1024 points,
  300 steps, 256 runs, SGD, full-batch loss curve every ``log_every`` steps.
* ``million`` (issue 10; only when asked for, not in ``all``): the tiny workload at 2**20 runs,
  ``jaxinit`` only, streamed to a sweep directory; throughput against 65,536 runs, peak RSS
  (:func:`million`).

Implementations:

* ``jaxinit``: ``jaxinit.run(spec_dict, progress=False, chunk_size=...)``, diagnostics off.
* ``jaxinit+sharpness`` (``--sharpness``; ``--sharpness-iters``, ``--sharpness-tol``): the same
  with the ``sharpness`` diagnostic every ``log_every`` steps; the report gives its time over
  ``jaxinit``'s.
* ``vmap``, ``lanes``: the engine's compiled program for one chunk called directly under
  ``jax.jit`` (no planning, no store): ``jax.vmap(train.make_run(spec, task))`` (run axis
  first) and ``lanes.make_batched_run(spec, task)`` (run axis on the SIMD lanes).
* ``hand``: a hand-written ``jax.jit(jax.vmap(train))`` with a nested ``lax.scan`` — same network,
  same lecun_normal init (and the same key derivation, so its numbers match jaxinit's), same loss,
  loss recorded at the same steps.
* ``torch.func``: stacked parameters, ``torch.func.functional_call`` + ``vmap`` +
  ``grad_and_value``, a Python loop over steps.
* ``torch-loop``: a plain PyTorch loop, one run at a time (``nn.Sequential`` + ``optim.SGD``).
  Too slow for every run: it times ``--loop-runs`` runs and extrapolates linearly.

Each implementation is called once untimed-for-throughput (its *first* call: tracing, compiling
and one run), then ``--repeat`` times; repeats are interleaved across implementations so a
change in machine load hits all of them alike. Throughput is runs·steps/s of the median repeat.

Usage::

    python benchmarks/bench_engine.py                       # both workloads, full size
    python benchmarks/bench_engine.py --workload tiny --runs 4096 --steps 200 --repeat 2  # smoke
    python benchmarks/bench_engine.py --workload tiny --impl hand --impl vmap --impl lanes
    python benchmarks/bench_engine.py --crossover           # lanes vs hand over widths
    python benchmarks/bench_engine.py --workload million    # 2**20 runs to disk, peak RSS
    python benchmarks/bench_engine.py --workload tiny --impl jaxinit --sharpness  # its cost

``--crossover`` times ``hand``, ``vmap`` and ``lanes`` on the tiny workload's XOR task with
hidden widths 2, 4, 8, 16, 32-32 and 64-64, and on the medium workload's teacher-student task
(16-32-1 minibatch 32, 16-64-64-1 minibatch 16 and 256), then prints each configuration's
``lanes.step_cost`` and throughput ratios next to what ``lanes.prefer_lanes`` decides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxinit
from jaxinit.blocks.tasks import TASKS, Task
from jaxinit.config.spec import Spec
from jaxinit.engine import lanes
from jaxinit.engine.devices import use_cpu_cores
from jaxinit.engine.train import Data, make_run

ROOT_SEED = 0


class Workload(NamedTuple):
    name: str
    task: str
    task_params: dict
    widths: tuple[int, ...]
    loss: str  # "bce" or "mse"
    steps: int
    runs: int
    batch_size: int  # 0: full batch
    learning_rate: float
    log_every: int
    loop_runs: int  # runs the plain torch loop really does (the rest is extrapolated)


WORKLOADS = {
    "tiny": Workload("tiny", "xor", {}, (2,), "bce", 2000, 65536, 0, 0.5, 10, 32),
    "medium": Workload(
        "medium",
        "teacher_student",
        {"in_dim": 16, "teacher_widths": [32], "activation": "tanh", "n_train": 1024},
        (64, 64),
        "mse",
        300,
        256,
        256,
        0.05,
        10,
        64,
    ),
    # issue 21: a wide classifier, the shape where the dots dominate.
    "wide": Workload(
        "wide", "digits", {"n_train": 1000}, (256, 256), "ce", 200, 64, 128, 0.05, 10, 16
    ),
}


class Result(NamedTuple):
    first_s: float  # first call: trace + compile + one full run
    times_s: list[float]  # steady-state repeats, wall clock
    cpu_s: list[float]  # the same repeats, CPU seconds of this process (all threads)
    runs_timed: int  # runs the timed calls really did
    runs: int  # runs the throughput is quoted for (> runs_timed: extrapolated)
    final_loss_mean: float
    note: str = ""


# --------------------------------------------------------------------------------------------
# (a) jaxinit


def jaxinit_spec(w: Workload, diagnostics: tuple[str, ...] = (), **train) -> dict:
    return {
        "name": f"bench-{w.name}",
        "task": {"name": w.task, **w.task_params},
        "model": {"name": "mlp", "widths": list(w.widths), "activation": "tanh"},
        "init": {"scheme": "lecun_normal"},
        "optimizer": {"name": "sgd", "learning_rate": w.learning_rate},
        "train": {
            "steps": w.steps,
            "log_every": w.log_every,
            "batch_size": w.batch_size,
            "diagnostics": list(diagnostics),
            **train,
        },
        "axes": {"seed": w.runs},
    }


def make_jaxinit(w: Workload, chunk_size: int | None, **diagnostics) -> Callable[[], float]:
    """``jaxinit.run`` of the workload; ``diagnostics``: :func:`jaxinit_spec`'s (e.g.
    ``diagnostics=("sharpness",), sharpness_iters=4``)."""
    spec = jaxinit_spec(w, **diagnostics)

    def call() -> float:
        ds = jaxinit.run(spec, progress=False, chunk_size=chunk_size)
        ds["loss"].values  # noqa: B018  (results are already on the host; be explicit)
        return float(ds["final_loss"].mean())

    return call


def make_engine(w: Workload, chunk_size: int, layout: str) -> Callable[[], float]:
    """The engine's program for one chunk of seeds under ``jax.jit``, Python loop over chunks
    (the last padded, as ``make_hand``): ``layout="vmap"`` is ``vmap(make_run)``, ``"lanes"``
    is ``lanes.make_batched_run``. Everything else of ``jaxinit.run`` is left out."""
    spec = Spec.from_dict(jaxinit_spec(w))
    task = TASKS[w.task](**w.task_params)
    data = Data.from_task(task)
    if layout == "lanes":
        fn = jax.jit(lanes.make_batched_run(spec, task))
    else:
        fn = jax.jit(jax.vmap(make_run(spec, task), in_axes=(0, None)))

    def call() -> float:
        finals = []
        for lo in range(0, w.runs, chunk_size):
            seeds = np.arange(lo, lo + chunk_size, dtype=np.int32)
            out = jax.device_get(fn({"seed": seeds}, data))
            finals.append(out["final"]["final_loss"][: w.runs - lo])
        return float(np.concatenate(finals).mean())

    return call


# --------------------------------------------------------------------------------------------
# (b) hand-written jit(vmap(scan))


def _loss(kind: str, pred, y):
    if kind == "bce":
        return jnp.mean(jnp.logaddexp(0.0, pred) - y * pred)
    if kind == "ce":  # integer labels, one logit per class
        picked = jnp.take_along_axis(pred, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(pred, axis=-1) - picked)
    return jnp.mean(jnp.sum((pred - y) ** 2, axis=-1)) / 2


def make_hand(w: Workload, task: Task, chunk_size: int) -> Callable[[], float]:
    """``jit(vmap(train))`` over a chunk of seeds, Python loop over chunks."""
    dims = (task.in_dim, *w.widths, task.out_dim)
    x_all, y_all = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
    n = x_all.shape[0]
    n_blocks = w.steps // w.log_every
    minibatch = 0 < w.batch_size < n

    def init(key):
        # lecun_normal weights, zero biases; keys derived as jaxinit does, so results match.
        params = []
        for l, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            k_w = jax.random.split(jax.random.fold_in(key, l))[0]
            k_w = jax.random.split(k_w)[0]
            params.append((jax.random.normal(k_w, (a, b)) * (1.0 / np.sqrt(a)), jnp.zeros(b)))
        return params

    def apply(params, x):
        for wt, b in params[:-1]:
            x = jnp.tanh(x @ wt + b)
        wt, b = params[-1]
        return x @ wt + b

    def loss_fn(params, x, y):
        return _loss(w.loss, apply(params, x), y)

    def train(seed):
        key = jax.random.fold_in(jax.random.key(ROOT_SEED), seed)
        k_init, k_data = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        params = init(k_init)

        def batch(t, perm):
            """Step t's minibatch; the epoch's permutation is drawn at its first step and
            carried, as a careful hand-written loop (and jaxinit) does."""
            if not minibatch:
                return (x_all, y_all), perm
            per_epoch = n // w.batch_size
            pos = t % per_epoch
            perm = jax.lax.cond(
                pos == 0,
                lambda: jax.random.permutation(jax.random.fold_in(k_data, t // per_epoch), n),
                lambda: perm,
            )
            idx = jax.lax.dynamic_slice_in_dim(perm, pos * w.batch_size, w.batch_size)
            return (x_all[idx], y_all[idx]), perm

        def step(carry, t):
            p, perm = carry
            xy, perm = batch(t, perm)
            loss, g = jax.value_and_grad(loss_fn)(p, *xy)
            return (jax.tree.map(lambda a, d: a - w.learning_rate * d, p, g), perm), loss

        def block(carry, b):
            full = loss_fn(carry[0], x_all, y_all) if minibatch else None
            carry, losses = jax.lax.scan(step, carry, b * w.log_every + jnp.arange(w.log_every))
            return carry, losses[0] if full is None else full

        perm0 = jnp.zeros(n, jax.random.permutation(k_data, n).dtype)
        (params, _), curve = jax.lax.scan(block, (params, perm0), jnp.arange(n_blocks))
        final = loss_fn(params, x_all, y_all)
        return jnp.concatenate([curve, final[None]]), final

    fn = jax.jit(jax.vmap(train))

    def call() -> float:
        finals = []
        for lo in range(0, w.runs, chunk_size):
            seeds = np.arange(lo, lo + chunk_size, dtype=np.int32)  # last chunk padded
            curves, final = jax.device_get(fn(seeds))
            finals.append(final[: w.runs - lo])
        return float(np.concatenate(finals).mean())

    return call


# --------------------------------------------------------------------------------------------
# (c), (d) PyTorch, imported lazily


def _torch_net(torch, dims):
    layers = []
    for l, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(torch.nn.Linear(a, b))
        if l < len(dims) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def _torch_init_(torch, net, gen):
    """lecun_normal weights, zero biases, drawn from ``gen``."""
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 1.0 / np.sqrt(m.in_features), generator=gen)
                m.bias.zero_()


def _torch_loss(torch, kind):
    if kind == "bce":
        return lambda pred, y: torch.nn.functional.binary_cross_entropy_with_logits(pred, y)
    if kind == "ce":
        return lambda pred, y: torch.nn.functional.cross_entropy(pred, y.long())
    return lambda pred, y: ((pred - y) ** 2).sum(-1).mean() / 2


def make_torch_func(w: Workload, task: Task) -> Callable[[], float]:
    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    dims = (task.in_dim, *w.widths, task.out_dim)
    x_all, y_all = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
    n = x_all.shape[0]
    minibatch = 0 < w.batch_size < n
    loss_of = _torch_loss(torch, w.loss)
    base = _torch_net(torch, dims).to("meta")

    def loss_fn(params, x, y):
        return loss_of(functional_call(base, params, (x,)), y)

    full_loss = vmap(loss_fn, in_dims=(0, None, None))
    step_grad = vmap(grad_and_value(loss_fn), in_dims=(0, 0, 0) if minibatch else (0, None, None))

    def call() -> float:
        gen = torch.Generator().manual_seed(ROOT_SEED)
        nets = []
        for _ in range(w.runs):
            net = _torch_net(torch, dims)
            _torch_init_(torch, net, gen)
            nets.append(net)
        params, _ = stack_module_state(nets)
        params = {k: v.detach() for k, v in params.items()}
        curve = torch.empty(w.runs, w.steps // w.log_every + 1)
        per_epoch = n // w.batch_size if minibatch else 1
        for t in range(w.steps):
            if minibatch:
                if t % per_epoch == 0:
                    perm = torch.rand(w.runs, n, generator=gen).argsort(dim=1)
                k = t % per_epoch
                idx = perm[:, k * w.batch_size : (k + 1) * w.batch_size]
                x, y = x_all[idx], y_all[idx]
                if t % w.log_every == 0:
                    curve[:, t // w.log_every] = full_loss(params, x_all, y_all)
            else:
                x, y = x_all, y_all
            grads, loss = step_grad(params, x, y)
            if not minibatch and t % w.log_every == 0:
                curve[:, t // w.log_every] = loss
            with torch.no_grad():
                for k_, p in params.items():
                    p.sub_(w.learning_rate * grads[k_])
        final = full_loss(params, x_all, y_all)
        curve[:, -1] = final
        return float(final.mean())

    return call


def make_torch_loop(w: Workload, task: Task, runs: int) -> Callable[[], float]:
    import torch

    dims = (task.in_dim, *w.widths, task.out_dim)
    x_all, y_all = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
    n = x_all.shape[0]
    minibatch = 0 < w.batch_size < n
    loss_of = _torch_loss(torch, w.loss)

    def call() -> float:
        gen = torch.Generator().manual_seed(ROOT_SEED)
        finals = []
        for _ in range(runs):
            net = _torch_net(torch, dims)
            _torch_init_(torch, net, gen)
            opt = torch.optim.SGD(net.parameters(), lr=w.learning_rate)
            curve = torch.empty(w.steps // w.log_every + 1)
            perm = None
            for t in range(w.steps):
                if minibatch:
                    per_epoch = n // w.batch_size
                    if t % per_epoch == 0:
                        perm = torch.randperm(n, generator=gen)
                    k = t % per_epoch
                    idx = perm[k * w.batch_size : (k + 1) * w.batch_size]
                    x, y = x_all[idx], y_all[idx]
                    if t % w.log_every == 0:
                        with torch.no_grad():
                            curve[t // w.log_every] = loss_of(net(x_all), y_all)
                else:
                    x, y = x_all, y_all
                opt.zero_grad()
                loss = loss_of(net(x), y)
                loss.backward()
                opt.step()
                if not minibatch and t % w.log_every == 0:
                    curve[t // w.log_every] = loss.detach()
            with torch.no_grad():
                curve[-1] = loss_of(net(x_all), y_all)
            finals.append(float(curve[-1]))
        return float(np.mean(finals))

    return call


# --------------------------------------------------------------------------------------------


SHARPNESS = "jaxinit+sharpness"
"""The implementation ``--sharpness`` adds: ``jaxinit`` with ``train.diagnostics =
["sharpness"]`` (logged every ``log_every`` steps), timed beside ``jaxinit`` in the same
process (issue 22, acceptance 5: at most 2x the time without it)."""


def bench(
    w: Workload,
    impls: list[str],
    repeat: int,
    chunk_size: int | None,
    sharpness: dict | None = None,
) -> dict[str, Result]:
    task = TASKS[w.task](**w.task_params)
    chunk = chunk_size or w.runs
    calls: dict[str, tuple[Callable[[], float], int, int, str]] = {}
    for name in impls:
        if name == "jaxinit":
            calls[name] = (make_jaxinit(w, chunk_size), w.runs, w.runs, "")
        elif name == SHARPNESS:
            note = ", ".join(f"{k} {v}" for k, v in (sharpness or {}).items())
            diags = {"diagnostics": ("sharpness",), **(sharpness or {})}
            calls[name] = (make_jaxinit(w, chunk_size, **diags), w.runs, w.runs, note)
        elif name == "hand":
            calls[name] = (make_hand(w, task, chunk), w.runs, w.runs, "")
        elif name in ("vmap", "lanes"):
            calls[name] = (make_engine(w, chunk, name), w.runs, w.runs, "")
        elif name == "torch.func":
            calls[name] = (make_torch_func(w, task), w.runs, w.runs, "")
        elif name == "torch-loop":
            k = min(w.loop_runs, w.runs)
            note = f"extrapolated from {k} runs" if k < w.runs else ""
            calls[name] = (make_torch_loop(w, task, k), k, w.runs, note)
    firsts, finals = {}, {}
    times, cpu = {name: [] for name in calls}, {name: [] for name in calls}
    for name, (call, *_) in calls.items():
        t0 = time.perf_counter()
        finals[name] = call()
        firsts[name] = time.perf_counter() - t0
        print(f"  [{w.name}] {name:<10} first call {firsts[name]:8.2f} s", flush=True)
    for r in range(repeat):
        for name, (call, *_) in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        line = "  ".join(f"{n} {ts[-1]:.2f}s" for n, ts in times.items())
        print(f"  [{w.name}] repeat {r + 1}/{repeat}: {line}  (load {_load()})", flush=True)
    return {
        name: Result(firsts[name], times[name], cpu[name], k, total, finals[name], note)
        for name, (_, k, total, note) in calls.items()
    }


def report(w: Workload, results: dict[str, Result]) -> dict[str, tuple[float, float]]:
    """One table row per implementation; ratios of jaxinit's throughput to each other's.

    ``wall`` is the median repeat's wall clock, ``cpu`` its CPU seconds (all threads of this
    process), which moves less than wall time when other processes share the cores.
    """
    print(
        f"\n== {w.name}: {w.runs} runs x {w.steps} steps, widths {w.widths}, "
        f"batch {w.batch_size or 'full'}, log_every {w.log_every} =="
    )
    print(
        f"{'impl':<11}{'first s':>9}{'wall s':>9}{'wall min-max':>15}{'cpu s':>9}"
        f"{'cpu min-max':>15}{'runs*steps/s':>14}{'final loss':>12}  note"
    )
    rate, cpu_rate = {}, {}
    for name, r in results.items():
        scale = r.runs / r.runs_timed  # > 1: extrapolated
        wall, cpu = statistics.median(r.times_s) * scale, statistics.median(r.cpu_s) * scale
        rate[name], cpu_rate[name] = r.runs * w.steps / wall, r.runs * w.steps / cpu
        wall_mm = f"{min(r.times_s) * scale:.2f}-{max(r.times_s) * scale:.2f}"
        cpu_mm = f"{min(r.cpu_s) * scale:.2f}-{max(r.cpu_s) * scale:.2f}"
        print(
            f"{name:<11}{r.first_s * scale:9.2f}{wall:9.2f}{wall_mm:>15}{cpu:9.2f}{cpu_mm:>15}"
            f"{rate[name]:14.3e}{r.final_loss_mean:12.5f}  {r.note}"
        )
    for mine, other in (("lanes", "hand"), ("lanes", "vmap"), ("vmap", "hand")):
        if mine in rate and other in rate:
            print(
                f"{mine}/{other}: throughput ratio {rate[mine] / rate[other]:.2f} wall, "
                f"{cpu_rate[mine] / cpu_rate[other]:.2f} cpu"
            )
    if "jaxinit" in rate and SHARPNESS in rate:
        print(
            f"{SHARPNESS}/jaxinit: time ratio {rate['jaxinit'] / rate[SHARPNESS]:.2f} wall, "
            f"{cpu_rate['jaxinit'] / cpu_rate[SHARPNESS]:.2f} cpu (load {_load()})"
        )
    if "jaxinit" in rate:
        for other in ("hand", "torch.func", "torch-loop"):
            if other in rate:
                print(
                    f"jaxinit/{other}: throughput ratio {rate['jaxinit'] / rate[other]:.3f} wall, "
                    f"{cpu_rate['jaxinit'] / cpu_rate[other]:.3f} cpu "
                    f"(jaxinit overhead {rate[other] / rate['jaxinit'] - 1:+.1%} wall, "
                    f"{cpu_rate[other] / cpu_rate['jaxinit'] - 1:+.1%} cpu)"
                )
    return {name: (rate[name], cpu_rate[name]) for name in rate}


def step_flops(w: Workload, task: Task) -> float:
    """Model FLOPs of one run's training step: ``6·B·Σ dᵢdᵢ₊₁`` (the forward pass's
    multiply-adds, 2 FLOPs each, and twice that backward: gradients of the weights and of the
    activations), plus the full-batch forward pass of the loss curve spread over ``log_every``
    steps when the step is a minibatch. Elementwise work (tanh, the loss, the update) is left
    out: it is small beside the dots for the medium and wide nets, and it is what dominates the
    tiny one, where GFLOP/s says little."""
    dims = (task.in_dim, *w.widths, task.out_dim)
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    n = task.x_train.shape[0]
    batch = w.batch_size if 0 < w.batch_size < n else n
    logging = 2 * n * macs / w.log_every if batch < n else 0.0
    return 6.0 * batch * macs + logging


def _best_gflops(fn: Callable[[], object], flops: float, repeat: int = 5) -> float:
    fn()  # compile / warm up
    best = min(_timed(fn) for _ in range(repeat))
    return flops / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ceilings(w: Workload, task: Task) -> dict[str, float]:
    """This machine's matmul ceilings in GFLOP/s, measured now (best of 5): one large f32
    matmul (2048³) in XLA and in NumPy, and XLA's batched forward matmul of the workload's
    widest layer, ``(runs, B, K) @ (runs, K, N)`` (runs capped at 256)."""
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    out = {"XLA matmul 2048^3": _best_gflops(lambda: mm(a).block_until_ready(), 2.0 * n**3)}
    a_np = np.ones((n, n), np.float32)
    out["NumPy matmul 2048^3"] = _best_gflops(lambda: a_np @ a_np, 2.0 * n**3)
    dims = (task.in_dim, *w.widths, task.out_dim)
    k, m = max(zip(dims[:-1], dims[1:]), key=lambda ab: ab[0] * ab[1])
    b = w.batch_size if 0 < w.batch_size < task.x_train.shape[0] else task.x_train.shape[0]
    r = min(w.runs, 256)
    x, y = jnp.ones((r, b, k), jnp.float32), jnp.ones((r, k, m), jnp.float32)
    bmm = jax.jit(lambda x, y: x @ y)
    label = f"XLA batched ({r},{b},{k})@({r},{k},{m})"
    out[label] = _best_gflops(lambda: bmm(x, y).block_until_ready(), 2.0 * r * b * k * m)
    return out


def report_gflops(
    w: Workload, task: Task, rates: dict[str, tuple[float, float]], ceiling: dict[str, float]
) -> None:
    """Achieved model GFLOP/s (:func:`step_flops` × runs·steps/s, median wall) of every
    implementation beside the measured ceilings, and its fraction of the largest."""
    flops = step_flops(w, task)
    top = max(ceiling.values())
    print(f"-- {w.name}: {flops / 1e6:.3f} MFLOP per run-step (model FLOPs, step_flops)")
    for label, g in ceiling.items():
        print(f"   ceiling  {label:<34}{g:8.1f} GFLOP/s")
    for name, (rate, _) in rates.items():
        g = rate * flops / 1e9
        print(f"   achieved {name:<34}{g:8.1f} GFLOP/s  ({g / top:.1%} of {top:.0f})")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


CROSSOVER = (  # (label, workload, changes): each sized for a few seconds per call
    ("2-2-1", "tiny", {"widths": (2,), "runs": 16384, "steps": 200}),
    ("2-4-1", "tiny", {"widths": (4,), "runs": 16384, "steps": 200}),
    ("2-8-1", "tiny", {"widths": (8,), "runs": 16384, "steps": 200}),
    ("2-16-1", "tiny", {"widths": (16,), "runs": 16384, "steps": 200}),
    ("2-32-32-1", "tiny", {"widths": (32, 32), "runs": 4096, "steps": 100}),
    ("2-64-64-1", "tiny", {"widths": (64, 64), "runs": 1024, "steps": 100}),
    ("16-32-1 b32", "medium", {"widths": (32,), "batch_size": 32, "runs": 1024, "steps": 100}),
    ("16-64-64-1 b16", "medium", {"batch_size": 16, "runs": 256, "steps": 100}),
    ("16-64-64-1", "medium", {"runs": 64, "steps": 20}),
)
"""The configurations of ``--crossover``: where the lanes layout stops paying."""


def crossover(args: argparse.Namespace) -> None:
    """``hand``, ``vmap`` and ``lanes`` on every :data:`CROSSOVER` configuration, then one
    summary row each: ``lanes.step_cost``, the lanes block size, throughput ratios (median
    wall and CPU seconds) and what ``lanes.prefer_lanes`` decides."""
    rows = []
    for label, name, changes in CROSSOVER:
        w = WORKLOADS[name]._replace(**changes)
        w = w._replace(runs=args.runs or w.runs, steps=args.steps or w.steps)
        spec, task = Spec.from_dict(jaxinit_spec(w)), TASKS[w.task](**w.task_params)
        rates = report(w, bench(w, ["hand", "vmap", "lanes"], args.repeat, args.chunk_size))
        ratio = {
            k: tuple(a / b for a, b in zip(rates["lanes"], rates[k])) for k in ("hand", "vmap")
        }
        block, prefer = lanes.lanes_per_block(spec, task), lanes.prefer_lanes(spec, task)
        rows.append((label, lanes.step_cost(spec, task), block, ratio, prefer))
    print(f"\n== crossover (load {_load()}) ==")
    print(
        f"{'net':<16}{'step_cost':>10}{'block':>7}{'lanes/hand wall':>17}{'cpu':>6}"
        f"{'lanes/vmap wall':>17}{'cpu':>6}  prefer_lanes"
    )
    for label, cost, block, ratio, prefer in rows:
        (hw, hc), (vw, vc) = ratio["hand"], ratio["vmap"]
        print(
            f"{label:<16}{cost:>10}{block:>7}{hw:>17.2f}{hc:>6.2f}{vw:>17.2f}{vc:>6.2f}  {prefer}"
        )


def million(args: argparse.Namespace) -> None:
    """``--workload million``: 2**20 runs of the tiny workload (XOR 2-2-1) streamed by
    ``jaxinit.run`` into a sweep directory (each chunk written and checksummed as it finishes,
    then the whole directory loaded back), against the same workload at 65,536 runs.

    Prints each one's wall time and runs·steps/s, their ratio, the directory's size, and the
    process's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), split into streaming
    (compute and write every chunk) and loading the finished directory back into one Dataset
    (``jaxinit.run`` returns ``jaxinit.load(out)``; timed by wrapping ``jaxinit.engine.results.load``).
    The million runs go first, in a process that has not imported torch. ``--runs``,
    ``--steps``, ``--log-every``, ``--chunk-size`` and ``--out-dir`` (default: a temporary
    directory, deleted afterwards) change it.
    """
    import resource
    import shutil
    import tempfile
    from pathlib import Path

    import jaxinit.engine.results

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    real_load, marks = jaxinit.engine.results.load, {}

    def load(path, **kwargs):  # jaxinit.run ends by loading the directory: mark where
        marks.update(t=time.perf_counter(), c=time.process_time(), rss=rss_mb())
        return real_load(path, **kwargs)

    jaxinit.engine.results.load = load

    w = WORKLOADS["tiny"]
    w = w._replace(
        runs=args.runs or 2**20,
        steps=args.steps or w.steps,
        log_every=args.log_every or w.log_every,
    )
    small = w._replace(runs=65536)
    root = Path(tempfile.mkdtemp(prefix="jaxinit-million-", dir=args.out_dir))
    print(f"== million: {w.runs:,} runs x {w.steps} steps, log_every {w.log_every}, into {root}")
    rows = []
    try:
        for k, wl in enumerate((w, small, small)):  # the second small run is the warm figure
            out = root / f"{wl.runs}-{k}"
            t0, c0 = time.perf_counter(), time.process_time()
            ds = jaxinit.run(jaxinit_spec(wl), out, progress=False, chunk_size=args.chunk_size)
            end, end_c, peak = time.perf_counter(), time.process_time(), rss_mb()
            wall, cpu = marks["t"] - t0, marks["c"] - c0  # streaming only
            disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            n_done = int(ds["done"].sum())
            loss = float(ds["final_loss"].mean())
            del ds
            rows.append((wl, wall, cpu, marks["rss"], peak))
            shutil.rmtree(out)
            print(
                f"  {wl.runs:>9,} runs: streamed in {wall:.1f} s wall, {cpu:.1f} s cpu "
                f"({wl.runs * wl.steps / wall:.3e} runs*steps/s), peak RSS {marks['rss']:,.0f} MB;"
                f" loaded back in {end - marks['t']:.1f} s wall, {end_c - marks['c']:.1f} s cpu,"
                f" peak RSS {peak:,.0f} MB; {disk / 1e6:,.0f} MB on disk, {n_done:,} done, "
                f"mean final loss {loss:.5f} (load {_load()})",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        jaxinit.engine.results.load = real_load
    (big, wall_b, cpu_b, rss_b, peak_b), (_, wall_s, cpu_s, *_) = rows[0], rows[2]
    rate_b, rate_s = big.runs * big.steps / wall_b, small.runs * small.steps / wall_s
    cpu_ratio = (big.runs / cpu_b) / (small.runs / cpu_s)
    print(
        f"million/65,536 (streaming): throughput ratio {rate_b / rate_s:.2f} wall, "
        f"{cpu_ratio:.2f} cpu; peak RSS of the million run {rss_b:,.0f} MB streaming, "
        f"{peak_b:,.0f} MB with the final load (limit 1,500 MB)"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workload", choices=["tiny", "medium", "wide", "all", "million"], default="all"
    )
    p.add_argument("--out-dir", help="million: where its sweep directory goes (default: /tmp)")
    p.add_argument("--runs", type=int, help="override the workload's number of runs")
    p.add_argument("--steps", type=int, help="override the workload's steps")
    p.add_argument("--loop-runs", type=int, help="runs the plain torch loop really does")
    p.add_argument("--log-every", type=int, help="override the logging interval")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats after the first call")
    p.add_argument("--chunk-size", type=int, help="runs per compiled call (default: all)")
    p.add_argument(
        "--widths", help="override the hidden widths, comma-separated (e.g. 16 or 32,32)"
    )
    p.add_argument(
        "--crossover", action="store_true", help="hand vs vmap vs lanes over widths (CROSSOVER)"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads (default: the core count)",
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        help="JAX CPU devices, as `jaxinit run` sets them (default: one per core; "
        "jaxinit.engine.devices); jaxinit trains one chunk per device, the others use one device",
    )
    p.add_argument(
        "--impl",
        action="append",
        choices=["jaxinit", "hand", "vmap", "lanes", "torch.func", "torch-loop"],
        help="run only these (repeatable); default all (lanes where lanes.prefer_lanes)",
    )
    p.add_argument(
        "--sharpness",
        action="store_true",
        help=f"also time {SHARPNESS}: jaxinit with the sharpness diagnostic every log_every "
        "steps (with --impl, list jaxinit too to get the ratio)",
    )
    p.add_argument("--sharpness-iters", type=int, help="train.sharpness_iters (default: spec's)")
    p.add_argument("--sharpness-tol", type=float, help="train.sharpness_tol (default: spec's)")
    p.add_argument("--sharpness-every", type=int, help="train.sharpness_every (default: spec's, 1)")
    args = p.parse_args(argv)
    use_cpu_cores(args.cpu_devices)  # before anything starts a JAX backend
    if args.workload == "million":  # streamed to disk; not part of "all"
        million(args)
        return
    impls = args.impl or ["jaxinit", "hand", "vmap", "lanes", "torch.func", "torch-loop"]
    if args.crossover:
        impls = []
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__}, torch.set_num_threads({args.torch_threads})")
    except ImportError:
        dropped = [i for i in impls if i.startswith("torch")]
        impls = [i for i in impls if not i.startswith("torch")]
        if dropped:
            print(f"NOTE: torch is not installed; skipping {', '.join(dropped)}")
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)), "
        f"{os.cpu_count()} cores, load {_load()}"
    )
    if args.crossover:
        crossover(args)
        return
    names = ["tiny", "medium", "wide"] if args.workload == "all" else [args.workload]
    for name in names:
        w = WORKLOADS[name]
        changes = {
            k: v
            for k, v in {
                "runs": args.runs,
                "steps": args.steps,
                "loop_runs": args.loop_runs,
                "log_every": args.log_every,
                "widths": tuple(int(x) for x in args.widths.split(",")) if args.widths else None,
            }.items()
            if v is not None
        }
        w = w._replace(**changes)
        mine = impls
        if args.impl is None and not lanes.prefer_lanes(
            Spec.from_dict(jaxinit_spec(w)), TASKS[w.task](**w.task_params)
        ):
            mine = [i for i in impls if i != "lanes"]  # lanes would only be slow here
        settings = {
            "sharpness_iters": args.sharpness_iters,
            "sharpness_tol": args.sharpness_tol,
            "sharpness_every": args.sharpness_every,
        }
        settings = {k: v for k, v in settings.items() if v is not None}
        if args.sharpness:
            mine = [*mine, SHARPNESS]
        task = TASKS[w.task](**w.task_params)
        ceiling = ceilings(w, task)
        results = bench(w, mine, args.repeat, args.chunk_size, settings)
        report_gflops(w, task, report(w, results), ceiling)


if __name__ == "__main__":
    main()
