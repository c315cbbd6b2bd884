"""Diagnostics the training loop records every ``log_every`` steps (and at the end).

Each diagnostic is a pure function ``fn(probe: Probe) -> dict[str, Array]`` of one run's state,
returning scalars or per-hidden-layer vectors ``(L,)``. They are chosen by name in
``train.diagnostics`` and cost nothing when not chosen.

>>> sorted(DIAGNOSTICS)[:3]
['dead_units', 'distance_from_init', 'distinct_units']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.blocks import sharpness as sharp
from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.models import Model
from jaxinit.blocks.ops import PER_RUN, Ops
from jaxinit.config.outputs import Output
from jaxinit.config.spec import TrainSpec


class Probe(NamedTuple):
    """What a diagnostic may look at: one run's current state and its data."""

    model: Model
    params: Any
    params0: Any  # parameters at step 0
    grads: Any  # full-batch gradient of the training loss at ``params``
    x: Array  # training inputs (B, I)
    y: Array
    ops: Ops = PER_RUN  # the layout's primitives (jaxinit.blocks.ops); its norm is per run
    # params -> the full-batch, dropout-free training loss (per run in ``ops``' layout: a scalar
    # for one run); None where the engine gives none (diagnostics that need it then raise)
    loss: Callable[[Any], Array] | None = None
    train: TrainSpec = TrainSpec()  # the run's static training settings (sharpness_iters, ...)
    # what the diagnostics carried from the previous logged step, ``{name: value}``
    # (:func:`observe`); None: nothing yet (a diagnostic then starts cold)
    memo: dict[str, Any] | None = None
    # shape=(), int32: the logged step's index ``b`` (step ``b · log_every``), the same for every
    # run, so a diagnostic may skip work with ``lax.cond`` on it; None: the final state, or a
    # probe outside the run loop (measure)
    logged: Array | None = None


def grad_norm(p: Probe) -> dict[str, Array]:
    """Global gradient norm ``‖∇L‖`` (full batch)."""
    return {"grad_norm": p.ops.norm(p.grads)}


def _layers(p: Probe, tree: Any) -> list:
    if p.model.symmetry is None:
        raise ValueError("this diagnostic needs a model that declares its layers (Model.symmetry)")
    return p.model.symmetry.layers(tree)


def layer_grad_norm(p: Probe) -> dict[str, Array]:
    """Gradient norm of each layer's parameters, ``(L,)`` (layers as the model declares them)."""
    return {"layer_grad_norm": jnp.stack([p.ops.norm(g) for g in _layers(p, p.grads)])}


def weight_norm(p: Probe) -> dict[str, Array]:
    """Global parameter norm ``‖θ‖``."""
    return {"weight_norm": p.ops.norm(p.params)}


def distance_from_init(p: Probe) -> dict[str, Array]:
    """``‖θ − θ₀‖``: how far the run has moved (lazy vs rich training)."""
    return {"distance_from_init": p.ops.norm(jax.tree.map(jnp.subtract, p.params, p.params0))}


DISTINCT_RTOL = 1e-2
"""Two units count as the same when both their incoming weights and their activations on the data
differ by at most ``DISTINCT_RTOL`` times the layer's typical size (see :func:`count_distinct`)."""

COARSE_RTOL = 1e-1
"""The tolerance of ``distinct_units_coarse``: near-copies of a unit count as the same unit."""


def _pairwise_dist(rows_UxD: Array) -> Array:
    """Euclidean distances ``(U, U)`` between rows, computed from differences (exact zeros stay 0)."""
    diff = rows_UxD[:, None, :] - rows_UxD[None, :, :]
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def _typical_norm(rows_UxD: Array) -> Array:
    """RMS row norm of a layer; an absolute floor keeps an all-zero layer well defined."""
    return jnp.sqrt(jnp.mean(jnp.sum(rows_UxD * rows_UxD, axis=-1))) + 1e-6


def count_distinct(incoming_UxI: Array, act_BxU: Array, rtol: float = DISTINCT_RTOL) -> Array:
    """Number of distinct units in one layer (a float scalar, for uniform curve dtypes).

    Units ``i`` and ``j`` are *the same* when ``‖w_i − w_j‖ ≤ rtol · rms_k ‖w_k‖`` **and**
    ``‖a_i − a_j‖ ≤ rtol · rms_k ‖a_k‖`` (incoming weights incl. bias; activations over the
    data). A unit is counted when no earlier unit ``j < i`` is the same as it: for an exact
    equivalence (the symmetric inits) this is the number of groups, and it is a fixed-size,
    jit/vmap-friendly ``O(U²)`` computation with no data-dependent loops.
    """
    acts = act_BxU.T
    same_w = _pairwise_dist(incoming_UxI) <= rtol * _typical_norm(incoming_UxI)
    same_a = _pairwise_dist(acts) <= rtol * _typical_norm(acts)
    n = incoming_UxI.shape[0]
    earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)  # earlier[i, j] = j < i
    has_twin = jnp.any(same_w & same_a & earlier, axis=1)
    return jnp.sum(~has_twin).astype(act_BxU.dtype)


def _per_layer(p: Probe, values: list[Array]) -> Array:
    """Stack per-hidden-layer values, NaN-padded to the number of layers when the model declares
    them, so that every per-layer curve shares one ``layer`` dim indexed like the parameters
    (the output layer has no hidden units)."""
    out = jnp.stack(values) if values else jnp.zeros((0,))
    if p.model.symmetry is not None:
        pad = len(p.model.symmetry.layers(p.params)) - out.shape[0]
        out = jnp.concatenate([out, jnp.full((pad,), jnp.nan, out.dtype)])
    return out


def _hidden(p: Probe) -> list:
    if p.model.hidden is None:
        raise ValueError("this diagnostic needs a model with hidden(params, x)")
    return p.model.hidden(p.params, p.x)


def distinct_units(p: Probe) -> dict[str, Array]:
    """Distinct hidden units per layer ``(L,)`` at tolerance :data:`DISTINCT_RTOL` (1%): units
    count as one only when they are (numerically) the same unit."""
    return {
        "distinct_units": _per_layer(
            p, [count_distinct(h.incoming_UxI, h.act_BxU) for h in _hidden(p)]
        )
    }


def distinct_units_coarse(p: Probe) -> dict[str, Array]:
    """Distinct hidden units per layer ``(L,)`` at tolerance :data:`COARSE_RTOL` (10%): units that
    differ only slightly (e.g. split apart by dropout noise but still near-copies) count as one."""
    return {
        "distinct_units_coarse": _per_layer(
            p, [count_distinct(h.incoming_UxI, h.act_BxU, COARSE_RTOL) for h in _hidden(p)]
        )
    }


def saturation(p: Probe) -> dict[str, Array]:
    """Fraction of pre-activations on the data with ``|z|`` beyond the activation's
    saturation threshold (:mod:`jaxinit.blocks.activations`), per layer ``(L,)``; NaN for activations
    that do not saturate."""
    act = ACTIVATIONS.get(p.model.activation or "")
    thr = act.saturation if act else None
    hs = _hidden(p)
    if thr is None:
        return {"saturation": _per_layer(p, [jnp.full((), jnp.nan, p.x.dtype) for _ in hs])}
    return {"saturation": _per_layer(p, [jnp.mean(jnp.abs(h.preact_BxU) > thr) for h in hs])}


def dead_units(p: Probe) -> dict[str, Array]:
    """Fraction of ReLU units with ``z ≤ 0`` on every data point (zero gradient, they never come
    back under full-batch descent), per layer ``(L,)``; NaN for other activations."""
    hs = _hidden(p)
    if p.model.activation != "relu":
        return {"dead_units": _per_layer(p, [jnp.full((), jnp.nan, p.x.dtype) for _ in hs])}
    return {
        "dead_units": _per_layer(
            p, [jnp.mean(jnp.all(h.preact_BxU <= 0, axis=0)).astype(p.x.dtype) for h in hs]
        )
    }


def relative_distance_from_init(p: Probe) -> dict[str, Array]:
    """``‖θ − θ₀‖ / ‖θ₀‖``: the distance travelled in units of the init's own size (small in the
    lazy / kernel regime, order one when features move)."""
    moved = p.ops.norm(jax.tree.map(jnp.subtract, p.params, p.params0))
    return {"relative_distance_from_init": moved / p.ops.norm(p.params0)}


SHARPNESS_KEY = 0
"""The key of :func:`sharpness`'s cold start, ``random_direction(key(SHARPNESS_KEY), θ)``: the
same direction for every run (reproducible, independent of batching)."""

SHARPNESS_WARMUP_ITERS = 20
"""Most products of the cold estimate at init (:func:`sharpness_warmup`) that every later logged
estimate is warm-started from, when ``train.sharpness_iters`` is below it (at or above it, the
first logged estimate is the cold one); it stops early at ``train.sharpness_tol``."""

CARRIED = "carried"
"""The key under which a diagnostic that carries a state to the next logged step returns it
(:func:`observe` moves it to the memo; it is not a curve)."""


def trainable_leaves(p: Probe) -> tuple[Callable[[list], Any], list]:
    """``(rebuild, leaves)``: the trainable leaves of ``p.params`` (``Model.trainable``; all
    without a mask) and ``rebuild(leaves) -> params`` with the frozen ones closed over, so a
    curvature is that of the parameters training moves."""
    leaves, treedef = jax.tree.flatten(p.params)
    if p.model.trainable is None:
        return treedef.unflatten, leaves
    mask = p.model.trainable(p.params)  # a prefix tree of Python bools
    flags = treedef.flatten_up_to(
        jax.tree.map(lambda m, x: jax.tree.map(lambda _: bool(m), x), mask, p.params)
    )
    moved = [i for i, f in enumerate(flags) if f]

    def rebuild(q: list) -> Any:
        full = list(leaves)
        for i, leaf in zip(moved, q):
            full[i] = leaf
        return treedef.unflatten(full)

    return rebuild, [leaves[i] for i in moved]


def _need_loss(p: Probe, what: str) -> Callable[[Any], Array]:
    if p.loss is None:
        raise ValueError(f"{what} needs the run's loss (Probe.loss)")
    return p.loss


def lambda0(p: Probe, gauss_newton: bool) -> Array:
    """The run's ``λ₀`` at ``p.params`` over its trainable parameters
    (:func:`jaxinit.blocks.sharpness.lambda0`): the Gauss–Newton matrix's top eigenvalue
    (``gauss_newton``: the MSE loss) or the loss Hessian's."""
    loss = _need_loss(p, "lambda0")
    rebuild, params = trainable_leaves(p)
    top = sharp.lambda0(
        lambda q: loss(rebuild(q)),
        lambda q, x: p.model.apply(rebuild(q), x),
        params,
        p.x,
        gauss_newton=gauss_newton,
    )
    return top.value


def _top_hessian(p: Probe, start: Any | None, iters: int) -> Any:
    """The top Hessian eigenpair of every run in ``p`` over its trainable parameters
    (:func:`jaxinit.blocks.sharpness.top_hessian_eigenvalue`, the layout's runs as its batch),
    from ``start``; a run whose ``start`` is missing, zero or not finite (it diverged) starts
    cold from :data:`SHARPNESS_KEY`'s direction."""
    loss = _need_loss(p, "the sharpness diagnostic")
    rebuild, params = trainable_leaves(p)
    batch = jnp.shape(p.ops.norm(params))  # () for one run, (C,) on the lanes
    cold = sharp.random_direction(jax.random.key(SHARPNESS_KEY), params, batch)
    if start is not None:
        size = p.ops.norm(start)
        ok = jnp.isfinite(size) & (size > 0)
        start = jax.tree.map(lambda a, b: jnp.where(ok, a, b), start, cold)
    return sharp.top_hessian_eigenvalue(
        lambda q: loss(rebuild(q)),
        params,
        cold if start is None else start,
        iters=iters,
        tol=p.train.sharpness_tol,
        residual="recurrence",
        batch=batch,
    )


def sharpness(p: Probe) -> dict[str, Array]:
    """The top eigenvalue ``λ_max`` of the full-batch training-loss Hessian (over the trainable
    parameters) and its residual ``‖Hv − λv‖ / ‖λv‖``: Lanczos on Hessian-vector products
    (:func:`jaxinit.blocks.sharpness.top_hessian_eigenvalue`), at most
    ``train.sharpness_iters`` products, stopping at ``train.sharpness_tol``, warm-started from
    the previous estimate's vector (``p.memo``; the first from :func:`sharpness_warmup`'s).
    A residual above the tolerance means the value is a lower bound (not converged). With
    ``train.sharpness_every = k > 1`` only every ``k``-th logged step (and the final one) is
    measured (:func:`sharpness_due`); the others record NaN and cost nothing."""
    start = (p.memo or {}).get("sharpness")

    def measure(start: Any) -> tuple[Array, Array, Any]:
        top = _top_hessian(p, start, p.train.sharpness_iters)
        return top.value, top.residual, top.start

    every = p.train.sharpness_every
    if every == 1 or p.logged is None or start is None:
        value, residual, start = measure(start)
    else:  # a real branch, not a select, in every layout: ``logged`` is not per run
        size = p.ops.norm(p.params)  # () for one run, (C,) on the lanes: the shape of a value
        nan = jnp.full(jnp.shape(size), jnp.nan, size.dtype)
        value, residual, start = jax.lax.cond(
            sharpness_due(p.logged, p.train), measure, lambda s: (nan, nan, s), start
        )
    return {"sharpness": value, "sharpness_residual": residual, CARRIED: start}


def sharpness_due(logged: Array, train: TrainSpec) -> Array:
    """Whether :func:`sharpness` measures at logged step ``logged``: every
    ``train.sharpness_every``-th one from the first (step 0); the final one always."""
    return (logged % train.sharpness_every == 0) | (logged >= train.steps // train.log_every)


def sharpness_warmup(p: Probe) -> Any:
    """The first warm start of :func:`sharpness`: the next start of a cold estimate at
    ``p.params`` (the init) from :data:`SHARPNESS_KEY`'s direction, with up to
    :data:`SHARPNESS_WARMUP_ITERS` products; or, when ``train.sharpness_iters`` is at least that
    many, zeros, which :func:`sharpness` takes for a cold start: the first logged estimate is at
    the same parameters, and is then that cold estimate itself (one solver fewer to compile)."""
    if p.train.sharpness_iters >= SHARPNESS_WARMUP_ITERS:
        return jax.tree.map(jnp.zeros_like, trainable_leaves(p)[1])
    return _top_hessian(p, None, SHARPNESS_WARMUP_ITERS).start


class Diagnostic(NamedTuple):
    """A diagnostic as the registry declares it."""

    fn: Callable[[Probe], dict[str, Array]]  # probe -> {output.name: value}
    output: Output  # its curve: name, long name, units, description (read by the Dataset)
    any_layout: bool  # written against ``Probe.ops``: runs on a batch of runs in any layout
    more: tuple[Output, ...] = ()  # further curves ``fn`` writes (e.g. a residual)
    # probe at init -> the state ``fn`` first finds in ``Probe.memo[name]`` (a warm start);
    # ``fn`` then returns the next one under :data:`CARRIED`. None: it carries nothing
    warmup: Callable[[Probe], Any] | None = None


def _curve(name: str, long_name: str, description: str) -> Output:
    return Output(name, "float", long_name, "1", description)


_PER_LAYER_NAN = "; NaN for the output layer"
REGISTRY: dict[str, Diagnostic] = {
    "grad_norm": Diagnostic(grad_norm, _curve(
        "grad_norm", "gradient norm", "full-batch training gradient norm at each logged step"),
        True),
    "layer_grad_norm": Diagnostic(layer_grad_norm, _curve(
        "layer_grad_norm", "layer gradient norm", "gradient norm of each layer's parameters"),
        True),
    "weight_norm": Diagnostic(weight_norm, _curve(
        "weight_norm", "parameter norm", "global norm of all parameters"), True),
    "distance_from_init": Diagnostic(distance_from_init, _curve(
        "distance_from_init", "distance from init",
        "norm of the parameters minus the initial parameters"), True),
    "distinct_units": Diagnostic(distinct_units, _curve(
        "distinct_units", "distinct units",
        f"distinct hidden units per layer (1% tolerance){_PER_LAYER_NAN}"), False),
    "distinct_units_coarse": Diagnostic(distinct_units_coarse, _curve(
        "distinct_units_coarse", "distinct units (coarse)",
        f"distinct hidden units per layer (10% tolerance){_PER_LAYER_NAN}"), False),
    "saturation": Diagnostic(saturation, _curve(
        "saturation", "saturated fraction",
        "fraction of pre-activations in the activation's flat region, per layer"), False),
    "dead_units": Diagnostic(dead_units, _curve(
        "dead_units", "dead ReLU fraction",
        "fraction of ReLU units inactive on every data point, per layer"), False),
    "relative_distance_from_init": Diagnostic(relative_distance_from_init, _curve(
        "relative_distance_from_init", "relative distance from init",
        "norm of the parameters minus the initial parameters over the initial norm"), True),
    "sharpness": Diagnostic(sharpness, _curve(
        "sharpness", "sharpness (top Hessian eigenvalue)",
        "largest eigenvalue of the full-batch training-loss Hessian over the trainable "
        "parameters (Lanczos, at most train.sharpness_iters Hessian-vector products, "
        "warm-started from the previous logged step's eigenvector); gradient descent at "
        "learning rate η is stable near a minimum while η·sharpness < 2"), True,
        (_curve("sharpness_residual", "sharpness residual",
                "‖Hv − λv‖ / ‖λv‖ of the sharpness estimate (λ, v); above train.sharpness_tol "
                "the estimate has not converged and is a lower bound"),), sharpness_warmup),
}  # fmt: skip
"""Registry ``diagnostic name -> Diagnostic``: a new diagnostic is one function and one entry."""

DIAGNOSTICS: dict[str, Callable[[Probe], dict[str, Array]]] = {
    name: d.fn for name, d in REGISTRY.items()
}
"""Registry ``diagnostic name -> fn(probe) -> {curve name: value}``."""

CURVES: dict[str, Output] = {o.name: o for d in REGISTRY.values() for o in (d.output, *d.more)}
"""Every curve a diagnostic writes, ``curve name -> Output`` (the Dataset's attrs read this)."""

ANY_LAYOUT = frozenset(name for name, d in REGISTRY.items() if d.any_layout)
"""The diagnostics written against the layout primitives (``Probe.ops``): they run on a batch
of runs in any layout (values ``(..., C)`` on the lanes). The others are one run's code, which
the lanes layout vmaps over its run axis."""


def observe(names: tuple[str, ...], probe: Probe) -> tuple[dict[str, Array], dict[str, Any]]:
    """Evaluate the named diagnostics: ``(curves, memo)``, their merged curves and what those
    that carry a state pass to the next logged step (``{name: state}``, for ``Probe.memo``)."""
    out: dict[str, Array] = {}
    memo: dict[str, Any] = {}
    for name in names:
        got = dict(DIAGNOSTICS[name](probe))
        if CARRIED in got:
            memo[name] = got.pop(CARRIED)
        out.update(got)
    return out, memo


def record(names: tuple[str, ...], probe: Probe) -> dict[str, Array]:
    """Evaluate the named diagnostics and merge their curves."""
    return observe(names, probe)[0]


def warmup(names: tuple[str, ...], probe: Probe) -> dict[str, Any]:
    """The first memo of the named diagnostics that carry a state, from a probe at init
    (``{}`` when none does: the run then carries nothing)."""
    return {n: REGISTRY[n].warmup(probe) for n in names if REGISTRY[n].warmup is not None}


def carries(names: tuple[str, ...]) -> bool:
    """Whether any of the named diagnostics carries a state from one logged step to the next."""
    return any(REGISTRY[n].warmup is not None for n in names if n in REGISTRY)
