"""Sharpness: the top eigenvalue of a run's loss Hessian and of its NTK, and the run's phase.

Pure, vmappable functions of one run's ``params`` pytree, for the catapult (Lewkowycz et al.
2020), the edge of stability (Cohen et al. 2021) and learning rates in units of the curvature.

- :func:`top_hessian_eigenvalue`: the **largest algebraic** eigenvalue of ``∇²loss(params)``
  from Hessian-vector products (``jax.jvp`` of ``jax.grad``), never a materialised Hessian.
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
inside one ``lax.while_loop`` that stops early once the relative residual is below ``tol``.
Under ``vmap`` the loop runs until every run has stopped, and a stopped run's state is held
(JAX's batching of ``while_loop`` selects it), so one run's answer does not depend on its
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

**Warm start.** Both take a start vector ``v0``: pass the previous block's ``vector`` and a
slowly moving top eigenvector is found in a few products (``random_direction`` draws the first).

**Residual.** ``residual = ‖Mv − λv‖ / ‖λv‖`` is computed with one more product after the loop,
so it is the true residual of what is returned, not the solver's own estimate. An eigenvalue
is accurate to about ``residual² · |λ| / gap`` (for a symmetric matrix), so ``1e-4`` on the
residual is far below ``1e-4`` on the value; a residual above ``tol`` means ``iters`` was too
few: the value is then a lower bound (Lanczos: the Ritz value never exceeds the top eigenvalue).

>>> import jax.numpy as jnp
>>> loss = lambda p: 0.5 * (3.0 * p["a"] ** 2 + p["b"] @ p["b"])  # Hessian diag(3, 1, 1)
>>> params = {"a": jnp.array(0.0), "b": jnp.zeros(2)}
>>> top = top_hessian_eigenvalue(loss, params, {"a": jnp.array(1.0), "b": jnp.ones(2)})
>>> round(float(top.value), 4), bool(top.residual < 1e-4)
(3.0, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import eigh_tridiagonal

METHODS = ("lanczos", "power")
"""Solvers of :func:`top_eigenpair`."""


class Eigen(NamedTuple):
    """The top eigenpair of one run's symmetric matrix (Hessian or Gauss–Newton)."""

    value: Array  # shape=(), the eigenvalue estimate
    vector: Any  # unit vector (over all leaves), a pytree like the params: the next v0
    residual: Array  # shape=(), ‖Mv − λv‖ / ‖λv‖, from one product after the loop
    steps: Array  # shape=(), int32: products spent in the loop (≤ iters)


# ---- solvers on flat vectors -------------------------------------------------------------------


def _solve_tridiagonal(diag: Array, off: Array, rhs: Array) -> Array:
    """``x`` with ``A x = rhs`` for the symmetric tridiagonal ``A`` (``diag (k,)``, ``off (k-1,)``)
    by the Thomas algorithm: no pivoting, stable for a definite ``A``. Elementwise ops only,
    unrolled over ``k`` (small: the Lanczos steps), so it batches well under ``vmap``."""
    k = diag.shape[0]
    c, g = [], []
    for i in range(k):
        sub = off[i - 1] if i > 0 else 0.0
        m = diag[i] - (sub * c[-1] if i > 0 else 0.0)
        c.append(off[i] / m if i < k - 1 else 0.0)
        g.append((rhs[i] - (sub * g[-1] if i > 0 else 0.0)) / m)
    x = [g[-1]]
    for i in range(k - 2, -1, -1):
        x.append(g[i] - c[i] * x[-1])
    return jnp.stack(x[::-1])


def _top_tridiagonal(diag: Array, off: Array, filled: Array) -> tuple[Array, Array]:
    """Top eigenpair ``(θ, y)`` of a symmetric tridiagonal matrix whose rows outside ``filled``
    are decoupled and below the rest (the unfilled Lanczos steps). ``θ`` by bisection
    (:func:`jax.scipy.linalg.eigh_tridiagonal`), ``y`` by two steps of inverse iteration with
    the shift ``θ + δ`` just above it (``δ = 100·eps·‖T‖``, above the bisection's error), where
    ``δ·I + θ·I − T`` is positive definite: two ``O(k)`` solves instead of an ``O(k³)`` dense
    ``eigh``, which batched over runs dominated the cost (1024 runs, k = 20: 30 ms against 1 ms)."""
    k = diag.shape[0]
    top = (k - 1, k - 1)  # the largest eigenvalue only
    theta = eigh_tridiagonal(diag, off, eigvals_only=True, select="i", select_range=top)[0]
    size = jnp.max(jnp.abs(jnp.where(filled, diag, 0.0))) + 2 * jnp.max(jnp.abs(off), initial=0)
    delta = 100 * jnp.finfo(diag.dtype).eps * jnp.where(size > 0, size, 1.0)
    shifted = theta + delta - diag  # the diagonal of (θ + δ)·I − T
    y = filled.astype(diag.dtype)
    for _ in range(2):
        y = jnp.where(filled, _solve_tridiagonal(shifted, -off, y), 0.0)
        y = y / jnp.linalg.norm(y)
    return theta, y


def _lanczos(matvec: Callable[[Array], Array], v0: Array, iters: int, tol: float):
    """``(value, vector, steps)`` of the top Ritz pair after at most ``iters`` Lanczos steps.

    Full reorthogonalisation (twice, Kahan–Parlett). Stops when the Ritz residual
    ``β_j |y_j|`` (exact in exact arithmetic) is at most ``tol · |θ|``; an invariant subspace
    (``β_j = 0``) stops it with that residual 0.
    """
    n, dtype = v0.shape[0], v0.dtype
    k = jnp.arange(iters)
    basis = jnp.zeros((iters + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))

    def ritz(alpha, beta, j):
        """Top eigenpair of the leading (j+1)x(j+1) block of T; unfilled rows padded below it."""
        filled = k <= j
        off = jnp.where(k < j, beta, 0.0)[:-1]
        radius = jnp.abs(jnp.pad(off, (1, 0))) + jnp.abs(jnp.pad(off, (0, 1)))
        floor = jnp.min(jnp.where(filled, alpha - radius, jnp.inf))  # Gershgorin
        pad = floor - 1.0 - jnp.abs(floor)  # below every eigenvalue of the filled block
        diag = jnp.where(filled, alpha, pad)
        return _top_tridiagonal(diag, off, filled)

    def cond(c):
        j, _, _, _, done, _, _ = c
        return (j < iters) & ~done

    def body(c):
        j, basis, alpha, beta, _, _, _ = c
        w = matvec(basis[j])
        a = w @ basis[j]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        alpha, beta = alpha.at[j].set(a), beta.at[j].set(b)
        theta, y = ritz(alpha, beta, j)
        done = b * jnp.abs(y[j]) <= tol * jnp.abs(theta)
        safe = jnp.where(b > 0, b, 1.0)
        basis = basis.at[j + 1].set(jnp.where(b > 0, w / safe, 0.0))
        return j + 1, basis, alpha, beta, done, theta, y

    zero = jnp.zeros((), dtype)
    init = (jnp.int32(0), basis, jnp.zeros(iters, dtype), jnp.zeros(iters, dtype))
    init = (*init, jnp.bool_(False), zero, jnp.zeros(iters, dtype))
    steps, basis, _, _, _, theta, y = jax.lax.while_loop(cond, body, init)
    vec = basis[:iters].T @ y
    return theta, vec / jnp.linalg.norm(vec), steps


def _power(matvec: Callable[[Array], Array], v0: Array, iters: int, tol: float):
    """``(value, vector, steps)`` of power iteration: the dominant (largest-|λ|) eigenpair."""

    def cond(c):
        j, _, _, done = c
        return (j < iters) & ~done

    def body(c):
        j, v, _, _ = c
        w = matvec(v)
        lam = v @ w  # Rayleigh quotient of the unit v
        done = jnp.linalg.norm(w - lam * v) <= tol * jnp.abs(lam)
        norm = jnp.linalg.norm(w)
        v_next = jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1.0), v)
        return j + 1, jnp.where(done, v, v_next), lam, done

    v = v0 / jnp.linalg.norm(v0)
    init = (jnp.int32(0), v, jnp.zeros((), v0.dtype), jnp.bool_(False))
    steps, v, lam, _ = jax.lax.while_loop(cond, body, init)
    return lam, v, steps


def top_eigenpair(
    matvec: Callable[[Array], Array],
    v0: Array,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
) -> tuple[Array, Array, Array, Array]:
    """``(value, vector, residual, steps)`` of the symmetric linear map ``matvec`` on flat vectors.

    ``v0`` (shape ``(n,)``, nonzero) is the start; ``iters`` (static) the most products in the
    loop; ``tol`` the relative residual that stops it early. See the module docstring for the
    two ``method`` s and what ``residual`` means.
    """
    if method not in METHODS:
        raise ValueError(f"unknown eigen method {method!r}; expected one of {METHODS}")
    if int(iters) < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    solve = _lanczos if method == "lanczos" else _power
    value, vec, steps = solve(matvec, v0, int(iters), tol)
    miss = jnp.linalg.norm(matvec(vec) - value * vec)
    scale = jnp.abs(value)
    residual = jnp.where(miss == 0, 0.0, miss / jnp.where(scale > 0, scale, 1.0))
    residual = jnp.where((scale == 0) & (miss > 0), jnp.inf, residual)
    return value, vec, residual, steps


# ---- on params pytrees -------------------------------------------------------------------------


def random_direction(key: Array, params: Any) -> Any:
    """A unit Gaussian direction shaped like ``params`` (the first block's ``v0``)."""
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(key, flat.shape, flat.dtype)
    return unravel(v / jnp.linalg.norm(v))


def top_hessian_eigenvalue(
    loss_fn: Callable[[Any], Array],
    params: Any,
    v0: Any,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
) -> Eigen:
    """The top eigenpair of the Hessian of ``loss_fn`` at one run's ``params``.

    ``loss_fn(params) -> scalar`` is the full-batch training loss over the parameters to
    differentiate (close over frozen ones); ``v0`` a nonzero pytree like ``params`` (the
    previous block's ``Eigen.vector``, or :func:`random_direction`). Vmap over runs by mapping
    ``params`` and ``v0``.

    >>> import jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p**4) / 12  # Hessian diag(p**2)
    >>> top = top_hessian_eigenvalue(loss, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))
    >>> round(float(top.value), 3)
    4.0
    """
    theta, unravel = ravel_pytree(params)
    flat_loss = lambda t: loss_fn(unravel(t))  # noqa: E731
    grad = jax.grad(flat_loss)

    def hvp(v: Array) -> Array:
        return jax.jvp(grad, (theta,), (v,))[1]

    v0_flat = ravel_pytree(v0)[0].astype(theta.dtype)
    value, vec, residual, steps = top_eigenpair(hvp, v0_flat, iters=iters, tol=tol, method=method)
    return Eigen(value, unravel(vec), residual, steps)


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
    value, vec, residual, steps = top_eigenpair(gv, v0_flat, iters=iters, tol=tol, method=method)
    return Eigen(value, unravel(vec), residual, steps)


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
