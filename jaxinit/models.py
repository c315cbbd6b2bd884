"""Pure-functional models: a :class:`Model` is a pair ``(init, apply)`` of pure functions.

``init(key, init_spec) -> params`` draws parameters (``init_spec`` is an
:class:`~jaxinit.spec.InitSpec` whose float fields may be traced, so scales are vmapped);
``apply(params, x_BxI, *, key=None, train=False) -> y_BxO``. Any user pair with these signatures
plugs into :func:`jaxinit.run` the same way as the built-in MLP.

The engine vmaps a whole training run, so a model is written for one run. Models that can also
describe their hidden units (``hidden``) get symmetry and saturation diagnostics for free.

>>> import jax
>>> from jaxinit.spec import InitSpec
>>> net = mlp((3,), in_dim=2, out_dim=1, activation="tanh")
>>> params = net.init(jax.random.key(0), InitSpec(scheme="he_normal"))
>>> net.apply(params, jax.numpy.ones((5, 2))).shape
(5, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.initializers import INITIALIZERS
from jaxinit.spec import InitSpec, ModelSpec

Params = Any  # a pytree of arrays


class Hidden(NamedTuple):
    """One hidden layer as the diagnostics see it."""

    incoming_UxI: Array  # each unit's incoming weights (and bias, as the last column)
    preact_BxU: Array  # pre-activations on the data
    act_BxU: Array  # activations on the data


class Model(NamedTuple):
    """A model as two pure functions, plus optional introspection for diagnostics.

    ``hidden(params, x_BxI) -> list[Hidden]`` (one per hidden layer) and ``activation`` (its name)
    are optional; ``trainable(params) -> pytree of bool`` masks parameters that never update.
    """

    init: Callable[[Array, InitSpec], Params]
    apply: Callable[..., Array]
    hidden: Callable[[Params, Array], list[Hidden]] | None = None
    activation: str | None = None
    trainable: Callable[[Params], Any] | None = None


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "linear": lambda z: z,
    "erf": jax.scipy.special.erf,
}


def draw_weight(
    key: Array, shape: tuple[int, ...], init: InitSpec, dtype=None, *, role: str = "first"
) -> Array:
    """One weight matrix: ``init.scheme`` at ``init.scale``, plus ``init.perturbation · N(0, 1)``.

    The perturbation uses its own stream, so ε = 0 gives exactly the unperturbed scheme and the
    same noise is added at every ε for a given key. ``role`` (``first``, ``middle``, ``last``)
    keeps ``identical_rows`` symmetric in the hidden units wherever they sit: shared incoming
    weights into the first hidden layer, shared outgoing weights out of the last, one shared
    value between hidden layers.
    """
    k_w, k_eps = jax.random.split(key)
    draw = INITIALIZERS[init.scheme]
    if init.scheme == "identical_rows" and role == "last":
        w = draw(k_w, shape[::-1], init.scale, value=init.value, dtype=dtype).T
    elif init.scheme == "identical_rows" and role == "middle":
        w = jnp.broadcast_to(draw(k_w, shape, init.scale, dtype=dtype)[:1, :1], shape)
    else:
        w = draw(k_w, shape, init.scale, value=init.value, dtype=dtype)
    return w + init.perturbation * jax.random.normal(k_eps, shape, w.dtype)


def draw_bias(key: Array, shape: tuple[int, ...], init: InitSpec, dtype=None) -> Array:
    return INITIALIZERS[init.bias_scheme](
        key, shape, init.bias_scale, value=init.value, dtype=dtype
    )


def mlp(
    widths: Sequence[int],
    *,
    in_dim: int,
    out_dim: int,
    activation: str = "tanh",
    bias: bool = True,
    dropout: float | Array = 0.0,
    train_output: bool = True,
) -> Model:
    """A fully connected net ``in_dim → widths… → out_dim`` with a linear output layer.

    ``params = {"layers": [{"w": (fan_in, fan_out), "b": (fan_out,)}, …]}``. Dropout (inverted,
    rate ``dropout``) applies to hidden activations when ``train=True`` and a key is given; the
    rate may be traced. Layer ``l``'s weights use ``fold_in(key, l)``.
    """
    dims = (in_dim, *widths, out_dim)
    act = ACTIVATIONS[activation]

    def init(key: Array, init_spec: InitSpec) -> Params:
        layers = []
        n = len(dims) - 1
        for l, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            k_w, k_b = jax.random.split(jax.random.fold_in(key, l))
            role = "first" if l == 0 else "last" if l == n - 1 else "middle"
            layer = {"w": draw_weight(k_w, (a, b), init_spec, role=role)}
            if bias:
                layer["b"] = draw_bias(k_b, (b,), init_spec)
            layers.append(layer)
        return {"layers": layers}

    def layer_out(layer, x):
        z = x @ layer["w"]
        return z + layer["b"] if bias else z

    def hidden(params: Params, x: Array) -> list[Hidden]:
        out = []
        for layer in params["layers"][:-1]:
            z = layer_out(layer, x)
            x = act(z)
            w = layer["w"].T
            incoming = jnp.concatenate([w, layer["b"][:, None]], 1) if bias else w
            out.append(Hidden(incoming, z, x))
        return out

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False) -> Array:
        *hidden_layers, last = params["layers"]
        for l, layer in enumerate(hidden_layers):
            x = act(layer_out(layer, x))
            if train and key is not None and not _is_zero(dropout):
                keep = 1.0 - dropout
                mask = jax.random.bernoulli(jax.random.fold_in(key, l), keep, x.shape)
                x = jnp.where(mask, x / keep, 0.0)
        return layer_out(last, x)

    def trainable(params: Params) -> Any:
        mask = jax.tree.map(lambda _: True, params)
        mask["layers"][-1] = jax.tree.map(lambda _: False, params["layers"][-1])
        return mask

    return Model(init, apply, hidden, activation, None if train_output else trainable)


def _is_zero(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 0


def from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    """Build the model a spec names (its float fields may be traced)."""
    return MODELS[spec.name](spec, in_dim, out_dim)


def _mlp_from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    return mlp(
        spec.widths,
        in_dim=in_dim,
        out_dim=out_dim,
        activation=spec.activation,
        bias=spec.bias,
        dropout=spec.dropout,
        train_output=spec.train_output,
    )


MODELS: dict[str, Callable[[ModelSpec, int, int], Model]] = {"mlp": _mlp_from_spec}
"""Registry ``model name -> factory(model_spec, in_dim, out_dim) -> Model``."""
