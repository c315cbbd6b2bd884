"""Curvature at a run's endpoint: Hessian spectra and the endpoint's kind.

A run ends at a **minimum** (small gradient, no significantly negative Hessian eigenvalue), a
**saddle** (small gradient, a negative eigenvalue), somewhere **not converged** (a plateau or a
slow slope: the gradient is still large) or it **diverged**. Small nets get their exact Hessian
spectrum (``jax.hessian``, vmapped over runs); larger ones the extreme eigenvalues from Lanczos
on Hessian-vector products. Only trainable parameters count (``Model.trainable``): a frozen
layer is not a direction the optimizer can move in. The top eigenvalue is the run's sharpness.

>>> import jax.numpy as jnp
>>> loss = lambda p: (p["xy"][0] ** 2 - 1) ** 2 + p["xy"][1] ** 2  # minima (±1, 0), saddle (0, 0)
>>> ends = classify(loss, {"xy": jnp.array([[1.0, 0.0], [0.0, 0.0]])}, grad_tol=1e-4)
>>> [KINDS[k] for k in ends.kind_R]
['minimum', 'saddle']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

from jaxinit.models import Model
from jaxinit.tasks import Task, loss_value

KINDS = ("minimum", "saddle", "not_converged", "diverged")
"""Endpoint kinds; :attr:`Endpoints.kind_R` holds indices into this tuple."""
MINIMUM, SADDLE, NOT_CONVERGED, DIVERGED = range(4)


class Endpoints(NamedTuple):
    """Per-run endpoint analysis (``R`` runs)."""

    kind_R: np.ndarray  # int, index into KINDS
    loss_R: np.ndarray  # loss at the endpoint
    grad_norm_R: np.ndarray  # norm of the gradient over trainable parameters
    eig_min_R: np.ndarray  # smallest Hessian eigenvalue (NaN if diverged)
    eig_max_R: np.ndarray  # largest Hessian eigenvalue = sharpness (NaN if diverged)
    exact: bool  # True: full spectrum by jax.hessian; False: Lanczos estimates


def loss_function(model: Model, task: Task, dtype: str = "float32") -> Callable[[Any], Array]:
    """The full-batch training objective of one run's params (the task's exact objective if any)."""
    if task.objective is not None:
        return task.objective
    x = jnp.asarray(task.x_train, dtype)
    y = jnp.asarray(task.y_train, dtype if task.loss != "ce" else task.y_train.dtype)
    return lambda params: loss_value(task.loss, model.apply(params, x), y)


def restrict(loss_fn: Callable, params: Any, trainable: Any | None = None):
    """``(theta, f)`` with ``f(theta) = loss_fn(params)`` over the trainable leaves, flattened.

    ``params`` is one run's pytree; frozen leaves (``trainable`` False) are held at their values.
    """
    leaves, treedef = jax.tree.flatten(params)
    mask = [True] * len(leaves) if trainable is None else jax.tree.leaves(trainable)
    theta, unravel = ravel_pytree([x for x, m in zip(leaves, mask) if m])

    def f(theta_flat: Array) -> Array:
        it = iter(unravel(theta_flat))
        return loss_fn(
            jax.tree.unflatten(treedef, [next(it) if m else x for x, m in zip(leaves, mask)])
        )

    return theta, f


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


def classify(
    loss_fn: Callable,
    params_R: Any,
    trainable: Any | None = None,
    *,
    grad_tol: float = 1e-3,
    eig_tol: float = 1e-3,
    diverged_R: np.ndarray | None = None,
    **spectrum_kwargs: Any,
) -> Endpoints:
    """Label each run's endpoint (see :data:`KINDS`).

    Not converged: gradient norm ≥ ``grad_tol``. Saddle: ``λ_min < -eig_tol · max(1, λ_max)``
    (relative, since the Hessian scale varies between problems). Diverged: flagged by the
    training loop (``diverged_R``) or non-finite params or loss.
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
    loss, gnorm = loss_and_grad_norm(loss_fn, safe, trainable)
    lo, hi, exact = hessian_extremes(loss_fn, safe, trainable, **spectrum_kwargs)
    bad = ~finite_R | ~np.isfinite(loss)
    if diverged_R is not None:
        bad |= np.asarray(diverged_R, bool)
    kind = np.where(lo < -eig_tol * np.maximum(1.0, np.abs(hi)), SADDLE, MINIMUM)
    kind = np.where(gnorm >= grad_tol, NOT_CONVERGED, kind)
    kind = np.where(bad, DIVERGED, kind)
    nan = np.where(bad, np.nan, 1.0)
    return Endpoints(kind, loss * nan, gnorm * nan, lo * nan, hi * nan, exact)
