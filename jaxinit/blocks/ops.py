"""The array primitives in which models, losses and norm diagnostics are written once.

The two run layouts differ only in these few operations. :data:`PER_RUN` is one run's form (the
vmap layout: the program is written for one run and vmapped); :data:`jaxinit.engine.lanes.LANE_OPS`
holds the same operations with every array carrying the run axis *last* and no XLA reduce over
a small axis. A model whose forward pass is written against an :class:`Ops`
(``Model.forward``), and a loss written with :func:`jaxinit.blocks.tasks.loss_value`, run in both.

``PER_RUN``'s operations are exactly the expressions the per-run code has always used, so the
vmap layout's programs (and numbers) are those of writing them inline.

>>> import jax.numpy as jnp
>>> PER_RUN.dense(jnp.ones((2, 3)), jnp.ones((3, 4)), None).shape
(2, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

__all__ = ["Ops", "PER_RUN"]


class Ops(NamedTuple):
    """What a layout supplies to the code written once (shapes for one run; a layout with a run
    axis adds it where its arrays carry one)."""

    # (a_BxI, w_IxO, b_O or None) -> a @ w (+ b), (B, O)
    dense: Callable[[Array, Array, Array | None], Array]
    sum_last: Callable[[Array], Array]  # (B, O) -> (B,): sum over the output / unit axis
    mean_points: Callable[[Array], Array]  # (B, ...) -> (): mean over data points (and the rest)
    targets: Callable[[Array], Array]  # regression targets (B, O) shaped to subtract from outputs
    log_softmax: Callable[[Array], Array]  # (B, O) -> log-probabilities over O
    pick: Callable[[Array, Array], Array]  # (logp_BxO, labels_B) -> each point's label log-prob
    norm: Callable[[Any], Array]  # pytree -> global norm ‖θ‖ ()


def _dense(a: Array, w: Array, b: Array | None) -> Array:
    z = a @ w
    return z if b is None else z + b


PER_RUN = Ops(
    dense=_dense,
    sum_last=lambda a: jnp.sum(a, axis=-1),
    mean_points=jnp.mean,
    targets=lambda y: y,
    log_softmax=lambda z: jax.nn.log_softmax(z, axis=-1),
    pick=lambda logp, y: jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1),
    norm=optax.tree.norm,
)
"""One run's primitives (the vmap layout)."""
