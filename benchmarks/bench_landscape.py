"""Relax every edge of a landscape of >= 100 minima in one batched program, against a host loop.

One process: trains the benchmark net (sin(4x), a 1-4-1 tanh MLP, 4096 seeds; about 170 basins),
picks the edges as ``jaxinit.analysis.landscape.graph`` does (MST over straight-line saddle heights plus
k nearest neighbours), then relaxes them

- all at once: ``minimum_energy_paths`` (a pool of ``--chunk`` paths x 16 images, path axis
  last), and
- one pair at a time in a host loop: ``minimum_energy_path`` per pair, which runs the same
  relaxation (the same code, one path wide), compiled once and called per pair, each call
  waited for: how TopSearch and AutoNEB work.

Both use the same loss (``--loss lanes``: the built-in model's every-point-at-once form that
``graph`` uses; ``--loss vmap``: the plain ``loss_fn`` vmapped over the images) and are timed
after a warm-up call (compilation excluded). Prints the machine's load, wall times, paths per
second, the speed-up, convergence, what the returned paths are and the distribution of
relaxed / straight-line barrier ratios over every edge.

    PYTHONPATH=. python benchmarks/bench_landscape.py [--seeds 4096] [--loop-pairs 0]

``--loop-pairs n`` times the host loop on the first n pairs only and scales to all of them.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import jaxinit
from jaxinit.analysis import basins, landscape, symmetry
from jaxinit.config.spec import Spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--loop-pairs", type=int, default=0, help="0: every pair")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--loss", choices=("lanes", "vmap"), default="lanes")
    ap.add_argument("--optimizer", choices=("fire", "lbfgs"), default="fire")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")  # fmt: skip
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
    cfg = landscape.BandConfig(optimizer=args.optimizer)
    b = basins.find_basins(ds)
    g = b.groups[0]
    table = b.table.sort_values("mean_loss")
    where = {int(r): i for i, r in enumerate(g.run_ids)}
    local = [where[int(reps[0])] for reps in table["reps"]]
    n = len(local)
    pairs = [(local[i], local[j]) for i in range(n) for j in range(i + 1, n)]
    a_P, b_P = basins.aligned_pairs(g, pairs)
    lin = basins.path_losses(g.loss_fn(), a_P, b_P, cfg.points)
    iu = np.triu_indices(n, 1)
    height, dist = np.full((n, n), np.inf), np.zeros((n, n))
    height[iu] = lin.max(1)
    dist[iu] = np.linalg.norm(symmetry.flat_params(a_P) - symmetry.flat_params(b_P), axis=1)
    height, dist = np.minimum(height, height.T), dist + dist.T
    chosen = landscape.chosen_edges(height, dist, args.k)
    pos = {p: m for m, p in enumerate(zip(*iu))}
    idx = np.array([pos[e] for e in chosen])
    A, B = (jax.tree.map(lambda x: np.asarray(x)[idx], p) for p in (a_P, b_P))
    loss_fn, trainable = g.loss_fn(), g.trainable()
    fast = landscape.lanes_loss_of(g.model, g.task) if args.loss == "lanes" else None
    print(f"{n} minima, {len(idx)} edges (MST + {args.k} nearest), {cfg.images} images, "
          f"at most {cfg.steps} {args.optimizer} steps per path, loss: {args.loss}, "
          f"pool of {args.chunk} paths")  # fmt: skip

    def batched():
        return landscape.minimum_energy_paths(loss_fn, A, B, trainable=trainable, lanes_loss=fast,
                                              chunk=args.chunk, config=cfg)  # fmt: skip

    t = time.perf_counter()
    batched()  # compile
    t_compile = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    paths = batched()
    t_vmap, c_vmap = time.perf_counter() - t, time.process_time() - c
    m = args.loop_pairs or len(idx)

    def one(k: int) -> landscape.Path:  # returns numpy arrays: each call is waited for
        a, b = (jax.tree.map(lambda x: x[k], p) for p in (A, B))
        return landscape.minimum_energy_path(loss_fn, a, b, trainable=trainable,
                                             lanes_loss=fast, config=cfg)  # fmt: skip

    one(0)  # compile
    t, c = time.perf_counter(), time.process_time()
    loop = [one(k) for k in range(m)]
    t_loop = (time.perf_counter() - t) * len(idx) / m
    c_loop = (time.process_time() - c) * len(idx) / m
    same_steps = np.array([p.steps for p in loop]) == paths.steps[:m]
    print(f"batched: {t_vmap:.2f} s wall ({c_vmap:.2f} s CPU), {len(idx) / t_vmap:.1f} paths/s; "
          f"first call (compiling) {t_compile:.1f} s")  # fmt: skip
    scaled = f" (scaled from {m} pairs)" if m < len(idx) else ""
    print(
        f"host loop: {t_loop:.2f} s wall ({c_loop:.2f} s CPU){scaled}, "
        f"{len(idx) / t_loop:.2f} paths/s; the same steps: {int(same_steps.sum())}/{m}"
    )
    print(f"speed-up: {t_loop / t_vmap:.1f}x wall, {c_loop / c_vmap:.1f}x CPU")
    print(f"load average at end: {os.getloadavg()}")
    steps = paths.steps
    print(f"converged: {int(paths.converged.sum())}/{len(steps)}, escaped "
          f"{int(paths.escaped.sum())}; steps median {np.median(steps):.0f}, max {steps.max()}, "
          f"total {steps.sum()}")  # fmt: skip
    print("returned path:", {s: int((paths.source == i).sum()) for i, s in
                             enumerate(landscape.SOURCES)})  # fmt: skip
    lin_b = paths.linear_barrier
    ratio = paths.barrier / np.where(lin_b > 0, lin_b, np.nan)
    qs = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]
    q = lambda r: np.round(np.nanquantile(r, qs), 3).tolist()  # noqa: E731
    print(f"relaxed / straight-line barrier, every edge, quantiles 0/10/25/50/75/90/100%: "
          f"{q(ratio)}")  # fmt: skip
    # a line that rises monotonically from one minimum to the other has no barrier to relax:
    # its "barrier" is half the ends' difference on both paths (ratio 1)
    ends = np.maximum(paths.losses[:, 0], paths.losses[:, -1])
    hump = paths.linear_losses.max(1) > ends + 1e-6
    print(
        f"  the {int(hump.sum())} edges whose straight line rises above both ends: {q(ratio[hump])}"
    )
    conv = paths.converged & hump
    print(f"  ... and converged ({int(conv.sum())}): {q(ratio[conv])}")
    above = paths.path_max > paths.linear_losses.max(1)
    print(f"relaxed above the straight line (both at {cfg.points} points): {int(above.sum())} "
          f"of {len(above)}")  # fmt: skip


if __name__ == "__main__":
    main()
