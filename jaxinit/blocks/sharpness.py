"""Sharpness: the top eigenvalue of a run's loss Hessian and of its NTK, and the run's phase.

Pure, vmappable functions of one run's ``params`` pytree, for the catapult (Lewkowycz et al.
2020), the edge of stability (Cohen et al. 2021) and learning rates in units of the curvature.

- :func:`top_hessian_eigenvalue`: the **largest algebraic** eigenvalue of ``∇²loss(params)``
  from Hessian-vector products (``jax.linearize`` of ``jax.grad``), never a materialised Hessian.
- :func:`ntk_top_eigenvalue`: ``λ₀``, the top eigenvalue of the Gauss–Newton matrix
  ``G = JᵀJ / N`` (``J`` the Jacobian of the ``N`` examples' outputs in the parameters), from
  ``jvp`` then ``vjp``, never a materialised Jacobian. For the MSE loss
  ``1/(2N) Σₙ ‖f(xₙ) − yₙ‖²`` (jaxinit's ``mse``) ``G`` is the Hessian less the residual term,
  and it has the same nonzero eigenvalues as the empirical NTK ``JJᵀ / N``.
- :func:`lambda0`: ``λ₀`` at init, the Gauss–Newton matrix's for MSE, the Hessian's otherwise.
- :func:`phase`: ``lazy`` / ``catapult`` / ``divergent`` from a run's loss curve, its final
  sharpness against ``2/η`` and its divergence flag.

**Solver.** Both eigenvalues come from :func:`top_eigenpair`: Lanczos with full
reorthogonalisation (default) or power iteration, ``iters`` matrix-vector products at most
inside ``lax.while_loop`` s (unrolled up to :data:`UNROLL_ITERS`; in :data:`STAGES` of growing
size, so that a few steps cost a few steps) that stop early once the relative residual is below
``tol``. It runs one run, or a batch of runs on the vectors' trailing
axes (``(n, *batch)``; the lanes layout), each with its own matrix: the loop goes on until every
run has stopped, and a stopped run keeps its answer (so under ``vmap`` too), so one run's
answer does not depend on its
batch. Lanczos is the default because it needs fewer products than power iteration for a
``1e-4`` residual (tests/test_sharpness.py, float32: 6-9 against 8-23 on a 72-parameter tanh
MLP; 16 against 62 on a quadratic with ``λ₂/λ₁ = 0.95``): power iteration converges like
``(λ₂/λ₁)ᵏ`` and so slows when the top two eigenvalues are close, as at the edge of stability.
And Lanczos finds the largest *algebraic* eigenvalue, so a dominant negative eigenvalue (a
saddle) does not hide the top one; when every eigenvalue is negative it returns the one
nearest zero. Its cost is memory: ``iters + 1`` vectors per run. ``method="power"`` keeps ``O(1)`` vectors; it returns the dominant eigenvalue, which is
the top one whenever the matrix is positive semi-definite (the Gauss–Newton matrix always; a
Hessian near a minimum), and otherwise may be a negative one of larger magnitude: its
``value`` is then negative and below the top eigenvalue, so use Lanczos for Hessians away from
minima.

**Warm start.** Both take a start vector ``v0``: pass the previous estimate's
:attr:`Eigen.start` (its Ritz vector; after a single product, that vector's power step) and a
slowly moving top eigenvector is found in a few products (``random_direction`` draws the first).

**Residual.** ``residual = ‖Mv − λv‖ / ‖λv‖``. By default (``residual="product"``) it is
computed with one more product after the loop, the true residual of what is returned;
``residual="recurrence"`` takes Lanczos' own ``β_j |y_j| / |θ|`` instead, exact in exact
arithmetic and, with full reorthogonalisation, equal to the product's to rounding, for free
(the engine's diagnostic uses it). An eigenvalue is accurate to about ``residual² · |λ| /
gap`` (for a symmetric matrix), so ``1e-4`` on the residual is far below ``1e-4`` on the
value; a residual above ``tol`` means ``iters`` was too few: the value is then a lower bound
(Lanczos: the Ritz value never exceeds the top eigenvalue).

>>> import jax.numpy as jnp
>>> loss = lambda p: 0.5 * (3.0 * p["a"] ** 2 + p["b"] @ p["b"])  # Hessian diag(3, 1, 1)
>>> params = {"a": jnp.array(0.0), "b": jnp.zeros(2)}
>>> top = top_hessian_eigenvalue(loss, params, {"a": jnp.array(1.0), "b": jnp.ones(2)})
>>> round(float(top.value), 4), bool(top.residual < 1e-4)
(3.0, True)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.flatten_util import ravel_pytree

METHODS = ("lanczos", "power")
"""Solvers of :func:`top_eigenpair`."""


class Eigen(NamedTuple):
    """The top eigenpair of one run's symmetric matrix (Hessian or Gauss–Newton); with a batch
    of runs (``batch``), every field has the batch's shape."""

    value: Array  # shape=(), the eigenvalue estimate
    vector: Any  # unit vector (over all leaves), a pytree like the params: the Ritz vector
    residual: Array  # shape=(), ‖Mv − λv‖ / ‖λv‖ of (value, vector)
    steps: Array  # shape=(), int32: products spent in the loop (≤ iters)
    # the next estimate's start (a warm start): ``vector``, or after a single product its
    # power step ``Mv / ‖Mv‖`` (one product cannot improve on v otherwise); None: not given
    start: Any = None


# ---- solvers on flat vectors ``(n, *batch)``: a batch of runs on the trailing axes ------------


def _sum(x: Array, axis: int = 0) -> Array:
    """``x.sum(axis)``; over a batch of runs on the trailing axes as pairwise (halving) adds of
    slices, elementwise over the runs: an XLA reduce over a leading axis of ``(n, C)`` was
    ~10x slower on the CPU (the lanes layout's rule, :mod:`jaxinit.engine.lanes`)."""
    if x.ndim == axis + 1:
        return jnp.sum(x, axis=axis)
    n = x.shape[axis]
    while n > 1:
        h = n // 2
        lo = jax.lax.slice_in_dim(x, 0, h, axis=axis)
        y = lo + jax.lax.slice_in_dim(x, h, 2 * h, axis=axis)
        if n % 2:
            y = jnp.concatenate([y, jax.lax.slice_in_dim(x, 2 * h, n, axis=axis)], axis=axis)
        x, n = y, y.shape[axis]
    return jnp.squeeze(x, axis)


def _top_abs(x: Array) -> Array:
    """``x.max(0)`` (pairwise, as :func:`_sum`)."""
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        y = jnp.maximum(x[:h], x[h : 2 * h])
        x = jnp.concatenate([y, x[2 * h :]]) if x.shape[0] % 2 else y
    return x[0]


def _dot(a: Array, b: Array) -> Array:
    """Per-run dot product of ``(n, *batch)`` vectors: ``(*batch)``."""
    return _sum(a * b)


def _norm(a: Array) -> Array:
    return jnp.sqrt(_dot(a, a))


def _unit(a: Array) -> Array:
    """``a / ‖a‖`` per run; a zero vector stays zero."""
    n = _norm(a)
    return jnp.where(n > 0, a / jnp.where(n > 0, n, 1.0), 0.0)


UNROLL_ROWS = 8
"""Tridiagonals up to this many rows (the first Lanczos stages) have their row recurrences
unrolled (no loop overhead per row: 0.23 ms against 0.54 ms at 4 rows for 4,096 runs); larger
ones loop over the rows, so compile time stays flat in the row count (unrolled over 40 rows the
solver took ~7 s to compile, looped ~1 s)."""


def _solve_tridiagonal(diag: Array, off: Array, rhs: Array) -> Array:
    """``x`` with ``A x = rhs`` for the symmetric tridiagonal ``A`` (``diag (k, *batch)``, ``off
    (k-1, *batch)``) by the Thomas algorithm: no pivoting, stable for a definite ``A``.
    Elementwise ops over the batch, a ``lax.scan`` over the rows each way (unrolled up to
    :data:`UNROLL_ROWS` rows)."""
    if diag.shape[0] == 1:
        return rhs / diag

    def down(carry, row):
        c, g = carry
        d, sub, sup, r = row
        m = d - sub * c
        c, g = sup / m, (r - sub * g) / m
        return (c, g), (c, g)

    # row 0 by itself (no sub-diagonal); the last row's ``c`` is unused (``sup`` padded with 0)
    c0, g0 = off[0] / diag[0], rhs[0] / diag[0]
    sup = jnp.concatenate([off[1:], jnp.zeros_like(off[:1])])
    unroll = diag.shape[0] <= UNROLL_ROWS
    _, (c, g) = jax.lax.scan(down, (c0, g0), (diag[1:], off, sup, rhs[1:]), unroll=unroll)
    c, g = jnp.concatenate([c0[None], c]), jnp.concatenate([g0[None], g])

    def up(x_next, row):
        ci, gi = row
        x = gi - ci * x_next
        return x, x

    _, x = jax.lax.scan(up, g[-1], (c[:-1], g[:-1]), reverse=True, unroll=unroll)
    return jnp.concatenate([x, g[-1:]])


def _top_tridiagonal(diag: Array, off: Array, filled: Array) -> tuple[Array, Array]:
    """Top eigenpair ``(θ (*batch), y (k, *batch))`` of symmetric tridiagonal matrices
    (``diag (k, *batch)``, ``off (k-1, *batch)``, one per run) whose rows outside ``filled``
    are decoupled and below the rest (the unfilled Lanczos steps).

    ``θ`` by bisection on Sturm counts from the Gershgorin interval, to the dtype's precision
    (``nmant + 2`` halvings); ``y`` by two steps of inverse iteration with the shift ``hi + δ``
    just above ``θ`` (``hi`` the bisection's upper end, ``δ = 100·eps·‖T‖``), where that shift
    less ``T`` is positive definite: two ``O(k)`` solves (:func:`_solve_tridiagonal`). Every
    op is elementwise over the runs, unrolled over ``k`` (small: the Lanczos steps), with no
    ``vmap`` of a per-run solver: :func:`jax.scipy.linalg.eigh_tridiagonal` vectorised over
    4,096 runs cost 5 ms at ``k = 20`` and a dense ``eigh`` more."""
    k, dtype = diag.shape[0], diag.dtype
    if k == 1:
        return diag[0], jnp.ones_like(diag)
    edge = jnp.zeros_like(diag[:1])
    radius = jnp.abs(jnp.concatenate([edge, off])) + jnp.abs(jnp.concatenate([off, edge]))
    lo, hi = -_top_abs(-(diag - radius)), _top_abs(diag + radius)  # Gershgorin
    tiny = jnp.finfo(dtype).tiny
    off2 = off * off

    def below_all(x: Array) -> Array:
        """Whether every eigenvalue is below ``x`` (Sturm: all ``k`` pivots of ``T − x`` < 0),
        a ``lax.scan`` over the rows (unrolled up to :data:`UNROLL_ROWS` rows)."""

        def pivot(carry, row):
            q, ok = carry
            d, o2 = row
            q = d - x - o2 / jnp.where(q == 0, -tiny, q)
            return (q, ok & (q < 0)), None

        q = diag[0] - x
        return jax.lax.scan(pivot, (q, q < 0), (diag[1:], off2), unroll=k <= UNROLL_ROWS)[0][1]

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        up = below_all(mid)
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, jnp.finfo(dtype).nmant + 2, halve, (lo, hi))
    theta = 0.5 * (lo + hi)
    size = _top_abs(jnp.abs(jnp.where(filled, diag, 0.0))) + 2 * _top_abs(jnp.abs(off))
    delta = 100 * jnp.finfo(dtype).eps * jnp.where(size > 0, size, 1.0)
    shifted = hi + delta - diag  # the diagonal of (hi + δ)·I − T
    y = filled.astype(dtype)
    for _ in range(2):
        y = jnp.where(filled, _solve_tridiagonal(shifted, -off, y), 0.0)
        y = y / jnp.sqrt(_sum(y * y))
    return theta, y


UNROLL_ITERS = 4
"""Up to this many Lanczos steps (a warm-started estimate) are unrolled instead of looped: all
of them run (a stopped run keeps its answer), without the loop's overhead per step."""

STAGES = (4, 8)
"""The Lanczos loop runs in stages that end after this many steps (then ``iters``), each a
``while_loop`` that reorthogonalises against, and solves the tridiagonal of, only its own
number of steps: a warm-started estimate (typically 2-6 products) does not pay for the full
``iters``-row basis and tridiagonal at every step."""


def _lanczos(matvec: Callable[[Array], Array], v0: Array, iters: int, tol: float):
    """``(value, vector, steps, next_start, residual)`` of the top Ritz pair after at most
    ``iters`` Lanczos steps, for every run of a batch (``v0 (n, *batch)``).

    Full reorthogonalisation (twice, Kahan–Parlett). A run stops when its Ritz residual
    ``β_j |y_j|`` (exact in exact arithmetic: ``M V y − θ V y = β_j y_j v_{j+1}``) is at most
    ``tol · |θ|``, and keeps its answer while the others go on; an invariant subspace
    (``β_j = 0``) stops it with that residual 0.
    """
    batch, dtype = v0.shape[1:], v0.dtype
    sizes = (iters,) if iters <= UNROLL_ITERS else (*(s for s in STAGES if s < iters), iters)
    # a stage's basis has its own ``size + 1`` rows (grown between stages): a loop carrying the
    # full ``iters + 1`` rows and slicing them copied the whole basis at every step
    basis = jnp.zeros((sizes[0] + 1, *v0.shape), dtype).at[0].set(_unit(v0))

    def ritz(alpha, beta, j, size):
        """Top eigenpair of the leading (j+1)x(j+1) block of T (j < size); the rows up to
        ``size`` not yet filled padded below it."""
        alpha, beta = alpha[:size], beta[:size]
        k = jnp.arange(size).reshape(size, *(1,) * len(batch))
        filled = jnp.broadcast_to(k <= j, alpha.shape)
        off = jnp.where(k < j, beta, 0.0)[:-1]
        edge = jnp.zeros((1, *batch), dtype)
        pad_top, pad_bottom = jnp.concatenate([edge, off]), jnp.concatenate([off, edge])
        radius = jnp.abs(pad_top) + jnp.abs(pad_bottom)
        floor = -_top_abs(-jnp.where(filled, alpha - radius, jnp.inf))  # Gershgorin
        pad = floor - 1.0 - jnp.abs(floor)  # below every eigenvalue of the filled block
        diag = jnp.where(filled, alpha, pad)
        return _top_tridiagonal(diag, off, filled)

    def cond(c, size):
        j, *_, done, _, _, _ = c
        return (j < size) & ~jnp.all(done)

    def body(c, size):
        """Lanczos step ``j < size`` on the stage's ``size + 1``-row basis (the rows after
        ``j`` still zero)."""
        j, basis, alpha, beta, steps, done, theta, y, tail = c
        w = matvec(basis[j])
        a = _dot(w, basis[j])
        for _ in range(2):  # against the stage's size + 1 rows
            coeffs = _sum(basis * w[None], axis=1)  # (size + 1, *batch)
            w = w - _sum(coeffs[:, None] * basis)
        b = _norm(w)
        alpha, beta = alpha.at[j].set(a), beta.at[j].set(b)
        theta_j, y_j = ritz(alpha, beta, j, size)
        y_j = jnp.concatenate([y_j, jnp.zeros((iters - size, *batch), dtype)])
        tail_j = b * y_j[j]  # M u − θ u = tail · v_{j+1}
        keep = done  # runs already stopped keep their answer
        theta = jnp.where(keep, theta, theta_j)
        y = jnp.where(keep, y, y_j)
        tail = jnp.where(keep, tail, tail_j)
        steps = jnp.where(keep, steps, j + 1)
        done = keep | (jnp.abs(tail_j) <= tol * jnp.abs(theta_j))
        basis = basis.at[j + 1].set(_unit(w))
        return j + 1, basis, alpha, beta, steps, done, theta, y, tail

    zero = jnp.zeros(batch, dtype)
    init = (
        jnp.int32(0),
        basis,
        jnp.zeros((iters, *batch), dtype),
        jnp.zeros((iters, *batch), dtype),
    )
    init = (*init, jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool), zero)
    init = (*init, jnp.zeros((iters, *batch), dtype), zero)
    if iters <= UNROLL_ITERS:  # every product in line: no loop for XLA to carry state through
        c = init
        for _ in range(iters):
            c = body(c, iters)
    else:
        c = init
        for size in sizes:
            grown = jnp.zeros((size + 1 - c[1].shape[0], *v0.shape), dtype)
            c = (c[0], jnp.concatenate([c[1], grown]), *c[2:])
            c = jax.lax.while_loop(lambda c, n=size: cond(c, n), lambda c, n=size: body(c, n), c)
    _, basis, _, _, steps, _, theta, y, tail = c
    vec = _unit(_sum(y[:, None] * basis[:iters]))
    rows = jnp.arange(iters + 1).reshape(iters + 1, 1, *(1,) * len(batch))
    after = _sum(jnp.where(rows == steps, basis, 0.0))  # v_{steps}, run by run
    power = _unit(theta * vec + tail * after)  # M u / ‖M u‖, from the recurrence
    start = jnp.where(steps == 1, power, vec)
    residual = jnp.abs(tail) / jnp.where(theta != 0, jnp.abs(theta), 1.0)
    residual = jnp.where((theta == 0) & (tail != 0), jnp.inf, residual)
    return theta, vec, steps, start, residual


def _power(matvec: Callable[[Array], Array], v0: Array, iters: int, tol: float):
    """``(value, vector, steps, next_start, residual)`` of power iteration: the dominant
    (largest-|λ|) eigenpair, every run of a batch (``v0 (n, *batch)``) on its own."""
    batch = v0.shape[1:]

    def cond(c):
        j, *_, done, _ = c
        return (j < iters) & ~jnp.all(done)

    def body(c):
        j, v, lam, steps, done, miss = c
        w = matvec(v)
        lam_j = _dot(v, w)  # Rayleigh quotient of the unit v
        miss_j = _norm(w - lam_j * v)
        keep = done
        lam = jnp.where(keep, lam, lam_j)
        miss = jnp.where(keep, miss, miss_j)
        steps = jnp.where(keep, steps, j + 1)
        done = keep | (miss_j <= tol * jnp.abs(lam_j))
        v_next = jnp.where(_norm(w) > 0, _unit(w), v)
        return j + 1, jnp.where(done, v, v_next), lam, steps, done, miss

    v = _unit(v0)
    zero = jnp.zeros(batch, v0.dtype)
    init = (jnp.int32(0), v, zero, jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool), zero)
    _, v, lam, steps, done, miss = jax.lax.while_loop(cond, body, init)
    residual = miss / jnp.where(lam != 0, jnp.abs(lam), 1.0)
    # a run still going returns the power step of the vector whose Rayleigh quotient it has:
    # its residual is that of the step before (the pair's own comes with residual="product")
    return lam, v, steps, v, jnp.where((lam == 0) & (miss > 0), jnp.inf, residual)


RESIDUALS = ("product", "recurrence")
"""How :func:`top_eigenpair` gets the residual: one more product after the loop (the true
residual of what it returns), or the solver's own (free)."""


def top_eigenpair(
    matvec: Callable[[Array], Array],
    v0: Array,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
    residual: str = "product",
) -> tuple[Array, Array, Array, Array, Array]:
    """``(value, vector, residual, steps, start)`` of the symmetric linear map ``matvec``.

    ``v0`` (shape ``(n, *batch)``, nonzero per run) is the start: ``n`` the vector's length
    and ``batch`` the shape of a batch of runs, each with its own matrix (``matvec`` maps
    ``(n, *batch)`` to itself run by run; ``()`` for one run). ``iters`` (static) is the most
    products in the loop; ``tol`` the relative residual that stops a run early (the loop goes
    on until every run has stopped; a stopped run keeps its answer). ``start`` is the next
    warm start (:attr:`Eigen.start`). See the module docstring for the two ``method`` s and
    what ``residual`` means; ``residual="recurrence"`` takes Lanczos' own ``β_j |y_j| / |θ|``
    (exact in exact arithmetic, with full reorthogonalisation equal to the product's to
    rounding) instead of spending a product on it; for power iteration it is the residual of
    the last vector whose Rayleigh quotient ``value`` is.
    """
    if method not in METHODS:
        raise ValueError(f"unknown eigen method {method!r}; expected one of {METHODS}")
    if residual not in RESIDUALS:
        raise ValueError(f"unknown residual {residual!r}; expected one of {RESIDUALS}")
    if int(iters) < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    solve = _lanczos if method == "lanczos" else _power
    value, vec, steps, start, res = solve(matvec, v0, int(iters), tol)
    if residual == "product":
        miss = _norm(matvec(vec) - value * vec)
        scale = jnp.abs(value)
        res = jnp.where(miss == 0, 0.0, miss / jnp.where(scale > 0, scale, 1.0))
        res = jnp.where((scale == 0) & (miss > 0), jnp.inf, res)
    return value, vec, res, steps, start


# ---- on params pytrees -------------------------------------------------------------------------


def flatten_runs(tree: Any, batch: tuple[int, ...] = ()) -> tuple[Array, Callable[[Array], Any]]:
    """``(flat (n, *batch), unflatten)``: a pytree whose leaves end in the batch's axes
    (``(*shape, *batch)``; ``()``: one run) as one vector per run, leaf after leaf in C order
    (for one run: :func:`jax.flatten_util.ravel_pytree`'s order)."""
    leaves, treedef = jax.tree.flatten(tree)
    nb = len(batch)
    shapes = [leaf.shape[: leaf.ndim - nb] for leaf in leaves]
    sizes = [math.prod(sh) for sh in shapes]
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    flat = jnp.concatenate([leaf.reshape(-1, *batch).astype(dtype) for leaf in leaves], axis=0)

    def unflatten(v: Array) -> Any:
        parts = jnp.split(v, list(itertools.accumulate(sizes))[:-1], axis=0)
        out = [
            p.reshape(*sh, *batch).astype(leaf.dtype) for p, sh, leaf in zip(parts, shapes, leaves)
        ]
        return treedef.unflatten(out)

    return flat, unflatten


def random_direction(key: Array, params: Any, batch: tuple[int, ...] = ()) -> Any:
    """A unit Gaussian direction shaped like ``params`` (the first estimate's ``v0``); with a
    ``batch`` of runs on the leaves' trailing axes, the same direction for every run."""
    one = jax.tree.map(lambda a: a[(..., *(0,) * len(batch))] if batch else a, params)
    flat, unravel = ravel_pytree(one)
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = unravel(v / jnp.linalg.norm(v))
    return (
        jax.tree.map(
            lambda d, a: jnp.broadcast_to(d.reshape(*d.shape, *(1,) * len(batch)), a.shape),
            v,
            params,
        )
        if batch
        else v
    )


def top_hessian_eigenvalue(
    loss_fn: Callable[[Any], Array],
    params: Any,
    v0: Any,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
    residual: str = "product",
    batch: tuple[int, ...] = (),
) -> Eigen:
    """The top eigenpair of the Hessian of ``loss_fn`` at one run's ``params``.

    ``loss_fn(params) -> scalar`` is the full-batch training loss over the parameters to
    differentiate (close over frozen ones); ``v0`` a nonzero pytree like ``params`` (the
    previous estimate's :attr:`Eigen.start`, or :func:`random_direction`). Vmap over runs by
    mapping ``params`` and ``v0``, or give a ``batch`` of runs on the leaves' trailing axes
    (the lanes layout): ``loss_fn`` then returns every run's loss ``(*batch)`` and runs never
    interact, so the gradient of their sum is each run's own. Hessian-vector products come
    from :func:`jax.linearize` of ``jax.grad`` (forward over reverse: the gradient's forward
    and backward pass once, then one forward-mode pass through them per product; a loss with
    ``custom_vjp`` sums, the lanes layout's, differentiates too). On the medium workload (256
    16-64-64-1 nets, 1,024 points) a product cost 0.80x of reverse over reverse (``jax.vjp``
    of the gradient), ``benchmarks/sharpness_floor.py``.

    >>> import jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p**4) / 12  # Hessian diag(p**2)
    >>> top = top_hessian_eigenvalue(loss, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))
    >>> round(float(top.value), 3)
    4.0
    """
    grad = jax.grad(lambda q: jnp.sum(loss_fn(q)))
    _, hvp_tree = jax.linearize(grad, params)  # forward over reverse: linearised once
    flat, unflatten = flatten_runs(params, batch)

    def hvp(v: Array) -> Array:
        return flatten_runs(hvp_tree(unflatten(v)), batch)[0]

    v0_flat = flatten_runs(v0, batch)[0].astype(flat.dtype)
    value, vec, res, steps, start = top_eigenpair(
        hvp, v0_flat, iters=iters, tol=tol, method=method, residual=residual
    )
    return Eigen(value, unflatten(vec), res, steps, unflatten(start))


def ntk_top_eigenvalue(
    apply_fn: Callable[[Any, Array], Array],
    params: Any,
    x: Array,
    *,
    v0: Any | None = None,
    iters: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
) -> Eigen:
    """``λ₀``: the top eigenpair of the Gauss–Newton matrix ``JᵀJ / N`` at ``params``.

    ``apply_fn(params, x)`` gives the outputs for the ``N = x.shape[0]`` examples (any trailing
    output shape); ``J = ∂ vec(f) / ∂ params``. With the MSE loss ``1/(2N) Σₙ ‖f(xₙ) − yₙ‖²``
    this is the loss Hessian less the residual term, and ``λ₀`` equals the top eigenvalue of the
    empirical NTK ``JJᵀ / N`` (same nonzero spectrum). For a loss averaged over outputs too
    (``1/(2NK) Σ``), divide by ``K``. Plain gradient descent on that MSE is stable near a
    minimum while ``η < 2/λ``. Products ``Gv = Jᵀ(Jv) / N`` come from ``jvp`` then ``vjp``.

    ``v0`` (a pytree like ``params``) is the start; by default ``Jᵀr`` for a fixed Gaussian
    ``r`` over the outputs, a generic vector in the row space of ``J``, where every eigenvector
    with a nonzero eigenvalue lies. ``method="lanczos"`` and ``"power"`` agree here, as
    ``G`` is positive semi-definite.

    >>> import jax.numpy as jnp
    >>> u, v = jnp.ones(4), 2 * jnp.ones(4)  # f(x) = v·u x / √n, λ₀ = (|u|² + |v|²) x² / n
    >>> f = lambda p, x: (p[1] @ p[0]) * x / 2.0
    >>> round(float(ntk_top_eigenvalue(f, (u, v), jnp.ones(1)).value), 4)
    5.0
    """
    theta, unravel = ravel_pytree(params)
    n_examples = x.shape[0]
    f = lambda t: apply_fn(unravel(t), x)  # noqa: E731
    out, jvp_fn = jax.linearize(f, theta)
    vjp_fn = jax.linear_transpose(jvp_fn, theta)

    def gv(v: Array) -> Array:
        return vjp_fn(jvp_fn(v))[0] / n_examples

    if v0 is None:
        r = jax.random.normal(jax.random.key(0), out.shape, out.dtype)
        v0_flat = vjp_fn(r)[0]
    else:
        v0_flat = ravel_pytree(v0)[0].astype(theta.dtype)
    value, vec, residual, steps, start = top_eigenpair(
        gv, v0_flat, iters=iters, tol=tol, method=method
    )
    return Eigen(value, unravel(vec), residual, steps, unravel(start))


LAMBDA0_ITERS = 40
"""Most products of :func:`lambda0` (once per run, at init: a cold start, so more than a
warm-started logged estimate needs)."""
LAMBDA0_TOL = 1e-5
"""The relative residual at which :func:`lambda0` stops early."""


def lambda0(
    loss_fn: Callable[[Any], Array],
    apply_fn: Callable[[Any, Array], Array],
    params: Any,
    x: Array,
    *,
    gauss_newton: bool,
    iters: int = LAMBDA0_ITERS,
    tol: float = LAMBDA0_TOL,
) -> Eigen:
    """``λ₀``: the curvature that sets gradient descent's stable step at ``params`` (the init).

    With ``gauss_newton`` (the MSE loss ``1/(2N) Σₙ ‖f(xₙ) − yₙ‖²``) the top eigenvalue of the
    Gauss–Newton matrix ``JᵀJ / N`` (:func:`ntk_top_eigenvalue`, the empirical NTK's top
    eigenvalue over ``N``: Lewkowycz et al. 2020's λ₀); otherwise that of the loss Hessian
    (:func:`top_hessian_eigenvalue`, from ``random_direction(key(0), params)``). Gradient
    descent at ``η`` is stable near ``params`` while ``η·λ₀ < 2``.

    >>> import jax.numpy as jnp
    >>> f = lambda p, x: (p[1] @ p[0]) * x / 2.0  # the uv model, n = 4: λ₀ = (|u|² + |v|²) / 4
    >>> loss = lambda p: 0.5 * jnp.sum(f(p, jnp.ones(1)) ** 2)
    >>> top = lambda0(loss, f, (jnp.ones(4), jnp.ones(4)), jnp.ones(1), gauss_newton=True)
    >>> round(float(top.value), 4)
    2.0
    """
    if gauss_newton:
        return ntk_top_eigenvalue(apply_fn, params, x, iters=iters, tol=tol)
    v0 = random_direction(jax.random.key(0), params)
    return top_hessian_eigenvalue(loss_fn, params, v0, iters=iters, tol=tol)


# ---- the phase of a run ------------------------------------------------------------------------

PHASES = ("lazy", "catapult", "divergent")
"""Phase names; :func:`phase` returns indices into this tuple."""
LAZY, CATAPULT, DIVERGENT = range(3)

CATAPULT_PEAK_RATIO = 2.0
"""A run whose loss rises above this multiple of its initial loss (and comes back) is a
catapult. Below ``η·λ₀ = 2`` gradient descent contracts every mode, so the loss never rises
(ratio 1); just above it the unstable mode grows by ``(ηλ − 1)²`` per step until the curvature
has fallen below ``2/η`` (Lewkowycz et al. 2020), by a factor that grows with the width and
with ``η·λ₀ − 2`` (uv model, width 512: a median of 100 and more from ``η·λ₀ = 2.5`` on,
benchmarks/catapult_uv.py). 2 leaves room for the small rises of a nonlinear model in its
lazy phase; the sharpness test of :func:`phase` catches catapults with a smaller rise."""

EDGE_SLACK = 0.1
"""A converged run must end with ``η·λ_final ≤ 2·(1 + EDGE_SLACK)``: at or below the stability
edge ``2/η``, up to the ~few per cent that the edge of stability hovers above it (Cohen et al.
2021). A run still sharper than that has not settled; it counts as divergent."""


def phase(
    loss_T: Array,
    sharpness_T: Array,
    lr: Array | float,
    diverged: Array | bool,
    *,
    peak_ratio: float = CATAPULT_PEAK_RATIO,
    edge_slack: float = EDGE_SLACK,
) -> Array:
    """The phase of one gradient-descent run (Lewkowycz et al. 2020): an index into PHASES.

    - ``divergent`` (2): the ``diverged`` flag is set, or the last loss is not finite, or the
      run has not come back to its initial loss (``loss_T[-1] > loss_T[0]``), or its final
      sharpness is beyond the edge, ``η·sharpness_T[-1] > 2·(1 + edge_slack)``;
    - otherwise ``catapult`` (1) if the peak loss ratio ``max(loss_T) / loss_T[0]`` exceeds
      ``peak_ratio``, or if the sharpness fell through the edge: ``η·sharpness_T[0] > 2`` and
      ``η·sharpness_T[-1] < 2`` (with several examples the other modes' decay can hide the
      unstable mode's rise in the total loss: a two-layer ReLU net on 4 points just above
      ``η·λ₀ = 2`` never exceeds its initial loss, yet its curvature falls below ``2/η``);
    - else ``lazy`` (0).

    ``loss_T``: the loss at the logged steps, the first being the initial loss; ``sharpness_T``:
    the top Hessian eigenvalue at logged steps, the first at init and the last the final one
    (NaN: not measured, that test is skipped; a single entry is the final one, and only the
    loss can then show a catapult). With ``λ₀`` the NTK's top eigenvalue at init, the wide
    two-layer linear model is lazy for ``η·λ₀ < 2``, catapults for ``2 < η·λ₀ < 4`` and
    diverges above 4; ReLU nets diverged above ``η·λ₀ ≈ 12`` in the paper. The classification
    reads only the run (its loss and measured sharpness), not ``λ₀``.
    Pure and vmappable (map every argument over runs).

    >>> import jax.numpy as jnp
    >>> [PHASES[int(phase(jnp.array(c), jnp.array([1.0]), 1.0, False))]
    ...  for c in ([1.0, 0.5, 0.1], [1.0, 40.0, 0.1], [1.0, 9.0, 3.0])]
    ['lazy', 'catapult', 'divergent']
    """
    loss_T = jnp.asarray(loss_T)
    first, last = loss_T[0], loss_T[-1]
    sharpness_T = jnp.asarray(sharpness_T)
    edge_first, edge_last = (
        jnp.asarray(lr) * sharpness_T[0] / 2.0,
        jnp.asarray(lr) * sharpness_T[-1] / 2.0,
    )
    beyond_edge = jnp.where(jnp.isnan(edge_last), False, edge_last > 1.0 + edge_slack)
    bad = jnp.asarray(diverged) | ~jnp.isfinite(last) | ~(last <= first) | beyond_edge
    peak = jnp.max(jnp.where(jnp.isnan(loss_T), jnp.inf, loss_T)) / first
    fell = (edge_first > 1.0) & (edge_last < 1.0)  # False if either is NaN
    catapult = (peak > peak_ratio) | fell
    return jnp.where(bad, DIVERGENT, jnp.where(catapult, CATAPULT, LAZY)).astype(jnp.int32)
