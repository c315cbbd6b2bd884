"""Pure-functional models: a :class:`Model` is a pair ``(init, apply)`` of pure functions.

``init(key, init_spec) -> params`` draws parameters (``init_spec`` is an
:class:`~jaxinit.config.spec.InitSpec` whose float fields may be traced, so scales are vmapped);
``apply(params, x_BxI, *, key=None, train=False) -> y_BxO``. Any user pair with these signatures
plugs into :func:`jaxinit.run` the same way as the built-in MLP.

The engine vmaps a whole training run, so a model is written for one run. Models that can also
describe their hidden units (``hidden``) get symmetry and saturation diagnostics for free.

>>> import jax
>>> from jaxinit.config.spec import InitSpec
>>> net = mlp((3,), in_dim=2, out_dim=1, activation="tanh")
>>> params = net.init(jax.random.key(0), InitSpec(scheme="he_normal"))
>>> net.apply(params, jax.numpy.ones((5, 2))).shape
(5, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.initializers import INITIALIZERS, standard_normal
from jaxinit.blocks.ops import PER_RUN, Ops
from jaxinit.config.spec import InitSpec, ModelSpec

Params = Any  # a pytree of arrays


class Hidden(NamedTuple):
    """One hidden layer as the diagnostics see it."""

    incoming_UxI: Array  # each unit's incoming weights (and bias, as the last column)
    preact_BxU: Array  # pre-activations on the data
    act_BxU: Array  # activations on the data


class Symmetry(NamedTuple):
    """How a model's hidden units can be relabelled without changing its function.

    ``layers(params)`` views the parameters as a dense stack ``[{"w": (fan_in, U), "b": (U,)},
    …]`` (``b`` optional; leaves may carry leading run axes) whose hidden units are the columns
    of each ``w`` but the last; ``from_layers`` maps such a list back to the model's params.
    ``kind`` is the symmetry beyond permuting units (see :mod:`jaxinit.blocks.activations`): ``"perm"``,
    ``"odd"``, ``"sigmoid"`` or ``"scale"``. Analysis (canonical forms, weight matching,
    per-layer diagnostics) reads only this; a model without it gets function-space analysis.
    """

    kind: str
    layers: Callable[[Params], list[dict]]
    from_layers: Callable[[list[dict]], Params]


def _layers_view(params: Params) -> list[dict]:
    return params["layers"]


def _from_layers(layers: list[dict]) -> Params:
    return {"layers": list(layers)}


def dense_stack(kind: str) -> Symmetry:
    """The symmetry of a model whose params are ``{"layers": [{"w", "b"?}, …]}`` (the MLP's)."""
    return Symmetry(kind, _layers_view, _from_layers)


class Model(NamedTuple):
    """A model as two pure functions, plus what analysis may know about it.

    ``hidden(params, x_BxI) -> list[Hidden]`` (one per hidden layer) and ``activation`` (its name)
    are optional; ``trainable(params) -> pytree of bool`` masks parameters that never update;
    ``symmetry`` declares the hidden units and the transformations that leave the function
    unchanged (:class:`Symmetry`). ``model_id`` names a user model in the sweep's identity: a
    directory started with one model is never resumed with another (parameter shapes are
    compared too, but two models can share shapes). ``forward`` is the model written once
    against :class:`jaxinit.blocks.ops.Ops`, so that it runs in every layout.
    """

    init: Callable[[Array, InitSpec], Params]
    apply: Callable[..., Array]
    hidden: Callable[[Params, Array], list[Hidden]] | None = None
    activation: str | None = None
    trainable: Callable[[Params], Any] | None = None
    symmetry: Symmetry | None = None
    model_id: str | None = None
    # (ops, params, x, drop) -> outputs: the forward pass written against the layout primitives
    # (jaxinit.blocks.ops), ``drop(l, a)`` applying dropout to hidden layer l's activations (or None).
    # A model that has it runs in the lanes layout too; ``apply`` is it with ops.PER_RUN.
    forward: Callable[..., Array] | None = None


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
    if len(shape) > 2 and init.scheme in ("orthogonal", "identical_rows"):
        # A conv kernel (..., in, out): orthogonal columns / one shared filter over the
        # receptive field × in-channels, drawn as that matrix and reshaped.
        flat = (math.prod(shape[:-1]), shape[-1])
        return draw_weight(key, flat, init, dtype, role=role).reshape(shape)
    if init.scheme == "identical_rows" and role == "last":
        # Shared outgoing weights; the transposed draw has std √(1/fan_out), rescale to √(1/fan_in).
        w = draw(k_w, shape[::-1], init.scale, value=init.value, dtype=dtype).T
        w = w * (shape[1] / shape[0]) ** 0.5
    elif init.scheme == "identical_rows" and role == "middle":
        w = jnp.broadcast_to(draw(k_w, shape, init.scale, dtype=dtype)[:1, :1], shape)
    else:
        w = draw(k_w, shape, init.scale, value=init.value, dtype=dtype)
    return w + init.perturbation * standard_normal(k_eps, shape, w.dtype)


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
    residual: bool = False,
    parameterization: str = "standard",
) -> Model:
    """A fully connected net ``in_dim → widths… → out_dim`` with a linear output layer.

    ``params = {"layers": [{"w": (fan_in, fan_out), "b": (fan_out,)}, …]}``. Dropout (inverted,
    rate ``dropout``) applies to hidden activations when ``train=True`` and a key is given; the
    rate may be traced. Layer ``l``'s weights use ``fold_in(key, l)``. With ``residual`` (the
    ``resmlp`` model) every hidden layer after the first whose width equals its input's is a
    block with a skip connection, ``h ← h + φ(W h + b)``; the skips tie the units of the blocks
    together, so no per-layer unit symmetry is declared.

    ``parameterization`` (:data:`PARAMETERIZATIONS`) sets the constant each layer's input is
    multiplied by before its weights, ``z = c_l · x W + b``, with ``n_l`` the layer's fan-in:
    ``"standard"`` ``c_l = 1`` (the init scheme sets the scale); ``"ntk"`` ``c_l = 1/√n_l`` on
    every layer (Jacot et al. 2018; with ``init.scheme = "normal"`` the function at init equals
    ``lecun_normal``'s, but gradient descent sees an NTK whose eigenvalues stay O(1) as the
    width grows: the catapult's uv model); ``"mean_field"`` ``1/√n_l`` on the hidden layers and
    ``1/n_L`` on the output layer (the setup of Sohl-Dickstein 2024's fractal boundary).
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}"
        )
    dims = (in_dim, *widths, out_dim)
    act = ACTIVATIONS[activation].fn
    gains = layer_gains(parameterization, dims[:-1])
    skip = [residual and 0 < l and dims[l] == dims[l + 1] for l in range(len(widths))]

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

    def layer_out(l: int, layer, x, ops: Ops = PER_RUN):
        return ops.dense(x if gains[l] == 1.0 else x * gains[l], layer["w"], layer.get("b"))

    def forward(ops: Ops, params: Params, x: Array, drop: Callable | None = None) -> Array:
        *hidden_layers, last = params["layers"]
        for l, layer in enumerate(hidden_layers):
            a = act(layer_out(l, layer, x, ops))
            if drop is not None:
                a = drop(l, a)
            x = x + a if skip[l] else a
        return layer_out(len(hidden_layers), last, x, ops)

    def hidden(params: Params, x: Array) -> list[Hidden]:
        out = []
        for l, layer in enumerate(params["layers"][:-1]):
            z = layer_out(l, layer, x)
            a = act(z)
            w = layer["w"].T
            incoming = jnp.concatenate([w, layer["b"][:, None]], 1) if bias else w
            out.append(Hidden(incoming, z, a))
            x = x + a if skip[l] else a
        return out

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False) -> Array:
        dropping = train and key is not None and not _is_zero(dropout)
        return forward(PER_RUN, params, x, dropout_of(key, dropout) if dropping else None)

    def trainable(params: Params) -> Any:
        mask = jax.tree.map(lambda _: True, params)
        mask["layers"][-1] = jax.tree.map(lambda _: False, params["layers"][-1])
        return mask

    return Model(
        init,
        apply,
        hidden,
        activation,
        None if train_output else trainable,
        None if any(skip) else dense_stack(ACTIVATIONS[activation].symmetry),
        forward=forward,
    )


PARAMETERIZATIONS = ("standard", "ntk", "mean_field")
"""How :func:`mlp` scales each layer's input (``model.parameterization``)."""


def layer_gains(parameterization: str, fan_ins: Sequence[int]) -> tuple[float, ...]:
    """The constant ``c_l`` each layer's input is multiplied by (see :func:`mlp`), one per layer
    of fan-in ``fan_ins[l]``.

    >>> layer_gains("mean_field", (4, 16))
    (0.5, 0.0625)
    """
    n = len(fan_ins)
    if parameterization == "standard":
        return (1.0,) * n
    if parameterization == "ntk":
        return tuple(1.0 / math.sqrt(f) for f in fan_ins)
    return tuple(1.0 / f if l == n - 1 else 1.0 / math.sqrt(f) for l, f in enumerate(fan_ins))


def dropout_of(key: Array, rate: float | Array) -> Callable[[int, Array], Array]:
    """``drop(l, a)``: inverted dropout of rate ``rate`` on hidden layer ``l``'s activations of
    one run, its mask drawn from ``fold_in(key, l)`` (the key already folded with the step)."""

    def drop(l: int, a: Array) -> Array:
        keep = 1.0 - rate
        mask = jax.random.bernoulli(jax.random.fold_in(key, l), keep, a.shape)
        return jnp.where(mask, a / keep, 0.0)

    return drop


def _is_zero(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 0


def from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    """Build the model a spec names (its float fields may be traced), with its own settings."""
    return MODELS[spec.name](spec, in_dim, out_dim, **spec.params)


def _mlp_from_spec(
    spec: ModelSpec,
    in_dim: int,
    out_dim: int,
    residual: bool = False,
    *,
    parameterization: str = "standard",
) -> Model:
    """``model.parameterization``: ``standard``, ``ntk`` or ``mean_field`` (see :func:`mlp`)."""
    return mlp(
        spec.widths,
        in_dim=in_dim,
        out_dim=out_dim,
        activation=spec.activation,
        bias=spec.bias,
        dropout=spec.dropout,
        train_output=spec.train_output,
        residual=residual,
        parameterization=parameterization,
    )


def _resmlp_from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    return _mlp_from_spec(spec, in_dim, out_dim, residual=True)


MODELS: dict[str, Callable[[ModelSpec, int, int], Model]] = {
    "mlp": _mlp_from_spec,
    "resmlp": _resmlp_from_spec,
}
"""Registry ``model name -> factory(model_spec, in_dim, out_dim, *, settings) -> Model``; the
keyword-only arguments, typed by their defaults, are the model's own settings (``model.params``)."""


def relu_student(width: int, *, in_dim: int) -> Model:
    """Two-layer ReLU student ``f(x) = Σ_i relu(w_i·x)`` with the output layer fixed to ones.

    The model of Safran & Shamir (2018): ``params = {"layers": [{"w": (in_dim, width)},
    {"w": (width, 1)}]}``, no biases; the second layer is drawn as ones and frozen
    (``trainable``), so only the rows ``w_i`` train. Incoming weights use the init scheme.
    """

    def init(key: Array, init_spec: InitSpec) -> Params:
        w = draw_weight(jax.random.fold_in(key, 0), (in_dim, width), init_spec)
        return {"layers": [{"w": w}, {"w": jnp.ones((width, 1), w.dtype)}]}

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False) -> Array:
        first, last = params["layers"]
        return jax.nn.relu(x @ first["w"]) @ last["w"]

    def hidden(params: Params, x: Array) -> list[Hidden]:
        z = x @ params["layers"][0]["w"]
        return [Hidden(params["layers"][0]["w"].T, z, jax.nn.relu(z))]

    def trainable(params: Params) -> Any:
        return {"layers": [{"w": True}, {"w": False}]}

    # The output weights are fixed ones: permuting units is the only symmetry left.
    return Model(init, apply, hidden, "relu", trainable, dense_stack("perm"))


def _relu_student_from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    """``model.widths = [k]`` sets the width; ``widths = []`` means ``k = in_dim`` (k = n)."""
    if out_dim != 1:
        raise ValueError(f"relu_student has one output, the task needs {out_dim}")
    return relu_student(spec.widths[0] if spec.widths else in_dim, in_dim=in_dim)


MODELS["relu_student"] = _relu_student_from_spec


def diag_linear(*, in_dim: int, out_dim: int = 1) -> Model:
    """A diagonal linear network ``y = x · β`` with ``β = u ⊙ u − v ⊙ v`` (no bias).

    ``params = {"u": (in_dim, out_dim), "v": (in_dim, out_dim)}``, initialized at
    ``u(0) = v(0) = α·1`` with ``α = init.scale`` (so ``β(0) = 0`` at every α), plus
    ``init.perturbation · N(0, 1)`` if set; the scheme is not used. The scale α picks the regime:
    small α → rich (sparse, min-ℓ1-like solutions), large α → lazy (min-ℓ2-like), Woodworth et al.
    (2020). It has no hidden units, so hidden-unit diagnostics do not apply.
    """

    def init(key: Array, init_spec: InitSpec) -> Params:
        shape = (in_dim, out_dim)
        k_u, k_v = jax.random.split(key)
        ones = jnp.ones(shape) * init_spec.scale
        eps = init_spec.perturbation
        return {
            "u": ones + eps * standard_normal(k_u, shape),
            "v": ones + eps * standard_normal(k_v, shape),
        }

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False) -> Array:
        del key, train
        return x @ (params["u"] ** 2 - params["v"] ** 2)

    return Model(init, apply, activation="linear")


MODELS["diag_linear"] = lambda spec, in_dim, out_dim: diag_linear(in_dim=in_dim, out_dim=out_dim)


def cnn(
    channels: Sequence[int],
    *,
    image_shape: tuple[int, int, int],
    out_dim: int,
    activation: str = "relu",
    bias: bool = True,
    kernel_size: int = 3,
    dropout: float | Array = 0.0,
    train_output: bool = True,
) -> Model:
    """A small convolutional net on flat images: conv → activation → 2×2 average pool, per entry
    of ``channels``, then one linear output layer on the flattened feature map.

    Inputs are ``(B, H·W·C)`` rows (as a :class:`~jaxinit.blocks.tasks.Task` holds them), reshaped to
    ``image_shape = (H, W, C)``. Convolutions are ``kernel_size``² with stride 1 and SAME padding;
    pooling halves each side (skipped once a side is 1). ``params = {"layers": [{"w": (k, k, C_in,
    C_out), "b": (C_out,)}, …, {"w": (features, out_dim), "b": (out_dim,)}]}``: kernels are drawn
    by :func:`draw_weight` at fan-in ``k²·C_in`` and fan-out ``k²·C_out``. Channels can be
    permuted without changing the function, but the dense-stack view of :class:`Symmetry` cannot
    express a conv kernel, so none is declared and analysis compares functions. ``hidden`` treats
    each channel as a unit seen at every position (rows ``B·H·W``).
    """
    h, w, c = image_shape
    act = ACTIVATIONS[activation].fn
    sides, depth = [(h, w)], [c, *channels]
    for _ in channels:
        a, b = sides[-1]
        sides.append((a // 2 if a > 1 else a, b // 2 if b > 1 else b))
    features = sides[-1][0] * sides[-1][1] * depth[-1]

    def init(key: Array, init_spec: InitSpec) -> Params:
        shapes = [(kernel_size, kernel_size, a, b) for a, b in zip(depth[:-1], depth[1:])]
        shapes.append((features, out_dim))
        layers = []
        for l, shape in enumerate(shapes):
            k_w, k_b = jax.random.split(jax.random.fold_in(key, l))
            role = "first" if l == 0 else "last" if l == len(shapes) - 1 else "middle"
            layer = {"w": draw_weight(k_w, shape, init_spec, role=role)}
            if bias:
                layer["b"] = draw_bias(k_b, shape[-1:], init_spec)
            layers.append(layer)
        return {"layers": layers}

    def conv(layer, x_BxHxWxC):
        # im2col: the k² shifted views side by side, then one matmul. Vmapped over runs this
        # stays a batched matmul; a vmapped lax.conv becomes a grouped convolution, ~10× slower
        # on CPU. Same numbers as lax.conv_general_dilated(..., "SAME", ("NHWC", "HWIO", "NHWC")).
        _, a, b, _ = x_BxHxWxC.shape
        lo = (kernel_size - 1) // 2
        pad = ((0, 0), (lo, kernel_size - 1 - lo), (lo, kernel_size - 1 - lo), (0, 0))
        xp = jnp.pad(x_BxHxWxC, pad)
        cols = [
            xp[:, dy : dy + a, dx : dx + b, :]
            for dy in range(kernel_size)
            for dx in range(kernel_size)
        ]
        z = jnp.concatenate(cols, -1) @ layer["w"].reshape(-1, layer["w"].shape[-1])
        return z + layer["b"] if bias else z

    def pool(x_BxHxWxC):
        _, a, b, _ = x_BxHxWxC.shape
        win = (1, 2 if a > 1 else 1, 2 if b > 1 else 1, 1)
        total = jax.lax.reduce_window(x_BxHxWxC, 0.0, jax.lax.add, win, win, "VALID")
        return total / (win[1] * win[2])

    def features_of(params: Params, x: Array, key: Array | None, train: bool):
        x = x.reshape(x.shape[0], h, w, c)
        seen = []
        for l, layer in enumerate(params["layers"][:-1]):
            z = conv(layer, x)
            x = act(z)
            seen.append((layer, z, x))
            if train and key is not None and not _is_zero(dropout):
                keep = 1.0 - dropout
                mask = jax.random.bernoulli(jax.random.fold_in(key, l), keep, x.shape)
                x = jnp.where(mask, x / keep, 0.0)
            x = pool(x)
        return x.reshape(x.shape[0], -1), seen

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False) -> Array:
        x, _ = features_of(params, x, key, train)
        last = params["layers"][-1]
        z = x @ last["w"]
        return z + last["b"] if bias else z

    def hidden(params: Params, x: Array) -> list[Hidden]:
        out = []
        for layer, z, a in features_of(params, x, None, False)[1]:
            w = layer["w"].reshape(-1, layer["w"].shape[-1]).T
            incoming = jnp.concatenate([w, layer["b"][:, None]], 1) if bias else w
            out.append(Hidden(incoming, z.reshape(-1, z.shape[-1]), a.reshape(-1, a.shape[-1])))
        return out

    def trainable(params: Params) -> Any:
        mask = jax.tree.map(lambda _: True, params)
        mask["layers"][-1] = jax.tree.map(lambda _: False, params["layers"][-1])
        return mask

    return Model(init, apply, hidden, activation, None if train_output else trainable)


def _cnn_from_spec(spec: ModelSpec, in_dim: int, out_dim: int) -> Model:
    """``model.widths`` are the conv channels; the task's inputs must be square one-channel
    images flattened (``in_dim = side²``, as the ``digits`` task's 8×8 = 64)."""
    side = math.isqrt(in_dim)
    if side * side != in_dim:
        raise ValueError(
            f"model 'cnn' needs square one-channel images (in_dim = side²); the task has "
            f"in_dim = {in_dim}"
        )
    return cnn(
        spec.widths,
        image_shape=(side, side, 1),
        out_dim=out_dim,
        activation=spec.activation,
        bias=spec.bias,
        dropout=spec.dropout,
        train_output=spec.train_output,
    )


MODELS["cnn"] = _cnn_from_spec
