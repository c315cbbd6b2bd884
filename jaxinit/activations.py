"""The activation registry: each activation with the properties the rest of jaxinit reads.

One entry per name, so that the model (``fn``), the diagnostics (``saturation``), the symmetry
analysis (``symmetry``) and spec validation (the names) never keep lists of their own.

- ``symmetry``: what, beyond permuting hidden units, leaves an MLP with this activation
  unchanged: ``"odd"`` (``φ(-z) = -φ(z)``: flip a unit's incoming and outgoing weights),
  ``"sigmoid"`` (``σ(-z) = 1 - σ(z)``: flip, and the next bias absorbs the outgoing weight),
  ``"scale"`` (positive homogeneity, ReLU: ``(α w_in, w_out / α)``) or ``"perm"`` (none).
- ``saturation``: ``|z|`` beyond which a unit counts as saturated, where the slope is below ~7%
  of its maximum (``tanh'(2) = 0.071``, ``σ'(4)/σ'(0) = 0.071``, ``erf'(1.63)/erf'(0) = 0.070``);
  ``None`` for activations that do not saturate.

>>> ACTIVATIONS["tanh"].symmetry, ACTIVATIONS["relu"].saturation
('odd', None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class Activation(NamedTuple):
    fn: Callable[[Array], Array]
    symmetry: str  # "odd" | "sigmoid" | "scale" | "perm"
    saturation: float | None  # |z| threshold of a saturated unit, None: never saturates


def _linear(z: Array) -> Array:
    return z


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(jnp.tanh, "odd", 2.0),
    "sigmoid": Activation(jax.nn.sigmoid, "sigmoid", 4.0),
    "relu": Activation(jax.nn.relu, "scale", None),
    "gelu": Activation(jax.nn.gelu, "perm", None),
    "linear": Activation(_linear, "perm", None),
    "erf": Activation(jax.scipy.special.erf, "odd", 1.63),
}
"""Registry ``name -> Activation``."""
