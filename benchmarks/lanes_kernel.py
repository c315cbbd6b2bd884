"""How fast can XLA's CPU code run the one contraction that dominates a 2-32-32-1 lanes step?

The hidden 32×32 layer of the lanes layout is ``z[n, o, c] = Σ_i a[n, i, c] · w[i, o, c]`` for
``C`` runs on the SIMD lanes (``N = 4`` XOR points). Its forward pass and the two products of its
backward pass are ~90% of the multiply-adds of a training step. This script times that forward
contraction alone, chained 1000 times inside one ``lax.fori_loop`` (so no dispatch overhead), in
every form we could write it, and prints GFLOP/s; then the same with its backward pass (one
gradient step on ``a`` and ``w`` per iteration: the three contractions a training step needs):

- ``halving``: :func:`jaxinit.engine.lanes.dense` (the engine's form: products, then halving adds);
- ``tree``: the same pairwise order written as one expression (XLA fuses it into one kernel);
- ``chain``: one accumulator, ``acc += a[:, i] * w[i]`` (a serial chain of fused multiply-adds);
- ``w_OxI``: the tree with the weights stored ``(O, I, C)``, so the summed axis is short-strided;
- ``einsum``: ``jnp.einsum`` in the lanes layout (an XLA batched dot with the runs as batch);
- ``vmap dot``: the run axis first, ``(C, N, I) @ (C, I, O)``, as ``jax.vmap`` of the model gives;
- ``torch bmm``: ``torch.bmm`` on the same run-first shapes (if torch is installed), one thread.

Run it on one core so the numbers are per core (the engine trains one chunk per core)::

    taskset -c 0 python benchmarks/lanes_kernel.py --lanes 128

Why it matters (issue 8): reaching 10× torch.func's CPU time on 2-32-32-1 needs the three
contractions of this layer at ≥ ~43 GFLOP/s per core (see ``--help``'s epilog).

Measured 2026-12-01 on this repository's 2-core CPU, one core (``--lanes 128``; three runs
forward, two backward; the machine's speed drifts by ~1.5x over minutes): forward, the lanes
forms 9–19 GFLOP/s, the run-first batched dot 23–30, torch.bmm 18–20; forward and backward, the
engine's ``halving`` 8–10, the run-first dot 6–7 and torch 5.6. The ``tree``, ``chain`` and
``w_OxI`` backward columns are JAX's autodiff of slices (pads, ~1 GFLOP/s); the same forms with
hand-written backward passes (one fused tree per pass) were 1.1–1.4x ``halving`` alone but
0.65x inside the engine's full training step, so the engine keeps ``halving``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxinit.engine import lanes  # noqa: E402

N, WIDTH, LOOPS = 4, 32, 1000


def _tree_sum(terms: list) -> jax.Array:
    """Pairwise sum in :func:`jaxinit.engine.lanes.lane_sum`'s order (term i with term i + n/2)."""
    while len(terms) > 1:
        h = len(terms) // 2
        nxt = [terms[i] + terms[i + h] for i in range(h)]
        terms = nxt + terms[2 * h :]
    return terms[0]


def _forms() -> dict:
    """Each form maps (a_NxIxC, w) to z_NxOxC; ``w`` is (I, O, C) except for ``w_OxI``."""
    i_range = range(WIDTH)

    def chain(a, w):
        acc = a[:, 0, None, :] * w[None, 0]
        for i in range(1, WIDTH):
            acc = acc + a[:, i, None, :] * w[None, i]
        return acc

    return {
        "halving": lambda a, w: lanes.dense(a, w, None),
        "tree": lambda a, w: _tree_sum([a[:, i, None, :] * w[None, i] for i in i_range]),
        "chain": chain,
        "w_OxI": lambda a, w: _tree_sum([a[:, i, None, :] * w[None, :, i] for i in i_range]),
        "einsum": lambda a, w: jnp.einsum("nic,ioc->noc", a, w),
    }


def _time(fn, *args, repeat: int) -> float:
    """Best wall seconds of ``repeat`` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def _gflops(c: int, seconds: float, passes: int = 1) -> float:
    """Multiply-adds × 2 of ``LOOPS`` contractions (``passes`` = 3 with the backward pass)."""
    return passes * 2 * N * WIDTH * WIDTH * c * LOOPS / seconds / 1e9


def _loops(form):
    """The forward chain, and gradient steps through ``tanh(form(a, w))``, each LOOPS long."""

    def fwd(a, w):
        return lax.fori_loop(0, LOOPS, lambda k, h: jnp.tanh(form(h, w)), a)

    def step(k, aw):
        g = jax.grad(lambda a, w: jnp.sum(jnp.tanh(form(a, w))), (0, 1))(*aw)
        return tuple(x - 1e-3 * gx for x, gx in zip(aw, g))

    return jax.jit(fwd), jax.jit(lambda a, w: lax.fori_loop(0, LOOPS, step, (a, w)))


def _report(name: str, c: int, forward: float, both: float) -> None:
    print(f"{name:10s} {_gflops(c, forward):8.1f} {_gflops(c, both, 3):14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Target: torch.func took 46.7 CPU s for 2-32-32-1 (4,096 runs x 2,000 steps); 10x "
        "is 4.67 s, i.e. 0.57 us per run-step, while the 32x32 layer alone is 3 x 8,192 flops "
        "per run-step: >= 43 GFLOP/s per core.",
    )
    parser.add_argument("--lanes", type=int, default=128, help="runs on the lanes (C)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    c = args.lanes
    a = jax.random.normal(jax.random.key(0), (N, WIDTH, c))
    w = jax.random.normal(jax.random.key(1), (WIDTH, WIDTH, c)) / WIDTH**0.5
    print(f"z[n,o,c] = sum_i a[n,i,c] w[i,o,c]: N={N}, I=O={WIDTH}, C={c}, {LOOPS} iterations")
    print(f"{'form':10s} {'fwd GFLOP/s':>8s} {'fwd+bwd GFLOP/s':>14s}")
    forms = {**_forms(), "vmap dot": jax.vmap(jnp.dot)}
    for name, form in forms.items():
        ww = {"w_OxI": jnp.swapaxes(w, 0, 1), "vmap dot": jnp.moveaxis(w, -1, 0)}.get(name, w)
        aa = jnp.moveaxis(a, -1, 0) if name == "vmap dot" else a
        fwd, both = _loops(form)
        _report(
            name, c, _time(fwd, aa, ww, repeat=args.repeat), _time(both, aa, ww, repeat=args.repeat)
        )
    try:
        import torch
    except ImportError:
        print("torch bmm: skipped (torch is not installed; pip install -e .[bench])")
        return
    torch.set_num_threads(1)
    ta, tw = torch.randn(c, N, WIDTH), torch.randn(c, WIDTH, WIDTH) / WIDTH**0.5

    def torch_fwd(h, w):
        with torch.no_grad():
            for _ in range(LOOPS):
                h = torch.tanh(torch.bmm(h, w))
        return h

    def torch_both(a, w):
        a, w = a.clone().requires_grad_(), w.clone().requires_grad_()
        for _ in range(LOOPS):
            ga, gw = torch.autograd.grad(torch.tanh(torch.bmm(a, w)).sum(), (a, w))
            with torch.no_grad():
                a -= 1e-3 * ga
                w -= 1e-3 * gw
        return a

    forward, both = (_time(f, ta, tw, repeat=args.repeat) for f in (torch_fwd, torch_both))
    _report("torch bmm", c, forward, both)


if __name__ == "__main__":
    main()
