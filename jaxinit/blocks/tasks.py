"""Learning problems, generated on the host (never downloaded) and deterministic in their seed,
and a user's own data (:func:`arrays`, read and checked by :mod:`jaxinit.blocks.user_data`).

A :class:`Task` is data plus the name of its loss. Losses take model outputs ``y_pred_BxO`` and
targets and return a scalar; the metric is accuracy for classification and R² for regression.

>>> task = TASKS["xor"]()
>>> task.x_train.shape, task.loss
((4, 2), 'bce')
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxinit.blocks import user_data
from jaxinit.blocks.activations import get_activation
from jaxinit.blocks.ops import PER_RUN, Ops


class Task(NamedTuple):
    """A supervised problem.

    ``loss`` is ``"bce"`` (one logit, labels in {0, 1}), ``"ce"`` (one logit per class, integer
    labels) or ``"mse"``. ``success_metric`` is the train metric at or above which a run counts as
    solved; ``threshold`` is the default loss level for time-to-threshold. ``objective``, when set,
    replaces the sampled training loss by an exact one, ``objective(params) -> scalar`` (used for
    population losses that have a closed form for one particular model).
    """

    x_train: np.ndarray  # (N, in_dim)
    y_train: np.ndarray  # (N, out_dim) float, or (N,) int for "ce"
    x_test: np.ndarray
    y_test: np.ndarray
    loss: str
    success_metric: float
    threshold: float
    objective: Callable[[Any], Array] | None = None

    @property
    def in_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def out_dim(self) -> int:
        if self.loss == "ce":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return int(self.y_train.shape[1])


def loss_value(kind: str, y_pred: Array, y: Array, ops: Ops = PER_RUN) -> Array:
    """Mean loss of predictions ``y_pred_BxO`` against targets ``y`` for a loss named ``kind``.

    Written once against the layout primitives ``ops`` (:mod:`jaxinit.blocks.ops`): one run's by
    default, every run's at once with :data:`jaxinit.engine.lanes.LANE_OPS` (``(C,)`` losses)."""
    if kind == "mse":
        return ops.mean_points(ops.sum_last((y_pred - ops.targets(y)) ** 2)) / 2
    if kind == "bce":
        # log(1 + e^z) - y z, written stably for both signs of z.
        per = jnp.logaddexp(0.0, y_pred) - ops.targets(y) * y_pred
        return ops.mean_points(ops.sum_last(per))
    if kind == "ce":
        return -ops.mean_points(ops.pick(ops.log_softmax(y_pred), y))
    raise ValueError(f"unknown loss {kind!r}")


def metric_value(kind: str, y_pred: Array, y: Array) -> Array:
    """Accuracy for ``bce``/``ce``, coefficient of determination R² for ``mse``."""
    if kind == "bce":
        return jnp.mean(jnp.all((y_pred > 0) == (y > 0.5), axis=-1))
    if kind == "ce":
        return jnp.mean(jnp.argmax(y_pred, axis=-1) == y)
    if kind == "mse":
        resid = jnp.sum((y_pred - y) ** 2)
        total = jnp.sum((y - jnp.mean(y, axis=0)) ** 2)
        return 1.0 - resid / jnp.maximum(total, jnp.finfo(y_pred.dtype).tiny)
    raise ValueError(f"unknown loss {kind!r}")


def _f32(*arrays):
    return tuple(np.asarray(a, np.float32) for a in arrays)


def _classification(x, y, x_test=None, y_test=None, threshold=0.05) -> Task:
    if x_test is None:
        x_test, y_test = x, y
    x, y, x_test, y_test = _f32(x, y, x_test, y_test)
    return Task(x, y[:, None], x_test, y_test[:, None], "bce", 1.0, threshold)


def _regression(x, y, x_test, y_test, success=0.95, threshold=0.01) -> Task:
    x, y, x_test, y_test = _f32(x, y, x_test, y_test)
    if y.ndim == 1:
        y, y_test = y[:, None], y_test[:, None]
    return Task(x, y, x_test, y_test, "mse", success, threshold)


def xor() -> Task:
    """The four points of XOR on {0, 1}²; train = test."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    return _classification(x, x[:, 0] ^ x[:, 1])


def parity(n: int = 3) -> Task:
    """All 2ⁿ bit strings in {0, 1}ⁿ labelled by their parity; train = test."""
    x = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return _classification(x, x.sum(1) % 2)


def two_spirals(n_points: int = 200, noise: float = 0.0, turns: float = 1.5, seed: int = 0) -> Task:
    """Two interleaved spirals in the plane (Lang & Witbrock 1988), half the points each."""
    rng = np.random.default_rng(seed)

    def sample(n):
        t = np.sqrt(rng.uniform(0, 1, n)) * turns * 2 * np.pi
        label = rng.integers(0, 2, n)
        sign = 1 - 2 * label
        pts = sign[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], 1) / (turns * 2 * np.pi)
        return pts + noise * rng.normal(size=pts.shape), label

    return _classification(*sample(n_points), *sample(n_points))


def circles(n_points: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0) -> Task:
    """Two concentric circles of radius 1 and ``factor``; not linearly separable."""
    rng = np.random.default_rng(seed)

    def sample(n):
        label = rng.integers(0, 2, n)
        angle = rng.uniform(0, 2 * np.pi, n)
        radius = np.where(label == 1, factor, 1.0)
        pts = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
        return pts + noise * rng.normal(size=pts.shape), label

    return _classification(*sample(n_points), *sample(n_points))


def teacher_student(
    in_dim: int = 8,
    teacher_widths: tuple[int, ...] = (4,),
    activation: str = "relu",
    n_train: int = 256,
    n_test: int = 1024,
    noise: float = 0.0,
    seed: int = 0,
    population: bool = False,
    teacher_rotation_seed: int = -1,
) -> Task:
    """Gaussian inputs ``x ~ N(0, I)`` labelled by a random teacher MLP (seed ``seed``).

    The teacher's weights are N(0, 1/fan_in), biases zero, one linear output.

    ``population=True`` is the setting of Safran & Shamir (2018): the teacher is
    ``f*(x) = Σ_j relu(v_j·x)`` with orthonormal rows ``v_j`` (``teacher_widths = [k]``, or
    empty for ``k = in_dim``), and the training loss is the exact population loss
    ``E_x (f(x) - f*(x))² / 2`` in closed form (:func:`relu_population_loss`) for a bias-free
    two-layer ReLU student such as ``relu_student``; the samples only serve as a test set.
    The rows are ``v_j = e_j`` (axis-aligned) by default; with ``teacher_rotation_seed = s >= 0``
    they are the first ``k`` columns of a Haar-random orthogonal matrix drawn from seed ``s``
    (:func:`haar_orthogonal_np`). The landscape is the same up to that rotation, so a
    rotation-invariant init (Gaussian) sees the same problem, a per-coordinate one
    (uniform) does not.
    """
    rng = np.random.default_rng(seed)
    if population:
        return _relu_population_task(
            rng, in_dim, tuple(teacher_widths), n_train, n_test, noise, teacher_rotation_seed
        )
    if teacher_rotation_seed >= 0:
        raise ValueError("teacher_rotation_seed needs population=True (an orthonormal teacher)")
    widths = [in_dim, *teacher_widths, 1]
    weights = [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    act = get_activation(activation).phi

    def teacher(x):
        for w in weights[:-1]:
            x = act(x @ w)
        return x @ weights[-1]

    x, x_test = rng.normal(size=(n_train, in_dim)), rng.normal(size=(n_test, in_dim))
    y = teacher(x) + noise * rng.normal(size=(n_train, 1))
    return _regression(x, y, x_test, teacher(x_test), threshold=1e-3)


@jax.custom_jvp
def _arccos_profile(c: Array) -> Array:
    """``sin θ + (π - θ) cos θ`` with ``θ = arccos c``; its derivative ``π - θ`` stays finite
    at ``c = ±1``, where autodiff through ``arccos`` alone would give ``inf · 0``."""
    c = jnp.clip(c, -1.0, 1.0)
    return jnp.sqrt(1.0 - c**2) + (jnp.pi - jnp.arccos(c)) * c


@_arccos_profile.defjvp
def _arccos_profile_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    eps = jnp.finfo(c.dtype).eps
    slope = jnp.pi - jnp.arccos(jnp.clip(c, -1.0 + eps, 1.0 - eps))
    return _arccos_profile(c), slope * dc


def relu_kernel(w_IxA: Array, v_IxB: Array) -> Array:
    """``E_x relu(w·x) relu(v·x)`` for ``x ~ N(0, I)``, every column pair: the first-order
    arc-cosine kernel ``|w||v| (sin θ + (π - θ) cos θ) / 2π`` (Cho & Saul 2009). Shape (A, B)."""
    tiny = jnp.finfo(w_IxA.dtype).tiny
    nw = jnp.sqrt(jnp.sum(w_IxA**2, 0) + tiny)
    nv = jnp.sqrt(jnp.sum(v_IxB**2, 0) + tiny)
    cos = (w_IxA.T @ v_IxB) / (nw[:, None] * nv[None, :])
    return nw[:, None] * nv[None, :] * _arccos_profile(cos) / (2 * jnp.pi)


# arcsin(c) - c = Σ_{n>=1} b_n c^(2n+1), b_n = C(2n, n) / (4^n (2n + 1)). For |c| < 1/2, 24
# terms reach float64 precision and 10 float32 precision, where the direct difference would lose
# most digits.
_ASIN_SERIES = tuple(math.comb(2 * n, n) / 4**n / (2 * n + 1) for n in range(1, 25))


def _sqrt_one_minus_sq(c: Array) -> Array:
    """``√(1 - c²)`` as ``√((1 - c)(1 + c))``: accurate near ``|c| = 1``, where ``1 - c²`` is not."""
    return jnp.sqrt((1.0 - c) * (1.0 + c))


def _asin_minus_id(c: Array, s: Array) -> Array:
    """``arcsin(c) - c`` for ``c`` in [-1, 1] given ``s = √(1 - c²)``, accurate also for small
    ``|c|`` (there ≈ c³/6, by its series) and near ``|c| = 1`` (as ``atan2(c, s)``)."""
    terms = _ASIN_SERIES if c.dtype == jnp.float64 else _ASIN_SERIES[:10]
    c2 = c * c
    acc = jnp.zeros_like(c)
    for b in reversed(terms):
        acc = acc * c2 + b
    return jnp.where(jnp.abs(c) < 0.5, acc * c2 * c, jnp.arctan2(c, s) - c)


def _profile_rest_and_slope(c: Array) -> tuple[Array, Array]:
    """``ρ(c)`` and ``ρ'(c) = arcsin c - c`` (see :func:`_profile_rest`), evaluated at ``c``
    clipped to ``[-1 + eps, 1 - eps]`` so that second derivatives (``1/√(1 - c²) - 1``) stay
    finite; the value at ``|c| ≥ 1 - eps`` is ``ρ(±1) = π/2 - 3/2`` exactly."""
    eps = jnp.finfo(c.dtype).eps
    inner = jnp.clip(c, -1.0 + eps, 1.0 - eps)
    s = _sqrt_one_minus_sq(inner)
    slope = _asin_minus_id(inner, s)
    value = inner * slope - inner**4 / (2 * (1 + s) ** 2)
    return jnp.where(jnp.abs(c) >= 1.0 - eps, jnp.pi / 2 - 1.5, value), slope


@jax.custom_jvp
def _profile_rest(c: Array) -> Array:
    """``ρ(c) = h(c) - 1 - (π/2) c - c²/2`` of the arc-cosine profile
    ``h(c) = √(1 - c²) + (π - arccos c) c``: the part of its power series
    ``h = 1 + (π/2) c + c²/2 + c⁴/24 + c⁶/80 + …`` from ``c⁴`` on (all coefficients ≥ 0, so
    ``ρ ≥ 0`` and ``ρ(c)`` is a positive-definite dot-product kernel; ``ρ(±1) = π/2 - 3/2``).

    Written as ``c (arcsin c - c) - c⁴ / (2 (1 + √(1 - c²))²)``: no cancellation of O(1) terms.
    """
    return _profile_rest_and_slope(c)[0]


@_profile_rest.defjvp
def _profile_rest_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    value, slope = _profile_rest_and_slope(c)
    return value, slope * dc


def _nonnegative(x: Array) -> Array:
    """``max(x, 0)`` in value, the identity in derivatives (a straight-through clamp)."""
    return x + jax.lax.stop_gradient(jnp.maximum(x, 0.0) - x)


def _rest_matrix(x_IxA: Array, nx: Array, y_IxB: Array, ny: Array, same: bool) -> Array:
    """``ρ(cos)`` of every column pair ``(A, B)``; with ``same`` the diagonal is ``ρ(1)``."""
    cos = (x_IxA.T @ y_IxB) / (nx[:, None] * ny[None, :])
    if not same:
        return _profile_rest(cos)
    diag = jnp.eye(cos.shape[0], dtype=bool)
    return jnp.where(diag, jnp.pi / 2 - 1.5, _profile_rest(jnp.where(diag, 0.0, cos)))


def relu_population_terms(params: Any, teacher_IxK: Array) -> Array:
    """The four nonnegative parts of :func:`relu_population_loss` (shape (4,), unclamped).

    With ``θ_p`` the student rows ``w_i`` and teacher rows ``v_j``, ``u = (a, -1)``, ``n_p = |θ_p|``
    and ``c_pq`` the cosines, the population loss is ``Σ_pq u_p u_q n_p n_q h(c_pq) / 4π``
    (``E relu(w·x) relu(v·x) = |w||v| h(c) / 2π``). Splitting ``h = 1 + (π/2) c + c²/2 + ρ(c)``:

    ``L = (Σ_p u_p n_p)² / 4π  +  |W a - V 1|² / 8  +  |W diag(a/n) Wᵀ - V diag(1/n) Vᵀ|²_F / 8π
    + Σ_pq u_p u_q n_p n_q ρ(c_pq) / 4π``.

    The first three are squared norms of differences, nonnegative and exact to rounding of their
    (small) value; only the last is a sum of signed terms, and its kernel is small
    (``0 ≤ ρ ≤ 0.071``, ``ρ(c) ≈ c⁴/24`` for near-orthogonal pairs), so the cancellation of the
    expanded sum ``aᵀK_ww a - 2 aᵀK_wv 1 + 1ᵀK_vv 1`` (k² terms of size ~0.1-0.5) is gone.
    """
    first, last = params["layers"]
    if "b" in first or "b" in last:
        raise ValueError("the closed-form population loss needs a bias-free student")
    w, a = first["w"], last["w"][:, 0]
    v = jnp.asarray(teacher_IxK, w.dtype)
    tiny = jnp.finfo(w.dtype).tiny
    nw = jnp.sqrt(jnp.sum(w**2, 0) + tiny)
    nv = jnp.sqrt(jnp.sum(v**2, 0) + tiny)
    aw = a * nw  # u_p n_p over the student; -n_v over the teacher
    norms = (jnp.sum(aw) - jnp.sum(nv)) ** 2 / (4 * jnp.pi)
    linear = jnp.sum((w @ a - jnp.sum(v, 1)) ** 2) / 8
    outer = (w * (a / nw)) @ w.T - (v / nv) @ v.T
    quadratic = jnp.sum(outer**2) / (8 * jnp.pi)
    rest = (
        aw @ _rest_matrix(w, nw, w, nw, True) @ aw
        - 2 * aw @ _rest_matrix(w, nw, v, nv, False) @ nv
        + nv @ _rest_matrix(v, nv, v, nv, True) @ nv
    ) / (4 * jnp.pi)
    return jnp.stack([norms, linear, quadratic, rest])


def relu_population_loss(params: Any, teacher_IxK: Array) -> Array:
    """``E_x (Σ_i a_i relu(w_i·x) - Σ_j relu(v_j·x))² / 2`` exactly, for Gaussian ``x``.

    ``params = {"layers": [{"w": (I, k)}, {"w": (k, 1)}]}`` (no biases); ``teacher_IxK`` holds
    the teacher rows as columns. Evaluated as a sum of nonnegative parts
    (:func:`relu_population_terms`), then clamped at zero in value only (gradients and Hessians
    are those of the unclamped sum): a squared loss never prints below zero.

    Float error floor (measured in float32 against float64 at the same point, 200 permuted
    and perturbed teachers per perturbation size 0, 1e-4, 1e-3, 1e-2 and k = n = 6, 10, 12):
    at most 1.0e-7, and exactly 0 at the teacher; the expanded kernel sum it replaces errs by
    up to 5.3e-6 there and prints losses down to -4.8e-6. The spurious threshold
    ``loss_tol = 1e-3`` of :func:`jaxinit.analysis.basins.spurious_rates` sits four orders of magnitude
    above the floor (``tests/test_tasks.py`` checks 2e-7 at k = 10).
    """
    return _nonnegative(jnp.sum(relu_population_terms(params, teacher_IxK)))


def haar_orthogonal_np(n: int, seed: int) -> np.ndarray:
    """A Haar-distributed random ``(n, n)`` orthogonal matrix: QR of a Gaussian matrix with the
    signs of ``R``'s diagonal moved into ``Q`` (Mezzadri 2007), deterministic in ``seed``."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q * np.sign(np.diag(r))[None, :]


def _relu_population_task(
    rng, in_dim, teacher_widths, n_train, n_test, noise, rotation_seed=-1
) -> Task:
    if len(teacher_widths) > 1:
        raise ValueError("population=True needs a one-hidden-layer teacher (teacher_widths=[k])")
    k = teacher_widths[0] if teacher_widths else in_dim
    if not 1 <= k <= in_dim:
        raise ValueError(f"orthonormal teacher rows need 1 <= k <= in_dim, got k={k}, {in_dim=}")
    basis = np.eye(in_dim) if rotation_seed < 0 else haar_orthogonal_np(in_dim, rotation_seed)
    v = basis[:, :k].astype(np.float32)

    def teacher(x):
        return np.maximum(x @ v, 0).sum(1)

    x, x_test = rng.normal(size=(n_train, in_dim)), rng.normal(size=(n_test, in_dim))
    y = teacher(x) + noise * rng.normal(size=n_train)
    task = _regression(x, y, x_test, teacher(x_test), threshold=1e-3)
    return task._replace(objective=lambda params: relu_population_loss(params, v))


def sinusoid(n_points: int = 64, frequency: float = 1.0, noise: float = 0.0, seed: int = 0) -> Task:
    """``y = sin(frequency · x)`` on x ∈ [-π, π]; the test set is a fine regular grid."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, (n_points, 1))
    x_test = np.linspace(-np.pi, np.pi, 256)[:, None]
    y = np.sin(frequency * x) + noise * rng.normal(size=x.shape)
    return _regression(x, y, x_test, np.sin(frequency * x_test))


def linear_regression(
    in_dim: int = 8, n_points: int = 128, noise: float = 0.1, seed: int = 0
) -> Task:
    """``y = x·w* + noise`` with Gaussian ``x``: a convex control (one global optimum)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(in_dim, 1)) / np.sqrt(in_dim)
    x, x_test = rng.normal(size=(n_points, in_dim)), rng.normal(size=(4 * n_points, in_dim))
    y = x @ w + noise * rng.normal(size=(n_points, 1))
    return _regression(x, y, x_test, x_test @ w, success=0.5)


def logistic_regression(in_dim: int = 4, n_points: int = 256, seed: int = 0) -> Task:
    """Labels drawn ``y ~ Bernoulli(σ(x·w*))``: noisy, so not separable and the optimum is finite.

    A convex control: with a linear model every init reaches the same minimum.
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=in_dim)
    x, x_test = rng.normal(size=(n_points, in_dim)), rng.normal(size=(n_points, in_dim))

    def labels(x):
        return (rng.uniform(size=len(x)) < 1 / (1 + np.exp(-x @ w))).astype(np.int64)

    y = labels(x)
    task = _classification(x, y, x_test, labels(x_test))
    # Label noise caps accuracy well below 1: a run counts as solved when its training accuracy
    # is within 0.05 of what the generating weights w* themselves score on the same points.
    reference = float(np.mean((x @ w > 0) == (y == 1)))
    return task._replace(success_metric=reference - 0.05, threshold=0.5)


TASKS: dict[str, Callable[..., Task]] = {
    "xor": xor,
    "parity": parity,
    "two_spirals": two_spirals,
    "circles": circles,
    "teacher_student": teacher_student,
    "sinusoid": sinusoid,
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
}
"""Registry ``task name -> factory(**kwargs) -> Task``."""


def sparse_regression(
    in_dim: int = 40, n_points: int = 20, sparsity: int = 3, noise: float = 0.0, seed: int = 0
) -> Task:
    """Underdetermined regression ``y = x·β* + noise`` with a ``sparsity``-sparse ``β*``.

    ``x ~ N(0, I)``, ``n_points < in_dim`` (so infinitely many interpolating β); ``β*`` has
    ``sparsity`` nonzero entries ±1 at random positions. The test set (256 points) is noise-free.
    Used with ``diag_linear`` to see which interpolating solution an init scale leads to.
    """
    rng = np.random.default_rng(seed)
    beta = np.zeros((in_dim, 1))
    idx = rng.choice(in_dim, size=sparsity, replace=False)
    beta[idx, 0] = rng.choice([-1.0, 1.0], size=sparsity)
    x, x_test = rng.normal(size=(n_points, in_dim)), rng.normal(size=(256, in_dim))
    y = x @ beta + noise * rng.normal(size=(n_points, 1))
    return _regression(x, y, x_test, x_test @ beta, threshold=1e-3)


TASKS["sparse_regression"] = sparse_regression


def blobs(
    k: int = 5,
    dim: int = 2,
    n_per_cluster: int = 50,
    separation: float = 8.0,
    std: float = 1.0,
    seed: int = 0,
) -> Task:
    """``k`` isotropic Gaussian blobs (``std`` per coordinate) whose centres are at least
    ``separation · std`` apart, ``n_per_cluster`` points each; labels are the generating blob.

    Centres are drawn uniformly in a box of side ``separation · std · (2k)^(1/dim)`` and kept only
    if far enough from the ones before (the box grows if they do not fit), so the data are a pure
    function of the arguments. With ``separation ≥ 8`` the blobs do not touch and the generating
    partition is the global optimum of k-means (and of a Gaussian mixture); with ``separation ≈
    2–3`` they overlap and restarts land in many nearby optima. The test set is a fresh draw
    from the same blobs. Used by the clustering algorithms (:mod:`jaxinit.engine.algorithms`), which read
    ``x_train``; a model can classify it too (loss ``ce``).
    """
    if k < 1 or dim < 1 or n_per_cluster < 1 or not separation >= 0 or not std > 0:
        raise ValueError("blobs needs k, dim, n_per_cluster >= 1, separation >= 0 and std > 0")
    rng = np.random.default_rng(seed)
    side = max(separation, 1e-9) * std * (2 * k) ** (1 / dim)
    centres: list[np.ndarray] = []
    tries = 0
    while len(centres) < k:
        c = rng.uniform(0, side, dim)
        if all(np.linalg.norm(c - o) >= separation * std for o in centres):
            centres.append(c)
        tries += 1
        if tries % 1000 == 0:  # crowded: start again in a larger box
            side, centres = side * 1.25, []
    centres_KxD = np.stack(centres)

    def sample() -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(k, dtype=np.int32), n_per_cluster)
        return centres_KxD[labels] + std * rng.normal(size=(len(labels), dim)), labels

    x, y = sample()
    x_test, y_test = sample()
    x, x_test = _f32(x, x_test)
    return Task(x, y, x_test, y_test, "ce", 0.99, 0.05)


TASKS["blobs"] = blobs


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "task 'digits' needs scikit-learn (its bundled 8×8 digits, no download): "
            "pip install 'jaxinit[digits]'"
        ) from None
    data = load_digits()
    x, y = np.asarray(data.data, np.float32) / 16.0, np.asarray(data.target, np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def digits(
    n_classes: int = 10, n_train: int = 1000, n_test: int = 0, seed: int = 0, loss: str = "ce"
) -> Task:
    """Real handwritten digits: scikit-learn's bundled 8×8 images (1,797 of them, UCI optdigits
    test set), read from the installed package, never downloaded (``pip install
    'jaxinit[digits]'``).

    Inputs are the 64 pixels in [0, 1] (row-major, one channel: the ``cnn`` model reshapes
    them to 8×8), labels the digit (loss ``ce``). Only digits ``0 … n_classes-1`` are kept; they
    are shuffled with ``seed`` and the first ``n_train`` train, the next ``n_test`` (0: all the
    rest) test. A run is solved when it classifies every training image.

    ``loss = "mse"`` makes the targets one-hot rows ``(N, n_classes)`` for the squared error, as
    in the edge-of-stability experiments (Cohen et al. 2021); a run is then solved at R² ≥ 0.95
    on the one-hot targets.
    """
    x_all, y_all = _load_digits()
    if not 2 <= n_classes <= 10:
        raise ValueError(f"digits has classes 0..9: n_classes must be in 2..10, got {n_classes}")
    if loss not in ("ce", "mse"):
        raise ValueError(
            f"digits takes loss 'ce' (integer labels) or 'mse' (one-hot), got {loss!r}"
        )
    keep = np.flatnonzero(y_all < n_classes)
    order = keep[np.random.default_rng(seed).permutation(len(keep))]
    n_test = n_test or len(order) - n_train
    if n_train < 1 or n_test < 1 or n_train + n_test > len(order):
        raise ValueError(
            f"digits with n_classes={n_classes} has {len(order)} images: n_train ({n_train}) "
            f"+ n_test ({n_test}) must fit, with at least one of each"
        )
    train, test = order[:n_train], order[n_train : n_train + n_test]
    if loss == "mse":
        one_hot = np.eye(n_classes, dtype=np.float32)
        return _regression(x_all[train], one_hot[y_all[train]], x_all[test], one_hot[y_all[test]])
    return Task(x_all[train], y_all[train], x_all[test], y_all[test], "ce", 1.0, 0.05)


TASKS["digits"] = digits


def arrays(
    loss: str = "",
    path: str = "",
    data_sha256: str = "",
    inputs: list[str] | None = None,
    target: str = "",
    test_fraction: float = 0.0,
) -> Task:
    """A user's own data (:mod:`jaxinit.blocks.user_data`): arrays passed as
    ``jaxinit.run(spec, data=...)``, or a ``.npz`` / ``.csv`` file named by ``path``.

    ``loss`` is ``mse``, ``bce`` (labels 0/1) or ``ce`` (labels ``0..K-1``). ``inputs`` and
    ``target`` name a ``.csv``'s columns (``inputs`` default: every column but ``target``).
    Without test arrays the test set is the training set, unless ``test_fraction > 0`` holds
    out that fraction of the rows by a split seeded with the data's hash. ``data_sha256`` is the
    data's content hash, set by ``jaxinit.run``: the task refuses other arrays.

    A run is solved at training accuracy 1 (``bce``, ``ce``) or R² ≥ 0.95 (``mse``); the default
    time-to-threshold level is 0.05 (classification) or 0.01 (``mse``).
    """
    raw = user_data.raw_arrays(data_sha256, path, inputs, target)
    data = user_data.for_loss(raw, loss, test_fraction, path or "data")
    if loss == "mse":
        return Task(*data, loss, 0.95, 0.01)
    return Task(*data, loss, 1.0, 0.05)


TASKS["arrays"] = arrays


def from_spec(spec: Any) -> Task:
    """The task a :class:`~jaxinit.config.spec.TaskSpec` names, built with its ``params``."""
    return TASKS[spec.name](**spec.params)
