"""The fractal trainability boundary (Sohl-Dickstein 2024), over seeds, with maps.boundary_dimension.

The paper's setup: one hidden layer of ``tanh``, mean-field parameterisation
(``h = tanh(√2 · X W₁ / √w)``, ``f = h W₂ / w``, ``W₁ ∈ R^{w x w}``, ``W₂ ∈ R^{w x 1}``, both
``N(0, 1)``), inputs of dimension ``w``, as many data points as parameters (``w² + w``), with
``X, Y ~ N(0, 1)``, loss ``mean((f − Y)²)``, full-batch gradient descent with one learning rate
per layer, on a log grid of ``(η₁, η₂)``. A run counts as trained when the mean of its last 20
losses is below its initial loss (the paper's criterion); a loss above ``1e6`` x the initial one
or not finite stops it (diverged). The paper used ``w = 16`` and one init, ``PRNGKey(0)``; here
every seed draws its own init (the data set is fixed), so the dimension's spread over inits
shows. The box-counting dimension of each seed's boundary is printed with its local slopes
(its spread over the fitted range), then again on a window zoomed in on the boundary.

Run: ``PYTHONPATH=. python benchmarks/fractal_boundary.py [--grid 128 --steps 200 --width 8]``

The product's version is the bundled spec ``fractal_boundary`` (init scale x learning rate, one
learning rate per run, the ``boundary_dimension`` figure and table; docs/sharpness_studies.md);
this script keeps the paper's two per-layer learning rates, which the engine does not have.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.analysis.maps import boundary_dimension

BLOWUP = 1e6
TAIL = 20


def trained_maps(params_S, x, y, lr1_G, lr2_G, steps):
    """``(S, G, G)`` bool: trained or not, for every seed and every ``(η₁, η₂)`` pixel."""
    w = x.shape[1]

    def loss_fn(p):
        h = jnp.tanh(jnp.sqrt(2.0) * x @ p["w1"] / jnp.sqrt(w))
        return jnp.mean((h @ p["w2"] / w - y) ** 2)

    def run(p, lr1, lr2):
        first = loss_fn(p)

        def step(carry, t):
            p, bad, tail = carry
            value, g = jax.value_and_grad(loss_fn)(p)
            bad = bad | ~(value < BLOWUP * first)
            lr = {"w1": lr1, "w2": lr2}
            p = jax.tree.map(lambda a, b, e: jnp.where(bad, a, a - e * b), p, g, lr)
            tail = tail + jnp.where(t >= steps - TAIL, jnp.where(bad, BLOWUP, value / first), 0.0)
            return (p, bad, tail), None

        (_, bad, tail), _ = jax.lax.scan(step, (p, jnp.bool_(False), 0.0), jnp.arange(steps))
        return ~bad & (tail / TAIL < 1.0)

    pixels = jax.vmap(run, (None, 0, 0))
    g1, g2 = jnp.meshgrid(lr1_G, lr2_G, indexing="ij")  # rows: η₁, columns: η₂
    out = jax.jit(jax.vmap(lambda p: pixels(p, g1.ravel(), g2.ravel())))(params_S)
    return np.asarray(out).reshape(len(params_S["w1"]), len(lr1_G), len(lr2_G))


def measure(label, params_S, x, y, box, steps, grid):
    lo1, hi1, lo2, hi2 = box
    t = time.perf_counter()
    maps = trained_maps(
        params_S, x, y, jnp.logspace(lo1, hi1, grid), jnp.logspace(lo2, hi2, grid), steps
    )
    seconds = time.perf_counter() - t
    print(
        f"\n## {label}: log10 eta1 in [{lo1:.4g}, {hi1:.4g}], log10 eta2 in [{lo2:.4g}, {hi2:.4g}]"
    )
    print(f"{grid}x{grid} grid x {len(maps)} seeds x {steps} steps: {seconds:.1f} s (one jit)")
    dims = []
    for s, m in enumerate(maps):
        fit = boundary_dimension(m)
        dims.append(fit.dimension)
        slopes = " ".join(f"{v:.2f}" for v in fit.local_slopes)
        print(
            f"seed {s}: trained {m.mean():.2f}, boxes {fit.box_sizes.tolist()} -> "
            f"N {fit.counts.tolist()}, dimension {fit.dimension:.3f} (local slopes {slopes})"
        )
    dims = np.asarray(dims)
    print(
        f"dimension over seeds: mean {np.nanmean(dims):.3f}, std {np.nanstd(dims):.3f}, "
        f"min {np.nanmin(dims):.3f}, max {np.nanmax(dims):.3f} (paper: 1.2 to 2.0)"
    )
    return maps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--range", type=float, nargs=4, default=[-3.0, 6.0, -3.0, 6.0])
    ap.add_argument("--zoom", type=float, default=16.0, help="zoom factor of the second window")
    args = ap.parse_args()
    w = args.width
    n_points = w * w + w
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n_points, w))
    y = jax.random.normal(ky, (n_points, 1))
    keys = jax.random.split(jax.random.key(1), args.seeds)
    params_S = jax.vmap(
        lambda k: {
            "w1": jax.random.normal(jax.random.fold_in(k, 0), (w, w)),
            "w2": jax.random.normal(jax.random.fold_in(k, 1), (w, 1)),
        }
    )(keys)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; width {w}, {n_points} points")
    box = list(args.range)
    maps = measure("full window", params_S, x, y, box, args.steps, args.grid)

    # zoom on the seed-0 boundary pixel nearest the centre of the map
    edges = np.argwhere(maps[0][1:, 1:] != maps[0][:-1, :-1])
    if len(edges) == 0:
        print("no boundary on seed 0: no zoom")
        return
    centre = edges[np.argmin(np.abs(edges - args.grid / 2).sum(1))] + 0.5
    span1, span2 = (box[1] - box[0]) / args.zoom, (box[3] - box[2]) / args.zoom
    c1 = box[0] + (box[1] - box[0]) * centre[0] / (args.grid - 1)
    c2 = box[2] + (box[3] - box[2]) * centre[1] / (args.grid - 1)
    zoom = [c1 - span1 / 2, c1 + span1 / 2, c2 - span2 / 2, c2 + span2 / 2]
    measure(f"zoom x{args.zoom:g} on a boundary point", params_S, x, y, zoom, args.steps, args.grid)


if __name__ == "__main__":
    main()
