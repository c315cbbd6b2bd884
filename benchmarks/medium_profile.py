"""Where the medium workload's step spends its time on the XLA CPU backend (issue 21).

The medium step (16-64-64-1 tanh MLP, SGD, minibatch 256 of 1,024 teacher-student points,
full-batch loss every 10 steps, vmapped over runs inside ``lax.scan``) is built up one part
at a time, each variant a complete ``jit(vmap(scan))`` program timed in this process:

* ``loop``: the scan and the parameter update alone (``p - lr * p``);
* ``+ dots``: forward and backward of the *linear* net on a fixed minibatch (the matmuls);
* ``+ tanh``: the activations and their derivatives (the elementwise work);
* ``+ gather``: the minibatch drawn from the epoch's order (``x[idx]``, a sort per epoch);
* ``+ log``: the full-batch loss every 10 steps: the complete step, as ``bench_engine.py``'s
  ``hand`` loop (which matches jaxinit to a few per cent on this workload).

Each row is the best of ``--repeat`` calls after a warm-up call, as CPU seconds of this
process (all threads) and wall seconds; the increments are each part's cost. A second
table times other arrangements of the same complete step: the dots with the features first
(``W @ xᵀ``), chunks of fewer runs, and one device against ``--cpu-devices``.

    python benchmarks/medium_profile.py                 # 256 runs x 100 steps (~1 min idle)
    python benchmarks/medium_profile.py --runs 64 --steps 50 --repeat 2   # smoke
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.blocks.tasks import TASKS

DIMS = (16, 64, 64, 1)
BATCH, LR, LOG_EVERY = 256, 0.05, 10


def init(key: jax.Array) -> list:
    """lecun_normal weights, zero biases (``bench_engine.make_hand``'s net)."""
    params = []
    for i, (a, b) in enumerate(zip(DIMS[:-1], DIMS[1:])):
        w = jax.random.normal(jax.random.fold_in(key, i), (a, b)) / np.sqrt(a)
        params.append((w, jnp.zeros(b)))
    return params


def apply(params: list, x_BxI: jax.Array, act: Callable, features_first: bool) -> jax.Array:
    """The MLP's output ``(B, 1)``; ``features_first`` computes ``Wᵀ xᵀ`` (activations
    ``(width, B)``) instead of ``x W`` (``(B, width)``): the same arithmetic, other dot layouts."""
    if features_first:
        h = x_BxI.T
        for w, b in params[:-1]:
            h = act(w.T @ h + b[:, None])
        w, b = params[-1]
        return (w.T @ h + b[:, None]).T
    h = x_BxI
    for w, b in params[:-1]:
        h = act(h @ w + b)
    w, b = params[-1]
    return h @ w + b


def make_variant(part: str, x_all, y_all, steps: int, features_first: bool = False):
    """``jit(vmap(train))(seeds) -> final loss`` built up to ``part`` (see module docs)."""
    parts = ("loop", "+ dots", "+ tanh", "+ gather", "+ log")
    level = parts.index(part)
    act = jnp.tanh if level >= 2 else (lambda h: h)
    n = x_all.shape[0]
    per_epoch = n // BATCH

    def loss_fn(p, x, y):
        return jnp.mean((apply(p, x, act, features_first) - y) ** 2) / 2

    def train(seed):
        key = jax.random.fold_in(jax.random.key(0), seed)
        params = init(jax.random.fold_in(key, 0))
        k_data = jax.random.fold_in(key, 1)

        def step(carry, t):
            p, perm = carry
            if level == 0:
                return (jax.tree.map(lambda a: a - LR * a, p), perm), jnp.zeros(())
            if level >= 3:
                pos = t % per_epoch
                perm = jax.lax.cond(
                    pos == 0,
                    lambda: jax.random.permutation(jax.random.fold_in(k_data, t // per_epoch), n),
                    lambda: perm,
                )
                idx = jax.lax.dynamic_slice_in_dim(perm, pos * BATCH, BATCH)
                x, y = x_all[idx], y_all[idx]
            else:
                x, y = x_all[:BATCH], y_all[:BATCH]
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            return (jax.tree.map(lambda a, d: a - LR * d, p, g), perm), loss

        def block(carry, b):
            full = loss_fn(carry[0], x_all, y_all) if level >= 4 else jnp.zeros(())
            carry, _ = jax.lax.scan(step, carry, b * LOG_EVERY + jnp.arange(LOG_EVERY))
            return carry, full

        perm0 = jnp.zeros(n, jax.random.permutation(k_data, n).dtype)
        (p, _), curve = jax.lax.scan(block, (params, perm0), jnp.arange(steps // LOG_EVERY))
        return loss_fn(p, x_all, y_all) + 0 * curve.sum()

    return jax.jit(jax.vmap(train))


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` calls after a warm-up: ``(wall s, CPU s)`` of the fastest."""
    fn()
    best = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t = (time.perf_counter() - t0, time.process_time() - c0)
        best = t if best is None or t[0] < best[0] else best
    return best


def chunked(fn, runs: int, chunk: int, devices: list) -> Callable[[], object]:
    """``fn`` over all runs in chunks of ``chunk`` seeds, round-robin over ``devices``, every
    call dispatched before any result is fetched (as jaxinit's executor overlaps chunks)."""
    seeds = [np.arange(lo, lo + chunk, dtype=np.int32) for lo in range(0, runs, chunk)]

    def call():
        outs = [fn(jax.device_put(s, devices[i % len(devices)])) for i, s in enumerate(seeds)]
        return [np.asarray(o) for o in outs]

    return call


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cpu-devices", type=int, default=2, help="CPU devices for the last rows")
    args = p.parse_args(argv)
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    task = TASKS["teacher_student"](in_dim=16, teacher_widths=[32], activation="tanh", n_train=1024)
    x_all, y_all = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
    runs, steps = args.runs, args.steps
    dev = jax.devices()
    macs = sum(a * b for a, b in zip(DIMS[:-1], DIMS[1:]))
    dot_flops = 6 * BATCH * macs * runs * steps
    print(
        f"jax {jax.__version__}, {len(dev)} CPU devices, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; {runs} runs x {steps} steps"
    )
    print(f"{'variant':<34}{'wall s':>8}{'cpu s':>8}{'+cpu s':>8}{'share':>7}{'GFLOP/s':>9}")
    rows, prev = [], 0.0
    for part in ("loop", "+ dots", "+ tanh", "+ gather", "+ log"):
        fn = make_variant(part, x_all, y_all, steps)
        rows.append((part, *timed(chunked(fn, runs, runs, dev[:1]), args.repeat)))
    total = rows[-1][2]
    for part, wall, cpu in rows:
        g = f"{dot_flops / wall / 1e9:9.1f}" if part != "loop" else ""
        print(f"{part:<34}{wall:8.2f}{cpu:8.2f}{cpu - prev:8.2f}{(cpu - prev) / total:7.0%}{g}")
        prev = cpu
    print("\nthe complete step, other arrangements (wall s, cpu s):")
    full = make_variant("+ log", x_all, y_all, steps)
    alts = [
        (f"run axis first, 1 chunk of {runs}, 1 device", full, runs, dev[:1]),
        (
            "features first (W @ x^T), 1 device",
            make_variant("+ log", x_all, y_all, steps, features_first=True),
            runs,
            dev[:1],
        ),
    ]
    for chunk in (runs // 2, runs // 4, runs // 8):
        if chunk >= 1:
            alts.append((f"chunks of {chunk}, 1 device", full, chunk, dev[:1]))
            alts.append((f"chunks of {chunk}, {len(dev)} devices", full, chunk, dev))
    for label, fn, chunk, devs in alts:
        wall, cpu = timed(chunked(fn, runs, chunk, devs), args.repeat)
        print(f"  {label:<40}{wall:8.2f}{cpu:8.2f}   {runs * steps / wall:10.0f} run*steps/s")


if __name__ == "__main__":
    main()
