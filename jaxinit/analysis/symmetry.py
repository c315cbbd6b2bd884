"""Solutions modulo the symmetries of a network: canonical forms and weight matching.

Permuting the hidden units of a layer (with their incoming and outgoing weights) leaves the
function unchanged, so one minimum appears ``U!`` times in parameter space. Odd activations
(tanh, erf) add sign flips ``(w_in, b, w_out) → (-w_in, -b, -w_out)``; sigmoid has the affine
flip ``σ(-z) = 1 - σ(z)`` (the next layer's bias absorbs ``w_out``); ReLU MLPs have positive
rescaling ``(α w_in, α b, w_out / α)``. :func:`canonicalize` picks one representative of each
orbit (signs by the outgoing weights, balanced scales, units sorted), vectorized over runs;
:func:`align` matches one run's units to a reference's by Hungarian assignment (Ainsworth et al.
2022, "Git Re-Basin"), choosing flips per unit. Both work on ``{"layers": [{"w", "b"?}, …]}``
params (the MLP and ``relu_student`` layout) as numpy arrays; :func:`canonical_params`,
:func:`align_params` and :func:`flat_params` work on any model through the dense-stack view it
declares (:class:`jaxinit.blocks.models.Symmetry`), and leave a model that declares none as it is.

>>> import numpy as np
>>> p = {"layers": [{"w": np.array([[1.0, -2.0]]), "b": np.zeros(2)}, {"w": np.array([[3.0], [4.0]])}]}
>>> q = {"layers": [{"w": np.array([[2.0, 1.0]]), "b": np.zeros(2)}, {"w": np.array([[-4.0], [3.0]])}]}
>>> bool(np.allclose(canonicalize(p, "odd")["layers"][0]["w"], canonicalize(q, "odd")["layers"][0]["w"]))
True
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxinit.blocks.models import Symmetry

SYMMETRIES = ("perm", "odd", "sigmoid", "scale")


def _copy(params: Any) -> list[dict[str, np.ndarray]]:
    return [{k: np.array(v, dtype=float) for k, v in layer.items()} for layer in params["layers"]]


def _flip(layers: list[dict], l: int, s_RxU: np.ndarray, symmetry: str) -> None:
    """Multiply hidden layer ``l``'s units by signs ``s`` (in place), keeping the function."""
    cur, nxt = layers[l], layers[l + 1]
    if symmetry == "sigmoid" and "b" in nxt:
        flipped = (s_RxU < 0)[..., None] * nxt["w"]  # σ(-z) = 1 - σ(z): bias absorbs w_out
        nxt["b"] = nxt["b"] + flipped.sum(-2)
    cur["w"] = cur["w"] * s_RxU[..., None, :]
    if "b" in cur:
        cur["b"] = cur["b"] * s_RxU
    nxt["w"] = nxt["w"] * s_RxU[..., :, None]


def _permute(layers: list[dict], l: int, order_RxU: np.ndarray) -> None:
    """Reorder hidden layer ``l``'s units: new unit ``j`` is old unit ``order[j]`` (in place)."""
    cur, nxt = layers[l], layers[l + 1]
    cur["w"] = np.take_along_axis(cur["w"], order_RxU[..., None, :], -1)
    if "b" in cur:
        cur["b"] = np.take_along_axis(cur["b"], order_RxU, -1)
    nxt["w"] = np.take_along_axis(nxt["w"], order_RxU[..., :, None], -2)


def _balance(layers: list[dict], l: int) -> None:
    """ReLU rescaling: make each unit's incoming and outgoing weight norms equal (in place)."""
    cur, nxt = layers[l], layers[l + 1]
    n_in = np.sum(cur["w"] ** 2, -2) + (cur["b"] ** 2 if "b" in cur else 0)
    n_out = np.sum(nxt["w"] ** 2, -1)
    ok = (n_in > 0) & (n_out > 0)
    a = np.where(ok, (np.where(ok, n_out, 1) / np.where(ok, n_in, 1)) ** 0.25, 1.0)
    cur["w"] = cur["w"] * a[..., None, :]
    if "b" in cur:
        cur["b"] = cur["b"] * a
    nxt["w"] = nxt["w"] / a[..., :, None]


def canonicalize(params: Any, symmetry: str = "perm") -> dict[str, list]:
    """One representative of ``params``' symmetry orbit; leaves may carry leading run axes.

    Hidden layers are processed from the last to the first, so each layer's sort key (its
    outgoing weights) is already canonical: signs make each unit's outgoing weights sum ≥ 0,
    ReLU units are balanced, then units are sorted by outgoing sum, incoming norm, first
    incoming weight.
    """
    layers = _copy(params)
    for l in reversed(range(len(layers) - 1)):
        if symmetry in ("odd", "sigmoid"):
            s = np.sign(layers[l + 1]["w"].sum(-1))
            _flip(layers, l, np.where(s == 0, 1.0, s), symmetry)
        if symmetry == "scale":
            _balance(layers, l)
        w_in, out = layers[l]["w"], layers[l + 1]["w"].sum(-1)
        keys = (w_in[..., 0, :], np.round(np.linalg.norm(w_in, axis=-2), 9), np.round(out, 9))
        _permute(layers, l, np.lexsort(keys, axis=-1))
    return {"layers": layers}


def _unit_features(layers: list[dict], l: int) -> np.ndarray:
    """``(U, F)``: each unit of hidden layer ``l`` as [incoming, bias, outgoing] (one run)."""
    cur, nxt = layers[l], layers[l + 1]
    parts = [cur["w"].T] + ([cur["b"][:, None]] if "b" in cur else []) + [nxt["w"]]
    return np.concatenate(parts, 1)


def align(params: Any, ref: Any, symmetry: str = "perm") -> dict[str, list]:
    """``params`` (one run) moved along its symmetry orbit to be as close as possible to ``ref``.

    Both are canonicalized first; then, layer by layer from the input, a Hungarian assignment on
    squared feature distances (with the better of ± per pair for flip symmetries) matches units.
    Exact for one hidden layer; for deeper nets one forward pass of coordinate descent.
    """
    layers = canonicalize(params, symmetry)["layers"]
    target = canonicalize(ref, symmetry)["layers"]
    flips = symmetry in ("odd", "sigmoid")
    for l in range(len(layers) - 1):
        f, g = _unit_features(layers, l), _unit_features(target, l)
        cost = ((f[:, None] - g[None]) ** 2).sum(-1)
        cost_flip = ((-f[:, None] - g[None]) ** 2).sum(-1) if flips else cost + 1.0
        rows, cols = linear_sum_assignment(np.minimum(cost, cost_flip))
        order = np.empty_like(rows)
        order[cols] = rows
        sign = np.where(
            cost_flip[order, np.arange(len(order))] < cost[order, np.arange(len(order))], -1.0, 1.0
        )
        _permute(layers, l, order)
        if flips:
            _flip(layers, l, sign, symmetry)
    return {"layers": layers}


def flat(params: Any) -> np.ndarray:
    """``(R, P)`` (or ``(P,)``) concatenation of every layer's arrays, in a fixed order."""
    layers = params["layers"]
    lead = np.asarray(layers[0]["w"]).ndim - 2
    parts = [
        np.asarray(v).reshape(*np.shape(v)[:lead], -1)
        for layer in layers
        for _, v in sorted(layer.items())
    ]
    return np.concatenate(parts, -1)


def _leaves_flat(params: Any, lead: int) -> np.ndarray:
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    return np.concatenate([x.reshape(*x.shape[:lead], -1) for x in leaves], -1)


def canonical_params(params: Any, sym: Symmetry | None) -> Any:
    """``params`` (in the model's own layout) moved to its orbit's representative."""
    if sym is None:
        return jax.tree.map(np.asarray, params)
    return sym.from_layers(canonicalize({"layers": sym.layers(params)}, sym.kind)["layers"])


def align_params(params: Any, ref: Any, sym: Symmetry | None) -> Any:
    """``params`` moved along its orbit as close as possible to ``ref`` (one run each)."""
    if sym is None:
        return jax.tree.map(np.asarray, params)
    layers = align({"layers": sym.layers(params)}, {"layers": sym.layers(ref)}, sym.kind)
    return sym.from_layers(layers["layers"])


def flat_params(params_R: Any) -> np.ndarray:
    """``(R, P)``: every leaf of a pytree with a leading run axis, concatenated."""
    return _leaves_flat(params_R, 1)
