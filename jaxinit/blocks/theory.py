"""Analytic references that measured runs are compared against (NumPy/SciPy, on the host).

* :func:`min_l2_interpolant` / :func:`min_l1_interpolant`: the two classic interpolating solutions
  of an underdetermined ``X β = y`` (pseudo-inverse; linear program).
* :func:`diag_linear_limit`: where gradient flow on the diagonal linear network
  ``β = u⊙u − v⊙v`` from ``u(0) = v(0) = α·1`` ends (Woodworth et al. 2020), which moves from the
  min-ℓ1 to the min-ℓ2 interpolant as α grows.
* :func:`least_squares` / :func:`logistic_optimum`: the unique optima of the convex controls.
* :func:`relative_distance`: ``‖a − b‖ / ‖b‖``.

Mean-field signal propagation through deep random nets (Poole et al. 2016, Schoenholz et al. 2017,
Pennington, Schoenholz & Ganguli 2017). A net has pre-activations ``h^{l+1} = W^{l+1} φ(h^l) +
b^{l+1}`` with ``W_ij ~ N(0, σ_w²/N)`` and ``b_i ~ N(0, σ_b²)``; in the wide limit the pre-activation
Gram matrix of a batch of inputs follows a deterministic map. Every expectation over Gaussians is
computed by composite Gauss–Legendre quadrature (no sampling noise), for any activation of
:data:`jaxinit.blocks.activations.ACTIVATIONS` (its host-side ``phi`` and ``dphi``).

* :func:`length_map` / :func:`fixed_point_q`: ``q ↦ σ_w² E φ(√q z)² + σ_b²`` and its fixed point
  ``q*``; :func:`correlation_map` / :func:`fixed_point_c`; :func:`gram_map` / :func:`gram_curve`
  (the whole per-layer Gram matrix, to set beside measured nets).
* :func:`chi1` (slope of the correlation map at ``c = 1``, also the per-layer growth of squared
  gradient norms), :func:`depth_scales` (``ξ_q``, ``ξ_c``, phase), :func:`trainable_depth`
  (``6 ξ_c``), :func:`gradient_growth`.
* :func:`critical_sigma_w2` / :func:`critical_scale` (the order-to-chaos line ``χ₁ = 1``),
  :func:`scheme_sigma_w2` / :func:`scheme_table` (where LeCun / Glorot / He / orthogonal sit).
* :func:`jacobian_moments`: mean and variance of the squared singular values of the input-output
  Jacobian at init (dynamical isometry), Gaussian or orthogonal weights.

>>> round(chi1("relu", 2.0, 0.0), 12), round(critical_sigma_w2("tanh", 0.0), 6)
(1.0, 1.0)

>>> import numpy as np
>>> x = np.array([[1.0, 1.0]]); y = np.array([2.0])
>>> min_l2_interpolant(x, y).round(3).tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq, linprog, minimize, root

from jaxinit.blocks.activations import get_activation


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


# -- Mean-field signal propagation ------------------------------------------------------------


PHASE_TOL = 1e-9
"""``|χ₁ − 1|`` below this counts as critical."""

_Q_MIN, _Q_MAX = 1e-12, 1e12  # q* = 0 or ∞ is evaluated at these (their limits, to ~1e-6)
_T_MAX = 10.0  # quadrature covers ±10 standard deviations (the tail beyond is < 1e-22)
_GAUSS_BREAKS = np.linspace(-_T_MAX, _T_MAX, 21)  # panels in units of the Gaussian's std
_FEATURE_BREAKS = np.linspace(-8.0, 8.0, 17)  # panels where activations bend (pre-activation units)
_GL_T, _GL_W = np.polynomial.legendre.leggauss(12)


def _rule(m, b, extra=()) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``x`` and weights ``w`` (shapes ``(*S, K)``) with ``Σ w g(x) ≈ E g(m + b z)``.

    ``z ~ N(0, 1)``; ``m``, ``b ≥ 0`` broadcast to ``S``. Composite 12-point Gauss–Legendre on
    panels that are both a fixed grid in ``z`` and a fixed grid in ``x`` around 0 (where every
    activation bends, and where ReLU has its kink), so the rule stays accurate whether the
    Gaussian is much wider or much narrower than the activation's features. ``extra``: more
    breakpoints in ``x``.
    """
    m, b = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(b, np.float64))
    feat = np.concatenate([_FEATURE_BREAKS, np.asarray(extra, np.float64).reshape(-1)])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_feat = (feat - m[..., None]) / b[..., None]
    t_feat = np.clip(np.nan_to_num(t_feat, nan=0.0), -_T_MAX, _T_MAX)
    t_gauss = np.broadcast_to(_GAUSS_BREAKS, (*m.shape, len(_GAUSS_BREAKS)))
    br = np.sort(np.concatenate([t_gauss, t_feat], -1), -1)
    mid, half = (br[..., 1:] + br[..., :-1]) / 2, (br[..., 1:] - br[..., :-1]) / 2
    t = mid[..., None] + half[..., None] * _GL_T
    w = half[..., None] * _GL_W * np.exp(-(t**2) / 2) / math.sqrt(2 * math.pi)
    t, w = t.reshape(*m.shape, -1), w.reshape(*m.shape, -1)
    return m[..., None] + b[..., None] * t, w


def _q_eval(q):
    return np.clip(np.asarray(q, np.float64), _Q_MIN, _Q_MAX)


def gauss_mean(f: Callable[[np.ndarray], np.ndarray], q) -> np.ndarray:
    """``E f(u)`` for ``u ~ N(0, q)`` by quadrature; ``q`` may be an array (result: its shape)."""
    x, w = _rule(0.0, np.sqrt(np.asarray(q, np.float64)))
    return np.sum(w * f(x), -1)


def gauss_mean2(
    f: Callable[[np.ndarray], np.ndarray],
    g: Callable[[np.ndarray], np.ndarray],
    q1: float,
    q2: float,
    c: float,
) -> float:
    """``E f(u₁) g(u₂)`` for ``(u₁, u₂)`` Gaussian, variances ``q1``, ``q2``, correlation ``c``.

    Nested rule: ``u₁ = √q1 z₁``, ``u₂ = √q2 (c z₁ + √(1 − c²) z₂)``; the inner rule is placed
    per outer node, so ``c → 1`` stays accurate. ``q1 > 0``.
    """
    c = float(np.clip(c, -1.0, 1.0))
    s = math.sqrt(max(1.0 - c * c, 0.0))
    # The inner mean E[g(u₂) | z₁] bends where u₂'s mean crosses g's kink at 0 on the scale of
    # its std: at z₁ = k·s/|c|. Outer breakpoints there keep c → ±1 accurate.
    extra = (
        math.sqrt(q1)
        * s
        / max(abs(c), 1e-300)
        * np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, -0.25, -0.5, -1, -2, -3, -4, -6, -8])
    )
    u1, w1 = _rule(0.0, math.sqrt(q1), extra)
    z1 = u1 / math.sqrt(q1)
    u2, w2 = _rule(math.sqrt(q2) * c * z1, math.sqrt(q2) * s)
    return float(np.sum(w1 * f(u1) * np.sum(w2 * g(u2), -1)))


def length_map(activation: str, q, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """The next layer's pre-activation variance ``σ_w² E φ(√q z)² + σ_b²`` (Poole et al. eq. 3).

    ``q`` is the variance of one layer's pre-activations (per unit); vectorized over ``q``.
    """
    phi = get_activation(activation).phi
    return sigma_w2 * gauss_mean(lambda x: phi(x) ** 2, q) + sigma_b2


def fixed_point_q(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """``q*``: where the length map leads from ``q^1 = q0`` (it is increasing, so ``q^l`` is
    monotone and converges to the nearest fixed point in its direction, or to ``∞``).

    Returns ``0.0`` when the variance dies out (e.g. tanh, ``σ_b = 0``, ``σ_w² ≤ 1``) and
    ``inf`` when it grows without bound (e.g. ReLU, ``σ_w² > 2``). ``q*`` is unique for bounded
    activations with ``σ_b > 0``, so ``q0`` only matters in the degenerate cases.
    """
    if not (sigma_w2 >= 0 and sigma_b2 >= 0 and q0 > 0):
        raise ValueError(
            f"need sigma_w2 >= 0, sigma_b2 >= 0, q0 > 0; got {sigma_w2=}, {sigma_b2=}, {q0=}"
        )
    phi = get_activation(activation).phi
    gap = lambda q: float(length_map(activation, q, sigma_w2, sigma_b2)) - q
    g0 = gap(q0)
    if g0 == 0.0:
        return float(q0)
    if g0 > 0:  # grows: find the first fixed point above q0, if any
        lo, hi = q0, 2.0 * q0
        while gap(hi) > 0:
            if hi > _Q_MAX:
                return math.inf
            lo, hi = hi, 2.0 * hi
    else:  # shrinks: the largest fixed point below q0, or 0
        lo, hi = q0 / 2.0, q0
        while gap(lo) < 0:
            if lo < _Q_MIN:
                at_zero = sigma_w2 * float(phi(np.zeros(()))) ** 2 + sigma_b2
                if at_zero <= 0.0:
                    return 0.0
                lo = 0.0
                break
            lo, hi = lo / 2.0, lo
    return float(brentq(gap, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500))


def chi1(activation: str, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """``χ₁ = σ_w² E φ'(√q* z)²``: the slope of the correlation map at ``c = 1`` and the factor
    by which the squared gradient norm grows per layer going backwards (Schoenholz et al. §3, §5).

    ``χ₁ < 1``: ordered (inputs converge, gradients vanish); ``> 1``: chaotic (inputs decorrelate,
    gradients explode); ``= 1``: the critical line. ``q`` defaults to ``q*``; at ``q* ∈ {0, ∞}``
    the limit is used (for ReLU ``χ₁ = σ_w²/2`` at any ``q``).
    """
    q = fixed_point_q(activation, sigma_w2, sigma_b2) if q is None else q
    dphi = get_activation(activation).dphi
    return float(sigma_w2 * gauss_mean(lambda x: dphi(x) ** 2, _q_eval(q)))


def chi_q(activation: str, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """Slope of the length map at ``q*``: ``χ₁ + σ_w² E φ''φ`` (Schoenholz et al. eq. 6), computed
    as ``σ_w² E[φ(u) φ'(u) u] / q`` (Stein's lemma; no ``φ''`` needed, so ReLU is fine)."""
    q = fixed_point_q(activation, sigma_w2, sigma_b2) if q is None else q
    act, qe = get_activation(activation), float(_q_eval(q))
    return float(sigma_w2 * gauss_mean(lambda x: act.phi(x) * act.dphi(x) * x, qe) / qe)


def correlation_map(
    activation: str, c: float, sigma_w2: float, sigma_b2: float, q: float | None = None
) -> float:
    """The next layer's correlation of two inputs that have variance ``q`` and correlation ``c``:
    ``(σ_w² E φ(u₁)φ(u₂) + σ_b²) / q'`` with ``q'`` the length map of ``q`` (Poole et al. eq. 5;
    at ``q = q*``, the default, ``q' = q*``). ``C(1) = 1`` always."""
    q = fixed_point_q(activation, sigma_w2, sigma_b2) if q is None else q
    phi, qe = get_activation(activation).phi, float(_q_eval(q))
    q_next = float(length_map(activation, qe, sigma_w2, sigma_b2))
    return (sigma_w2 * gauss_mean2(phi, phi, qe, qe, c) + sigma_b2) / q_next


def fixed_point_c(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """``c*``: 1 in the ordered phase and on the critical line; below 1 in the chaotic phase
    (the stable fixed point of :func:`correlation_map` in ``[0, 1)``)."""
    q = fixed_point_q(activation, sigma_w2, sigma_b2)
    if chi1(activation, sigma_w2, sigma_b2, q) <= 1.0 + PHASE_TOL:
        return 1.0
    gap = lambda c: correlation_map(activation, c, sigma_w2, sigma_b2, q) - c
    if gap(0.0) <= 0.0:
        return 0.0
    eps = 0.1
    while gap(1.0 - eps) >= 0.0:
        eps /= 4.0
        if eps < 1e-12:
            return 1.0
    return float(brentq(gap, 0.0, 1.0 - eps, xtol=1e-13, rtol=1e-13))


def _depth_scale(chi: float) -> float:
    """``1 / |log χ|``: layers over which a deviation from the fixed point shrinks by ``e``."""
    return math.inf if abs(chi - 1.0) <= PHASE_TOL else 1.0 / abs(math.log(chi))


class DepthScales(NamedTuple):
    """Everything mean-field theory says about one ``(activation, σ_w², σ_b²)``."""

    q_star: float  # fixed point of the pre-activation variance
    c_star: float  # fixed point of the correlation of two inputs
    chi1: float  # slope of the correlation map at c = 1 (per-layer growth of |gradient|²)
    chi_q: float  # slope of the length map at q*
    chi_c: float  # slope of the correlation map at c*
    xi_q: float  # depth scale of the length: |q^l − q*| ~ exp(−l / ξ_q)
    xi_c: float  # depth scale of the correlation: |c^l − c*| ~ exp(−l / ξ_c)
    phase: str  # "ordered" (χ₁ < 1), "critical", "chaotic" (χ₁ > 1)


def depth_scales(activation: str, sigma_w2: float, sigma_b2: float) -> DepthScales:
    """``q*``, ``c*``, ``χ₁``, ``χ_q``, ``χ_c``, ``ξ_q = −1/log χ_q``, ``ξ_c = −1/log χ_c`` and the
    phase (Schoenholz et al. 2017, eqs. 6 and 9). ``ξ_c`` diverges on the critical line; deep nets
    train only up to depths of a few ``ξ_c`` (:func:`trainable_depth`)."""
    q = fixed_point_q(activation, sigma_w2, sigma_b2)
    x1 = chi1(activation, sigma_w2, sigma_b2, q)
    xq = chi_q(activation, sigma_w2, sigma_b2, q)
    phase = "critical" if abs(x1 - 1.0) <= PHASE_TOL else "ordered" if x1 < 1 else "chaotic"
    if phase == "chaotic":
        c = fixed_point_c(activation, sigma_w2, sigma_b2)
        qe, dphi = float(_q_eval(q)), get_activation(activation).dphi
        xc = sigma_w2 * gauss_mean2(dphi, dphi, qe, qe, c)
    else:
        c, xc = 1.0, x1
    return DepthScales(q, c, x1, xq, xc, _depth_scale(xq), _depth_scale(xc), phase)


def trainable_depth(
    activation: str, sigma_w2: float, sigma_b2: float, factor: float = 6.0
) -> float:
    """The depth up to which mean-field theory predicts a net trains: ``factor · ξ_c``
    (Schoenholz et al. found ``≈ 6 ξ_c`` on MNIST / CIFAR-10)."""
    return factor * depth_scales(activation, sigma_w2, sigma_b2).xi_c


def gradient_growth(activation: str, sigma_w2: float, sigma_b2: float, depth: int) -> np.ndarray:
    """``E‖∂L/∂W^l‖² / E‖∂L/∂W^depth‖²`` for ``l = 1..depth`` at the fixed point: ``χ₁^(depth−l)``
    (constant width; Schoenholz et al. §5). Shape ``(depth,)``."""
    x1 = chi1(activation, sigma_w2, sigma_b2)
    return x1 ** (depth - np.arange(1, depth + 1, dtype=np.float64))


def critical_sigma_w2(
    activation: str, sigma_b2: float = 0.0, *, lo: float = 1e-2, hi: float = 1e4
) -> float:
    """The ``σ_w²`` where ``χ₁ = 1`` at bias variance ``σ_b²`` (the order-to-chaos line).

    Scans ``[lo, hi]`` for the first upward crossing of ``χ₁ = 1`` and refines it (Brent).
    Closed forms: ReLU 2 (every ``σ_b``), tanh / erf 1 at ``σ_b = 0``, linear 1. ``nan`` if
    ``χ₁`` never crosses 1 in the range. Where ``q*`` jumps from 0 to ``∞`` (GELU at ``σ_b = 0``)
    the crossing is that jump.
    """
    f = lambda s: chi1(activation, s, sigma_b2) - 1.0
    grid = np.geomspace(lo, hi, 61)
    prev = f(grid[0])
    if prev >= 0:
        return float(grid[0]) if prev == 0 else math.nan
    for a, b in zip(grid[:-1], grid[1:]):
        fb = f(b)
        if fb >= 0:
            return float(b) if fb == 0 else float(brentq(f, a, b, xtol=1e-14, rtol=1e-13))
    return math.nan


def critical_scale(activation: str, sigma_b: float = 0.0) -> float:
    """The critical weight scale ``σ_w`` (not squared) at bias std ``σ_b``: with
    ``init.scheme = "lecun_normal"`` (``W ~ N(0, scale²/fan_in)``) this is the ``init.scale`` on
    the order-to-chaos line. ReLU: ``√2`` (He); tanh at ``σ_b = 0``: 1 (LeCun)."""
    return math.sqrt(critical_sigma_w2(activation, sigma_b**2))


def scheme_sigma_w2(
    scheme: str, fan_in: int = 256, fan_out: int | None = None, scale: float = 1.0
) -> float:
    """The mean-field ``σ_w² = fan_in · Var(W_ij)`` of an init scheme (``jaxinit.blocks.initializers``).

    LeCun 1, He 2, Glorot ``2 fan_in / (fan_in + fan_out)`` (1 at constant width), orthogonal
    ``fan_in / max(fan_in, fan_out)`` (1 for square layers), each times ``scale²``.
    """
    from jaxinit.blocks.initializers import expected_std

    fan_out = fan_in if fan_out is None else fan_out
    return fan_in * expected_std(scheme, (fan_in, fan_out), scale) ** 2


def scheme_table(
    activation: str,
    sigma_b: float = 0.0,
    schemes: Sequence[str] = ("lecun_normal", "glorot_normal", "he_normal", "orthogonal"),
    fan_in: int = 256,
    fan_out: int | None = None,
) -> list[dict]:
    """Where each init scheme sits relative to the critical line, one dict per scheme.

    Keys: ``scheme``, ``sigma_w2``, ``critical_sigma_w2``, ``scale_to_critical`` (the
    ``init.scale`` that would put this scheme on the line), ``chi1`` (also the per-layer growth
    of squared gradient norms), ``phase``, ``q_star``, ``xi_c``, ``trainable_depth``.
    """
    crit = critical_sigma_w2(activation, sigma_b**2)
    rows = []
    for s in schemes:
        sw2 = scheme_sigma_w2(s, fan_in, fan_out)
        d = depth_scales(activation, sw2, sigma_b**2)
        rows.append(
            {
                "scheme": s,
                "sigma_w2": sw2,
                "critical_sigma_w2": crit,
                "scale_to_critical": math.sqrt(crit / sw2),
                "chi1": d.chi1,
                "phase": d.phase,
                "q_star": d.q_star,
                "xi_c": d.xi_c,
                "trainable_depth": 6.0 * d.xi_c,
            }
        )
    return rows


def gram_map(activation: str, gram_BxB, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """One layer of the wide-net Gram map ``Σ' = σ_w² E_{u ~ N(0, Σ)} φ(u)φ(u)ᵀ + σ_b²``.

    ``gram_BxB[a, b] = h_a · h_b / N`` of pre-activations for a batch of ``B`` inputs.
    """
    g = np.asarray(gram_BxB, np.float64)
    phi = get_activation(activation).phi
    out = np.empty_like(g)
    for a in range(len(g)):
        out[a, a] = gauss_mean(lambda x: phi(x) ** 2, _q_eval(g[a, a]))
        for b in range(a):
            qa, qb = float(_q_eval(g[a, a])), float(_q_eval(g[b, b]))
            c = g[a, b] / math.sqrt(qa * qb)
            out[a, b] = out[b, a] = gauss_mean2(phi, phi, qa, qb, c)
    return sigma_w2 * out + sigma_b2


def gram_curve(
    activation: str, x_gram_BxB, sigma_w2: float, sigma_b2: float, depth: int
) -> np.ndarray:
    """Pre-activation Gram matrices of layers ``1..depth``, shape ``(depth, B, B)``.

    ``x_gram_BxB[a, b] = x_a · x_b / N₀`` of the inputs; layer 1 is ``σ_w² x_gram + σ_b²``. The
    per-layer variance is the diagonal, the correlation ``Σ_ab / √(Σ_aa Σ_bb)``. Compare with
    :func:`jaxinit.blocks.signal.propagate`.
    """
    g = sigma_w2 * np.asarray(x_gram_BxB, np.float64) + sigma_b2
    out = [g]
    for _ in range(depth - 1):
        g = gram_map(activation, g, sigma_w2, sigma_b2)
        out.append(g)
    return np.stack(out)


def jacobian_moments(
    activation: str, sigma_w2: float, sigma_b2: float, depth: int, weights: str = "gaussian"
) -> tuple[float, float]:
    """Mean and variance of the squared singular values of the input-output Jacobian
    ``J = ∂φ(h^L)/∂x⁰`` of a wide net at init whose pre-activations sit at ``q*``.

    Free probability (Pennington, Schoenholz & Ganguli 2017): with ``μ_k = E φ'(√q* z)^{2k}``,
    mean ``m₁ = (σ_w² μ₁)^L = χ₁^L`` and variance ``m₁² L (μ₂/μ₁² − 1 + v)``, ``v = 1`` for
    Gaussian weights (Marchenko–Pastur) and 0 for orthogonal ones. A linear net at ``σ_w = 1``:
    variance ``L`` (Gaussian) vs ``0`` (orthogonal, exact isometry).
    """
    if weights not in ("gaussian", "orthogonal"):
        raise ValueError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}")
    qe = float(_q_eval(fixed_point_q(activation, sigma_w2, sigma_b2)))
    dphi = get_activation(activation).dphi
    mu1 = float(gauss_mean(lambda x: dphi(x) ** 2, qe))
    mu2 = float(gauss_mean(lambda x: dphi(x) ** 4, qe))
    m1 = (sigma_w2 * mu1) ** depth
    v = 1.0 if weights == "gaussian" else 0.0
    return m1, m1**2 * depth * (mu2 / mu1**2 - 1.0 + v)


def phase_grid(activation: str, sigma_w2s: Sequence[float], sigma_b2s: Sequence[float]) -> dict:
    """:func:`depth_scales` over a grid: arrays shaped ``(len(sigma_b2s), len(sigma_w2s))`` for
    ``q_star``, ``c_star``, ``chi1``, ``xi_q``, ``xi_c``, plus ``critical_sigma_w2`` per ``σ_b²``."""
    fields = ("q_star", "c_star", "chi1", "xi_q", "xi_c")
    out = {f: np.empty((len(sigma_b2s), len(sigma_w2s))) for f in fields}
    for i, sb2 in enumerate(sigma_b2s):
        for j, sw2 in enumerate(sigma_w2s):
            d = depth_scales(activation, float(sw2), float(sb2))
            for f in fields:
                out[f][i, j] = getattr(d, f)
    out["critical_sigma_w2"] = np.array([critical_sigma_w2(activation, b) for b in sigma_b2s])
    return out
