"""Probe sweeps: deep random nets measured at init — nothing is trained.

A probe spec is a TOML file like a training sweep's, with ``kind`` naming what is measured and a
``[probe]`` section in place of task / model / optimizer (one compiled program per activation ×
weight distribution; ``σ_w``, ``σ_b`` and seeds are vmapped inside it):

* ``kind = "signal_propagation"``: two inputs of correlation ``correlation`` sent through nets
  of ``depth`` layers of ``width`` units (:func:`jaxinit.blocks.signal.propagate_grid`): per layer the
  pre-activation variance ``q`` of each input, their correlation ``c``, and (``gradients``) the
  squared norm of a random gradient sent back from the last layer, ``|δ^l|²/width``
  (:func:`jaxinit.blocks.signal.backprop_norms`, from an input at the fixed point ``q*``). Axes:
  ``activation``, ``weights``, ``sigma_w``, ``sigma_b``, ``seed``.
* ``kind = "jacobian_spectrum"``: the input-output Jacobian of square nets of ``width`` at each
  depth in ``depths`` (:func:`jaxinit.blocks.signal.jacobians`), from an input at ``q*``: its squared
  singular values and their mean and variance. ``σ_w`` is ``sigma_w`` or, with
  ``sigma_w = "critical"``, each activation's critical scale at ``sigma_b``
  (:func:`jaxinit.blocks.theory.critical_scale`). Axes: ``activation``, ``weights``, ``seed``.

A probe spec is a :class:`~jaxinit.config.spec.Spec` with a probe ``kind``, run by
:func:`jaxinit.run` like any sweep (:mod:`jaxinit.engine.sweep`: prepare, the store, shards,
resume, progress), which takes its chunks from :func:`measure` instead of the training
executor. Results are a labelled ``xarray.Dataset``. A probe directory is a sweep directory
(:mod:`jaxinit.engine.store`, laid out by :mod:`jaxinit.engine.probe_spec`): written chunk by chunk (a block of
seeds of one activation × weights, every ``σ`` vmapped), so ``--shard i/n`` splits it, an
interrupted run resumes, another spec is refused, and ``jaxinit status`` / ``jaxinit.load`` read
it as any sweep. Seed ``s`` draws its net from ``fold_in(key(spec seed), s)``, shared across the
``σ`` grid and the activations (common random numbers).

>>> import jaxinit
>>> ds = jaxinit.run({"kind": "signal_propagation", "probe": {"depth": 3, "width": 8, "in_dim": 4},
...           "axes": {"sigma_w": [1.0, 2.0], "seed": 2}}, progress=False)
>>> ds.c.dims
('activation', 'weights', 'sigma_w', 'sigma_b', 'seed', 'layer')
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.blocks import signal
from jaxinit.config.spec import Spec
from jaxinit.engine.plan import Group, chunk_id
from jaxinit.engine.probe_spec import (
    KINDS,
    SEEDS_PER_CHUNK,
    ProbePlan,
    describe,
    is_probe,
    resolve,
    seeds_per_chunk,
)
from jaxinit.engine.rebuild import from_dataset

if TYPE_CHECKING:  # xarray and SciPy (jaxinit.blocks.theory) load when a probe runs, not at import
    import xarray as xr

__all__ = ["KINDS", "SEEDS_PER_CHUNK", "describe", "is_probe", "measure", "resolve", "summarize"]


# -- measuring ----------------------------------------------------------------------------------
def _inputs(key: jax.Array, in_dim: int, rho: float) -> jax.Array:
    """Two inputs with ``|x|²/in_dim = 1`` and cosine ``rho`` (exactly: Gram–Schmidt)."""
    z = jax.random.normal(key, (2, in_dim))
    a = z[0] / jnp.linalg.norm(z[0])
    b = z[1] - (z[1] @ a) * a
    b = rho * a + math.sqrt(1 - rho * rho) * b / jnp.linalg.norm(b)
    return jnp.stack([a, b]) * math.sqrt(in_dim)


@cache  # one quadrature per (activation, σ_w, σ_b), however many chunks of seeds
def _input_variance(activation: str, sigma_w: float, sigma_b: float) -> float:
    """``|x|²/N`` that puts layer 1 at the fixed point ``q*`` (1 where ``q*`` is 0 or ∞)."""
    from jaxinit.blocks import theory

    q = theory.fixed_point_q(activation, sigma_w**2, sigma_b**2)
    q_in = (q - sigma_b**2) / sigma_w**2 if math.isfinite(q) else 0.0
    return q_in if q_in > 1e-6 else 1.0


@partial(jax.jit, static_argnames=("n_seeds", "depth", "width", "activation", "weights"))
def _gradient_grid(root, x_N, sigma_ws, sigma_bs, scales_WxB, first_seed, *, n_seeds, depth,
                   width, activation, weights):  # fmt: skip
    """:func:`jaxinit.blocks.signal.backprop_norms` over ``σ_w × σ_b × seed`` (input ``x·scale``):
    ``(W, B, S, depth)``; seed ``s`` is the same net as in ``propagate_grid``."""
    one = lambda k, sw, sb, s: signal.backprop_norms(
        k, x_N * s, sw, sb, depth=depth, width=width, activation=activation, weights=weights
    )
    f = jax.vmap(
        jax.vmap(jax.vmap(one, (0, None, None, None)), (None, None, 0, 0)), (None, 0, None, 0)
    )
    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(first_seed + jnp.arange(n_seeds))
    return f(keys, sigma_ws, sigma_bs, scales_WxB)


@partial(jax.jit, static_argnames=("n_seeds", "depths", "activation", "weights"))
def _jacobian_grid(root, x0_N, sigma_w, sigma_b, first_seed, *, n_seeds, depths, activation,
                   weights):  # fmt: skip
    """Per seed: mean and variance of the squared singular values ``(S, D)`` and the values
    themselves ``(S, D, N)``; seeds one after another (``lax.map``)."""

    def one(k):
        j = signal.jacobians(k, x0_N, sigma_w, sigma_b, depths=depths, activation=activation,
                             weights=weights)  # fmt: skip
        m, v = signal.spectrum_moments(j)
        return m, v, signal.squared_singular_values(j)

    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(first_seed + jnp.arange(n_seeds))
    return jax.lax.map(one, keys)


def _seed_block(plan: ProbePlan, chunk: int) -> tuple[int, int]:
    """``(first seed, seeds kept)`` of a chunk; it computes :func:`seeds_per_chunk` seeds
    (the last chunk's extra ones are dropped), so every chunk has one compiled shape."""
    block, n = seeds_per_chunk(plan.spec), len(plan.axes[2].values)
    return chunk * block, min(block, n - chunk * block)


def _per_net(arrays: dict[str, Any], kept: int) -> dict[str, np.ndarray]:
    """``(W, B, S, …)`` grids (``S``: the block's seeds) as ``(kept·W·B, …)`` rows in run-id
    order (seed, then ``σ_w``, ``σ_b``; see :func:`jaxinit.engine.probe_spec.plan_axes`)."""
    out = {}
    for k, a in arrays.items():
        a = np.moveaxis(np.asarray(a), 2, 0)[:kept]
        out[f"probe/{k}"] = a.reshape(-1, *a.shape[3:])
    return out


def _signal_chunk(spec: Spec, act: str, weights: str, first: int, kept: int) -> dict:
    p, ax = spec.probe, dict(spec.axes)
    k_in, k_net = jax.random.split(jax.random.key(spec.seed))
    x = _inputs(k_in, p.in_dim, p.correlation)
    sws, sbs = jnp.asarray(ax["sigma_w"], jnp.float32), jnp.asarray(ax["sigma_b"], jnp.float32)
    q_in = np.array([[_input_variance(act, w, b) for b in ax["sigma_b"]] for w in ax["sigma_w"]])
    kw = dict(n_seeds=seeds_per_chunk(spec), depth=p.depth, width=p.width, activation=act,
              weights=weights)  # fmt: skip
    start = jnp.int32(first)  # traced: one compiled program for every block of seeds
    q, c = signal.split_gram(signal.propagate_grid(k_net, x, sws, sbs, first_seed=start, **kw))
    shape = (*q.shape[:3],)  # (W, B, S)
    out = {"q": q, "c": c[..., 0, 1]}
    if p.gradients:
        scales = jnp.sqrt(jnp.asarray(q_in, jnp.float32))
        out["grad_sq"] = _gradient_grid(k_net, x[0], sws, sbs, scales, start, **kw)
    out["grad_q_in"] = np.broadcast_to(q_in[:, :, None], shape)
    gram = np.asarray(x @ x.T / p.in_dim, np.float64)
    out["x_gram"] = np.broadcast_to(gram, (*shape, 2, 2))
    return _per_net(out, kept)


def _jacobian_chunk(spec: Spec, act: str, weights: str, first: int, kept: int) -> dict:
    from jaxinit.blocks import theory

    p = spec.probe
    k_in, k_net = jax.random.split(jax.random.key(spec.seed))
    sw = theory.critical_scale(act, p.sigma_b) if p.sigma_w == "critical" else p.sigma_w
    x0 = signal.input_at_variance(k_in, _input_variance(act, sw, p.sigma_b), p.width)
    mean, var, sq = _jacobian_grid(k_net, x0, sw, p.sigma_b, jnp.int32(first),
                                   n_seeds=seeds_per_chunk(spec), depths=p.depths,
                                   activation=act, weights=weights)  # fmt: skip
    out = {"sv_mean": mean, "sv_var": var, "sq_sv": sq,
           "sigma_w_used": np.full(len(mean), sw, np.float64)}  # fmt: skip
    return _per_net({k: np.asarray(v)[None, None] for k, v in out.items()}, kept)


def measure(plan: ProbePlan, todo: list[tuple[Group, int]]) -> Iterator[tuple[str, dict]]:
    """``(chunk id, arrays)`` of each chunk in ``todo`` (``(group, chunk)`` pairs of ``plan``),
    as the store writes them: ``run_id`` and ``probe/<variable>`` per net."""
    compute = _signal_chunk if plan.spec.kind == "signal_propagation" else _jacobian_chunk
    for group, c in todo:
        first, kept = _seed_block(plan, c)
        arrays = compute(plan.spec, *plan.cell(group), first, kept)
        yield chunk_id(group, c), {"run_id": group.chunk_run_ids(c), **arrays}


def summarize(ds: xr.Dataset, *, title: bool = True) -> str:
    """A short text table of a probe sweep (what ``jaxinit run`` prints); ``title``: first the
    sweep's name and size (``jaxinit run`` has printed them already)."""
    spec = from_dataset(ds).spec
    rows = [f"{spec.name}: {describe(spec)}"] if title else []
    if ds.attrs.get("partial"):
        rows.append(f"partial: {ds.attrs['n_done']:,}/{ds.attrs['n_runs']:,} nets measured (the "
                    "rest are NaN); resume with the same jaxinit run command")  # fmt: skip
    if spec.kind == "signal_propagation":
        rows.append(f"{'activation':<10} {'weights':<10} {'σ_w':>6} {'σ_b':>6} "
                    f"{'q^L':>10} {'c^L':>7} {'|δ^1|²/|δ^L|²':>14}")  # fmt: skip
        last = ds.isel(layer=-1).median("seed")
        for a in ds.activation.values:
            for w in ds.weights.values:
                for sw in ds.sigma_w.values:
                    for sb in ds.sigma_b.values:
                        s = last.sel(activation=a, weights=w, sigma_w=sw, sigma_b=sb)
                        g = "-"
                        if "grad_sq" in ds:
                            r = ds.grad_sq.sel(activation=a, weights=w, sigma_w=sw, sigma_b=sb)
                            g = f"{float((r.isel(layer=0) / r.isel(layer=-1)).median()):.3g}"
                        rows.append(f"{a:<10} {w:<10} {sw:>6.3g} {sb:>6.3g} "
                                    f"{float(s.q.isel(input=0)):>10.4g} {float(s.c):>7.3f} {g:>14}")  # fmt: skip
    else:
        rows.append(f"{'activation':<10} {'weights':<10} {'σ_w':>6} {'depth':>6} "
                    f"{'mean λ':>10} {'var λ':>10}   (λ: squared singular values of J)")  # fmt: skip
        m, v = ds.sv_mean.mean("seed"), ds.sv_var.mean("seed")
        for a in ds.activation.values:
            for w in ds.weights.values:
                for d in ds.depth.values:
                    sel = dict(activation=a, weights=w, depth=d)
                    rows.append(f"{a:<10} {w:<10} {float(ds.sigma_w_used.sel(activation=a)):>6.3f} "
                                f"{d:>6} {float(m.sel(sel)):>10.4g} {float(v.sel(sel)):>10.4g}")  # fmt: skip
    return "\n".join(rows)
