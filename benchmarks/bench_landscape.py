"""Relax every edge of a landscape of >= 100 minima in one vmapped program, against a host loop.

One process: trains the benchmark net (sin(4x), a 1-4-1 tanh MLP, 4096 seeds; about 170 basins),
picks the edges as ``jaxinit.analysis.landscape.graph`` does (MST over straight-line saddle heights plus
k nearest neighbours), then relaxes them

- all at once: ``minimum_energy_paths`` (vmapped over pairs x images, chunks of 256), and
- one pair at a time in a host loop: ``minimum_energy_path`` per pair (the same compiled
  per-pair relaxation, compiled once), as TopSearch and AutoNEB work.

Both are timed after a warm-up call (compilation excluded). Prints wall times, paths per second,
the speed-up, convergence and the distribution of relaxed / straight-line barrier ratios.

    PYTHONPATH=. python benchmarks/bench_landscape.py [--seeds 4096] [--loop-pairs 0]

``--loop-pairs n`` times the host loop on the first n pairs only and scales to all of them.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import jaxinit
from jaxinit.analysis import basins, landscape
from jaxinit.config.spec import Spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--loop-pairs", type=int, default=0, help="0: every pair")
    ap.add_argument("--k", type=int, default=2)
    args = ap.parse_args()
    spec = Spec.from_dict(dict(
        name="bench_landscape", seed=0,
        task=dict(name="sinusoid", frequency=4.0, n_points=32),
        model=dict(name="mlp", widths=[4], activation="tanh"),
        init=dict(scheme="glorot_normal", bias_scheme="normal", bias_scale=1.0),
        optimizer=dict(name="adam", learning_rate=0.05),
        train=dict(steps=args.steps, log_every=args.steps, diagnostics=[], grad_tol=1e-4),
        store=dict(save_params=True), axes={"seed": args.seeds}))  # fmt: skip
    t = time.perf_counter()
    ds = jaxinit.run(spec, progress=False)
    print(f"sweep: {args.seeds} runs in {time.perf_counter() - t:.1f} s")
    b = basins.find_basins(ds)
    g = b.groups[0]
    table = b.table.sort_values("mean_loss")
    where = {int(r): i for i, r in enumerate(g.run_ids)}
    local = [where[int(reps[0])] for reps in table["reps"]]
    n = len(local)
    pairs = [(local[i], local[j]) for i in range(n) for j in range(i + 1, n)]
    a_P, b_P = basins.aligned_pairs(g, pairs)
    lin = basins.path_losses(g.loss_fn(), a_P, b_P, 33)
    iu = np.triu_indices(n, 1)
    height, dist = np.full((n, n), np.inf), np.zeros((n, n))
    height[iu] = lin.max(1)
    dist[iu] = np.linalg.norm(
        basins.symmetry.flat_params(a_P) - basins.symmetry.flat_params(b_P), axis=1
    )
    height, dist = np.minimum(height, height.T), dist + dist.T
    chosen = landscape._chosen_edges(height, dist, args.k)
    pos = {p: m for m, p in enumerate(zip(*iu))}
    idx = np.array([pos[e] for e in chosen])
    A, B = (jax.tree.map(lambda x: np.asarray(x)[idx], p) for p in (a_P, b_P))
    cfg = landscape.BandConfig()
    loss_fn, trainable = g.loss_fn(), g.trainable()
    print(f"{n} minima, {len(idx)} edges (MST + {args.k} nearest), {cfg.images} images, "
          f"at most {cfg.steps} FIRE steps per path")  # fmt: skip

    def batched():
        return landscape.minimum_energy_paths(loss_fn, A, B, trainable=trainable, config=cfg)

    batched()  # compile
    t = time.perf_counter()
    paths = batched()
    t_vmap = time.perf_counter() - t
    m = args.loop_pairs or len(idx)
    one = lambda k: landscape.minimum_energy_path(  # noqa: E731
        loss_fn, jax.tree.map(lambda x: x[k], A), jax.tree.map(lambda x: x[k], B),
        trainable=trainable, config=cfg)  # fmt: skip
    one(0)  # compile
    t = time.perf_counter()
    loop_steps = [one(k).steps for k in range(m)]
    t_loop = (time.perf_counter() - t) * len(idx) / m
    ratio = paths.barrier / np.where(paths.linear_barrier > 0, paths.linear_barrier, np.nan)
    conv = paths.converged
    print(f"vmapped: {t_vmap:.2f} s, {len(idx) / t_vmap:.1f} paths/s")
    scaled = f" (scaled from {m} pairs)" if m < len(idx) else ""
    print(f"host loop: {t_loop:.2f} s{scaled}, "
          f"{len(idx) / t_loop:.2f} paths/s; the same steps: "
          f"{bool(np.all(np.array(loop_steps) == paths.steps[:m]))}")  # fmt: skip
    print(f"speed-up: {t_loop / t_vmap:.1f}x")
    print(f"converged: {int(conv.sum())}/{len(conv)}; median steps {np.median(paths.steps):.0f}")
    q = np.nanquantile(ratio[conv], [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])
    print("relaxed / straight-line barrier, converged paths, quantiles 0/10/25/50/75/90/100%:",
          np.round(q, 3).tolist())  # fmt: skip
    above = paths.path_max > paths.linear_losses.max(1)
    print(f"relaxed above the straight line (checked piecewise-linear path): {int(above.sum())} "
          f"of {len(above)} ({int((above & conv).sum())} of them converged)")  # fmt: skip


if __name__ == "__main__":
    main()
