"""Learning problems, generated on the host (never downloaded) and deterministic in their seed.

A :class:`Task` is data plus the name of its loss. Losses take model outputs ``y_pred_BxO`` and
targets and return a scalar; the metric is accuracy for classification and R² for regression.

>>> task = TASKS["xor"]()
>>> task.x_train.shape, task.loss
((4, 2), 'bce')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from scipy.special import erf


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


def loss_value(kind: str, y_pred: Array, y: Array) -> Array:
    """Mean loss of predictions ``y_pred_BxO`` against targets ``y`` for a loss named ``kind``."""
    if kind == "mse":
        return jnp.mean(jnp.sum((y_pred - y) ** 2, axis=-1)) / 2
    if kind == "bce":
        # log(1 + e^z) - y z, written stably for both signs of z.
        return jnp.mean(jnp.sum(jnp.logaddexp(0.0, y_pred) - y * y_pred, axis=-1))
    if kind == "ce":
        logp = jax.nn.log_softmax(y_pred, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))
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


_TEACHER_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "erf": erf,
    "linear": lambda z: z,
}


def teacher_student(
    in_dim: int = 8,
    teacher_widths: tuple[int, ...] = (4,),
    activation: str = "relu",
    n_train: int = 256,
    n_test: int = 1024,
    noise: float = 0.0,
    seed: int = 0,
) -> Task:
    """Gaussian inputs ``x ~ N(0, I)`` labelled by a random teacher MLP (seed ``seed``).

    The teacher's weights are N(0, 1/fan_in), biases zero, one linear output.
    """
    rng = np.random.default_rng(seed)
    widths = [in_dim, *teacher_widths, 1]
    weights = [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    act = _TEACHER_ACTIVATIONS[activation]

    def teacher(x):
        for w in weights[:-1]:
            x = act(x @ w)
        return x @ weights[-1]

    x, x_test = rng.normal(size=(n_train, in_dim)), rng.normal(size=(n_test, in_dim))
    y = teacher(x) + noise * rng.normal(size=(n_train, 1))
    return _regression(x, y, x_test, teacher(x_test), threshold=1e-3)


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

    task = _classification(x, labels(x), x_test, labels(x_test))
    # Label noise caps accuracy well below 1: count a run as solved at the Bayes-like level.
    return task._replace(success_metric=0.7, threshold=0.5)


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
