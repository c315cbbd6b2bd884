"""The activation registry: each activation with the properties the rest of jaxinit reads.

One entry per name, so that the model (``fn``), the diagnostics (``saturation``), the symmetry
analysis (``symmetry``), the mean-field theory and the teacher nets of the tasks (``phi``,
``dphi``) and spec validation (the names) never keep lists of their own.

- ``symmetry``: what, beyond permuting hidden units, leaves an MLP with this activation
  unchanged: ``"odd"`` (``φ(-z) = -φ(z)``: flip a unit's incoming and outgoing weights),
  ``"sigmoid"`` (``σ(-z) = 1 - σ(z)``: flip, and the next bias absorbs the outgoing weight),
  ``"scale"`` (positive homogeneity, ReLU: ``(α w_in, w_out / α)``) or ``"perm"`` (none).
- ``saturation``: ``|z|`` beyond which a unit counts as saturated, where the slope is below ~7%
  of its maximum (``tanh'(2) = 0.071``, ``σ'(4)/σ'(0) = 0.071``, ``erf'(1.63)/erf'(0) = 0.070``);
  ``None`` for activations that do not saturate.
- ``phi``, ``dphi``: the same function and its derivative on the host, elementwise on NumPy
  float64 arrays (:mod:`jaxinit.blocks.theory` integrates them; ``gelu`` is the tanh approximation that
  ``jax.nn.gelu`` uses by default).

>>> ACTIVATIONS["tanh"].symmetry, ACTIVATIONS["relu"].saturation
('odd', None)
>>> float(ACTIVATIONS["relu"].dphi(np.array(2.0)))
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

HostFn = Callable[[np.ndarray], np.ndarray]


class Activation(NamedTuple):
    fn: Callable[[Array], Array]  # the JAX function the models apply
    symmetry: str  # "odd" | "sigmoid" | "scale" | "perm"
    saturation: float | None  # |z| threshold of a saturated unit, None: never saturates
    phi: HostFn  # the same function on the host (NumPy, float64)
    dphi: HostFn  # its derivative on the host


def _linear(z):
    return z


_GELU_K, _GELU_A = math.sqrt(2.0 / math.pi), 0.044715


def _gelu_np(x: np.ndarray) -> np.ndarray:
    # jax.nn.gelu's default (approximate=True): the tanh form of Hendrycks & Gimpel.
    return 0.5 * x * (1.0 + np.tanh(_GELU_K * (x + _GELU_A * x * x * x)))


def _gelu_prime_np(x: np.ndarray) -> np.ndarray:
    t = np.tanh(_GELU_K * (x + _GELU_A * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_K * (1.0 + 3.0 * _GELU_A * x * x)


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^{-x}), without overflow


def _erf_np(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # SciPy: imported only when a host erf is evaluated (~0.2 s)

    return erf(x)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(jnp.tanh, "odd", 2.0, np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "sigmoid": Activation(jax.nn.sigmoid, "sigmoid", 4.0, _sigmoid_np,
                          lambda x: _sigmoid_np(x) * (1.0 - _sigmoid_np(x))),
    "relu": Activation(jax.nn.relu, "scale", None, lambda x: np.maximum(x, 0.0),
                       lambda x: (x > 0).astype(np.float64)),
    "gelu": Activation(jax.nn.gelu, "perm", None, _gelu_np, _gelu_prime_np),
    "linear": Activation(_linear, "perm", None, _linear, np.ones_like),
    "erf": Activation(jax.scipy.special.erf, "odd", 1.63, _erf_np,
                      lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-(x**2))),
}  # fmt: skip
"""Registry ``name -> Activation``."""


def get_activation(name: str) -> Activation:
    """The entry of ``name``; a ``ValueError`` naming the known ones otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None
