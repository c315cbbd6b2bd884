"""The catapult phases (Lewkowycz et al. 2020) measured with jaxinit.blocks.sharpness, over seeds.

Two models, each trained by plain full-batch gradient descent at ``η = c / λ₀`` with ``λ₀`` the
top NTK eigenvalue of *that seed* at init (``ntk_top_eigenvalue``), all seeds x all ``c`` in one
``jit(vmap(vmap(...)))``:

- **uv model** (the paper's section 2): ``f(x) = v·u x / √n``, ``u, v ∈ Rⁿ ~ N(0, 1)`` (NTK
  parameterisation), one data point ``x = 1, y = 0``, loss ``½ (f − y)²``. Here
  ``λ₀ = (|u|² + |v|²) x² / n`` (≈ 2) and theory puts the boundaries at ``c = 2`` (lazy →
  catapult) and ``c = 4`` (catapult → divergent).
- **two-layer ReLU net**: ``f(x) = w₂·relu(W₁ x / √d) / √n``, NTK parameterisation, no biases,
  ``N`` unit-norm inputs in ``d`` dimensions and targets ``±1``, loss ``1/(2N) Σ (f − y)²``.
  The paper saw divergence only above ``c ≈ 12`` for ReLU nets.

A run is flagged diverged once its loss is not finite or exceeds ``1e8`` x its initial loss
(its parameters are then held). Its phase comes from ``jaxinit.blocks.sharpness.phase`` on the loss
curve, the final top Hessian eigenvalue (Lanczos, 20 products, random start) and the flag; the
boundaries printed are the first ``c`` at which at least half the seeds are catapults
(divergent), so they are measurements, not the definition.

Run: ``PYTHONPATH=. python benchmarks/catapult_uv.py [--width 512 --seeds 64 --steps 1000]``

The same measurement through the product: the bundled specs ``catapult`` (the uv model) and
``catapult_relu`` (``jaxinit run catapult --report``: the ``phase_map`` figure and its table;
docs/sharpness_studies.md). This script stays as an independent check outside the engine.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.blocks.sharpness import (
    CATAPULT,
    DIVERGENT,
    LAZY,
    ntk_top_eigenvalue,
    phase,
    random_direction,
    top_hessian_eigenvalue,
)

BLOWUP = 1e8  # a loss above this multiple of the initial loss counts as diverged


def grid(hi: float, fine: tuple[float, ...]) -> np.ndarray:
    """``c = η·λ₀`` from 0.5 to ``hi``: steps of 0.5, and of 0.05 within 0.3 of each ``fine``."""
    parts = [np.arange(0.5, hi + 1e-9, 0.5)]
    parts += [np.arange(f - 0.3, f + 0.3 + 1e-9, 0.05) for f in fine]
    return np.unique(np.round(np.concatenate(parts), 3))


def train_phases(apply_fn, params_S, x, y, c_C, steps):
    """``(phase, loss_phase, peak, edge, final, lam0_S)``: the phase from the loss and the
    sharpness at init and at the end, the phase from the loss and the final sharpness only,
    the peak loss ratio, the final η·λ and the final loss ratio, each ``(S, C)`` for every
    seed x every ``c``; and each seed's ``λ₀``."""

    def loss_fn(p):
        return 0.5 * jnp.mean(jnp.sum((apply_fn(p, x) - y) ** 2, axis=-1))

    def sharpness(p):
        return top_hessian_eigenvalue(loss_fn, p, random_direction(jax.random.key(1), p)).value

    def run(p, lr, sharp0):
        def step(carry, _):
            p, bad, first = carry
            value, g = jax.value_and_grad(loss_fn)(p)
            first = jnp.where(jnp.isnan(first), value, first)
            bad = bad | ~(value < BLOWUP * first)
            p = jax.tree.map(lambda a, b: jnp.where(bad, a, a - lr * b), p, g)
            return (p, bad, first), value

        init = (p, jnp.bool_(False), jnp.array(jnp.nan, x.dtype))
        (p, bad, _), loss_T = jax.lax.scan(step, init, None, steps)
        sharp = sharpness(p)
        peak = jnp.max(jnp.where(jnp.isfinite(loss_T), loss_T, jnp.inf)) / loss_T[0]
        both = phase(loss_T, jnp.stack([sharp0, sharp]), lr, bad)
        loss_only = phase(loss_T, sharp[None], lr, bad)
        return both, loss_only, peak, lr * sharp, loss_T[-1] / loss_T[0]

    def seed(p):
        lam0 = ntk_top_eigenvalue(apply_fn, p, x).value
        return (*jax.vmap(run, (None, 0, None))(p, c_C / lam0, sharpness(p)), lam0)

    return jax.jit(jax.vmap(seed))(params_S)


def boundaries(c_C, ph, label):
    for name, at in (
        ("lazy -> catapult", np.mean(ph >= CATAPULT, axis=0) >= 0.5),
        ("-> divergent", np.mean(ph == DIVERGENT, axis=0) >= 0.5),
    ):
        if not at.any():
            print(f"boundary {name} ({label}): not reached up to c = {c_C[-1]}")
            continue
        first = int(np.argmax(at))
        below = c_C[first - 1] if first > 0 else float("nan")
        print(f"boundary {name} ({label}): between c = {below:.2f} and {c_C[first]:.2f}")


def report(name, c_C, ph, ph_loss, peak, edge, final, lam0, seconds, runs_steps):
    ph, ph_loss, peak, edge, final = map(np.asarray, (ph, ph_loss, peak, edge, final))
    lam0 = np.asarray(lam0)
    print(f"\n## {name}: {ph.shape[0]} seeds x {len(c_C)} values of c = eta*lambda0")
    print(f"lambda0 over seeds: mean {lam0.mean():.4f}, min {lam0.min():.4f}, max {lam0.max():.4f}")
    print(f"one jit, {runs_steps:,} run*steps: {seconds:.1f} s (compile included)")
    print(
        f"{'c':>6} {'lazy':>5} {'cata':>5} {'div':>5}  {'catapult peak ratio min/median':>30}"
        f"  {'catapult max eta*lam_final':>26}  {'median final/initial loss':>25}"
    )
    for j, c in enumerate(c_C):
        frac = [np.mean(ph[:, j] == k) for k in (LAZY, CATAPULT, DIVERGENT)]
        cat = ph[:, j] == CATAPULT
        pk = f"{peak[cat, j].min():10.3g} / {np.median(peak[cat, j]):<10.3g}" if cat.any() else "-"
        ed = f"{edge[cat, j].max():.3f}" if cat.any() else "-"
        fin = np.median(final[:, j])
        print(
            f"{c:6.2f} {frac[0]:5.2f} {frac[1]:5.2f} {frac[2]:5.2f}  {pk:>30}  {ed:>26}  {fin:25.3g}"
        )
    boundaries(c_C, ph, "loss and sharpness")
    boundaries(c_C, ph_loss, "loss and final sharpness only")
    cat = ph == CATAPULT
    if cat.any():
        low = [j for j in range(len(c_C)) if (cat[:, j] & (peak[:, j] <= 10)).any()]
        above = c_C[max(low) + 1] if low and max(low) + 1 < len(c_C) else c_C[0]
        print(
            f"catapult runs: {cat.sum()}, max final eta*lambda {edge[cat].max():.3f}; "
            f"peak loss ratio min {peak[cat].min():.3g}; every catapult run has a peak loss "
            f"ratio > 10 from c = {above:.2f} on"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--relu-points", type=int, default=4)
    ap.add_argument("--relu-dim", type=int, default=8)
    ap.add_argument("--skip-relu", action="store_true")
    ap.add_argument("--skip-uv", action="store_true")
    args = ap.parse_args()
    n, keys = args.width, jax.random.split(jax.random.key(0), args.seeds)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, width {n}, steps {args.steps}")

    if not args.skip_uv:
        uv_model(n, keys, args)
    if not args.skip_relu:
        relu_model(n, keys, args)


def uv_model(n, keys, args):
    c_uv = grid(16.0, (2.0, 4.0))
    params = jax.vmap(lambda k: dict(zip("uv", jax.random.normal(k, (2, n)))))(keys)
    uv = lambda p, x: (p["v"] @ p["u"]) * x / jnp.sqrt(n)  # noqa: E731
    t = time.perf_counter()
    out = jax.block_until_ready(
        train_phases(uv, params, jnp.ones(1), jnp.zeros(1), jnp.asarray(c_uv), args.steps)
    )
    report(
        "uv model, x = 1, y = 0",
        c_uv,
        *out,
        time.perf_counter() - t,
        args.seeds * len(c_uv) * args.steps,
    )
    lam0 = np.asarray(out[-1])
    theory = np.asarray((params["u"] ** 2).sum(1) + (params["v"] ** 2).sum(1)) / n
    print(
        f"lambda0 vs (|u|^2+|v|^2)/n: max relative difference {np.max(np.abs(lam0 / theory - 1)):.2e}"
    )


def relu_model(n, keys, args):
    d, npts = args.relu_dim, args.relu_points
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (npts, d))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    y = jnp.sign(jax.random.normal(ky, (npts, 1)))
    c_relu = grid(20.0, (2.0,))

    def relu_net(p, x):
        return jax.nn.relu(x @ p["w1"] / jnp.sqrt(d)) @ p["w2"] / jnp.sqrt(n)

    params = jax.vmap(
        lambda k: {
            "w1": jax.random.normal(jax.random.fold_in(k, 0), (d, n)),
            "w2": jax.random.normal(jax.random.fold_in(k, 1), (n, 1)),
        }
    )(keys)
    t = time.perf_counter()
    out = jax.block_until_ready(
        train_phases(relu_net, params, x, y, jnp.asarray(c_relu), args.steps)
    )
    report(
        f"two-layer ReLU, width {n}, {npts} points in {d} dims, y = +-1",
        c_relu,
        *out,
        time.perf_counter() - t,
        args.seeds * len(c_relu) * args.steps,
    )


if __name__ == "__main__":
    main()
