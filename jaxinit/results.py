"""Labeled results: chunks of runs → an ``xarray.Dataset`` with one dimension per sweep axis.

Variables: per-run finals (``final_loss``, ``final_metric``, ``test_loss``, ``diverged``,
``time_to_threshold`` …) with dims = the axes; curves (``loss``, diagnostics) with an extra
``step`` dim (and ``layer`` for per-layer diagnostics); ``done`` marks runs that have finished.
With ``store.save_params``, ``params0/<path>`` and ``params/<path>`` hold initial and final
parameters (NaN-padded to the widest shape when groups differ; :func:`load_params` gives
true shapes).
Runs that have not finished yet are NaN (floats), -1 (integers) or False (booleans).

>>> import jaxinit  # doctest: +SKIP
>>> ds = jaxinit.load("results/symmetry")  # doctest: +SKIP
>>> ds.final_loss.mean("seed")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.plan import Plan, coordinates, make_plan
from jaxinit.store import iter_chunks, read_spec

_SECTIONS = ("final/", "curves/", "params0/", "params/")


def _empty(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype)
    if dtype.kind == "b":
        return np.zeros(shape, bool)
    return np.full(shape, -1, dtype)


def _gather(
    chunks: list[dict[str, np.ndarray]], n_runs: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scatter every chunk's arrays into ``(n_runs, ...)`` arrays, padding trailing dims."""
    done = np.zeros(n_runs, bool)
    names: dict[str, tuple[np.dtype, tuple[int, ...], bool]] = {}
    for c in chunks:
        for name, a in c.items():
            if name == "run_id":
                continue
            dtype, shape, same = names.get(name, (a.dtype, a.shape[1:], True))
            wide = tuple(max(x, y) for x, y in zip(shape, a.shape[1:]))
            names[name] = (dtype, wide, same and shape == a.shape[1:])
    out = {}
    for name, (dtype, shape, _) in names.items():
        # Parameters whose shapes differ between groups (a widths axis) are NaN-padded to the
        # widest; load_params (or jaxinit.basins.group_params) gives each group's true shapes.
        full = _empty(np.dtype(dtype), (n_runs, *shape))
        for c in chunks:
            if name in c:
                a = c[name]
                full[(c["run_id"], *(slice(0, s) for s in a.shape[1:]))] = a
        out[name] = full
    for c in chunks:
        done[c["run_id"]] = True
    return out, done


def assemble(
    plan: Plan, chunks: list[dict[str, np.ndarray]], *, partial: bool, attrs=None
) -> xr.Dataset:
    """Build the Dataset of a plan from its chunks (any subset; missing runs are marked)."""
    arrays, done = _gather(chunks, plan.n_runs)
    dims = [a.dim for a in plan.axes]
    shape = plan.shape
    spec = plan.spec
    variables = {"done": (dims, done.reshape(shape))}
    for name, a in arrays.items():
        section, _, key = name.partition("/")
        a = a.reshape(*shape, *a.shape[1:])
        if section == "final":
            variables[key] = (dims, a)
        elif section == "curves":
            extra = ["step", "layer"][: a.ndim - len(dims)]
            variables[key] = (dims + extra, a)
        else:
            extra = [f"{name}_dim{k}" for k in range(a.ndim - len(dims))]
            variables[name] = (dims + extra, a)
    coords = dict(coordinates(plan))
    n_steps = max(
        (v[1].shape[len(dims)] for k, v in variables.items() if "step" in v[0]), default=0
    )
    if n_steps:
        coords["step"] = np.arange(n_steps) * spec.train.log_every
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update(
        name=spec.name,
        description=spec.description,
        spec=json.dumps(spec.to_dict()),
        fingerprint=spec.fingerprint(),
        axes=json.dumps({a.dim: a.path for a in plan.axes}),
        traced_axes=json.dumps([a.dim for a in plan.axes if a.traced]),
        dtype=spec.train.dtype,
        chunk_size=plan.chunk_size,
        partial=int(partial or not done.all()),
        n_done=int(done.sum()),
        n_runs=plan.n_runs,
        **(attrs or {}),
    )
    return ds


def load(path: str | Path, *, on_corrupt: str = "raise") -> xr.Dataset:
    """Load a sweep directory, finished or still running (then ``attrs['partial']`` is 1).

    Corrupt chunks raise :class:`~jaxinit.store.CorruptChunkError` naming the file, or with
    ``on_corrupt="skip"`` are left out with a warning. Nothing is unpickled.
    """
    spec, meta = read_spec(path)
    plan = make_plan(spec, meta["chunk_size"])
    chunks = list(iter_chunks(path, on_corrupt=on_corrupt))
    ds = assemble(plan, chunks, partial=False, attrs={"jaxinit_version": meta["jaxinit_version"]})
    if ds.attrs["partial"]:
        warnings.warn(
            f"{path}: sweep is partial ({ds.attrs['n_done']}/{ds.attrs['n_runs']} runs done); "
            "unfinished runs are NaN and done=False",
            stacklevel=2,
        )
    return ds


def load_params(path: str | Path, which: str = "params", group: int | None = None):
    """``(run_ids, {param path: (R, ...) array})`` of a directory saved with ``store.save_params``.

    ``which`` is ``"params"`` (final) or ``"params0"`` (initial). When groups differ in shape
    (e.g. a widths axis), pass ``group`` (the static group index) to pick one.
    """
    prefix = which + "/"
    keep = None
    if group is not None:
        spec, meta = read_spec(path)
        keep = make_plan(spec, meta["chunk_size"]).groups[group].run_ids
    ids, arrays = [], {}
    for chunk in iter_chunks(path):
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
