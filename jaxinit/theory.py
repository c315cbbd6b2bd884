"""Analytic references that measured runs are compared against (NumPy/SciPy, on the host).

* :func:`min_l2_interpolant` / :func:`min_l1_interpolant`: the two classic interpolating solutions
  of an underdetermined ``X β = y`` (pseudo-inverse; linear program).
* :func:`diag_linear_limit`: where gradient flow on the diagonal linear network
  ``β = u⊙u − v⊙v`` from ``u(0) = v(0) = α·1`` ends (Woodworth et al. 2020), which moves from the
  min-ℓ1 to the min-ℓ2 interpolant as α grows.
* :func:`least_squares` / :func:`logistic_optimum`: the unique optima of the convex controls.
* :func:`relative_distance`: ``‖a − b‖ / ‖b‖``.

>>> import numpy as np
>>> x = np.array([[1.0, 1.0]]); y = np.array([2.0])
>>> min_l2_interpolant(x, y).round(3).tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog, minimize, root


def _flat(y) -> np.ndarray:
    return np.asarray(y, np.float64).reshape(-1)


def min_l2_interpolant(x_NxD, y) -> np.ndarray:
    """``argmin ‖β‖₂ s.t. Xβ = y`` (the pseudo-inverse solution), shape ``(D,)``."""
    return np.linalg.pinv(np.asarray(x_NxD, np.float64)) @ _flat(y)


def min_l1_interpolant(x_NxD, y) -> np.ndarray:
    """``argmin ‖β‖₁ s.t. Xβ = y`` as a linear program in ``β = p − q``, ``p, q ≥ 0``; ``(D,)``."""
    x = np.asarray(x_NxD, np.float64)
    d = x.shape[1]
    res = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=_flat(y), bounds=(0, None))
    if not res.success:
        raise ValueError(f"min-l1 linear program failed: {res.message}")
    return res.x[:d] - res.x[d:]


def diag_linear_limit(x_NxD, y, alpha: float) -> np.ndarray:
    """The interpolant gradient flow reaches on ``β = u⊙u − v⊙v`` from ``u = v = α·1``.

    Along the flow ``β(t) = 2α² sinh(Xᵀν(t))`` for some ``ν ∈ ℝᴺ`` (``u``, ``v`` evolve by
    exponentials of the integrated residual), so the limit is the ``β`` of that form with
    ``Xβ = y``; ``ν`` solves ``N`` equations (equivalently, ``β`` minimizes Woodworth et al.'s
    potential ``Q_α`` over the interpolants).
    """
    x, y = np.asarray(x_NxD, np.float64), _flat(y)
    a2 = 2.0 * alpha**2
    # ν minimizes the convex dual Σ_i a2·cosh((Xᵀν)_i) − yᵀν, whose gradient is Xβ(ν) − y.
    dual = minimize(
        lambda nu: a2 * np.sum(np.cosh(x.T @ nu)) - y @ nu,
        np.zeros(len(y)),
        jac=lambda nu: x @ (a2 * np.sinh(x.T @ nu)) - y,
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10_000},
    )
    sol = root(lambda nu: x @ (a2 * np.sinh(x.T @ nu)) - y, dual.x, method="hybr")
    return a2 * np.sinh(x.T @ sol.x)


def least_squares(x_NxD, y) -> np.ndarray:
    """``argmin ‖Xβ − y‖²`` (minimum-norm if not unique), shape ``(D,)``."""
    return np.linalg.lstsq(np.asarray(x_NxD, np.float64), _flat(y), rcond=None)[0]


def logistic_optimum(x_NxD, y, *, bias: bool = True) -> tuple[np.ndarray, float]:
    """Minimizer ``(w, b)`` of the mean logistic loss (labels in {0, 1}) and its loss value."""
    x, y = np.asarray(x_NxD, np.float64), _flat(y)
    xb = np.hstack([x, np.ones((len(x), 1))]) if bias else x

    def f(w):
        z = xb @ w
        return np.mean(np.logaddexp(0.0, z) - y * z), xb.T @ (1 / (1 + np.exp(-z)) - y) / len(y)

    res = minimize(f, np.zeros(xb.shape[1]), jac=True, method="BFGS", options={"gtol": 1e-10})
    return res.x, float(res.fun)


def relative_distance(a, b) -> np.ndarray:
    """``‖a − b‖ / ‖b‖`` over the last axis (``a`` may carry leading run axes)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b)
