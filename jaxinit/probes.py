"""Probe sweeps: deep random nets measured at init — nothing is trained.

A probe spec is a TOML file like a training sweep's, with ``kind`` naming what is measured and a
``[probe]`` section in place of task / model / optimizer (one compiled program per activation ×
weight distribution; ``σ_w``, ``σ_b`` and seeds are vmapped inside it):

* ``kind = "signal_propagation"``: two inputs of correlation ``correlation`` sent through nets
  of ``depth`` layers of ``width`` units (:func:`jaxinit.signal.propagate_grid`): per layer the
  pre-activation variance ``q`` of each input, their correlation ``c``, and (``gradients``) the
  squared norm of a random gradient sent back from the last layer, ``|δ^l|²/width``
  (:func:`jaxinit.signal.backprop_norms`, from an input at the fixed point ``q*``). Axes:
  ``activation``, ``weights``, ``sigma_w``, ``sigma_b``, ``seed``.
* ``kind = "jacobian_spectrum"``: the input-output Jacobian of square nets of ``width`` at each
  depth in ``depths`` (:func:`jaxinit.signal.jacobians`), from an input at ``q*``: its squared
  singular values and their mean and variance. ``σ_w`` is ``sigma_w`` or, with
  ``sigma_w = "critical"``, each activation's critical scale at ``sigma_b``
  (:func:`jaxinit.theory.critical_scale`). Axes: ``activation``, ``weights``, ``seed``.

Results are a labelled ``xarray.Dataset`` (:func:`run`), stored as ``probe.json`` + one ``.npz``
(read with ``allow_pickle=False``); running the same spec into the same directory loads it,
another spec is refused. Seed ``s`` draws its net from ``fold_in(key(spec seed), s)``, shared
across the ``σ`` grid and the activations (common random numbers).

>>> ds = run({"kind": "signal_propagation", "probe": {"depth": 3, "width": 8, "in_dim": 4},
...           "axes": {"sigma_w": [1.0, 2.0], "seed": 2}}, progress=False)
>>> ds.c.dims
('activation', 'weights', 'sigma_w', 'sigma_b', 'seed', 'layer')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit import _toml, signal
from jaxinit.activations import ACTIVATIONS
from jaxinit.identity import software
from jaxinit.plots.names import FIGURE_NAMES
from jaxinit.spec import MAX_SEED, SpecError
from jaxinit.store import PROBE_FILE, StoreError, atomic_write, decode_chunk, encode_chunk

if TYPE_CHECKING:  # xarray and SciPy (jaxinit.theory) load when a probe runs, not at import
    import xarray as xr

__all__ = ["KINDS", "ProbeSpec", "ProbeSettings", "is_probe", "load", "resolve", "run", "summarize"]

KINDS = ("signal_propagation", "jacobian_spectrum")
FORMAT = 1
_AXES = {
    "signal_propagation": ("activation", "weights", "sigma_w", "sigma_b", "seed"),
    "jacobian_spectrum": ("activation", "weights", "seed"),
}
_AXIS_DEFAULTS = {"activation": ["tanh"], "weights": ["gaussian"], "sigma_w": [1.0],
                  "sigma_b": [0.0], "seed": 1}  # fmt: skip
_TOP = ("name", "description", "kind", "seed", "report", "probe", "axes")


@dataclass(frozen=True)
class ProbeSettings:
    """The ``[probe]`` section: the shape of the random nets and what is sent through them."""

    depth: int = 50  # signal_propagation: layers
    width: int = 256  # units per layer (jacobian_spectrum: also the input dimension)
    in_dim: int = 64  # signal_propagation: input dimension
    correlation: float = 0.6  # signal_propagation: cosine of the two inputs
    gradients: bool = True  # signal_propagation: also send a gradient backwards
    depths: tuple[int, ...] = (4, 8, 16, 32, 64)  # jacobian_spectrum: depths measured
    sigma_w: float | str = "critical"  # jacobian_spectrum: σ_w, or "critical" per activation
    sigma_b: float = 0.0  # jacobian_spectrum: bias std


@dataclass(frozen=True)
class ProbeSpec:
    """A probe sweep. ``axes``: ``(name, values)`` in dataset order (``seed``: ``range(n)``)."""

    kind: str
    name: str = "probe"
    description: str = ""
    seed: int = 0
    report: tuple[str, ...] = ()
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    axes: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeSpec:
        """Structure, types and values checked; every problem is a :class:`SpecError`."""
        if isinstance(data, ProbeSpec):
            return data
        _keys("spec", data, _TOP)
        kind = data.get("kind")
        if kind not in KINDS:
            raise SpecError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        settings = _settings(data.get("probe", {}))
        axes_in = data.get("axes", {})
        _keys("axes", axes_in, _AXES[kind])
        axes = tuple((a, _axis(a, axes_in.get(a, _AXIS_DEFAULTS[a]))) for a in _AXES[kind])
        report = tuple(_typed("report", data.get("report", []), list))
        unknown = [r for r in report if r not in FIGURE_NAMES]
        if unknown:
            raise SpecError(
                f"report: unknown figure {unknown[0]!r}; known: {', '.join(FIGURE_NAMES)}"
            )
        seed = _typed("seed", data.get("seed", 0), int)
        if not 0 <= seed <= MAX_SEED:
            raise SpecError(f"seed must be in 0..{MAX_SEED}, got {seed}")
        return cls(kind, _typed("name", data.get("name", kind), str),
                   _typed("description", data.get("description", ""), str), seed, report,
                   settings, axes)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able dicts (the layout :meth:`from_dict` reads)."""
        axes = {a: len(v) if a == "seed" else list(v) for a, v in self.axes}
        probe = {k: list(v) if isinstance(v, tuple) else v
                 for k, v in dataclasses.asdict(self.probe).items()}  # fmt: skip
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "seed": self.seed, "report": list(self.report), "probe": probe, "axes": axes}  # fmt: skip

    def with_overrides(self, overrides: Mapping[str, Any]) -> ProbeSpec:
        """``--set``-style overrides: ``probe.width``, ``axes.sigma_w``, ``axes.seed``, ``name``…"""
        data = self.to_dict()
        for path, value in overrides.items():
            head, _, rest = path.partition(".")
            if head in ("name", "description", "seed", "report") and not rest:
                data[head] = value
            elif head in ("probe", "axes") and rest and "." not in rest:
                data[head][rest] = value
            else:
                raise SpecError(f"cannot set {path!r} in a probe spec: use probe.<field>, "
                                "axes.<axis>, or one of name, description, seed, report")  # fmt: skip
        return ProbeSpec.from_dict(data)

    @property
    def n_nets(self) -> int:
        return math.prod(len(v) for _, v in self.axes)

    def describe(self) -> str:
        p, ax = self.probe, dict(self.axes)
        groups = len(ax["activation"]) * len(ax["weights"])
        if self.kind == "signal_propagation":
            shape = f"depth {p.depth}, width {p.width}" + (
                ", forward and backward" if p.gradients else ""
            )
        else:
            shape = f"width {p.width}, Jacobians at depths {list(p.depths)}"
        return (f"{self.n_nets:,} random nets ({shape}) = {groups} compiled program(s) × "
                f"{self.n_nets // groups:,} nets; nothing trained")  # fmt: skip


def _keys(where: str, data: Any, allowed) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where} must be a table, got {type(data).__name__}")
    bad = [k for k in data if k not in allowed]
    if bad:
        raise SpecError(f"unknown field {where}.{bad[0]}; allowed: {', '.join(allowed)}")


def _typed(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise SpecError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _settings(data: Any) -> ProbeSettings:
    _keys("probe", data, [f.name for f in dataclasses.fields(ProbeSettings)])
    d = {**dataclasses.asdict(ProbeSettings()), **data}
    for k in ("depth", "width", "in_dim"):
        if _typed(f"probe.{k}", d[k], int) < (1 if k == "depth" else 2):
            raise SpecError(f"probe.{k} must be >= {1 if k == 'depth' else 2}, got {d[k]}")
    depths = tuple(
        _typed("probe.depths", x, int) for x in _typed("probe.depths", list(d["depths"]), list)
    )
    if not depths or depths[0] < 1 or list(depths) != sorted(set(depths)):
        raise SpecError(f"probe.depths must be increasing depths >= 1, got {list(depths)}")
    rho = _typed("probe.correlation", d["correlation"], float)
    if not -1.0 < rho < 1.0:
        raise SpecError(f"probe.correlation must be in (-1, 1), got {rho}")
    sw = d["sigma_w"]
    if sw != "critical":
        sw = _typed("probe.sigma_w", sw, float)
        if sw <= 0:
            raise SpecError(f'probe.sigma_w must be > 0 or "critical", got {sw}')
    sb = _typed("probe.sigma_b", d["sigma_b"], float)
    if sb < 0:
        raise SpecError(f"probe.sigma_b must be >= 0, got {sb}")
    return ProbeSettings(d["depth"], d["width"], d["in_dim"], rho,
                         _typed("probe.gradients", d["gradients"], bool), depths, sw, sb)  # fmt: skip


def _axis(name: str, values: Any) -> Any:
    if name == "seed":
        if isinstance(values, bool) or not isinstance(values, int) or not 1 <= values <= MAX_SEED:
            raise SpecError(f"axes.seed must be a positive count, got {values!r}")
        return range(values)
    if not isinstance(values, list) or not values:
        raise SpecError(f"axes.{name} must be a non-empty list, got {values!r}")
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"axes.{name} repeats a value: {values}")
    if name in ("activation", "weights"):
        known = list(ACTIVATIONS) if name == "activation" else list(signal.WEIGHTS)
        for v in values:
            if v not in known:
                raise SpecError(f"axes.{name} value {v!r}: allowed: {', '.join(known)}")
        return tuple(values)
    out = tuple(_typed(f"axes.{name}", v, float) for v in values)
    if min(out) < 0 or (name == "sigma_w" and min(out) <= 0):
        raise SpecError(
            f"axes.{name} values must be {'> 0' if name == 'sigma_w' else '>= 0'}: {values}"
        )
    return out


# -- finding probe specs ------------------------------------------------------------------------
def _data_of(spec: Any) -> Mapping[str, Any] | None:
    """The TOML / dict data of ``spec`` if it is a probe spec (it has a ``kind``), else None."""
    if isinstance(spec, ProbeSpec):
        return spec.to_dict()
    if isinstance(spec, Mapping):
        return spec if "kind" in spec else None
    if isinstance(spec, (str, os.PathLike)):
        from jaxinit.bundled import find_spec

        try:
            path = find_spec(spec)
            data = _toml.loads(path.read_bytes().decode("utf-8"))
        except (SpecError, OSError, UnicodeDecodeError, _toml.TOMLDecodeError):
            return None  # not a readable spec: the training-sweep path reports why
        return data if "kind" in data else None
    return None


def is_probe(spec: Any) -> bool:
    """Whether ``spec`` (a :class:`ProbeSpec`, dict, TOML path or bundled name) is a probe spec."""
    return _data_of(spec) is not None


def resolve(spec: Any, overrides: Mapping[str, Any] | None = None) -> ProbeSpec:
    """A validated :class:`ProbeSpec` from any form of probe spec, with overrides applied."""
    data = _data_of(spec)
    if data is None:
        raise SpecError(f"{spec!r} is not a probe spec (no kind = one of {', '.join(KINDS)})")
    out = ProbeSpec.from_dict(data)
    return out.with_overrides(overrides) if overrides else out


# -- measuring ----------------------------------------------------------------------------------
def _inputs(key: jax.Array, in_dim: int, rho: float) -> jax.Array:
    """Two inputs with ``|x|²/in_dim = 1`` and cosine ``rho`` (exactly: Gram–Schmidt)."""
    z = jax.random.normal(key, (2, in_dim))
    a = z[0] / jnp.linalg.norm(z[0])
    b = z[1] - (z[1] @ a) * a
    b = rho * a + math.sqrt(1 - rho * rho) * b / jnp.linalg.norm(b)
    return jnp.stack([a, b]) * math.sqrt(in_dim)


def _input_variance(activation: str, sigma_w: float, sigma_b: float) -> float:
    """``|x|²/N`` that puts layer 1 at the fixed point ``q*`` (1 where ``q*`` is 0 or ∞)."""
    from jaxinit import theory

    q = theory.fixed_point_q(activation, sigma_w**2, sigma_b**2)
    q_in = (q - sigma_b**2) / sigma_w**2 if math.isfinite(q) else 0.0
    return q_in if q_in > 1e-6 else 1.0


@partial(jax.jit, static_argnames=("n_seeds", "depth", "width", "activation", "weights"))
def _gradient_grid(root, x_N, sigma_ws, sigma_bs, scales_WxB, *, n_seeds, depth, width,
                   activation, weights):  # fmt: skip
    """:func:`jaxinit.signal.backprop_norms` over ``σ_w × σ_b × seed`` (input ``x·scale``):
    ``(W, B, S, depth)``; seed ``s`` is the same net as in ``propagate_grid``."""
    one = lambda k, sw, sb, s: signal.backprop_norms(
        k, x_N * s, sw, sb, depth=depth, width=width, activation=activation, weights=weights
    )
    f = jax.vmap(
        jax.vmap(jax.vmap(one, (0, None, None, None)), (None, None, 0, 0)), (None, 0, None, 0)
    )
    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(n_seeds))
    return f(keys, sigma_ws, sigma_bs, scales_WxB)


@partial(jax.jit, static_argnames=("n_seeds", "depths", "activation", "weights"))
def _jacobian_grid(root, x0_N, sigma_w, sigma_b, *, n_seeds, depths, activation, weights):
    """Per seed: mean and variance of the squared singular values ``(S, D)`` and the values
    themselves ``(S, D, N)``; seeds one after another (``lax.map``)."""

    def one(k):
        j = signal.jacobians(k, x0_N, sigma_w, sigma_b, depths=depths, activation=activation,
                             weights=weights)  # fmt: skip
        m, v = signal.spectrum_moments(j)
        return m, v, signal.squared_singular_values(j)

    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(n_seeds))
    return jax.lax.map(one, keys)


def _signal(spec: ProbeSpec) -> xr.Dataset:
    import xarray as xr

    p, ax = spec.probe, dict(spec.axes)
    k_in, k_net = jax.random.split(jax.random.key(spec.seed))
    x = _inputs(k_in, p.in_dim, p.correlation)
    sws, sbs, n = np.array(ax["sigma_w"]), np.array(ax["sigma_b"]), len(ax["seed"])
    q_all, c_all, g_all, qin_all = [], [], [], []
    for act in ax["activation"]:
        q_w, c_w, g_w = [], [], []
        q_in = np.array([[_input_variance(act, w, b) for b in sbs] for w in sws])
        for weights in ax["weights"]:
            kw = dict(n_seeds=n, activation=act, weights=weights)
            grams = signal.propagate_grid(k_net, x, jnp.asarray(sws, jnp.float32),
                                          jnp.asarray(sbs, jnp.float32), depth=p.depth,
                                          width=p.width, **kw)  # fmt: skip
            q, c = signal.split_gram(grams)  # (W, B, S, L, 2), (W, B, S, L, 2, 2)
            q_w.append(np.asarray(q))
            c_w.append(np.asarray(c[..., 0, 1]))
            if p.gradients:
                g = _gradient_grid(k_net, x[0], jnp.asarray(sws, jnp.float32),
                                   jnp.asarray(sbs, jnp.float32),
                                   jnp.sqrt(jnp.asarray(q_in, jnp.float32)), depth=p.depth,
                                   width=p.width, **kw)  # fmt: skip
                g_w.append(np.asarray(g))
        q_all.append(q_w), c_all.append(c_w), g_all.append(g_w), qin_all.append(q_in)
    dims = ("activation", "weights", "sigma_w", "sigma_b", "seed", "layer")
    data = {
        "q": (dims + ("input",), np.array(q_all)),
        "c": (dims, np.array(c_all)),
        "x_gram": (("input", "input_b"), np.asarray(x @ x.T / p.in_dim, np.float64)),
        "grad_q_in": (dims[:1] + dims[2:4], np.array(qin_all)),
    }
    if p.gradients:
        data["grad_sq"] = (dims, np.array(g_all))
    coords = {"activation": list(ax["activation"]), "weights": list(ax["weights"]),
              "sigma_w": sws, "sigma_b": sbs, "seed": np.arange(n),
              "layer": np.arange(1, p.depth + 1), "input": [0, 1], "input_b": [0, 1]}  # fmt: skip
    return xr.Dataset(data, coords)


def _jacobian(spec: ProbeSpec) -> xr.Dataset:
    import xarray as xr

    from jaxinit import theory

    p, ax = spec.probe, dict(spec.axes)
    k_in, k_net = jax.random.split(jax.random.key(spec.seed))
    n = len(ax["seed"])
    sws = [theory.critical_scale(a, p.sigma_b) if p.sigma_w == "critical" else p.sigma_w
           for a in ax["activation"]]  # fmt: skip
    mean, var, sq = [], [], []
    for act, sw in zip(ax["activation"], sws):
        x0 = signal.input_at_variance(k_in, _input_variance(act, sw, p.sigma_b), p.width)
        out = [_jacobian_grid(k_net, x0, sw, p.sigma_b, n_seeds=n, depths=p.depths,
                              activation=act, weights=w) for w in ax["weights"]]  # fmt: skip
        mean.append([np.asarray(o[0]) for o in out])
        var.append([np.asarray(o[1]) for o in out])
        sq.append([np.asarray(o[2]) for o in out])
    dims = ("activation", "weights", "seed", "depth")
    data = {
        "sv_mean": (dims, np.array(mean)),
        "sv_var": (dims, np.array(var)),
        "sq_sv": (dims + ("sv",), np.array(sq)),
        "sigma_w_used": (("activation",), np.array(sws)),
    }
    coords = {"activation": list(ax["activation"]), "weights": list(ax["weights"]),
              "seed": np.arange(n), "depth": np.array(p.depths), "sv": np.arange(p.width)}  # fmt: skip
    return xr.Dataset(data, coords)


VARIABLE_ATTRS = {
    "q": ("pre-activation variance q^l", "h^l·h^l / width of each input, per layer"),
    "c": ("correlation c^l", "cosine of the two inputs' pre-activations, per layer"),
    "grad_sq": ("|δ^l|² / width", "squared norm of a random gradient sent back from the last "
                "layer (|δ^depth|²/width ≈ 1), from an input at q*"),
    "x_gram": ("input Gram matrix", "x_a · x_b / in_dim of the two inputs"),
    "grad_q_in": ("input variance of the gradient probe", "|x|²/in_dim of the input sent "
                  "forward for grad_sq: puts layer 1 at q* (1 where q* is 0 or ∞)"),
    "sv_mean": ("mean squared singular value", "tr(JJᵀ)/N of the input-output Jacobian"),
    "sv_var": ("variance of the squared singular values", "tr((JJᵀ)²)/N − mean²"),
    "sq_sv": ("squared singular values", "eigenvalues of JJᵀ, ascending"),
    "sigma_w_used": ("σ_w", "weight scale of each activation's nets"),
    "sigma_w": ("σ_w", "weight std × √fan_in"),
    "sigma_b": ("σ_b", "bias std"),
    "layer": ("layer", "hidden layer l = 1..depth"),
    "depth": ("depth", "layers between the input and the Jacobian's output"),
}  # fmt: skip


def _label(ds: xr.Dataset, spec: ProbeSpec) -> xr.Dataset:
    for name, (long, desc) in VARIABLE_ATTRS.items():
        if name in ds.variables:
            ds[name].attrs.update(long_name=long, description=desc)
    ds.attrs.update(name=spec.name, kind=spec.kind, spec=json.dumps(spec.to_dict()),
                    axes=json.dumps({a: a for a, _ in spec.axes}), n_runs=spec.n_nets,
                    n_done=spec.n_nets, partial=0)  # fmt: skip
    if spec.kind == "jacobian_spectrum":
        ds.attrs["sigma_b"] = spec.probe.sigma_b
    return ds


# -- storing ------------------------------------------------------------------------------------
def _identity() -> dict[str, Any]:
    """What draws the random bits and rounds the floats (as for training sweeps)."""
    return {k: v for k, v in software().items() if k != "layout_rule"}


def _save(ds: xr.Dataset, out: Path, spec: ProbeSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v.values) for k, v in ds.variables.items()}
    atomic_write(out / "probe.npz", encode_chunk(arrays))
    meta = {"format": FORMAT, "kind": spec.kind, "spec": spec.to_dict(), "identity": _identity(),
            "dims": {k: list(v.dims) for k, v in ds.variables.items()},
            "coords": list(ds.coords)}  # fmt: skip
    atomic_write(out / "probe.json", json.dumps(meta, indent=1).encode())


def is_probe_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / PROBE_FILE).is_file()


def load(path: str | os.PathLike) -> xr.Dataset:
    """A stored probe sweep as the Dataset :func:`run` returned."""
    import xarray as xr

    path = Path(path)
    try:
        meta = json.loads((path / "probe.json").read_text())
        arrays = decode_chunk((path / "probe.npz").read_bytes())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: not a readable probe directory ({e})") from None
    coords = {k: (meta["dims"][k], arrays[k]) for k in meta["coords"]}
    data = {k: (meta["dims"][k], a) for k, a in arrays.items() if k not in coords}
    return _label(xr.Dataset(data, coords), ProbeSpec.from_dict(meta["spec"]))


def refuse_sharding(shard: Any = None, chunk_size: Any = None) -> None:
    """Refuse ``shard`` / ``chunk_size`` for a probe sweep: it is measured in one call per
    activation × weights (no chunks to split), so they would be silently ignored."""
    if shard is not None and shard not in ("0/1", (0, 1)):
        raise SpecError(
            f"--shard {shard if isinstance(shard, str) else '/'.join(map(str, shard))}: a probe "
            "sweep (signal_propagation, jacobian_spectrum) is measured in one call, not in chunks, "
            "so it cannot be sharded; drop --shard (or shrink its axes)"
        )
    if chunk_size is not None:
        raise SpecError(
            "--chunk-size: a probe sweep is measured in one call, not in chunks; drop it"
        )


def status_line(path: str | os.PathLike) -> str:
    """What ``jaxinit status`` says about a probe directory: it is complete (a probe sweep is
    measured in one call, so it is there whole or not at all) and how to load it."""
    ds = load(path)
    spec = ProbeSpec.from_dict(json.loads(ds.attrs["spec"]))
    return (f"probe sweep {spec.name!r} ({spec.kind}) in {path}: {spec.n_nets:,}/{spec.n_nets:,} "
            "random nets (100.0%), measured in one call (no shards, nothing to resume); load it "
            f"with jaxinit.probes.load({str(path)!r})")  # fmt: skip


def run(spec: Any, out: str | os.PathLike | None = None, *, progress: bool = True,
        shard: Any = None, chunk_size: Any = None, **overrides: Any) -> xr.Dataset:  # fmt: skip
    """Measure a probe sweep (or load it from ``out`` if it is already there).

    Args:
      spec: a :class:`ProbeSpec`, a dict in the TOML layout, a TOML path or a bundled name.
      out: directory for ``probe.json`` + ``probe.npz``; ``None`` keeps the result in memory.
      progress: print the sweep's size and time on stderr.
      shard, chunk_size: refused (:func:`refuse_sharding`): a probe sweep is one call.
      **overrides: ``field__path=value`` (``__`` for ``.``), e.g. ``probe__width=512``.
    """
    refuse_sharding(shard, chunk_size)
    spec = resolve(spec, {k.replace("__", "."): v for k, v in overrides.items()})
    out = None if out is None else Path(out)
    if out is not None and is_probe_dir(out):
        meta = json.loads((out / "probe.json").read_text())
        there = {**meta["spec"], "name": None, "description": None, "report": None}
        here = {**spec.to_dict(), "name": None, "description": None, "report": None}
        if there != here or meta["identity"] != _identity():
            diff = [k for k in here if here[k] != there.get(k)] or ["identity (JAX version …)"]
            raise StoreError(f"{out} holds another probe sweep (differs in {', '.join(diff)}); "
                             "use another --out")  # fmt: skip
        return load(out)
    if out is not None and out.exists() and any(out.iterdir()):
        raise StoreError(f"{out} exists and is not a probe directory; use another --out")
    if progress:
        print(f"{spec.name}: {spec.describe()}", file=sys.stderr, flush=True)
    t = time.time()
    ds = _signal(spec) if spec.kind == "signal_propagation" else _jacobian(spec)
    ds = _label(ds, spec)
    ds.attrs["seconds"] = round(time.time() - t, 2)
    if out is not None:
        _save(ds, out, spec)
    return ds


def summarize(ds: xr.Dataset, *, title: bool = True) -> str:
    """A short text table of a probe sweep (what ``jaxinit run`` prints); ``title``: first the
    sweep's name and size (``jaxinit run`` has printed them already)."""
    spec = ProbeSpec.from_dict(json.loads(ds.attrs["spec"]))
    rows = [f"{spec.name}: {spec.describe()}"] if title else []
    if spec.kind == "signal_propagation":
        rows.append(f"{'activation':<10} {'weights':<10} {'σ_w':>6} {'σ_b':>6} "
                    f"{'q^L':>10} {'c^L':>7} {'|δ^1|²/|δ^L|²':>14}")  # fmt: skip
        last = ds.isel(layer=-1).median("seed")
        for a in ds.activation.values:
            for w in ds.weights.values:
                for sw in ds.sigma_w.values:
                    for sb in ds.sigma_b.values:
                        s = last.sel(activation=a, weights=w, sigma_w=sw, sigma_b=sb)
                        g = "-"
                        if "grad_sq" in ds:
                            r = ds.grad_sq.sel(activation=a, weights=w, sigma_w=sw, sigma_b=sb)
                            g = f"{float((r.isel(layer=0) / r.isel(layer=-1)).median()):.3g}"
                        rows.append(f"{a:<10} {w:<10} {sw:>6.3g} {sb:>6.3g} "
                                    f"{float(s.q.isel(input=0)):>10.4g} {float(s.c):>7.3f} {g:>14}")  # fmt: skip
    else:
        rows.append(f"{'activation':<10} {'weights':<10} {'σ_w':>6} {'depth':>6} "
                    f"{'mean λ':>10} {'var λ':>10}   (λ: squared singular values of J)")  # fmt: skip
        m, v = ds.sv_mean.mean("seed"), ds.sv_var.mean("seed")
        for a in ds.activation.values:
            for w in ds.weights.values:
                for d in ds.depth.values:
                    sel = dict(activation=a, weights=w, depth=d)
                    rows.append(f"{a:<10} {w:<10} {float(ds.sigma_w_used.sel(activation=a)):>6.3f} "
                                f"{d:>6} {float(m.sel(sel)):>10.4g} {float(v.sel(sel)):>10.4g}")  # fmt: skip
    return "\n".join(rows)
