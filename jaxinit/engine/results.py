"""Labeled results: chunks of runs → an ``xarray.Dataset`` with one dimension per sweep axis.

Variables: per-run finals (``final_loss``, ``final_metric``, ``test_loss``, ``diverged``,
``time_to_threshold`` …, all of :data:`FINAL_VARIABLES`, present even before any run has
finished) with dims = the axes; curves (``loss``, diagnostics) with an extra ``step`` dim (and
``layer``, coordinate ``0..L-1``, for per-layer diagnostics); ``done`` marks runs that have
finished. Every known variable carries ``long_name``, ``description`` and (when it has one)
``units`` attributes, from :data:`VARIABLE_ATTRS`.
With ``store.save_params``, ``params0/<path>`` and ``params/<path>`` hold initial and final
parameters (NaN-padded to the widest shape when groups differ; :func:`load_params` gives
true shapes).

Step counts of events that may never happen (``diverged_step``, ``converged_step``,
``time_to_threshold``) are floats with **NaN for "never"** (the engine's ``-1``), so that
``.mean()`` or ``.median()`` cannot silently count a sentinel; test ``.notnull()`` for "it
happened". Runs that have not finished yet are NaN (floats) or False (booleans); ``done``
tells them apart from runs that never reached an event.

>>> import jaxinit  # doctest: +SKIP
>>> ds = jaxinit.load("results/symmetry")  # doctest: +SKIP
>>> ds.final_loss.mean("seed")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from jaxinit.blocks import metrics
from jaxinit.config import outputs
from jaxinit.engine.plan import Plan, coordinates
from jaxinit.engine.probe_spec import ProbeSpec, plan_for, probe_dataset
from jaxinit.engine.store import (
    expect_for,
    iter_chunk_files,
    iter_chunks,
    read_member,
    read_spec,
    stamp_of,
)

_SECTIONS = ("final/", "curves/", "params0/", "params/")

STEP_VARIABLES = tuple(f.name for f in outputs.FINALS if f.kind == "step")
"""Per-run step counts of events that may never happen: float, NaN for never (or not done)."""

FINAL_VARIABLES: dict[str, str] = outputs.kinds()
"""The per-run variables every Dataset has (``name -> float | bool | step``), finished or not:
:data:`jaxinit.config.outputs.FINALS`."""

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "done": {"long_name": "run finished", "description": "the run's chunk has been computed"},
    **{f.name: outputs.attrs(f) for f in (*outputs.FINALS, *outputs.OPTIONAL_FINALS)},
    "loss": {"long_name": "training loss", "units": "1",
             "description": "training loss at each logged step"},
    **{name: outputs.attrs(o) for name, o in metrics.CURVES.items()},
    "step": {"long_name": "training step", "units": "steps",
             "description": "optimizer steps taken before the logged value"},
    "layer": {"long_name": "layer", "description": "index into the model's layers (0 = first)"},
}  # fmt: skip
"""``name -> {long_name, units, description}`` for every known variable and coordinate."""


def _attrs_of(name: str) -> dict[str, str]:
    """The attrs of a variable: from the table, or generic ones for saved parameters."""
    if name in VARIABLE_ATTRS:
        return dict(VARIABLE_ATTRS[name])
    which, _, path = name.partition("/")
    if which in ("params0", "params") and path:
        when = "initial" if which == "params0" else "final"
        return {"long_name": f"{when} {path}",
                "description": f"{when} value of parameter {path} (NaN-padded to the widest group)"}  # fmt: skip
    return {}


def _empty(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Placeholder values of runs that have not finished: NaN, False, or -1 for integers."""
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype)
    if dtype.kind == "b":
        return np.zeros(shape, bool)
    return np.full(shape, -1, dtype)


def _never_to_nan(a: np.ndarray, dtype: str) -> np.ndarray:
    """An engine step count (``-1``: never) as a float of the sweep's dtype with NaN for never;
    exact, since steps are at most 10⁷ < 2²⁴ (float32's exact integers)."""
    out = a.astype(dtype)
    out[out < 0] = np.nan
    return out


def _with_all_finals(arrays: dict[str, np.ndarray], n_runs: int, dtype: str) -> None:
    """Add every missing per-run final as not-done placeholders (no chunk finished yet)."""
    kinds = {"float": np.dtype(dtype), "bool": np.dtype(bool), "step": np.dtype(dtype)}
    for key, kind in FINAL_VARIABLES.items():
        arrays.setdefault(f"final/{key}", _empty(kinds[kind], (n_runs,)))


def _gather(
    chunks: Iterable[dict[str, np.ndarray]], n_runs: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scatter every chunk's arrays into ``(n_runs, ...)`` arrays, padding trailing dims, one
    chunk at a time (``chunks`` may be a generator: only one is held at once)."""
    done = np.zeros(n_runs, bool)
    out: dict[str, np.ndarray] = {}
    for c in chunks:
        for name, a in c.items():
            if name == "run_id":
                continue
            full = out.get(name)
            if full is None:
                full = out[name] = _empty(a.dtype, (n_runs, *a.shape[1:]))
            elif any(x > y for x, y in zip(a.shape[1:], full.shape[1:])):
                # Parameters whose shapes differ between groups (a widths axis) are NaN-padded
                # to the widest; load_params (or basins.group_params) gives the true shapes.
                wide = tuple(max(x, y) for x, y in zip(full.shape[1:], a.shape[1:]))
                grown = _empty(full.dtype, (n_runs, *wide))
                grown[(slice(None), *(slice(0, s) for s in full.shape[1:]))] = full
                full = out[name] = grown
            full[(c["run_id"], *(slice(0, s) for s in a.shape[1:]))] = a
        done[c["run_id"]] = True
    return out, done


def assemble(
    plan: Plan,
    chunks: Iterable[dict[str, np.ndarray]],
    *,
    partial: bool,
    attrs=None,
    lazy: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Build the Dataset of a plan from its chunks (any subset, even none; missing runs are marked).

    Every per-run final of :data:`FINAL_VARIABLES` and the ``loss`` curve are present even with no
    chunks, so code reading a sweep that has just started sees NaN and ``done = False``, not a
    ``KeyError``. ``lazy`` maps member names (``curves/…``) to arrays already shaped
    ``(*plan.shape, …)`` that are read when used (see :func:`load`); it is filled while
    ``chunks`` is consumed.
    """
    spec = plan.spec
    arrays, done = _gather(chunks, plan.n_runs)
    lazy = lazy if lazy is not None else {}
    _with_all_finals(arrays, plan.n_runs, spec.train.dtype)
    n_log = spec.train.steps // spec.train.log_every + 1
    if "curves/loss" not in arrays and "curves/loss" not in lazy:  # not setdefault: eager default
        arrays["curves/loss"] = _empty(np.dtype(spec.train.dtype), (plan.n_runs, n_log))
    dims = [a.dim for a in plan.axes]
    shape = plan.shape
    variables = {"done": (dims, done.reshape(shape))}
    shaped = {n: a.reshape(*shape, *a.shape[1:]) for n, a in arrays.items()}
    for name, a in {**shaped, **lazy}.items():
        section, _, key = name.partition("/")
        if section == "final":
            variables[key] = (
                dims,
                _never_to_nan(a, spec.train.dtype) if key in STEP_VARIABLES else a,
            )
        elif section == "curves":
            extra = ["step", "layer"][: a.ndim - len(dims)]
            variables[key] = (dims + extra, a)
        else:
            extra = [f"{name}_dim{k}" for k in range(a.ndim - len(dims))]
            variables[name] = (dims + extra, a)
    variables = {k: (*v, _attrs_of(k)) for k, v in variables.items()}
    ds = xr.Dataset(variables, coords=_coords(plan, variables))
    ds.attrs.update(
        name=spec.name,
        description=spec.description,
        spec=json.dumps(spec.to_dict()),
        axes=json.dumps({a.dim: a.path for a in plan.axes}),
        traced_axes=json.dumps([a.dim for a in plan.axes if a.traced]),
        dtype=spec.train.dtype,
        chunk_size=plan.chunk_size,
        partial=int(partial or not done.all()),
        n_done=int(done.sum()),
        n_runs=plan.n_runs,
    )
    ds.attrs.update(attrs or {})  # e.g. load's jaxinit_version and fingerprint
    return ds


def _coords(plan: Plan, variables: dict) -> dict:
    """Axis coordinates, plus ``step`` (in optimizer steps) and ``layer`` (``0..L-1``) when used."""
    coords = dict(coordinates(plan))
    for dim, scale in (("step", plan.spec.train.log_every), ("layer", 1)):
        sizes = [v[1].shape[v[0].index(dim)] for v in variables.values() if dim in v[0]]
        if sizes:
            coords[dim] = (dim, np.arange(max(sizes)) * scale, VARIABLE_ATTRS[dim])
    return coords


LAZY_BYTES = 256 * 2**20
"""Above this many bytes of curves, :func:`load` leaves them on disk until they are used."""


def load(path: str | Path, *, on_corrupt: str = "raise", lazy: bool | None = None) -> xr.Dataset:
    """Load a sweep directory, finished or still running (then ``attrs['partial']`` is 1): a
    training sweep, or a probe sweep of random nets (:mod:`jaxinit.engine.probes`; nets not measured
    yet are NaN).

    Corrupt chunks raise :class:`~jaxinit.engine.store.CorruptChunkError` naming the file, or with
    ``on_corrupt="skip"`` are left out with a warning. Nothing is unpickled.

    Per-run finals are read into memory. Curves are too, unless ``lazy`` (default: when they
    would take more than :data:`LAZY_BYTES`, e.g. 2²⁰ runs × 201 logged losses = 843 MB): then
    they stay in the chunk files and a selection reads only the chunks holding its runs
    (``ds.loss.isel(seed=0)``); a reduction over every run (``ds.loss.mean("seed")``) still
    reads them all. Every chunk is verified (checksum, headers) either way.
    """
    spec, meta = read_spec(path)
    plan = plan_for(spec, meta["chunk_size"])
    stamp = stamp_of(meta)  # chunks and manifests of another sweep are refused (or skipped)
    files = iter_chunk_files(path, on_corrupt, expect_for(plan, stamp=stamp), stamp)  # streamed
    attrs = {"jaxinit_version": meta["jaxinit_version"], "fingerprint": meta["fingerprint"]}
    if isinstance(spec, ProbeSpec):  # random nets measured at init: their own variables
        ds = probe_dataset(plan, (arrays for _, arrays in files), attrs)
    else:
        if "model" in meta:
            attrs["model"] = json.dumps(meta["model"])
        curves = _LazyCurves(plan, lazy)
        ds = assemble(plan, curves.keep(files), partial=False, attrs=attrs, lazy=curves.variables)
    if ds.attrs["partial"]:
        warnings.warn(
            f"{path}: sweep is partial ({ds.attrs['n_done']}/{ds.attrs['n_runs']} runs done); "
            "unfinished runs are NaN" + (" and done=False" if "done" in ds else ""),
            stacklevel=2,
        )
    return ds


class _LazyCurves:
    """While :func:`load` streams the chunks: keeps the curves on disk when they are big (the
    chunk each run is in, its row there, each curve's widest shape) and, once every chunk has
    passed, fills ``variables`` with one :class:`_ChunkedArray` per curve."""

    def __init__(self, plan: Plan, lazy: bool | None):
        self.plan, self.lazy = plan, lazy
        self.variables: dict[str, Any] = {}

    def keep(self, files: Iterable[tuple[Path, dict[str, np.ndarray]]]) -> Iterator[dict]:
        n = self.plan.n_runs
        chunk_of, row_of = np.full(n, -1, np.int32), np.zeros(n, np.int32)
        paths: list[Path] = []
        shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for file, arrays in files:
            names = [k for k in arrays if k.startswith("curves/")]
            if self.lazy is None:  # decide on the first chunk: bytes per run × runs
                per_run = sum(arrays[k][0].nbytes for k in names)
                self.lazy = per_run * n > LAZY_BYTES
            if not self.lazy:
                yield arrays
                continue
            ids = arrays["run_id"]
            chunk_of[ids], row_of[ids] = len(paths), np.arange(len(ids))
            paths.append(file)
            for k in names:
                old = shapes.get(k, ((0,) * (arrays[k].ndim - 1), arrays[k].dtype))[0]
                wide = tuple(max(a, b) for a, b in zip(old, arrays[k].shape[1:]))
                shapes[k] = (wide, arrays[k].dtype)
            yield {k: v for k, v in arrays.items() if k not in names}
        spec = self.plan.spec
        if self.lazy is None:  # no chunk has finished: the loss curve is all NaN, big or not
            n_log = spec.train.steps // spec.train.log_every + 1
            dtype = np.dtype(spec.train.dtype)
            if n * n_log * dtype.itemsize > LAZY_BYTES:
                shapes["curves/loss"] = ((n_log,), dtype)
        for name, (trailing, dtype) in shapes.items():
            array = _ChunkedArray(name, paths, chunk_of, row_of, self.plan.shape, trailing, dtype)
            self.variables[name] = indexing.LazilyIndexedArray(array)


class _ChunkedArray(BackendArray):
    """One curve of every run, ``(*axes, step[, layer])``, read from the chunk files on
    indexing (outer indexing: ints, slices or index arrays per dimension). Runs not done are
    NaN; shapes narrower than the widest group's are NaN-padded, as when loaded eagerly."""

    def __init__(self, name, paths, chunk_of, row_of, axes_shape, trailing, dtype):
        self.name, self.paths, self.chunk_of, self.row_of = name, paths, chunk_of, row_of
        self.axes_shape = tuple(axes_shape)
        self.shape = (*self.axes_shape, *trailing)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._get
        )

    def _get(self, key: tuple) -> np.ndarray:
        n_axes = len(self.axes_shape)
        picks = [np.atleast_1d(np.arange(s)[k]) for s, k in zip(self.axes_shape, key)]
        ids = np.ravel_multi_index(np.ix_(*picks), self.axes_shape)
        flat, rest = ids.ravel(), key[n_axes:]
        trailing = self.shape[n_axes:]
        out = _empty(self.dtype, (flat.size, *_outer(np.empty((1, *trailing)), rest).shape[1:]))
        where = self.chunk_of[flat]
        for k in np.unique(where[where >= 0]):
            sel = np.nonzero(where == k)[0]
            part = read_member(self.paths[k], self.name)
            full = _empty(self.dtype, (len(part), *trailing))
            full[(slice(None), *(slice(0, s) for s in part.shape[1:]))] = part
            out[sel] = _outer(full[self.row_of[flat[sel]]], rest)
        out = out.reshape(*ids.shape, *out.shape[1:])
        dropped = tuple(i for i, k in enumerate(key[:n_axes]) if isinstance(k, (int, np.integer)))
        return out.squeeze(dropped) if dropped else out


def _outer(a: np.ndarray, keys: tuple) -> np.ndarray:
    """``a[:, keys…]`` with each key (int, slice or index array) applied to its own axis."""
    axis = 1
    for k in keys:
        if isinstance(k, (int, np.integer)):
            a = np.take(a, k, axis=axis)
        else:
            a = a[(slice(None),) * axis + (k,)]
            axis += 1
    return a


def load_params(path: str | Path, which: str = "params", group: int | None = None):
    """``(run_ids, {param path: (R, ...) array})`` of a directory saved with ``store.save_params``.

    ``which`` is ``"params"`` (final) or ``"params0"`` (initial). When groups differ in shape
    (e.g. a widths axis), pass ``group`` (the static group index) to pick one.
    """
    prefix = which + "/"
    spec, meta = read_spec(path)
    plan = plan_for(spec, meta["chunk_size"])
    keep = None if group is None else plan.group(group).run_ids
    ids, arrays = [], {}
    stamp = stamp_of(meta)
    for chunk in iter_chunks(path, expect=expect_for(plan, stamp=stamp), stamp=stamp):
        keys = [k for k in chunk if k.startswith(prefix)]
        if not keys:
            raise ValueError(f"{path} has no saved {which}: set store.save_params = true")
        if keep is not None and not np.isin(chunk["run_id"][0], keep):
            continue
        ids.append(chunk["run_id"])
        for k in keys:
            arrays.setdefault(k[len(prefix) :], []).append(chunk[k])
    run_ids = np.concatenate(ids)
    order = np.argsort(run_ids)
    try:
        return run_ids[order], {k: np.concatenate(v)[order] for k, v in arrays.items()}
    except ValueError:
        raise ValueError("parameter shapes differ between static groups: pass group=") from None


def tidy(ds: xr.Dataset) -> pd.DataFrame:
    """One row per run: axis coordinates and every per-run (non-curve) variable."""
    per_run = [k for k, v in ds.data_vars.items() if v.dims == ds.done.dims]
    return ds[per_run].to_dataframe().reset_index()
