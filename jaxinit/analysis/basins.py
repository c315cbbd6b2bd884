"""Basins of a sweep: which minimum each run reached, how often, and how separated they are.

Works from a sweep's Dataset saved with ``store.save_params = true``; the model and task are
rebuilt from ``ds.attrs["spec"]``, one static group (one landscape) at a time.

- :func:`find_basins` clusters endpoints by **function-space distance** (RMS difference of the
  outputs on a probe set; probabilities for classification) and optionally by relative distance
  between canonical parameters (:mod:`jaxinit.analysis.symmetry`), leaders taken in order of loss. Per
  basin: size with a Wilson interval, mean loss, whether it is global, representative run ids.
- :func:`barrier_matrix` measures the loss along straight lines between aligned endpoints
  (``barrier = max along the path - mean of the ends``), vmapped over pairs.
- :func:`restart_stats` turns the global-basin rate ``p`` into ``P(best of k restarts is
  global) = 1 - (1 - p)^k`` and the restarts needed for 99%, and checks the formula on disjoint
  blocks of ``k`` seeds. :func:`spurious_rates` counts converged runs that stopped above the
  global loss (teacher–student).

>>> import jaxinit  # doctest: +SKIP
>>> ds = jaxinit.run("xor_minima", store__save_params=True)  # doctest: +SKIP
>>> b = find_basins(ds); b.table  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.analysis import curvature, symmetry
from jaxinit.analysis.stats import rate_interval
from jaxinit.blocks import tasks
from jaxinit.blocks.models import Model, Symmetry
from jaxinit.blocks.tasks import Task
from jaxinit.config.spec import Spec
from jaxinit.engine.plan import coordinates, make_plan
from jaxinit.engine.rebuild import from_dataset

DIVERGED = -1  # basin label of diverged or unfinished runs
UNCONVERGED = -2  # basin label of runs still moving at the end (see BasinConfig.converged_only)
UNCLUSTERED = -3  # basin label of runs left after max_basins leaders


class BasinConfig(NamedTuple):
    """Tolerances of the basin analysis; by default the spec's ``[basins]`` section."""

    f_tol: float = 0.05  # same basin: RMS output distance on the probe set below this
    p_tol: float | None = None  # and, if set, canonical parameter distance / norm below this
    loss_tol: float = 1e-2  # global basin: mean loss within this of the lowest basin's
    probe: str = "data"  # "data": train + test inputs; "box": random points in their bounding box
    n_probe: int = 256
    max_basins: int = 256  # leaders per group; runs left after that are labelled UNCLUSTERED
    converged_only: bool = True  # cluster converged runs only; the others are labelled UNCONVERGED
    grad_tol: float = 1e-3  # converged: final gradient norm below this (or at the lowest loss)

    @classmethod
    def from_spec(cls, spec: Spec) -> BasinConfig:
        b = spec.basins
        return cls(
            b.f_tol,
            b.p_tol or None,
            b.loss_tol,
            b.probe,
            b.n_probe,
            converged_only=b.converged_only,
            grad_tol=b.grad_tol,
        )


# -- the sweep's groups -------------------------------------------------------------------------
class LoadedGroup(NamedTuple):
    """One static configuration of a sweep: its landscape and its runs."""

    index: int
    spec: Spec
    model: Model
    task: Task
    run_ids: np.ndarray  # (R,) flat indices into the Dataset's axis dims (C order)
    params_R: Any  # pytree of numpy arrays with a leading run axis, true (unpadded) shapes

    @property
    def symmetry(self) -> Symmetry | None:
        return self.model.symmetry

    def loss_fn(self) -> Callable[[Any], jax.Array]:
        return curvature.loss_function(self.model, self.task, self.spec.train.dtype)

    def trainable(self) -> Any:
        one = jax.tree.map(lambda a: a[0], self.params_R)
        return self.model.trainable(one) if self.model.trainable else None


def selected_spec(ds: xr.Dataset) -> Spec:
    """The sweep's spec with the axis values that ``ds`` holds: a Dataset cut with ``isel`` or
    ``sel`` (one seed, one cell) keeps its spec's full axes in ``attrs``, and its runs are
    planned from the values left."""
    spec = from_dataset(ds).spec
    plan = make_plan(spec, 1)
    full = coordinates(plan)
    data, changed = json.loads(spec.to_json()), False
    for axis in plan.axes:
        have = [v.item() if hasattr(v, "item") else v for v in ds[axis.dim].values]
        if have == full[axis.dim]:
            continue
        pos = [full[axis.dim].index(v) for v in have]
        values = [axis.values[i] for i in pos]
        data["axes"][axis.path] = [list(v) if isinstance(v, tuple) else v for v in values]
        changed = True
    return Spec.from_dict(data) if changed else spec


def axis_dims(ds: xr.Dataset) -> list[str]:
    return list(json.loads(ds.attrs["axes"]))


def flat_runs(ds: xr.Dataset, var: str) -> np.ndarray:
    """``ds[var]`` with the axis dims flattened into one leading run axis (C order)."""
    dims = axis_dims(ds)
    da = ds[var].transpose(*dims, ...)
    return da.values.reshape(-1, *da.shape[len(dims) :])


def groups(ds: xr.Dataset, which: str = "params", model: Model | None = None) -> list[LoadedGroup]:
    """Every static group of ``ds`` with its runs' parameters (``which``: params or params0).

    ``model`` is needed (only) for a sweep that ran a user model."""
    spec = selected_spec(ds)
    if not any(k.startswith(which + "/") for k in ds.data_vars):
        raise ValueError("the sweep has no saved parameters: set store.save_params = true")
    out, stored = [], from_dataset(ds)
    for g in make_plan(spec, int(ds.attrs.get("chunk_size", 1))).groups:
        task = tasks.from_spec(g.spec.task)
        mdl = stored.model(model, at=g.spec, task=task)
        shapes = jax.eval_shape(lambda k, m=mdl, s=g.spec: m.init(k, s.init), jax.random.key(0))
        leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
        arrays = []
        run_ids = g.run_ids
        for path, shape in leaves:
            name = f"{which}/" + jax.tree_util.keystr(path, simple=True, separator="/")
            a = flat_runs(ds, name)[run_ids]
            arrays.append(a[(slice(None), *(slice(0, s) for s in shape.shape))])
        params = jax.tree.unflatten(treedef, arrays)
        out.append(LoadedGroup(g.index, g.spec, mdl, task, run_ids, params))
    return out


def group_label(spec0: Spec | xr.Dataset, group: LoadedGroup) -> str:
    """``"model.widths=[2], model.activation=tanh"``: the static axis values of a group."""
    spec0 = from_dataset(spec0).spec if isinstance(spec0, xr.Dataset) else spec0
    parts = []
    for path, values in spec0.axes:
        if path == "seed" or len(values) < 2:
            continue
        v = group.spec.get(path)
        if not isinstance(v, float):
            parts.append(f"{path}={list(v) if isinstance(v, tuple) else v}")
    return ", ".join(parts) or "all runs"


# -- clustering ---------------------------------------------------------------------------------
def probe_inputs(task: Task, config: BasinConfig) -> np.ndarray:
    """The probe set ``(P, I)`` on which functions are compared."""
    x = np.unique(np.concatenate([task.x_train, task.x_test]), axis=0)
    if config.probe == "box":
        lo, hi = x.min(0), x.max(0)
        pad = 0.1 * (hi - lo)
        rng = np.random.default_rng(0)
        return rng.uniform(lo - pad, hi + pad, (config.n_probe, x.shape[1])).astype(np.float32)
    return x[: config.n_probe].astype(np.float32)


def outputs(group: LoadedGroup, probe: np.ndarray) -> np.ndarray:
    """``(R, P·O)`` outputs of every run on the probe set (probabilities for classification)."""
    link = {"bce": jax.nn.sigmoid, "ce": lambda z: jax.nn.softmax(z, -1)}.get(
        group.task.loss, lambda z: z
    )
    fn = jax.jit(jax.vmap(lambda p: link(group.model.apply(p, jnp.asarray(probe))).ravel()))
    safe = jax.tree.map(lambda a: np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), group.params_R)
    return np.asarray(fn(jax.tree.map(jnp.asarray, safe)), float)


def leader_cluster(
    out_RxP: np.ndarray,
    loss_R: np.ndarray,
    ok_R: np.ndarray,
    f_tol: float,
    canon_RxD: np.ndarray | None = None,
    p_tol: float | None = None,
    max_basins: int = 256,
) -> np.ndarray:
    """Basin label per run: leaders in order of increasing loss absorb every unlabelled run
    within ``f_tol`` (RMS output distance) and, if given, ``p_tol`` (canonical parameter
    distance relative to the leader's norm). Runs with ``ok_R`` False get :data:`DIVERGED`."""
    label = np.full(len(loss_R), DIVERGED)
    left = ok_R.copy()
    order = np.argsort(np.where(ok_R, loss_R, np.inf), kind="stable")
    pos, b = 0, 0
    while left.any() and b < max_basins:
        while not left[order[pos]]:
            pos += 1
        lead = order[pos]
        near = np.sqrt(np.mean((out_RxP - out_RxP[lead]) ** 2, 1)) < f_tol
        if canon_RxD is not None and p_tol is not None:
            scale = max(np.linalg.norm(canon_RxD[lead]), 1e-12)
            near &= np.linalg.norm(canon_RxD - canon_RxD[lead], axis=1) / scale < p_tol
        members = left & near
        members[lead] = True
        label[members] = b
        left &= ~members
        b += 1
    label[left] = UNCLUSTERED
    return label


BASIN_COLUMNS = ("group", "label", "basin", "size", "fraction", "ci_lo", "ci_hi", "mean_loss",
                 "min_loss", "is_global", "reps")  # fmt: skip
"""The columns of :attr:`Basins.table` (:func:`basin_kinds` adds ``kind`` and ``kind_votes``)."""


class Basins(NamedTuple):
    label: xr.DataArray  # basin id per run (axis dims); DIVERGED / UNCONVERGED / UNCLUSTERED
    is_global: xr.DataArray  # the run ended in a global basin of its group
    table: pd.DataFrame  # one row per basin
    groups: list[LoadedGroup]
    excluded: pd.DataFrame  # per group: runs, diverged/unfinished, unconverged, clustered
    notes: list[str]  # what the analysis could not do (e.g. a model without a declared symmetry)
    config: BasinConfig = BasinConfig()  # the tolerances used


class _Prepared(NamedTuple):
    """One group's endpoints, ready to cluster at any tolerance."""

    out: np.ndarray  # (R, P·O) outputs on the probe set
    loss: np.ndarray  # (R,)
    finished: np.ndarray  # (R,) done, not diverged, finite
    converged: np.ndarray  # (R,) finished and converged (see BasinConfig)
    canon: np.ndarray | None  # (R, D) canonical parameters, when p_tol is set


def _prepare_group(ds, g: LoadedGroup, config: BasinConfig, notes: list[str]) -> _Prepared:
    loss = flat_runs(ds, "final_loss").astype(float)[g.run_ids]
    finished = flat_runs(ds, "done") & ~flat_runs(ds, "diverged")
    finished = finished[g.run_ids] & np.isfinite(loss)
    out = outputs(g, probe_inputs(g.task, config))
    finished &= np.isfinite(out).all(1)
    converged = finished.copy()
    if config.converged_only:
        gnorm = flat_runs(ds, "final_grad_norm").astype(float)[g.run_ids]
        best = np.min(loss[finished], initial=np.inf)
        # At the lowest loss level counts as converged even while the gradient still decays
        # (minima at infinity, as with cross-entropy on separable data).
        converged &= (gnorm < config.grad_tol) | (loss <= best + config.loss_tol)
    canon = None
    if config.p_tol is not None:
        if g.symmetry is None:
            notes.append(
                f"group {g.index}: the model declares no symmetry; p_tol compares raw parameters"
            )
        canon = symmetry.flat_params(symmetry.canonical_params(g.params_R, g.symmetry))
    return _Prepared(out, loss, finished, converged, canon)


def _cluster(p: _Prepared, config: BasinConfig, f_tol: float) -> np.ndarray:
    lab = leader_cluster(
        p.out, p.loss, p.converged, f_tol, p.canon, config.p_tol, config.max_basins
    )
    return np.where(p.finished & ~p.converged, UNCONVERGED, lab)


def find_basins(
    ds: xr.Dataset,
    config: BasinConfig | None = None,
    model: Model | None = None,
    kinds: bool = False,
) -> Basins:
    """Cluster every group's endpoints into basins (ids unique across groups).

    ``config`` defaults to the tolerances in the sweep spec's ``[basins]`` section. By default
    only converged runs are clustered (final gradient norm below ``grad_tol``, or at the lowest
    loss level); unconverged ones are labelled :data:`UNCONVERGED` and counted in ``excluded``.
    A user model is passed as ``model``; without a declared :class:`~jaxinit.blocks.models.Symmetry`
    its basins are found in function space (``notes`` says so). With ``kinds`` the table says
    what each basin's endpoints are (:func:`basin_kinds`: minimum, saddle, plateau …).
    """
    spec0 = from_dataset(ds).spec
    config = config or BasinConfig.from_spec(spec0)
    dims = axis_dims(ds)
    shape = tuple(ds.sizes[d] for d in dims)
    label = np.full(int(np.prod(shape)), DIVERGED)
    glob = np.zeros(label.shape, bool)
    rows, excluded, notes, offset = [], [], [], 0
    gs = groups(ds, model=model)
    for g in gs:
        prep = _prepare_group(ds, g, config, notes)
        lab = _cluster(prep, config, config.f_tol)
        new_rows, is_g = _basin_rows(spec0, g, lab, prep, config, offset)
        rows += new_rows
        glob[g.run_ids] = is_g
        label[g.run_ids] = np.where(lab >= 0, lab + offset, lab)
        offset += len(new_rows)
        excluded.append(_excluded_row(spec0, g, lab))
    coords = {d: ds[d] for d in dims}
    out = Basins(
        xr.DataArray(label.reshape(shape), coords, dims),
        xr.DataArray(glob.reshape(shape), coords, dims),
        pd.DataFrame(rows, columns=list(BASIN_COLUMNS)),
        gs,
        pd.DataFrame(excluded),
        sorted(set(notes)),
        config,
    )
    return basin_kinds(ds, out) if kinds else out


def _basin_rows(spec0, g: LoadedGroup, lab, prep: _Prepared, config: BasinConfig, offset: int):
    """Table rows of a group's basins, and whether each run is in a global basin."""
    loss, n = prep.loss, int((lab >= 0).sum())
    ids = [b for b in np.unique(lab) if b >= 0]
    means = {b: float(loss[lab == b].mean()) for b in ids}
    best = min(means.values(), default=np.nan)
    rows, is_g_R = [], np.zeros(len(lab), bool)
    for b in ids:
        members = np.flatnonzero(lab == b)
        fraction, lo, hi = rate_interval(len(members), n)
        is_g = means[b] <= best + config.loss_tol
        rows.append(
            dict(
                group=g.index,
                label=group_label(spec0, g),
                basin=b + offset,
                size=len(members),
                fraction=float(fraction),
                ci_lo=float(lo),
                ci_hi=float(hi),
                mean_loss=means[b],
                min_loss=float(loss[members].min()),
                is_global=bool(is_g),
                reps=[int(r) for r in g.run_ids[members[np.argsort(loss[members])][:3]]],
            )
        )
        is_g_R[members] = is_g
    return rows, is_g_R


def _excluded_row(spec0, g: LoadedGroup, lab: np.ndarray) -> dict:
    return dict(
        group=g.index,
        label=group_label(spec0, g),
        runs=len(lab),
        clustered=int((lab >= 0).sum()),
        unconverged=int((lab == UNCONVERGED).sum()),
        diverged_or_unfinished=int((lab == DIVERGED).sum()),
        unclustered=int((lab == UNCLUSTERED).sum()),
    )


def f_tol_sensitivity(
    ds: xr.Dataset,
    config: BasinConfig | None = None,
    model: Model | None = None,
    factors: Sequence[float] = (0.5, 1.0, 2.0),
) -> pd.DataFrame:
    """Basin counts per group at ``f_tol × factor``: a count that moves a lot with the
    tolerance is a property of the tolerance, not of the landscape."""
    spec0 = from_dataset(ds).spec
    config = config or BasinConfig.from_spec(spec0)
    rows = []
    for g in groups(ds, model=model):
        prep = _prepare_group(ds, g, config, [])
        for f in factors:
            lab = _cluster(prep, config, config.f_tol * f)
            rows.append(
                dict(
                    group=g.index,
                    label=group_label(spec0, g),
                    f_tol=config.f_tol * f,
                    basins=len(np.unique(lab[lab >= 0])),
                    clustered=int((lab >= 0).sum()),
                    unconverged=int((lab == UNCONVERGED).sum()),
                )
            )
    return pd.DataFrame(rows)


def basin_fractions(basins: Basins, dim: str) -> xr.DataArray:
    """``(dim, basin)``: fraction of each value's clustered runs that ended in each basin."""
    ids = basins.table["basin"].to_numpy()
    lab = basins.label
    counts = xr.concat([(lab == b).sum([d for d in lab.dims if d != dim]) for b in ids], "basin")
    total = (lab >= 0).sum([d for d in lab.dims if d != dim])
    return (counts / total).assign_coords(basin=ids).transpose(dim, "basin")


# -- barriers -----------------------------------------------------------------------------------
def path_losses(loss_fn: Callable, a_N: Any, b_N: Any, n_points: int = 33) -> np.ndarray:
    """``(N, T)`` loss along ``(1 - t) a + t b`` for ``T`` evenly spaced ``t``, vmapped over pairs."""
    ts = jnp.linspace(0.0, 1.0, n_points)

    def one(a, b):
        return jax.vmap(lambda t: loss_fn(jax.tree.map(lambda x, y: (1 - t) * x + t * y, a, b)))(ts)

    a, b = (jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), p) for p in (a_N, b_N))
    return np.asarray(jax.jit(jax.vmap(one))(a, b))


def barrier_heights(losses_NxT: np.ndarray) -> np.ndarray:
    """``max along the path - mean of the two ends`` per pair."""
    return losses_NxT.max(1) - (losses_NxT[:, 0] + losses_NxT[:, -1]) / 2


def _run(params_R: Any, i: int) -> Any:
    return jax.tree.map(lambda a: np.asarray(a[i]), params_R)


def aligned_pairs(group: LoadedGroup, pairs: Sequence[tuple[int, int]]) -> tuple[Any, Any]:
    """Stacked ``(a, b)`` params for index pairs within a group, each ``b`` aligned onto its ``a``
    and each ``a`` in canonical form (the same function as the run itself). A model without a
    declared symmetry is compared as it is (straight lines between raw parameters)."""
    a_list, b_list = [], []
    for i, j in pairs:
        a = symmetry.canonical_params(_run(group.params_R, i), group.symmetry)
        a_list.append(a)
        b_list.append(symmetry.align_params(_run(group.params_R, j), a, group.symmetry))
    stack = lambda ps: jax.tree.map(lambda *xs: np.stack(xs), *ps)  # noqa: E731
    return stack(a_list), stack(b_list)


def barrier_matrix(
    basins: Basins, group: int = 0, max_basins: int = 8, reps: int = 3, n_points: int = 33
) -> tuple[np.ndarray, np.ndarray]:
    """``(basin ids (B,), barriers (B, B))`` for the largest basins of one group.

    Entry ``(i, j)`` is the median barrier between up to ``reps`` lowest-loss runs of basin ``i``
    and of basin ``j`` (distinct runs on the diagonal; 0 when a basin has one run).
    """
    g = next(x for x in basins.groups if x.index == group)
    table = basins.table[basins.table.group == group].nlargest(max_basins, "size")
    ids = table["basin"].to_numpy()
    where = {int(r): k for k, r in enumerate(g.run_ids)}
    members = [[where[r] for r in reps_][:reps] for reps_ in table["reps"]]
    pairs, cells = [], []
    for i in range(len(ids)):
        for j in range(i, len(ids)):
            for a in members[i]:
                for b in members[j]:
                    if i != j or a < b:
                        pairs.append((a, b))
                        cells.append((i, j))
    out = np.zeros((len(ids), len(ids)))
    if pairs:
        heights = barrier_heights(path_losses(g.loss_fn(), *aligned_pairs(g, pairs), n_points))
        cells = np.array(cells)
        for i in range(len(ids)):
            for j in range(i, len(ids)):
                sel = (cells[:, 0] == i) & (cells[:, 1] == j)
                if sel.any():
                    out[i, j] = out[j, i] = float(np.median(heights[sel]))
    return ids, out


# -- statistics over restarts -------------------------------------------------------------------
def restart_stats(
    ds: xr.Dataset, basins: Basins, ks: Sequence[int] = (1, 2, 5, 10), target: float = 0.99
) -> pd.DataFrame:
    """Per cell of the non-seed axes: ``p`` (fraction of seeds ending in a global basin; diverged
    runs count as failures) with a Wilson interval, ``P(best of k is global) = 1 - (1 - p)^k`` per
    ``k``, the restarts needed for ``target`` success (from ``p`` and its interval), and
    ``emp_k``: the same probability measured on disjoint blocks of ``k`` seeds, the block's
    lowest-loss run counting. ``k_needed`` is inf when ``p = 0``."""
    hit = basins.is_global
    loss = ds["final_loss"].where(ds.done & ~ds.diverged)
    others = [d for d in hit.dims if d != "seed"]
    cells = hit.stack(cell=others) if others else hit.expand_dims(cell=[0])
    losses = loss.stack(cell=others) if others else loss.expand_dims(cell=[0])
    rows = []
    for c in range(cells.sizes["cell"]):
        h = cells.isel(cell=c).values
        lv = losses.isel(cell=c).values
        n, k_hit = h.size, int(h.sum())
        p, lo, hi = (float(v) for v in rate_interval(k_hit, n))
        # each axis's own level coordinate: a one-axis stack's cell values are 1-tuples
        row = {d: cells[d].values[c] for d in others}
        row.update(n=n, p_global=p, p_lo=float(lo), p_hi=float(hi))
        for k in ks:
            row[f"best_of_{k}"] = 1 - (1 - p) ** k
            blocks = n // k
            if blocks:
                lvb = np.where(np.isfinite(lv), lv, np.inf)[: blocks * k].reshape(blocks, k)
                best = np.argmin(lvb, 1)
                row[f"emp_{k}"] = float(
                    h[: blocks * k].reshape(blocks, k)[np.arange(blocks), best].mean()
                )
        for name, q in (("k_needed", p), ("k_needed_hi", lo), ("k_needed_lo", hi)):
            row[name] = restarts_needed(q, target)
        rows.append(row)
    return pd.DataFrame(rows)


def restarts_needed(p: float, target: float = 0.99) -> float:
    """Smallest ``k`` with ``1 - (1 - p)^k >= target``."""
    if p >= 1:
        return 1.0
    if p <= 0:
        return float("inf")
    return float(np.ceil(np.log1p(-target) / np.log1p(-p)))


def spurious_rates(
    ds: xr.Dataset, dim: str | None = None, loss_tol: float = 1e-3, grad_tol: float | None = None
) -> pd.DataFrame:
    """Per value of ``dim``: how many runs converged (``converged_step`` not NaN, or final gradient
    norm below ``grad_tol`` if given) to a loss above ``loss_tol`` (a spurious critical point of a
    realizable problem whose global loss is 0), with Wilson intervals over all runs."""
    dims = [d for d in axis_dims(ds) if d != "seed" and ds.sizes[d] > 1]
    dim = dim or (dims[0] if dims else None)
    done = ds.done & ~ds.diverged
    conv = ds.converged_step.notnull() if grad_tol is None else ds.final_grad_norm < grad_tol
    conv = conv & done
    spur = conv & (ds.final_loss > loss_tol)
    rows = []
    for v in ds[dim].values if dim else [None]:

        def sel(a, v=v):
            return a.sel({dim: v}) if dim else a

        n, c, s = int(sel(ds.done).sum()), int(sel(conv).sum()), int(sel(spur).sum())
        rate, lo, hi = rate_interval(s, n)
        sl = sel(ds.final_loss).values[sel(spur).values]
        rows.append({dim or "cell": v, "runs": n, "converged": c, "spurious": s, "rate": float(rate),
                     "ci_lo": float(lo), "ci_hi": float(hi),
                     "rate_of_converged": s / max(c, 1),
                     "mean_spurious_loss": float(sl.mean()) if s else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def classify_group(group: LoadedGroup, **kwargs: Any) -> curvature.Endpoints:
    """:func:`jaxinit.analysis.curvature.classify` on one group's endpoints (its loss, trainable mask)."""
    return curvature.classify(group.loss_fn(), group.params_R, group.trainable(), **kwargs)


def endpoint_kinds(
    ds: xr.Dataset, group: LoadedGroup, pick: np.ndarray, grad_tol: float | None = None
) -> np.ndarray:
    """The endpoint kind (index into :data:`jaxinit.analysis.curvature.KINDS`) of the runs ``pick``
    (positions in ``group.run_ids``), by :func:`classify_group`; runs that diverged or did not
    finish are diverged endpoints. ``grad_tol`` defaults to the spec's ``[basins] grad_tol``.

    The runs are padded to a power of two (copies of the last one), so that a few compiled
    shapes serve every number of runs, and the answer is kept by content: the basin figures of
    one report ask for the same classification several times."""
    grad_tol = grad_tol or BasinConfig.from_spec(from_dataset(ds).spec).grad_tol
    bad = flat_runs(ds, "diverged") | ~flat_runs(ds, "done")
    pick = np.asarray(pick, int)
    if not len(pick):
        return np.zeros(0, int)
    padded = np.concatenate([pick, np.full((1 << (len(pick) - 1).bit_length()) - len(pick),
                                           pick[-1])])  # fmt: skip
    sub = group._replace(
        params_R=jax.tree.map(lambda a: a[padded], group.params_R), run_ids=group.run_ids[padded]
    )
    digest = hashlib.sha1(group.spec.to_json().encode() + repr(grad_tol).encode())
    for a in [bad[sub.run_ids], *jax.tree.leaves(sub.params_R)]:
        digest.update(np.ascontiguousarray(a).tobytes())
    key = digest.hexdigest()  # the same endpoints of the same landscape: the same answer
    if key not in _KINDS:
        if len(_KINDS) >= 64:
            _KINDS.pop(next(iter(_KINDS)))
        ends = classify_group(sub, grad_tol=grad_tol, diverged_R=bad[sub.run_ids])
        _KINDS[key] = np.asarray(ends.kind_R)
    return _KINDS[key][: len(pick)]


_KINDS: dict[str, np.ndarray] = {}  # endpoint_kinds by content


def kind_of(kinds_R: Sequence[int]) -> tuple[str, str]:
    """``(kind, votes)`` of a basin from the kinds of its representative runs (lowest loss
    first): the most common one (a tie goes to the lowest-loss run's) and the tally,
    ``"saddle 3/3"`` or ``"escaping 2/3, saddle 1/3"``.

    >>> kind_of([curvature.SADDLE, curvature.MINIMUM, curvature.SADDLE])
    ('saddle', 'saddle 2/3, minimum 1/3')
    """
    kinds_R = [int(k) for k in kinds_R]
    if not kinds_R:
        return "unknown", ""
    count = {k: kinds_R.count(k) for k in dict.fromkeys(kinds_R)}  # in order of loss
    top = max(count.values())
    kind = next(k for k in kinds_R if count[k] == top)
    order = sorted(count, key=lambda k: -count[k])
    votes = ", ".join(f"{curvature.KINDS[k]} {count[k]}/{len(kinds_R)}" for k in order)
    return curvature.KINDS[kind], votes


def basin_kinds(ds: xr.Dataset, basins: Basins, grad_tol: float | None = None) -> Basins:
    """``basins`` with two more table columns: ``kind``, what the basin's endpoints are
    (:data:`jaxinit.analysis.curvature.KINDS`: minimum, saddle, plateau, escaping, not_converged, from
    :func:`jaxinit.analysis.curvature.classify` on its representative runs, the ``reps`` column; see
    :func:`kind_of`), and ``kind_votes``, the tally. A "basin" that is a saddle or plateau is a
    cluster of runs that stopped at the same critical point, not a minimum. Where the
    classification fails, ``kind`` is ``"unknown"`` and ``notes`` says why."""
    table = basins.table.copy()
    kind = pd.Series("unknown", index=table.index, dtype=object)
    votes = pd.Series("", index=table.index, dtype=object)
    notes = list(basins.notes)
    for g in basins.groups:
        rows = table[table.group == g.index]
        if rows.empty:
            continue
        pos = {int(r): i for i, r in enumerate(g.run_ids)}
        pick = np.array([pos[int(r)] for reps in rows.reps for r in reps], int)
        try:
            kinds_R = endpoint_kinds(ds, g, pick, grad_tol)
        except Exception as err:  # e.g. a loss that cannot be evaluated in float64
            notes.append(f"group {g.index}: endpoint kinds not computed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})")  # fmt: skip
            continue
        start = 0
        for i, reps in zip(rows.index, rows.reps):
            kind[i], votes[i] = kind_of(kinds_R[start : start + len(reps)])
            start += len(reps)
    table.insert(table.columns.get_loc("size"), "kind", kind)
    table.insert(table.columns.get_loc("size"), "kind_votes", votes)
    return basins._replace(table=table, notes=sorted(set(notes)))
