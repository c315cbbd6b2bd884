"""Diagnostics the training loop records every ``log_every`` steps (and at the end).

Each diagnostic is a pure function ``fn(probe: Probe) -> dict[str, Array]`` of one run's state,
returning scalars or per-hidden-layer vectors ``(L,)``. They are chosen by name in
``train.diagnostics`` and cost nothing when not chosen.

>>> sorted(DIAGNOSTICS)[:2]
['distance_from_init', 'grad_norm']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxinit.models import Model


class Probe(NamedTuple):
    """What a diagnostic may look at: one run's current state and its data."""

    model: Model
    params: Any
    params0: Any  # parameters at step 0
    grads: Any  # full-batch gradient of the training loss at ``params``
    x: Array  # training inputs (B, I)
    y: Array


def _leaves_norm(tree: Any) -> Array:
    return optax.global_norm(tree)


def grad_norm(p: Probe) -> dict[str, Array]:
    """Global gradient norm ``‖∇L‖`` (full batch)."""
    return {"grad_norm": _leaves_norm(p.grads)}


def layer_grad_norm(p: Probe) -> dict[str, Array]:
    """Gradient norm of each layer's parameters, ``(L,)`` for a model with ``params['layers']``."""
    return {"layer_grad_norm": jnp.stack([_leaves_norm(g) for g in p.grads["layers"]])}


def weight_norm(p: Probe) -> dict[str, Array]:
    """Global parameter norm ``‖θ‖``."""
    return {"weight_norm": _leaves_norm(p.params)}


def distance_from_init(p: Probe) -> dict[str, Array]:
    """``‖θ − θ₀‖``: how far the run has moved (lazy vs rich training)."""
    return {"distance_from_init": _leaves_norm(jax.tree.map(jnp.subtract, p.params, p.params0))}


DIAGNOSTICS: dict[str, Callable[[Probe], dict[str, Array]]] = {
    "grad_norm": grad_norm,
    "layer_grad_norm": layer_grad_norm,
    "weight_norm": weight_norm,
    "distance_from_init": distance_from_init,
}
"""Registry ``diagnostic name -> fn(probe) -> {curve name: value}``."""


def record(names: tuple[str, ...], probe: Probe) -> dict[str, Array]:
    """Evaluate the named diagnostics and merge their outputs."""
    out: dict[str, Array] = {}
    for name in names:
        out.update(DIAGNOSTICS[name](probe))
    return out
