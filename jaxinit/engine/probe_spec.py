"""Probe sweeps' spec, plan and Dataset: what the store, ``jaxinit status`` and ``jaxinit.load``
need to read a probe directory, without the code that measures (:mod:`jaxinit.engine.probes`).

A probe spec is a TOML file like a training sweep's, with ``kind`` naming what is measured and a
``[probe]`` section in place of task / model / optimizer (see :mod:`jaxinit.engine.probes`).

A probe directory is a sweep directory (:mod:`jaxinit.engine.store`): ``spec.json`` (the probe spec and
its identity, :func:`probe_record`), shard manifests and stamped chunk files. Its runs are the
random nets, numbered in C order over :func:`plan_axes`, ``activation``, ``weights``, ``seed``
and then ``sigma_w``, ``sigma_b``: a static group is one activation × weight law (one compiled
program), and a chunk is a block of :func:`seeds_per_chunk` seeds × every ``(σ_w, σ_b)``
(vmapped inside). The block is fixed by the spec (the last one is padded, its extra seeds
computed and dropped), so every chunk runs the same compiled shape and a net's numbers depend
only on the spec, never on the chunk, shard or resume that computed it.

>>> spec = Spec.from_dict({"kind": "signal_propagation", "axes": {"seed": 40}})
>>> plan = probe_plan(spec)
>>> seeds_per_chunk(spec), plan.n_chunks, plan.chunk_size
(16, 3, 16)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxinit.config import toml_io as _toml
from jaxinit.config.spec import PROBE_KINDS, TRAIN, Spec, SpecError
from jaxinit.engine.identity import software
from jaxinit.engine.plan import Axis, Group, Plan
from jaxinit.engine.validation import resolve_spec

if TYPE_CHECKING:  # xarray loads when a Dataset is built, not at import
    import xarray as xr

__all__ = [
    "KINDS",
    "ProbePlan",
    "describe",
    "is_probe",
    "plan_for",
    "probe_dataset",
    "probe_members",
    "probe_plan",
    "probe_record",
    "resolve",
    "seeds_per_chunk",
]

KINDS = PROBE_KINDS
"""The probe kinds (:data:`jaxinit.config.spec.PROBE_KINDS`)."""


def describe(spec: Spec) -> str:
    """One line: how many nets of which shape, in how many programs and chunks."""
    p, ax = spec.probe, dict(spec.axes)
    groups = len(ax["activation"]) * len(ax["weights"])
    if spec.kind == "signal_propagation":
        shape = f"depth {p.depth}, width {p.width}" + (
            ", forward and backward" if p.gradients else ""
        )
    else:
        shape = f"width {p.width}, Jacobians at depths {list(p.depths)}"
    chunks = probe_plan(spec).n_chunks
    return (f"{spec.n_runs:,} random nets ({shape}) = {groups} compiled program(s) × "
            f"{spec.n_runs // groups:,} nets, in {chunks:,} chunk(s); nothing trained")  # fmt: skip


# -- finding probe specs ------------------------------------------------------------------------
def is_probe(spec: Any) -> bool:
    """Whether ``spec`` (a :class:`~jaxinit.config.spec.Spec`, dict, TOML path or bundled
    name) is a probe spec (its ``kind`` is one of :data:`KINDS`)."""
    if isinstance(spec, Spec):
        return spec.is_probe
    if isinstance(spec, Mapping):
        return spec.get("kind", TRAIN) != TRAIN
    if isinstance(spec, (str, os.PathLike)):
        from jaxinit.config.bundled import find_spec

        try:
            path = find_spec(spec)
            data = _toml.loads(path.read_bytes().decode("utf-8"))
        except (SpecError, OSError, UnicodeDecodeError, _toml.TOMLDecodeError):
            return False  # not a readable spec: resolve_spec reports why
        return is_probe(data)
    return False


def resolve(spec: Any, overrides: Mapping[str, Any] | None = None) -> Spec:
    """A validated probe spec (:func:`jaxinit.engine.validation.resolve_spec`, the one entry
    point of every spec), refusing a training spec."""
    if not is_probe(spec):
        raise SpecError(f"{spec!r} is not a probe spec (no kind = one of {', '.join(KINDS)})")
    return resolve_spec(spec, overrides)


# -- the plan: which nets in which chunk ---------------------------------------------------------
SEEDS_PER_CHUNK = 16
"""Most seeds in one chunk (each with every ``(σ_w, σ_b)``): a sweep with fewer seeds has one
chunk per activation × weights, computed in the compiled shape earlier versions used."""


CHUNK_SIZE_REFUSED = (
    "--chunk-size: a probe sweep's chunks are fixed by its spec (one activation × weights × a "
    f"block of at most {SEEDS_PER_CHUNK} seeds, every σ inside), so that a net's numbers never "
    "depend on the chunking; drop it"
)
"""Why ``chunk_size`` is refused for a probe sweep (another size would change the compiled
shape)."""


def seeds_per_chunk(spec: Spec) -> int:
    """Seeds per chunk of ``spec``: fixed by the spec (part of its identity), never by the
    machine, shard or resume, so that every chunk has one compiled shape."""
    return min(len(dict(spec.axes)["seed"]), SEEDS_PER_CHUNK)


def plan_axes(spec: Spec) -> tuple[Axis, ...]:
    """The axes in run-id order: ``activation``, ``weights`` (static), then ``seed`` and the
    ``σ`` axes (traced), so that a chunk is a block of seeds × every ``(σ_w, σ_b)``."""
    ax = dict(spec.axes)
    order = ("activation", "weights", "seed") + tuple(a for a, _ in spec.axes[2:] if a != "seed")
    return tuple(Axis(a, ax[a], a not in ("activation", "weights"), a) for a in order)


@dataclass(frozen=True)
class ProbePlan(Plan):
    """A :class:`~jaxinit.engine.plan.Plan` of a probe sweep (``spec`` is a :class:`Spec`): its
    chunk ids, run ids per chunk and shard split are the training sweeps' (store, status)."""

    def group(self, index: int) -> Group:
        """Activation × weights ``index`` (C order); its ``static_key`` indexes both."""
        key = tuple(int(i) for i in np.unravel_index(index, self.shape[:2]))
        return Group(index, self.spec, key, self)

    def cell(self, group: Group) -> tuple[str, str]:
        """``(activation, weights)`` of a group."""
        return self.axes[0].values[group.static_key[0]], self.axes[1].values[group.static_key[1]]


def probe_plan(spec: Spec, chunk_size: int | None = None) -> ProbePlan:
    """The plan of a probe sweep; ``chunk_size`` (nets per chunk, as ``spec.json`` records it)
    defaults to :func:`seeds_per_chunk` seeds × every ``(σ_w, σ_b)``."""
    axes = plan_axes(spec)
    per_seed = math.prod(len(a.values) for a in axes[3:])
    return ProbePlan(spec, axes, chunk_size or seeds_per_chunk(spec) * per_seed)


def plan_for(spec: Any, chunk_size: int) -> Plan:
    """The plan of a stored sweep, training (:func:`jaxinit.engine.plan.make_plan`) or probe."""
    from jaxinit.engine.plan import make_plan

    return probe_plan(spec, chunk_size) if spec.is_probe else make_plan(spec, chunk_size)


# -- identity and stored arrays ------------------------------------------------------------------
def probe_identity(spec: Spec) -> dict[str, Any]:
    """The flat run identity (:mod:`jaxinit.engine.identity`) of a probe sweep: what it measures, its
    nets, seeds and axes, the seeds per chunk (the compiled shape) and the software that draws
    the random bits (not the training layout rule)."""
    data = spec.to_dict()
    out: dict[str, Any] = {"kind": spec.kind, "seed": spec.seed,
                           "chunk.seeds": seeds_per_chunk(spec)}  # fmt: skip
    out |= {f"probe.{k}": v for k, v in data["probe"].items()}
    out |= {f"axes.{k}": v for k, v in data["axes"].items()}
    out["axes.order"] = [a for a, _ in spec.axes]
    out |= {f"software.{k}": v for k, v in software().items() if k != "layout_rule"}
    return json.loads(json.dumps(out))


def probe_record(spec: Spec) -> dict[str, Any]:
    """What a probe directory's ``spec.json`` records (as :func:`jaxinit.engine.identity.record`)."""
    model = {"name": spec.kind, "model_id": None, "params": {}}  # random nets: no trained model
    return {"spec": spec.to_dict(), "identity": probe_identity(spec), "model": model}


def probe_members(spec: Spec) -> dict[str, tuple[tuple[int, ...], str]]:
    """Stored arrays per net: ``probe/<variable>`` -> (shape after the run axis, dtype)."""
    p = spec.probe
    if spec.kind == "signal_propagation":
        out = {"q": ((p.depth, 2), "float32"), "c": ((p.depth,), "float32")}
        if p.gradients:
            out["grad_sq"] = ((p.depth,), "float32")
        out |= {"grad_q_in": ((), "float64"), "x_gram": ((2, 2), "float64")}
    else:
        d = len(p.depths)
        out = {"sv_mean": ((d,), "float32"), "sv_var": ((d,), "float32"),
               "sq_sv": ((d, p.width), "float32"), "sigma_w_used": ((), "float64")}  # fmt: skip
    return {f"probe/{k}": v for k, v in out.items()}


# -- the Dataset ---------------------------------------------------------------------------------
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


_PER_CELL = {"grad_q_in": ("weights", "seed"), "x_gram": ("activation", "weights", "sigma_w",
             "sigma_b", "seed"), "sigma_w_used": ("weights", "seed")}  # fmt: skip
"""Variables stored per net that depend on fewer axes: the axes they are constant over."""


def _collapse(a: np.ndarray, dims: list[str], over: tuple[str, ...]) -> tuple[list, np.ndarray]:
    """``a`` (dims ``dims`` and then its own) without the dims ``over`` it is constant along:
    the value of the first net measured (NaN where none is)."""
    flat = np.moveaxis(a, [dims.index(d) for d in over], range(len(over)))
    flat = flat.reshape(-1, *flat.shape[len(over) :])
    first = np.argmax(~np.isnan(flat), axis=0)
    return [d for d in dims if d not in over], np.take_along_axis(flat, first[None], 0)[0]


def probe_dataset(
    plan: ProbePlan, chunks: Iterable[Mapping[str, np.ndarray]], attrs: Mapping | None = None
) -> xr.Dataset:
    """The labelled Dataset of a probe sweep from its chunks (any order, any subset: nets not
    measured are NaN and ``attrs["partial"]`` is 1). Dims: the spec's axes (``activation``,
    ``weights``, [``sigma_w``, ``sigma_b``,] ``seed``) and each variable's own (``layer``,
    ``input``; ``depth``, ``sv``)."""
    import xarray as xr

    spec, n = plan.spec, plan.n_runs
    members = probe_members(spec)
    full = {k: np.full((n, *shape), np.nan, dtype) for k, (shape, dtype) in members.items()}
    done = np.zeros(n, bool)
    for chunk in chunks:
        ids = chunk["run_id"]
        done[ids] = True
        for k in full:
            full[k][ids] = chunk[k]
    order = [a.path for a in plan.axes]
    dims = [a for a, _ in spec.axes]  # the Dataset's order: seed last
    extra = {"q": ["layer", "input"], "c": ["layer"], "grad_sq": ["layer"], "x_gram":
             ["input", "input_b"], "sv_mean": ["depth"], "sv_var": ["depth"], "sq_sv":
             ["depth", "sv"]}  # fmt: skip
    data = {}
    for key, a in full.items():
        name = key.removeprefix("probe/")
        a = a.reshape(*plan.shape, *a.shape[1:])
        a = np.moveaxis(a, [order.index(d) for d in dims], range(len(dims)))
        own = list(dims)
        if name in _PER_CELL:
            own, a = _collapse(a, own, _PER_CELL[name])
        data[name] = (own + extra.get(name, []), a)
    ax, p = dict(spec.axes), spec.probe
    coords: dict[str, Any] = {"activation": list(ax["activation"]), "weights": list(ax["weights"]),
                              "seed": np.arange(len(ax["seed"]))}  # fmt: skip
    if spec.kind == "signal_propagation":
        coords |= {"sigma_w": np.array(ax["sigma_w"]), "sigma_b": np.array(ax["sigma_b"]),
                   "layer": np.arange(1, p.depth + 1), "input": [0, 1], "input_b": [0, 1]}  # fmt: skip
    else:
        coords |= {"depth": np.array(p.depths), "sv": np.arange(p.width)}
    ds = xr.Dataset(data, coords)
    for name, (long, desc) in VARIABLE_ATTRS.items():
        if name in ds.variables:
            ds[name].attrs.update(long_name=long, description=desc)
    ds.attrs.update(name=spec.name, kind=spec.kind, spec=json.dumps(spec.to_dict()),
                    axes=json.dumps({a: a for a in dims}), n_runs=n, n_done=int(done.sum()),
                    partial=int(not done.all()), chunk_size=plan.chunk_size)  # fmt: skip
    if spec.kind == "jacobian_spectrum":
        ds.attrs["sigma_b"] = p.sigma_b
    ds.attrs.update(attrs or {})
    return ds
