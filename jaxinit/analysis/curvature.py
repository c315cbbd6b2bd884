"""Curvature at a run's endpoint: Hessian spectra and the endpoint's kind.

A run ends at a **minimum** (small gradient, no negative Hessian eigenvalue beyond the float
error of the spectrum, and it stays put under continued descent), a **saddle** (small gradient,
a negative eigenvalue), a **plateau** (small gradient and curvature, but the loss still falls
under continued descent), **escaping** (small gradient, but continued descent still lowers the
loss while the parameter norm grows: a minimum at infinity, as for cross-entropy on separable
data), somewhere **not converged** (the gradient is still large, or descent keeps moving without
either signature) or it **diverged**.

Every test uses a fresh evaluation at the endpoint, in float64 by default: the saddle test is
relative to the spectrum's scale and to the float precision of the Hessian, not an absolute
threshold, so a shallow saddle (λ_min = -1e-5 against λ_max = 1) is a saddle. The **drift
check** continues gradient descent from every candidate minimum for a fixed budget (vmapped
over runs) and keeps "minimum" only if, over the second half of that budget, the loss and the
parameters stay put. Small nets get their exact Hessian spectrum (``jax.hessian``, vmapped over
runs); larger ones the extreme eigenvalues from Lanczos on Hessian-vector products. Only
trainable parameters count (``Model.trainable``): a frozen layer is not a direction the
optimizer can move in. The top eigenvalue is the run's sharpness.

>>> import jax.numpy as jnp
>>> loss = lambda p: (p["xy"][0] ** 2 - 1) ** 2 + p["xy"][1] ** 2  # minima (±1, 0), saddle (0, 0)
>>> ends = classify(loss, {"xy": jnp.array([[1.0, 0.0], [0.0, 0.0]])}, grad_tol=1e-4)
>>> [KINDS[k] for k in ends.kind_R]
['minimum', 'saddle']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

from jaxinit.blocks.models import Model
from jaxinit.blocks.tasks import Task, loss_value

KINDS = ("minimum", "saddle", "not_converged", "diverged", "plateau", "escaping")
"""Endpoint kinds; :attr:`Endpoints.kind_R` holds indices into this tuple (new kinds are
appended, so the first four indices keep their meaning)."""
MINIMUM, SADDLE, NOT_CONVERGED, DIVERGED, PLATEAU, ESCAPING = range(6)


class Drift(NamedTuple):
    """Continued gradient descent from candidate minima (``R`` runs; NaN where not run).

    ``steps`` steps of monotone gradient descent (:func:`descend`) split in two halves; the
    ``late`` quantities are over the second half only, so the short transient onto a nearby
    minimum does not count there.
    """

    ran_R: np.ndarray  # bool: the run was a candidate minimum and was continued
    lr_R: np.ndarray  # starting step size
    loss0_R: np.ndarray  # f(θ_0), in the drift's dtype
    grad_norm_R: np.ndarray  # |∇f(θ_0)|
    loss_drop_R: np.ndarray  # f(θ_0) - f(θ_T), whole budget
    late_drop_R: np.ndarray  # f(θ_T/2) - f(θ_T)
    late_move_R: np.ndarray  # |θ_T - θ_T/2|
    late_growth_R: np.ndarray  # |θ_T| - |θ_T/2|
    norm_R: np.ndarray  # |θ_0| over trainable parameters
    steps: int


class Endpoints(NamedTuple):
    """Per-run endpoint analysis (``R`` runs)."""

    kind_R: np.ndarray  # int, index into KINDS
    loss_R: np.ndarray  # loss at the endpoint
    grad_norm_R: np.ndarray  # norm of the gradient over trainable parameters
    eig_min_R: np.ndarray  # smallest Hessian eigenvalue (NaN if diverged)
    eig_max_R: np.ndarray  # largest Hessian eigenvalue = sharpness (NaN if diverged)
    exact: bool  # True: full spectrum by jax.hessian; False: Lanczos estimates
    saddle_tol_R: np.ndarray | None = None  # saddle: eig_min_R < -saddle_tol_R
    drift: Drift | None = None  # the drift check of the candidate minima (None: not run)


def loss_function(model: Model, task: Task, dtype: str = "float32") -> Callable[[Any], Array]:
    """The full-batch training objective of one run's params (the task's exact objective if any)."""
    if task.objective is not None:
        return task.objective
    x = jnp.asarray(task.x_train, dtype)
    y = jnp.asarray(task.y_train, dtype if task.loss != "ce" else task.y_train.dtype)
    return lambda params: loss_value(task.loss, model.apply(params, x), y)


def embed(params: Any, trainable: Any | None = None) -> tuple[Array, Callable[[Array], Any]]:
    """``(theta, to_params)``: the trainable leaves of one run's ``params`` as one flat vector,
    and its inverse, which puts a vector back into the pytree with the frozen leaves
    (``trainable`` False) held at their values in ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    mask = [True] * len(leaves) if trainable is None else jax.tree.leaves(trainable)
    theta, unravel = ravel_pytree([x for x, m in zip(leaves, mask) if m])

    def to_params(theta_flat: Array) -> Any:
        it = iter(unravel(theta_flat))
        return jax.tree.unflatten(treedef, [next(it) if m else x for x, m in zip(leaves, mask)])

    return theta, to_params


def restrict(loss_fn: Callable, params: Any, trainable: Any | None = None):
    """``(theta, f)`` with ``f(theta) = loss_fn(params)`` over the trainable leaves, flattened.

    ``params`` is one run's pytree; frozen leaves (``trainable`` False) are held at their values.
    """
    theta, to_params = embed(params, trainable)
    return theta, lambda theta_flat: loss_fn(to_params(theta_flat))


def lanczos_extremes(hvp: Callable[[Array], Array], v0: Array, steps: int) -> tuple[Array, Array]:
    """Smallest and largest Ritz values of ``steps`` Lanczos iterations (full reorthogonalization).

    ``hvp(v) = H v`` for a symmetric ``H``; ``v0`` the start vector. The extremes converge first,
    so a few dozen steps suffice for the sign of the bottom eigenvalue and the sharpness.
    """
    n = v0.shape[0]
    basis = jnp.zeros((steps + 1, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros(steps, v0.dtype)
    beta = jnp.zeros(steps, v0.dtype)

    def body(j, carry):
        basis, alpha, beta = carry
        w = hvp(basis[j])
        a = w @ basis[j]
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        basis = basis.at[j + 1].set(jnp.where(b > 1e-12, w / jnp.where(b > 0, b, 1), 0.0))
        return basis, alpha.at[j].set(a), beta.at[j].set(b)

    basis, alpha, beta = jax.lax.fori_loop(0, steps, body, (basis, alpha, beta))
    off = beta[:-1]
    tri = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    eig = jnp.linalg.eigvalsh(tri)
    return eig[0], eig[-1]


def hessian_extremes(
    loss_fn: Callable,
    params_R: Any,
    trainable: Any | None = None,
    *,
    exact_max: int = 256,
    lanczos_steps: int = 40,
    batch: int = 1024,
    key: Array | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(eig_min_R, eig_max_R, exact)`` of the Hessian of ``loss_fn`` at each of ``R`` runs.

    ``params_R`` is a pytree whose leaves have a leading run axis. With at most ``exact_max``
    trainable parameters the spectrum is exact; otherwise Lanczos from a Gaussian start vector
    drawn from ``key`` (the same start for every run). Runs are processed ``batch`` at a time.
    """
    one = jax.tree.map(lambda a: a[0], params_R)
    n = restrict(loss_fn, one, trainable)[0].shape[0]
    exact = n <= exact_max
    steps = min(lanczos_steps, n)
    v0 = jax.random.normal(key if key is not None else jax.random.key(0), (n,))

    def extremes(params):
        theta, f = restrict(loss_fn, params, trainable)
        if exact:
            eig = jnp.linalg.eigvalsh(jax.hessian(f)(theta))
            return eig[0], eig[-1]

        def hvp(v):
            return jax.jvp(jax.grad(f), (theta,), (v,))[1]

        return lanczos_extremes(hvp, v0.astype(theta.dtype), steps)

    fn = jax.jit(jax.vmap(extremes))
    n_runs = jax.tree.leaves(params_R)[0].shape[0]
    lo, hi = [], []
    for start in range(0, n_runs, batch):
        part = jax.tree.map(lambda a, s=start: jnp.asarray(a[s : s + batch]), params_R)
        a, b = fn(part)
        lo.append(np.asarray(a))
        hi.append(np.asarray(b))
    return np.concatenate(lo), np.concatenate(hi), exact


def loss_and_grad_norm(
    loss_fn: Callable, params_R: Any, trainable: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and trainable-gradient norm at every run's params, ``(R,)`` each."""

    def one(params):
        theta, f = restrict(loss_fn, params, trainable)
        loss, g = jax.value_and_grad(f)(theta)
        return loss, jnp.linalg.norm(g)

    loss, gnorm = jax.jit(jax.vmap(one))(jax.tree.map(jnp.asarray, params_R))
    return np.asarray(loss), np.asarray(gnorm)


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """The context in which arrays of ``dtype`` exist: float64 needs JAX's x64 mode."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def cast_floats(params_R: Any, dtype: str) -> Any:
    """``params_R`` with every floating leaf as a NumPy array of ``dtype`` (others unchanged)."""

    def cast(a):
        a = np.asarray(a)
        return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a

    return jax.tree.map(cast, params_R)


def saddle_tolerance(
    eig_min_R: np.ndarray, eig_max_R: np.ndarray, n_params: int, dtype: str, eig_tol: float
) -> np.ndarray:
    """How negative ``λ_min`` must be to make a saddle, per run: ``τ · max(|λ_min|, |λ_max|)``
    with ``τ = max(eig_tol, 16 n eps)``.

    Relative to the spectrum's own scale (Hessian units differ between problems: an absolute
    threshold calls the shallow saddles of a flat landscape minima) and never below the float
    error of a computed spectrum, about ``n · eps · |H|`` for ``n`` parameters in ``dtype``.
    """
    scale = np.maximum(np.abs(eig_min_R), np.abs(eig_max_R))
    return max(eig_tol, 16 * n_params * float(np.finfo(dtype).eps)) * scale


def descend(
    loss_fn: Callable,
    params_R: Any,
    trainable: Any | None,
    lr_R: np.ndarray,
    steps: int,
    batch: int = 1024,
) -> dict[str, np.ndarray]:
    """``steps`` steps of monotone gradient descent from each run's params (trainable leaves
    only), vmapped over runs, ``batch`` runs per compiled call, in the dtype of ``params_R``.

    A step ``θ - η ∇f(θ)`` is taken if it does not raise the loss; otherwise it is refused and
    ``η`` halved for good (``η`` starts at ``lr_R``): the loss never rises, whatever the
    starting step. Returns ``(R,)`` arrays: ``loss0``, ``loss_half``,
    ``loss_end`` (after 0, ``steps // 2`` and ``steps`` steps), ``gnorm0``, ``norm0``,
    ``norm_half``, ``norm_end`` (norms of the gradient and of the trainable parameters) and
    ``late_move`` (``|θ_end - θ_half|``).
    """
    half = steps // 2

    def one(params, lr):
        theta0, f = restrict(loss_fn, params, trainable)
        value_and_grad = jax.value_and_grad(f)

        def body(_, carry):
            th, fth, g, eta = carry
            new = th - eta * g
            f_new, g_new = value_and_grad(new)
            ok = f_new <= fth  # False for NaN
            return (
                jnp.where(ok, new, th),
                jnp.where(ok, f_new, fth),
                jnp.where(ok, g_new, g),
                jnp.where(ok, eta, eta / 2),
            )

        f0, g0 = value_and_grad(theta0)
        start = (theta0, f0, g0, lr)
        th_half, f_half, *rest = jax.lax.fori_loop(0, half, body, start)
        th_end, f_end, *_ = jax.lax.fori_loop(0, steps - half, body, (th_half, f_half, *rest))
        norm = jnp.linalg.norm
        return {
            "loss0": f0,
            "loss_half": f_half,
            "loss_end": f_end,
            "gnorm0": norm(g0),
            "norm0": norm(theta0),
            "norm_half": norm(th_half),
            "norm_end": norm(th_end),
            "late_move": norm(th_end - th_half),
        }

    fn = jax.jit(jax.vmap(one))
    parts = []
    for start in range(0, len(lr_R), batch):
        part = jax.tree.map(lambda a, s=start: jnp.asarray(a[s : s + batch]), params_R)
        lr = jnp.asarray(lr_R[start : start + batch], jax.tree.leaves(part)[0].dtype)
        parts.append(jax.tree.map(np.asarray, fn(part, lr)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def drift_kinds(drift: Drift, flat_R: np.ndarray, drift_tol: float, eps: float) -> np.ndarray:
    """The kind of each continued run (only meaningful where ``drift.ran_R``).

    With ``x_tol = drift_tol · max(|θ_0|, 1)`` and ``f_tol = drift_tol · |f_0| +
    64 eps · max(|f_0|, 1)``, a run **stays put** (a minimum) if over the second half of the
    budget the parameters moved by at most ``x_tol`` and the loss fell by at most ``f_tol``, and
    over the whole budget the loss fell by at most ``f_tol + |∇f(θ_0)| · x_tol`` (what a
    move of ``x_tol`` along the gradient would give: the endpoint was at its minimum, not on
    the way to one). Otherwise it is **escaping** if ``|θ|`` grew by more than ``x_tol`` in the
    second half, a **plateau** if the spectrum was flat (``flat_R``), and **not converged** (a
    slow slope, an ill-conditioned minimum not reached within the budget, or a degenerate
    saddle) if neither.
    """
    x_tol = drift_tol * np.maximum(drift.norm_R, 1.0)
    f0 = np.abs(drift.loss0_R)
    f_tol = drift_tol * f0 + 64 * eps * np.maximum(f0, 1.0)
    finite = np.isfinite(drift.loss_drop_R) & np.isfinite(drift.late_move_R)
    late_still = (drift.late_move_R <= x_tol) & (np.abs(drift.late_drop_R) <= f_tol)
    still = finite & late_still & (drift.loss_drop_R <= f_tol + drift.grad_norm_R * x_tol)
    escaping = finite & ~still & (drift.late_growth_R > x_tol)
    kind = np.where(flat_R, PLATEAU, NOT_CONVERGED)
    kind = np.where(escaping, ESCAPING, kind)
    return np.where(still, MINIMUM, kind)


def drift_check(
    loss_fn: Callable,
    params_R: Any,
    trainable: Any | None,
    run_R: np.ndarray,
    lr_R: np.ndarray,
    steps: int,
    batch: int = 1024,
) -> Drift:
    """Continue descent (:func:`descend`) from the runs where ``run_R``; NaN elsewhere."""
    idx = np.flatnonzero(run_R)
    nan = np.full(len(run_R), np.nan)
    keys = ("lr", "loss0", "gnorm", "drop", "late_drop", "move", "growth", "norm")
    out = {k: nan.copy() for k in keys}
    if len(idx):
        sub = jax.tree.map(lambda a: a[idx], params_R)
        d = descend(loss_fn, sub, trainable, lr_R[idx], steps, batch)
        out["lr"][idx] = lr_R[idx]
        out["loss0"][idx] = d["loss0"]
        out["gnorm"][idx] = d["gnorm0"]
        out["drop"][idx] = d["loss0"] - d["loss_end"]
        out["late_drop"][idx] = d["loss_half"] - d["loss_end"]
        out["move"][idx] = d["late_move"]
        out["growth"][idx] = d["norm_end"] - d["norm_half"]
        out["norm"][idx] = d["norm0"]
    return Drift(np.asarray(run_R, bool), *(out[k] for k in keys), steps)


def classify(
    loss_fn: Callable,
    params_R: Any,
    trainable: Any | None = None,
    *,
    grad_tol: float = 1e-3,
    eig_tol: float = 1e-6,
    diverged_R: np.ndarray | None = None,
    dtype: str = "float64",
    drift_steps: int = 10_000,
    drift_lr: float | None = None,
    drift_tol: float = 1e-3,
    flat_tol: float = 1e-6,
    batch: int = 1024,
    **spectrum_kwargs: Any,
) -> Endpoints:
    """Label each run's endpoint (see :data:`KINDS`); ``params_R`` has a leading run axis.

    Everything is evaluated again at the endpoint in ``dtype`` (float64 by default, whatever the
    training precision). In order:

    - **diverged**: flagged by the training loop (``diverged_R``), or non-finite params or loss;
    - **not converged**: gradient norm ≥ ``grad_tol``;
    - **saddle**: ``λ_min < -τ · max(|λ_min|, |λ_max|)`` with ``τ = max(eig_tol, 16 n eps)``
      (:func:`saddle_tolerance`), unless the spectrum is flat (``max |λ| ≤ flat_tol``: its sign
      says little there and the drift check decides);
    - the rest are candidate minima. With ``drift_steps > 0`` each is continued by gradient
      descent for ``drift_steps`` steps of size ``drift_lr`` (default ``1 / max(λ_max,
      flat_tol)`` per run: the largest step that overshoots in no direction of the local
      quadratic; a step that would raise the loss is refused and halved), and stays
      a **minimum** only if over the second half of the budget the loss and parameters stay put
      (:func:`drift_kinds`, relative tolerance ``drift_tol``); otherwise it is **escaping**
      (``|θ|`` grows: a minimum at infinity), a **plateau** (flat spectrum) or **not
      converged**. ``drift_steps = 0`` skips the check (the kinds of a pure Hessian test).

    ``flat_tol`` is absolute, in the loss's units per squared parameter unit. The result holds
    the saddle threshold used per run (``saddle_tol_R``) and the drift measurements (``drift``).

    ``batch`` runs go through each compiled call; ``spectrum_kwargs`` go to
    :func:`hessian_extremes` (``exact_max``, ``lanczos_steps``, ``key``).
    """
    finite_R = np.all(
        np.stack(
            [
                np.isfinite(np.asarray(x)).reshape(len(x), -1).all(1)
                for x in jax.tree.leaves(params_R)
            ]
        ),
        0,
    )
    safe = jax.tree.map(
        lambda a: np.where(finite_R.reshape((-1,) + (1,) * (a.ndim - 1)), a, 0), params_R
    )
    with precision(dtype):
        safe = cast_floats(safe, dtype)
        loss, gnorm = loss_and_grad_norm(loss_fn, safe, trainable)
        lo, hi, exact = hessian_extremes(loss_fn, safe, trainable, batch=batch, **spectrum_kwargs)
        one = jax.tree.map(lambda a: a[0], safe)
        n_params = int(restrict(loss_fn, one, trainable)[0].shape[0])
        bad = ~finite_R | ~np.isfinite(loss)
        if diverged_R is not None:
            bad |= np.asarray(diverged_R, bool)
        tol = saddle_tolerance(lo, hi, n_params, dtype, eig_tol)
        flat = np.maximum(np.abs(lo), np.abs(hi)) <= flat_tol
        saddle = ~flat & (lo < -tol)
        kind = np.where(saddle, SADDLE, MINIMUM)
        kind = np.where(gnorm >= grad_tol, NOT_CONVERGED, kind)
        kind = np.where(bad, DIVERGED, kind)
        drift = None
        if drift_steps > 0:
            lr = 1.0 / np.maximum(hi, flat_tol) if drift_lr is None else np.full(len(hi), drift_lr)
            drift = drift_check(loss_fn, safe, trainable, kind == MINIMUM, lr, drift_steps, batch)
            moved = drift_kinds(drift, flat, drift_tol, float(np.finfo(dtype).eps))
            kind = np.where(drift.ran_R, moved, kind)
    nan = np.where(bad, np.nan, 1.0)
    return Endpoints(kind, loss * nan, gnorm * nan, lo * nan, hi * nan, exact, tol * nan, drift)
