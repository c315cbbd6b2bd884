"""Prototype: the tiny XOR sweep with the run axis on the SIMD lanes, vs the vmapped loop.

``jax.vmap`` puts the run axis first, so a 2-2-1 net becomes thousands of batched 2×2 dots.
Here every parameter is an array whose *trailing* axis is the run (``w1_IxHxR``), the forward pass
is written elementwise with explicit broadcasting, and the loss is summed over runs, so
``jax.grad`` of the sum gives every run its own gradient (runs do not interact). Same init (the
vmapped init, transposed), same SGD, same loss curve as ``bench_engine.make_hand``.

    python benchmarks/lanes_xor.py --runs 65536 --steps 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_engine import ROOT_SEED, WORKLOADS, make_hand

from jaxinit.blocks.tasks import TASKS


def init_lanes(runs: int):
    """lecun_normal weights, zero biases, with jaxinit's key derivation; run axis last."""

    def one(seed):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(ROOT_SEED), seed), 0)
        out = []
        for l, (a, b) in enumerate([(2, 2), (2, 1)]):
            k_w = jax.random.split(jax.random.split(jax.random.fold_in(key, l))[0])[0]
            out += [jax.random.normal(k_w, (a, b)) * (1.0 / np.sqrt(a)), jnp.zeros(b)]
        return out

    params = jax.vmap(one)(jnp.arange(runs, dtype=jnp.int32))
    return [jnp.moveaxis(p, 0, -1) for p in params]  # (..., R)


def make_lanes(runs: int, steps: int, log_every: int, lr: float):
    task = TASKS["xor"]()

    x_np, y_np = np.asarray(task.x_train), np.asarray(task.y_train)
    n_in, n_hid = 2, 2

    def losses_R(params):
        """Mean BCE of every run, ``(R,)``: the tiny dims unrolled, every op elementwise on runs."""
        w1, b1, w2, b2 = params  # (2, 2, R), (2, R), (2, 1, R), (1, R)
        total = 0.0
        for n in range(len(x_np)):
            out = b2[0]
            for j in range(n_hid):
                z = b1[j]
                for i in range(n_in):
                    z = z + float(x_np[n, i]) * w1[i, j]
                out = out + jnp.tanh(z) * w2[j, 0]
            total = total + (jnp.logaddexp(0.0, out) - float(y_np[n, 0]) * out)
        return total / len(x_np)

    def total(params):
        per_run = losses_R(params)
        return jnp.sum(per_run), per_run

    def step(params, _):
        grads, loss = jax.grad(total, has_aux=True)(params)
        return [p - lr * g for p, g in zip(params, grads)], loss

    def block(params, _):
        params, losses = jax.lax.scan(step, params, None, length=log_every)
        return params, losses[0]

    @jax.jit
    def train(params):
        params, curve = jax.lax.scan(block, params, None, length=steps // log_every)
        final = losses_R(params)
        return jnp.concatenate([curve, final[None]]), final  # (T+1, R), (R,)

    params0 = init_lanes(runs)

    def call():
        curve, final = jax.device_get(train(params0))
        return final

    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=65536)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    w = WORKLOADS["tiny"]._replace(runs=args.runs, steps=args.steps)
    task = TASKS["xor"]()
    lanes = make_lanes(w.runs, w.steps, w.log_every, w.learning_rate)
    hand = make_hand(w, task, w.runs)

    calls = {"hand (vmap)": hand, "lanes": lambda: float(np.mean(lanes()))}
    for name, f in calls.items():
        t0 = time.perf_counter()
        f()
        print(f"{name:<12} first call (compile + run) {time.perf_counter() - t0:.2f}s")
    wall = {n: [] for n in calls}
    cpu = {n: [] for n in calls}
    means = {}
    for _ in range(args.repeat):
        for name, f in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            means[name] = f()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    print(f"load {os.getloadavg()}; {w.runs} runs x {w.steps} steps")
    for name in calls:
        rs = w.runs * w.steps
        print(
            f"{name:<12} wall med {statistics.median(wall[name]):.2f}s "
            f"({min(wall[name]):.2f}-{max(wall[name]):.2f})  cpu med "
            f"{statistics.median(cpu[name]):.2f}s  {rs / statistics.median(wall[name]):.3e} "
            f"runs*steps/s  mean final loss {means[name]:.6f}"
        )
    h, lan = statistics.median(cpu["hand (vmap)"]), statistics.median(cpu["lanes"])
    hw, lw = statistics.median(wall["hand (vmap)"]), statistics.median(wall["lanes"])
    print(f"lanes speed-up over vmapped hand loop: {hw / lw:.2f}x wall, {h / lan:.2f}x cpu")


if __name__ == "__main__":
    main()
