"""Weight initialization schemes: pure functions of ``(key, shape, scale)``.

Every scheme has the signature ``init(key, shape, scale, *, value=1.0, dtype=float32) -> Array``
where ``shape = (fan_in, fan_out)`` for a dense weight (incoming weights of unit ``j`` are the
column ``W[:, j]``) and ``scale`` multiplies the scheme's standard deviation. ``scale`` and
``value`` may be traced (vmapped) scalars, so one compiled program covers a whole scale sweep.

The random numbers are always drawn in float32 and then cast to ``dtype`` (:func:`standard_normal`,
:func:`standard_uniform`), so a seed starts from the same weights in float32 and float64 (up to
float32 rounding of the scaling): a dtype comparison compares training, not initialisation.

==================  ======================================================  ==================
scheme              distribution of each weight                             std at scale=1
==================  ======================================================  ==================
``zeros``           0                                                       0
``constant``        ``value * scale`` (every weight equal)                  0
``normal``          N(0, scale²)                                            1
``uniform``         U(-√3·scale, √3·scale)                                  1
``lecun_normal``    N(0, scale²/fan_in)                                     √(1/fan_in)
``glorot_normal``   N(0, scale²·2/(fan_in+fan_out))                         √(2/(in+out))
``glorot_uniform``  U(±scale·√(6/(fan_in+fan_out)))                         √(2/(in+out))
``he_normal``       N(0, scale²·2/fan_in)                                   √(2/fan_in)
``he_uniform``      U(±scale·√(6/fan_in))                                   √(2/fan_in)
``orthogonal``      scale · (a random orthogonal matrix, QR of a Gaussian)  √(1/max(in,out))
``identical_rows``  one lecun_normal column shared by every unit            √(1/fan_in)
==================  ======================================================  ==================

``identical_rows`` is random but symmetric on purpose: every hidden unit gets the same incoming
weights, so no unit can ever differ from another under plain gradient descent.

>>> import jax
>>> w = INITIALIZERS["he_normal"](jax.random.key(0), (256, 128), 1.0)
>>> w.shape
(256, 128)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
from jax import Array


class Initializer(Protocol):
    def __call__(
        self, key: Array, shape: tuple[int, ...], scale: Array | float, *, value=1.0, dtype=None
    ) -> Array: ...


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fan-in and fan-out of a weight shaped ``(..., fan_in, fan_out)``; a vector has fan_in 1."""
    if len(shape) == 1:
        return 1, shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _dtype(dtype):
    return jnp.result_type(float) if dtype is None else dtype


DRAW_DTYPE = jnp.float32
"""The dtype every random draw is made in, whatever the weights' dtype."""


def standard_normal(key: Array, shape: tuple[int, ...], dtype=None) -> Array:
    """N(0, 1) samples of ``shape``, drawn in float32 and cast to ``dtype`` (default: JAX's
    float), so the same key gives the same numbers in float32 and float64."""
    return jax.random.normal(key, shape, DRAW_DTYPE).astype(_dtype(dtype))


def standard_uniform(
    key: Array, shape: tuple[int, ...], dtype=None, minval: float = 0.0, maxval: float = 1.0
) -> Array:
    """U(minval, maxval) samples of ``shape``: in float32 exactly ``jax.random.uniform``'s; in
    another dtype its float32 U(0, 1) draw, cast, then moved to the interval in ``dtype``."""
    dtype = _dtype(dtype)
    if jnp.dtype(dtype) == DRAW_DTYPE:
        return jax.random.uniform(key, shape, DRAW_DTYPE, minval, maxval)
    u = jax.random.uniform(key, shape, DRAW_DTYPE).astype(dtype)
    lo, hi = jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype)
    return jnp.maximum(lo, u * (hi - lo) + lo)


def _normal_with_std(std_fn: Callable[[int, int], float]) -> Initializer:
    def init(key, shape, scale, *, value=1.0, dtype=None):
        del value
        std = std_fn(*_fans(shape))
        return scale * std * standard_normal(key, shape, dtype)

    return init


def _uniform_with_std(std_fn: Callable[[int, int], float]) -> Initializer:
    def init(key, shape, scale, *, value=1.0, dtype=None):
        del value
        limit = math.sqrt(3.0) * std_fn(*_fans(shape))
        return scale * standard_uniform(key, shape, dtype, -limit, limit)

    return init


def zeros(key, shape, scale, *, value=1.0, dtype=None) -> Array:
    del key, value
    return jnp.zeros(shape, _dtype(dtype)) * scale


def constant(key, shape, scale, *, value=1.0, dtype=None) -> Array:
    """Every weight equals ``value * scale``."""
    del key
    return jnp.full(shape, 1.0, _dtype(dtype)) * (value * scale)


def orthogonal(key, shape, scale, *, value=1.0, dtype=None) -> Array:
    """``scale`` times a matrix with orthonormal rows or columns (whichever are fewer)."""
    del value
    fan_in, fan_out = _fans(shape)
    rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
    a = standard_normal(key, (rows, cols), dtype)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))  # Haar-distributed (Mezzadri 2007)
    if fan_in < fan_out:
        q = q.T
    return scale * q.reshape(shape)


def identical_rows(key, shape, scale, *, value=1.0, dtype=None) -> Array:
    """LeCun-normal incoming weights drawn once and shared by every unit (all columns equal)."""
    del value
    fan_in, _ = _fans(shape)
    column = standard_normal(key, (*shape[:-1], 1), dtype) / math.sqrt(fan_in)
    return scale * jnp.broadcast_to(column, shape)


def _lecun(fan_in, fan_out):
    return math.sqrt(1.0 / fan_in)


def _glorot(fan_in, fan_out):
    return math.sqrt(2.0 / (fan_in + fan_out))


def _he(fan_in, fan_out):
    return math.sqrt(2.0 / fan_in)


INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros,
    "constant": constant,
    "normal": _normal_with_std(lambda i, o: 1.0),
    "uniform": _uniform_with_std(lambda i, o: 1.0),
    "lecun_normal": _normal_with_std(_lecun),
    "glorot_normal": _normal_with_std(_glorot),
    "glorot_uniform": _uniform_with_std(_glorot),
    "he_normal": _normal_with_std(_he),
    "he_uniform": _uniform_with_std(_he),
    "orthogonal": orthogonal,
    "identical_rows": identical_rows,
}
"""Registry ``scheme name -> initializer``."""


def expected_std(scheme: str, shape: tuple[int, ...], scale: float = 1.0, value=1.0) -> float:
    """The standard deviation of one weight that ``scheme`` promises (the formula in the table).

    For ``orthogonal`` this is the RMS entry, ``√(1/max(fan_in, fan_out))``; for ``constant`` and
    ``zeros`` it is 0.
    """
    fan_in, fan_out = _fans(shape)
    std = {
        "zeros": 0.0,
        "constant": 0.0,
        "normal": 1.0,
        "uniform": 1.0,
        "lecun_normal": _lecun(fan_in, fan_out),
        "glorot_normal": _glorot(fan_in, fan_out),
        "glorot_uniform": _glorot(fan_in, fan_out),
        "he_normal": _he(fan_in, fan_out),
        "he_uniform": _he(fan_in, fan_out),
        "orthogonal": math.sqrt(1.0 / max(fan_in, fan_out)),
        "identical_rows": _lecun(fan_in, fan_out),
    }[scheme]
    return abs(scale) * std
