"""Models users already have: Flax (linen, nnx) and Equinox modules as a :class:`~jaxinit.Model`.

An adapter keeps the module's forward pass and replaces its initializers: ``init(key,
init_spec)`` redraws every kernel with ``init.scheme`` at ``init.scale`` at its own fan-in and
fan-out (:func:`reinit`), so a sweep over schemes and scales means the same for a user's module
as for the built-in MLP. Where the parameters form a stack of dense layers (``Dense`` /
``Linear`` kernels whose widths chain), the adapter proposes the symmetry of hidden units and
keeps the strongest kind — ``odd``, ``sigmoid``, ``scale`` or plain ``perm`` — that leaves the
module's outputs unchanged on random parameters and inputs; a module that fails even ``perm``
(a skip connection, a shared layer) declares none and gets function-space analysis.

Flax and Equinox are optional (``pip install 'jaxinit[adapters]'``) and imported only when an
adapter is called; :func:`reinit` needs neither.

>>> import jax, jax.numpy as jnp
>>> from jaxinit.config.spec import InitSpec
>>> p = reinit(jax.random.key(0), {"conv": {"kernel": jnp.zeros((3, 3, 4, 8))}}, InitSpec("he_normal"))
>>> p["conv"]["kernel"].shape   # drawn at fan-in 3·3·4 = 36
(3, 3, 4, 8)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxinit.blocks.models import Model, Params, Symmetry, draw_bias, draw_weight
from jaxinit.config.spec import InitSpec

__all__ = ["reinit", "from_flax", "from_equinox", "dense_stack_symmetry"]

BIAS_NAMES = ("bias", "b")
"""A 1-D leaf whose name is one of these is a bias (drawn with ``init.bias_scheme``)."""
KERNEL_NAMES = ("kernel", "weight", "w")
SYMMETRY_KINDS = ("odd", "sigmoid", "scale", "perm")  # strongest first


def _name(path: tuple) -> str:
    key = path[-1] if path else None
    if isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value" and len(path) > 1:
        key = path[-2]  # an nnx Variable's value
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _to_io(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A kernel's shape as ``(*receptive, fan_in, fan_out)``."""
    if layout == "io":
        return shape
    return (*shape[2:], shape[1], shape[0])  # "oi": (out, in, *receptive), Equinox / PyTorch


def _from_io(w: Array, layout: str) -> Array:
    return w if layout == "io" else jnp.moveaxis(w, (-1, -2), (0, 1))


def reinit(key: Array, params: Params, init_spec: InitSpec, *, layout: str = "io") -> Params:
    """``params`` with every kernel redrawn by ``init_spec`` (scheme, scale, perturbation) and
    every bias by its bias scheme; other leaves (norm scales, embeddings of one dim) are kept.

    A bias is a leaf named ``bias`` or ``b`` (any shape); a kernel is any other leaf with two or
    more dims; ``layout = "io"`` reads it as ``(*receptive,
    fan_in, fan_out)`` (jaxinit, Flax: dense ``(in, out)``, conv ``(kh, kw, in, out)``),
    ``"oi"`` as ``(fan_out, fan_in, *receptive)`` (Equinox, PyTorch). A conv kernel's fan-in is
    its receptive field × input channels (:func:`jaxinit.blocks.initializers.expected_std` gives the
    promised std). Leaf ``i`` (in flattening order) draws from ``fold_in(key, i)``; the first
    kernel takes ``identical_rows``' "first" role, the last its "last" role. Only shapes and
    dtypes of ``params`` are read, so it may be abstract (``jax.eval_shape``) except for kept
    leaves.
    """
    if layout not in ("io", "oi"):
        raise ValueError(f"layout must be 'io' or 'oi', got {layout!r}")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    kernels = [
        i for i, (path, x) in enumerate(leaves) if np.ndim(x) >= 2 and _name(path) not in BIAS_NAMES
    ]
    out = []
    for i, (path, x) in enumerate(leaves):
        k = jax.random.fold_in(key, i)
        if i in kernels:
            role = "first" if i == kernels[0] else "last" if i == kernels[-1] else "middle"
            w = draw_weight(k, _to_io(tuple(x.shape), layout), init_spec, role=role)
            out.append(_from_io(w, layout))
        elif _name(path) in BIAS_NAMES:  # any shape: Equinox conv biases are (out, 1, 1)
            out.append(draw_bias(k, tuple(x.shape), init_spec))
        else:
            out.append(jnp.asarray(x))
    return jax.tree_util.tree_unflatten(treedef, out)


# -- dense stacks -----------------------------------------------------------------------------
def _natural(path: tuple) -> list:
    """Sort key of a layer's path: ``Dense_10`` after ``Dense_2``, ``layers[10]`` after ``[2]``."""
    text = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _stack_slots(params: Params, layout: str) -> list[tuple[int, int | None]] | None:
    """``[(kernel leaf index, bias leaf index or None), …]`` in layer order if every leaf of
    ``params`` belongs to a dense layer (one 2-D kernel, at most one 1-D bias) and the layers'
    widths chain; else ``None``."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    by_parent: dict[tuple, dict[str, int]] = {}
    for i, (path, x) in enumerate(leaves):
        name = _name(path)
        last = path[-1]
        is_value = isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value"
        parent = path[:-2] if is_value and len(path) > 1 else path[:-1]
        slot = "w" if name in KERNEL_NAMES and np.ndim(x) == 2 else None
        slot = "b" if name in BIAS_NAMES and np.ndim(x) == 1 else slot
        if slot is None or slot in by_parent.setdefault(parent, {}):
            return None
        by_parent[parent][slot] = i
    if any("w" not in s for s in by_parent.values()) or len(by_parent) < 2:
        return None
    order = sorted(by_parent, key=_natural)
    slots = [(by_parent[p]["w"], by_parent[p].get("b")) for p in order]
    shapes = [_to_io(tuple(leaves[w][1].shape), layout) for w, _ in slots]
    for (_, fan_out), (_, bias) in zip(shapes, slots):
        if bias is not None and leaves[bias][1].shape != (fan_out,):
            return None
    if any(s[1] != t[0] for s, t in zip(shapes[:-1], shapes[1:])):
        return None
    return slots


def _stack_view(params: Params, layout: str) -> Symmetry | None:
    """The dense-stack view (``layers`` / ``from_layers``) of params shaped like ``params``."""
    slots = _stack_slots(params, layout)
    if slots is None:
        return None
    treedef = jax.tree.structure(params)
    n = treedef.num_leaves

    def swap(x):
        return x if layout == "io" else x.swapaxes(-1, -2)

    def layers(p: Params) -> list[dict]:
        leaves = jax.tree.leaves(p)
        out = []
        for w, b in slots:
            layer = {"w": swap(leaves[w])}
            if b is not None:
                layer["b"] = leaves[b]
            out.append(layer)
        return out

    def from_layers(layers_: list[dict]) -> Params:
        leaves: list[Any] = [None] * n
        for (w, b), layer in zip(slots, layers_):
            leaves[w] = swap(layer["w"])
            if b is not None:
                leaves[b] = layer["b"]
        return jax.tree.unflatten(treedef, leaves)

    return Symmetry("perm", layers, from_layers)


def _transform(layers: list[dict], kind: str, rng: np.random.Generator) -> list[dict]:
    """A random element of ``kind``'s group applied to every hidden layer (one run, numpy)."""
    layers = [{k: np.array(v, np.float64) for k, v in layer.items()} for layer in layers]
    for cur, nxt in zip(layers[:-1], layers[1:]):
        u = cur["w"].shape[1]
        perm = rng.permutation(u)
        s = rng.choice([-1.0, 1.0], u) if kind in ("odd", "sigmoid") else np.ones(u)
        a = rng.uniform(0.5, 2.0, u) if kind == "scale" else np.ones(u)
        cur["w"] = cur["w"][:, perm] * s * a
        if "b" in cur:
            cur["b"] = cur["b"][perm] * s * a
        out_w = nxt["w"][perm]
        if kind == "sigmoid":  # σ(-z) = 1 - σ(z): the next bias absorbs the flipped rows
            nxt["b"] = nxt["b"] + ((s < 0)[:, None] * out_w).sum(0)
        nxt["w"] = out_w * s[:, None] / a[:, None]
    return layers


def dense_stack_symmetry(
    init: Callable[[Array, InitSpec], Params],
    apply: Callable[[Params, Array], Array],
    x: Array,
    layout: str = "io",
    kinds: tuple[str, ...] = SYMMETRY_KINDS,
) -> Symmetry | None:
    """The strongest symmetry in ``kinds`` that a model's dense stack really has, or ``None``.

    Each kind is tested on three random parameter draws (Glorot weights, N(0, 0.5²) biases)
    and inputs ``x`` plus noise: a random element of its group (unit permutation, with sign
    flips, sigmoid flips or positive rescalings) must leave ``apply`` unchanged to 1e-4 of the
    output scale. A model whose params are no dense stack, or that fails every kind, gets None.
    """
    spec = InitSpec("glorot_normal", bias_scheme="normal", bias_scale=0.5)
    template = jax.eval_shape(lambda k: init(k, spec), jax.random.key(0))
    view = _stack_view(template, layout)
    if view is None:
        return None
    rng = np.random.default_rng(0)
    draws = []
    for i in range(3):
        p = init(jax.random.key(1000 + i), spec)
        xi = jnp.asarray(x) + jnp.asarray(rng.normal(size=np.shape(x)), jnp.result_type(float))
        draws.append((p, xi, np.asarray(apply(p, xi), np.float64)))
    for kind in kinds:
        ok = True
        for p, xi, y in draws:
            layers = view.layers(p)
            if kind == "sigmoid" and any("b" not in layer for layer in layers[1:]):
                ok = False
                break
            moved = view.from_layers(
                [jax.tree.map(jnp.asarray, layer) for layer in _transform(layers, kind, rng)]
            )
            moved = jax.tree.map(lambda t, m: jnp.asarray(m, t.dtype), p, moved)
            y2 = np.asarray(apply(moved, xi), np.float64)
            if not np.allclose(y2, y, rtol=0, atol=1e-4 * (1.0 + np.abs(y).max())):
                ok = False
                break
        if ok:
            return view._replace(kind=kind)
    return None


def _symmetry(symmetry, init, apply, x, layout) -> Symmetry | None:
    if symmetry is None or isinstance(symmetry, Symmetry):
        return symmetry
    if symmetry == "auto":
        return dense_stack_symmetry(init, apply, x, layout)
    if symmetry not in SYMMETRY_KINDS:
        raise ValueError(
            f"symmetry must be 'auto', None, a jaxinit.Symmetry or one of {SYMMETRY_KINDS}, "
            f"got {symmetry!r}"
        )
    found = dense_stack_symmetry(init, apply, x, layout, kinds=(symmetry,))
    if found is None:
        raise ValueError(
            f"symmetry={symmetry!r}: the module's params are not a dense stack with that "
            "symmetry (checked on random params); pass symmetry='auto' or None"
        )
    return found


STATEFUL = (
    "Stateful modules are unsupported: jaxinit trains a pure apply(params, x), vmapped over runs "
    "and differentiated inside one compiled program, which cannot carry or update state between "
    "steps. Use a stateless layer instead (e.g. LayerNorm rather than BatchNorm, or BatchNorm "
    "with use_running_average=True / a deterministic Dropout in Flax nnx)."
)


def _nnx_updated_state(module: Any, x: Array) -> list[str]:
    """Paths of the non-``Param`` state that calling an nnx ``module`` on ``x`` writes (tried on
    a clone, so ``module`` is left as it was; a write replaces the variable's array, even by an
    equal one); ``[]`` if none, or if the call fails (left to the later checks, which name the
    error)."""
    from flax import nnx

    def rest(m) -> dict[str, Any]:
        leaves = jax.tree_util.tree_flatten_with_path(nnx.split(m, nnx.Param, ...)[2])[0]
        return {jax.tree_util.keystr(p, simple=True, separator="."): a for p, a in leaves}

    probe = nnx.clone(module)
    before = rest(probe)
    try:
        probe(x)
    except Exception:
        return []
    after = rest(probe)
    return [k.removesuffix(".value") for k in before if after.get(k) is not before[k]]


def _model_id(framework: str, module: Any) -> str:
    cls = type(module)
    return f"{framework}:{cls.__module__}.{cls.__qualname__}"


def _require(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(
            f"this adapter needs {name}: pip install 'jaxinit[adapters]' (flax and equinox)"
        ) from None


def from_flax(
    module: Any,
    example_x: Any,
    *,
    symmetry: Any = "auto",
    model_id: str | None = None,
) -> Model:
    """A Flax module as a :class:`~jaxinit.Model`: ``flax.linen.Module`` or ``flax.nnx.Module``.

    ``example_x`` is one batch of inputs (its shape is what the task feeds, ``(B, in_dim)``; a
    module that wants images reshapes them itself). ``init`` redraws the module's ``params``
    with :func:`reinit` (layout ``(…, in, out)``), so ``init.scheme`` / ``init.scale`` apply to
    every ``Dense`` and ``Conv`` kernel; ``apply(params, x)`` runs the module. Stateful modules
    are refused (:data:`STATEFUL`): linen modules with collections besides ``params`` (BatchNorm
    statistics), and nnx modules whose call on ``example_x`` changes their non-``Param`` state
    (BatchNorm in training mode, Dropout drawing from its ``Rngs``); other non-``Param`` state is
    kept fixed. ``symmetry="auto"`` declares a dense stack's symmetry
    when it checks out (:func:`dense_stack_symmetry`); a kind name insists on that kind, ``None``
    declares none. ``model_id`` defaults to the module's class.

    >>> import flax.linen as nn, jax.numpy as jnp   # doctest: +SKIP
    >>> net = nn.Sequential([nn.Dense(4), nn.tanh, nn.Dense(1)])   # doctest: +SKIP
    >>> from_flax(net, jnp.zeros((4, 2))).symmetry.kind   # doctest: +SKIP
    'odd'
    """
    _require("flax")
    from flax import linen, nnx

    x = jnp.asarray(example_x)
    if isinstance(module, linen.Module):
        variables = module.init(jax.random.key(0), x)
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise ValueError(
                f"from_flax runs modules whose only variables are 'params'; this one also has "
                f"{extra} (e.g. BatchNorm statistics). {STATEFUL}"
            )
        template = jax.tree.map(jnp.asarray, dict(variables["params"]))

        def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False):
            return module.apply({"params": params}, x)

        framework = "flax.linen"
    elif isinstance(module, nnx.Module):
        changed = _nnx_updated_state(module, x)
        if changed:
            raise ValueError(
                f"from_flax runs modules whose forward pass only reads its state; this nnx "
                f"module updates {changed} when called (e.g. BatchNorm statistics, a Dropout's "
                f"rng count). {STATEFUL}"
            )
        graphdef, state, rest = nnx.split(module, nnx.Param, ...)
        template = nnx.to_pure_dict(state)
        state_def = jax.tree.structure(state)

        def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False):
            st = jax.tree.unflatten(state_def, jax.tree.leaves(params))
            return nnx.merge(graphdef, st, rest)(x)

        framework = "flax.nnx"
    else:
        raise TypeError(f"from_flax needs a flax.linen or flax.nnx Module, got {type(module)}")

    def init(key: Array, init_spec: InitSpec) -> Params:
        return reinit(key, template, init_spec)

    sym = _symmetry(symmetry, init, apply, x, "io")
    return Model(init, apply, symmetry=sym, model_id=model_id or _model_id(framework, module))


def from_equinox(
    model: Any,
    *,
    example_x: Any = None,
    symmetry: Any = "auto",
    model_id: str | None = None,
) -> Model:
    """An Equinox module (called on one example, as Equinox modules are) as a
    :class:`~jaxinit.Model` whose ``apply`` vmaps it over the batch.

    Its floating-point arrays are the params (``eqx.partition(model, eqx.is_inexact_array)``);
    ``init`` redraws them with :func:`reinit` in Equinox's ``(out, in, *receptive)`` layout, so
    ``eqx.nn.Linear`` and ``eqx.nn.Conv`` kernels get ``init.scheme`` at their own fans. A
    stateful module (one holding an ``eqx.nn.StateIndex``, e.g. ``eqx.nn.BatchNorm``) is refused.
    ``example_x`` (a batch) is used only to test the symmetry; without it a dense stack is
    probed with Gaussian inputs of its first layer's width. ``symmetry`` and ``model_id`` as in
    :func:`from_flax`.

    >>> import equinox as eqx, jax   # doctest: +SKIP
    >>> mlp = eqx.nn.MLP(2, 1, 4, 1, activation=jax.nn.relu, key=jax.random.key(0))   # doctest: +SKIP
    >>> from_equinox(mlp).symmetry.kind   # doctest: +SKIP
    'scale'
    """
    eqx = _require("equinox")
    held = [
        jax.tree_util.keystr(p, simple=True, separator=".")
        for p, v in jax.tree_util.tree_flatten_with_path(
            model, is_leaf=lambda v: isinstance(v, eqx.nn.StateIndex)
        )[0]
        if isinstance(v, eqx.nn.StateIndex)
    ]
    if held:
        raise ValueError(
            f"from_equinox runs stateless modules; this one holds state ({held}: "
            f"eqx.nn.StateIndex, e.g. BatchNorm statistics) that its __call__ takes and returns "
            f"as a 'state' argument. {STATEFUL}"
        )
    params0, static = eqx.partition(model, eqx.is_inexact_array)

    def apply(params: Params, x: Array, *, key: Array | None = None, train: bool = False):
        return jax.vmap(eqx.combine(params, static))(x)

    def init(key: Array, init_spec: InitSpec) -> Params:
        return reinit(key, params0, init_spec, layout="oi")

    x = example_x
    if x is None:
        slots = _stack_slots(params0, "oi")
        if slots is not None:
            first = jax.tree.leaves(params0)[slots[0][0]]
            x = np.zeros((8, first.shape[1]), np.float32)
    if x is None:
        sym = None if symmetry == "auto" else _symmetry(symmetry, init, apply, None, "oi")
    else:
        sym = _symmetry(symmetry, init, apply, jnp.asarray(x), "oi")
    return Model(init, apply, symmetry=sym, model_id=model_id or _model_id("equinox", model))
