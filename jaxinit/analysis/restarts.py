"""Restarts of k-means and EM: distinct local optima modulo relabelling, P(global), best of k.

A sweep of an algorithm (:mod:`jaxinit.engine.algorithms`, saved with ``store.save_params``) has one
**cell** per combination of its non-seed axes (``task.k``, ``algorithm.init`` …) and one run per
seed. Per cell, :func:`find_optima`

- matches two runs' solutions modulo relabelling: the rows of ``Algorithm.components`` (the
  centres or means) are paired by an optimal assignment (Hungarian, ``linear_sum_assignment``)
  and the largest paired distance is compared with ``x_tol`` times the data's spread (RMS
  distance of a point from the data's mean);
- groups the converged runs into **distinct optima** (leader clustering in order of loss: a run
  joins the first optimum whose loss is within ``loss_rtol`` and whose solution matches);
- finds the **global optimum**: the lowest of the optima found and, when the task has labels,
  the **reference**, the algorithm run from the generating partition
  (:func:`jaxinit.engine.algorithms.from_partition`; on well-separated blobs, the generating centres);
- marks a run **global** when its loss is within ``loss_rtol`` of the global loss and its
  solution matches the global one (diverged runs never are; unconverged runs may be).

:func:`best_of_k` turns that into restart curves: ``P(the lowest-loss of r restarts is global)``
measured on disjoint blocks of ``r`` seeds, and ``1 - (1 - p)^r`` from the rate ``p``, both with
95% Wilson intervals.

>>> import jaxinit  # doctest: +SKIP
>>> ds = jaxinit.run("kmeans_restarts", out=None)  # doctest: +SKIP
>>> find_optima(ds).summary[["task_k", "algorithm_init", "n_optima", "p_global"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment

from jaxinit.analysis.stats import rate_interval
from jaxinit.blocks import tasks
from jaxinit.blocks.tasks import Task
from jaxinit.config.spec import Spec
from jaxinit.engine.algorithms import ALGORITHMS, describe, from_partition, has_labels
from jaxinit.engine.rebuild import from_dataset

__all__ = ["Optima", "find_optima", "best_of_k", "match", "cells", "restart_table"]


def match(a_KxF: np.ndarray, b_KxF: np.ndarray) -> tuple[np.ndarray, float]:
    """``(perm, distance)``: row ``i`` of ``a`` pairs with row ``perm[i]`` of ``b`` so that the
    summed squared distance is least; ``distance`` is the largest paired Euclidean distance."""
    cost = np.sum((a_KxF[:, None, :] - b_KxF[None, :, :]) ** 2, axis=-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), int)
    perm[rows] = cols
    return perm, float(np.sqrt(cost[rows, cols].max())) if len(rows) else 0.0


@dataclass
class Optima:
    """What :func:`find_optima` found. ``summary``: one row per cell (``n`` runs, ``converged``,
    ``diverged``, ``n_optima``, ``p_global`` with ``p_lo``/``p_hi``, ``global_loss``,
    ``ref_loss``, ``ref_is_global``); ``table``: one row per distinct optimum (``optimum``,
    ``loss``, ``runs``, ``fraction``, ``is_global``, ``distance_to_global``); ``label``: each
    run's optimum within its cell (-1: not converged or diverged); ``is_global``: per run."""

    summary: pd.DataFrame
    table: pd.DataFrame
    label: xr.DataArray
    is_global: xr.DataArray
    x_tol: float
    loss_rtol: float


def cells(ds: xr.Dataset) -> list[dict]:
    """Every combination of the non-seed axes, as ``{dim: coordinate}`` (C order)."""
    dims = [d for d in json.loads(ds.attrs["axes"]) if d != "seed"]
    if not dims:
        return [{}]
    grid = np.meshgrid(*[ds[d].values for d in dims], indexing="ij")
    return [{d: g.ravel()[i].item() for d, g in zip(dims, grid)} for i in range(grid[0].size)]


def cell_spec(ds: xr.Dataset, cell: dict) -> Spec:
    """The spec of one cell: its axis values filled in (by path)."""
    return from_dataset(ds, cell).spec


def _states(ds: xr.Dataset, cell: dict, spec: Spec, task: Task) -> list[dict]:
    """Each run's final state, cut from its NaN-padding to the cell's true shapes."""
    shapes = describe(spec, task)["params"]
    arrays = {}
    for name, (shape, _) in shapes.items():
        var = f"params/{name}"
        if var not in ds:
            raise ValueError(f"the sweep has no {var}: run it with store.save_params = true")
        a = ds[var].sel(cell).transpose("seed", ...).values
        arrays[name] = a[(slice(None), *(slice(0, s) for s in shape))]
    return [{n: a[r] for n, a in arrays.items()} for r in range(ds.sizes["seed"])]


def _leaders(loss_R, comp_RxKxF, ok_R, x_tol, loss_rtol) -> np.ndarray:
    """Leader clustering in order of loss: a run joins the first leader whose loss is within
    ``loss_rtol`` and whose components match within ``x_tol``; else it leads a new optimum."""
    label = np.full(len(loss_R), -1)
    leaders: list[int] = []
    for r in np.argsort(np.where(ok_R, loss_R, np.inf), kind="stable"):
        if not ok_R[r]:
            continue
        for j, lead in enumerate(leaders):
            near = abs(loss_R[r] - loss_R[lead]) <= loss_rtol * max(abs(loss_R[lead]), 1e-12)
            if near and match(comp_RxKxF[r], comp_RxKxF[lead])[1] <= x_tol:
                label[r] = j
                break
        else:
            label[r] = len(leaders)
            leaders.append(r)
    return label


_LAST: list = []  # [(ds, x_tol, loss_rtol, Optima)]: figures and the report share one analysis


def find_optima(ds: xr.Dataset, x_tol: float = 1e-2, loss_rtol: float = 1e-3) -> Optima:
    """Distinct optima modulo relabelling and the global-optimum rate, per cell (see above).

    ``x_tol`` is in units of the data's spread; ``loss_rtol`` is relative to the loss. The last
    result is kept for the same Dataset object (the figures and ``summary.txt`` share it)."""
    if _LAST and _LAST[0][0] is ds and _LAST[0][1:3] == (x_tol, loss_rtol):
        return _LAST[0][3]
    optima = _find_optima(ds, x_tol, loss_rtol)
    _LAST[:] = [(ds, x_tol, loss_rtol, optima)]
    return optima


def _find_optima(ds: xr.Dataset, x_tol: float, loss_rtol: float) -> Optima:
    rows, table = [], []
    shape = [ds.sizes[d] for d in ds.done.dims]
    label_all = xr.DataArray(np.full(shape, -1), dims=ds.done.dims, coords=ds.done.coords)
    global_all = xr.zeros_like(ds.done)
    for cell in cells(ds):
        spec = cell_spec(ds, cell)
        alg = ALGORITHMS[spec.algorithm.name]
        task = tasks.from_spec(spec.task)
        x = np.asarray(task.x_train, np.float64)
        spread = float(np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=1))))
        tol = x_tol * spread
        sub = ds.sel(cell).transpose("seed", ...)
        loss = sub.final_loss.values.astype(np.float64)
        finite = sub.done.values & ~sub.diverged.values & np.isfinite(loss)
        ok = finite & sub.converged_step.notnull().values
        comps = np.stack(
            [np.asarray(alg.components(s), np.float64) for s in _states(ds, cell, spec, task)]
        )
        label = _leaders(loss, comps, ok, tol, loss_rtol)
        n_opt = int(label.max() + 1)
        lead = [int(np.flatnonzero(label == j)[np.argmin(loss[label == j])]) for j in range(n_opt)]
        cand_loss = [loss[r] for r in lead]
        cand_comp = [comps[r] for r in lead]
        ref_loss = np.nan
        if has_labels(task):
            ref_state, ref_loss = from_partition(spec, task)
            cand_loss.append(ref_loss)
            cand_comp.append(np.asarray(alg.components(ref_state), np.float64))
        if not cand_loss:  # nothing converged, no reference
            g_loss, g_comp = np.nan, None
        else:
            best = int(np.nanargmin(cand_loss))
            g_loss, g_comp = cand_loss[best], cand_comp[best]
        dist = np.array(
            [
                match(c, g_comp)[1] if g_comp is not None and np.isfinite(c).all() else np.inf
                for c in comps
            ]
        )  # fmt: skip  (unfinished runs: NaN)
        hit = finite & (loss <= g_loss + loss_rtol * abs(g_loss)) & (dist <= tol)
        n, k_hit = int(sub.done.values.sum()), int(hit.sum())
        p, lo, hi = rate_interval(k_hit, n)
        rows.append({**cell, "n": n, "converged": int(ok.sum()),
                     "diverged": int((sub.done.values & sub.diverged.values).sum()),
                     "n_optima": n_opt, "p_global": float(p), "p_lo": float(lo),
                     "p_hi": float(hi), "global_loss": g_loss, "ref_loss": ref_loss,
                     "ref_is_global": bool(np.isfinite(ref_loss)
                                           and ref_loss <= g_loss + loss_rtol * abs(g_loss))})  # fmt: skip
        for j, r in enumerate(lead):
            d = match(comps[r], g_comp)[1] if g_comp is not None else np.inf
            table.append({**cell, "optimum": j, "loss": loss[r], "runs": int((label == j).sum()),
                          "fraction": float((label == j).sum() / max(n, 1)),
                          "is_global": bool(loss[r] <= g_loss + loss_rtol * abs(g_loss) and d <= tol),
                          "distance_to_global": d / spread})  # fmt: skip
        where = {d: v for d, v in cell.items()}
        label_all.loc[where] = label
        global_all.loc[where] = hit
    return Optima(pd.DataFrame(rows), pd.DataFrame(table), label_all, global_all, x_tol, loss_rtol)


def best_of_k(
    ds: xr.Dataset, optima: Optima | None = None, ks: Sequence[int] | None = None
) -> pd.DataFrame:
    """Per cell and number of restarts ``r`` (column ``restarts``): ``P(the lowest-loss of r
    restarts is global)``, measured on ``n // r`` disjoint blocks of seeds (``emp``, ``emp_lo``,
    ``emp_hi``, ``blocks``) and from the rate ``p`` as ``1 - (1 - p)^r`` (``formula``,
    ``formula_lo``, ``formula_hi``, from ``p``'s Wilson interval). Diverged runs count as
    failures (loss +inf)."""
    optima = optima or find_optima(ds)
    n_seed = ds.sizes["seed"]
    ks = list(ks) if ks is not None else [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n_seed]
    rows = []
    for cell, srow in zip(cells(ds), optima.summary.itertuples()):
        sub = ds.sel(cell).transpose("seed", ...)
        loss = np.where(sub.diverged.values, np.inf, sub.final_loss.values.astype(float))
        loss = np.where(np.isfinite(loss), loss, np.inf)
        hit = optima.is_global.sel(cell).transpose("seed", ...).values
        for k in ks:
            blocks = n_seed // k
            lb = loss[: blocks * k].reshape(blocks, k)
            won = hit[: blocks * k].reshape(blocks, k)[np.arange(blocks), np.argmin(lb, 1)]
            emp, elo, ehi = rate_interval(int(won.sum()), blocks)
            p, lo, hi = srow.p_global, srow.p_lo, srow.p_hi
            rows.append({**cell, "restarts": k, "blocks": blocks, "emp": float(emp),
                         "emp_lo": float(elo), "emp_hi": float(ehi),
                         "formula": 1 - (1 - p) ** k, "formula_lo": 1 - (1 - lo) ** k,
                         "formula_hi": 1 - (1 - hi) ** k})  # fmt: skip
    return pd.DataFrame(rows)


def restart_table(ds: xr.Dataset, optima: Optima | None = None) -> str:
    """The per-cell summary as text (for ``summary.txt``)."""
    optima = optima or find_optima(ds)
    s = optima.summary.copy()
    s["P(global) [95% CI]"] = [
        f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in zip(s.p_global, s.p_lo, s.p_hi)
    ]
    keep = [c for c in s.columns if c not in ("p_global", "p_lo", "p_hi")]
    head = (
        f"distinct optima modulo relabelling (x_tol = {optima.x_tol} × data spread, "
        f"loss_rtol = {optima.loss_rtol}); global = lowest of the optima found and the run "
        "from the generating partition (ref_loss)"
    )
    return head + "\n" + s[keep].to_string(index=False, float_format=lambda v: f"{v:.4g}")
