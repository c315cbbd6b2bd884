"""Sharpness figures (issue 22): the edge of stability, the catapult phases and the fractal
trainability boundary, each with the table of its numbers.

- ``sharpness_curves`` (Cohen et al. 2021): the top Hessian eigenvalue against the step, one
  colour per cell of the sweep (median over seeds, 10–90% band), with each cell's ``2/η`` as a
  dashed line of its colour; when ``η`` differs between the seeds of a cell
  (``optimizer.lr_unit = "2/lambda0"``) the curve is ``η·λ_max/2`` against the line at 1.
  Its table: per cell, the first logged step with ``η·λ_max ≥ 2`` (median over seeds) and the
  median ``η·λ_max/2`` from then on.
- ``phase_map`` (Lewkowycz et al. 2020): every run's phase (lazy / catapult / divergent,
  :func:`jaxinit.analysis.maps.phases`) against ``η·λ₀``, with the lines at 2 and 4; over
  (init scale × η) a map of the seeds' majority phase with the curves ``η = 2/λ₀`` and
  ``4/λ₀`` (``λ₀``: the ``lambda0`` final, else the sharpness at step 0).
- ``boundary_dimension`` (Sohl-Dickstein 2024): which runs of a map over two numeric axes
  trained (:func:`trained`), the box counts of each seed's boundary
  (:func:`jaxinit.analysis.maps.boundary_dimension`) and their local slopes: the dimension's
  spread over seeds and over the fitted range of box sizes.
"""

from __future__ import annotations

import json
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.analysis.maps import boundary_dimension as box_count
from jaxinit.analysis.maps import learning_rates, phases
from jaxinit.blocks.sharpness import PHASES
from jaxinit.plots.core import (
    NothingToDraw,
    axis_label,
    cells,
    distinct_colors,
    is_log,
    require_done,
    sweep_dims,
)
from jaxinit.plots.names import figure

LR_PATH = "optimizer.learning_rate"
PHASE_COLOURS = {"lazy": "tab:blue", "catapult": "tab:orange", "divergent": "tab:red"}
PAPER_DIMENSION = (1.2, 2.0)
"""Sohl-Dickstein (2024): box-counting dimensions of the boundary between about 1.2 and 2.0."""
MAX_LEGEND = 8
"""Above this many cells, ``sharpness_curves`` colours by the first axis on a colour scale."""
MIN_MAP = 9
"""The smallest map side ``boundary_dimension`` draws: the default box sizes 2, 4, 8 fit in it."""
TAIL = 0.1
"""A run trains (:func:`trained`) when its mean loss over the last tenth of the logged steps
is below its initial loss."""


def _log_axis(values) -> bool:
    """A log axis for values that span decades (:func:`.core.is_log`) or are log-spaced."""
    v = np.asarray(values, float)
    if is_log(v):
        return True
    if len(v) < 3 or not np.all(v > 0) or v.max() / v.min() < 2:
        return False
    steps = np.diff(np.log(np.sort(v)))
    return bool(np.allclose(steps, steps.mean(), rtol=0.05))


def _dim_of(ds: xr.Dataset, path: str) -> str | None:
    """The Dataset dim of the spec field ``path`` when it is a swept axis, else None."""
    return {p: d for d, p in json.loads(ds.attrs["axes"]).items()}.get(path)


def _quiet_median(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _runs(ds: xr.Dataset, var: xr.DataArray | str, dims: list[str]) -> xr.DataArray:
    """``var`` over ``dims`` (the cell) then every other run dim stacked into ``run``."""
    da = ds[var] if isinstance(var, str) else var
    other = [d for d in da.dims if d not in dims and d != "step"]
    da = da.stack(run=other) if other else da.expand_dims("run")
    return da.transpose(*dims, "run", *(["step"] if "step" in da.dims else []))


# ---- sharpness against step ---------------------------------------------------------------------


def _sharpness_inputs(ds: xr.Dataset):
    if "sharpness" not in ds:
        raise NothingToDraw('no sharpness curve: add "sharpness" to train.diagnostics')
    require_done(ds, "the sharpness curves")
    ok = ds.done & ~ds.diverged if "diverged" in ds else ds.done
    eta = learning_rates(ds).broadcast_like(ds.done)
    edge = (ds.sharpness * eta / 2.0).where(ok)  # η·λ/2: 1 at the stability edge
    return ok, eta, edge


def sharpness_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell of the sweep (its non-seed axes): ``eta`` and ``two_over_eta`` (medians over
    its finished runs), how many of its finished, not diverged runs reach the edge (``η·λ_max ≥ 2`` at a
    logged step), the first such step (median over those runs), the median of ``η·λ_max/2``
    over every logged step from then on (10% and 90% too: the paper's "hovers just above 1"),
    the largest sharpness residual (above ``train.sharpness_tol``: an estimate that had not
    converged) and the median final loss."""
    ok, eta, edge = _sharpness_inputs(ds)
    dims = sweep_dims(ds)
    steps = ds.step.values
    rows = []
    for sel, label, *_ in cells(ds, dims) if dims else [({}, "all runs")]:
        e = _runs(ds, edge.sel(sel), []).values  # (runs, T)
        good = _runs(ds, ok.sel(sel), []).values
        e = e[good]
        at = e >= 1.0
        hit = at.any(axis=1)
        first = np.where(hit, np.argmax(at, axis=1), -1)
        after = np.concatenate([r[f:] for r, f in zip(e[hit], first[hit])]) if hit.any() else []
        after = np.asarray(after, float)
        after = after[np.isfinite(after)]
        q = np.quantile(after, [0.1, 0.5, 0.9]) if len(after) else [np.nan] * 3
        eta_c = _runs(ds, eta.where(ds.done).sel(sel), []).values  # every finished run's η
        eta_c = eta_c[np.isfinite(eta_c)]
        res = ds.sharpness_residual.sel(sel) if "sharpness_residual" in ds else None
        rows.append({
            "cell": label,
            "eta": _quiet_median(eta_c) if len(eta_c) else np.nan,
            "two_over_eta": _quiet_median(2.0 / eta_c) if len(eta_c) else np.nan,
            "runs": int(good.sum()),
            "reach_edge": int(hit.sum()),
            "first_step_at_edge": float(np.median(steps[first[hit]])) if hit.any() else np.nan,
            "median_eta_lambda_over_2_after": q[1],
            "p10_after": q[0],
            "p90_after": q[2],
            "max_residual": float(np.nanmax(res.values)) if res is not None and
            np.isfinite(res.values).any() else np.nan,
            "median_final_loss": _quiet_median(_runs(ds, ds.final_loss.sel(sel), []).values[good])
            if "final_loss" in ds else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


@figure("sharpness_curves", table=sharpness_table)
def sharpness_curves(ds: xr.Dataset) -> plt.Figure:
    """Left: the sharpness (top Hessian eigenvalue) against the step, per cell (median over
    seeds, 10–90% band) with its ``2/η`` dashed; right: the training loss, same colours."""
    ok, eta, edge = _sharpness_inputs(ds)
    dims = sweep_dims(ds)
    spread = float((eta.max("seed") / eta.min("seed")).max()) if "seed" in eta.dims else 1.0
    relative = spread > 1.0 + 1e-6  # η differs between the seeds of a cell: plot η·λ/2
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    steps = ds.step.values
    table = sharpness_table(ds)
    combos = list(cells(ds, dims)) if dims else [({}, "", "C0", "-", "o")]
    many = len(combos) > MAX_LEGEND and np.asarray(ds[dims[0]]).dtype.kind in "fi"
    if many:  # a colour scale over the first axis instead of a legend entry per cell
        from matplotlib.colors import LogNorm, Normalize

        values = np.asarray(ds[dims[0]].values, float)
        norm = (LogNorm if _log_axis(values) else Normalize)(values.min(), values.max())
        cmap = plt.get_cmap("viridis")
        fig.colorbar(plt.cm.ScalarMappable(norm, cmap), ax=bx, label=axis_label(ds, dims[0]))
    for k, (sel, label, colour, style, _) in enumerate(combos):
        if many:
            colour, label = cmap(norm(float(sel[dims[0]]))), ""
        var = edge if relative else ds.sharpness.where(ok)
        curves = _runs(ds, var.sel(sel), []).values
        if not np.isfinite(curves).any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, mid, hi = (np.nanquantile(curves, q, axis=0) for q in (0.1, 0.5, 0.9))
        m = np.isfinite(mid)  # measured steps only (train.sharpness_every > 1 leaves NaN)
        ax.plot(steps[m], mid[m], color=colour, ls=style, lw=1.4, label=label or None)
        ax.fill_between(steps[m], lo[m], hi[m], color=colour, alpha=0.2, lw=0)
        if not relative:
            ax.axhline(table.two_over_eta.iloc[k], color=colour, ls="--", lw=0.9)
        loss = _runs(ds, ds.loss.where(ok).sel(sel), []).values
        bx.plot(steps, _quiet_median(loss, axis=0), color=colour, ls=style, lw=1.2)
    if relative:
        ax.axhline(1.0, color="k", ls="--", lw=0.9, label="η·λ = 2")
        ax.set_ylabel("η·λ_max / 2  (1: the stability edge 2/η)")
    else:
        ax.plot([], [], "k--", lw=0.9, label="2/η of the same colour")
        ax.set_ylabel("sharpness λ_max (top Hessian eigenvalue)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="best", ncol=1 + len(combos) // 12)
    after = table.median_eta_lambda_over_2_after.dropna()
    summary = (
        f"after reaching the edge, median η·λ/2 per cell: {after.min():.3f} to {after.max():.3f}"
        f" ({len(after)} of {len(table)} cells reach it)"
        if len(after)
        else "no run reached the edge 2/η"
    )
    ax.set_title(summary, fontsize=8)
    bx.set_yscale("log")
    bx.set_xlabel("step")
    bx.set_ylabel("training loss (median over seeds)")
    fig.suptitle(f"{ds.attrs.get('name', 'sweep')}: sharpness against step (Cohen et al. 2021)")
    return fig


# ---- the catapult phases ------------------------------------------------------------------------


def lambda0_of(ds: xr.Dataset) -> xr.DataArray:
    """Each run's ``λ₀``: the ``lambda0`` final, else the logged sharpness at step 0 (the
    Hessian's top eigenvalue at init, which equals the NTK's for MSE at zero residual)."""
    if "lambda0" in ds:
        return ds["lambda0"]
    if "sharpness" in ds and int(ds.step.values[0]) == 0:
        return ds.sharpness.isel(step=0, drop=True)
    raise NothingToDraw("no λ₀: set train.lambda0 = true (or log the sharpness diagnostic)")


def _peak_ratio(ds: xr.Dataset) -> xr.DataArray:
    loss = ds.loss.where(np.isfinite(ds.loss), np.inf)
    return loss.max("step") / ds.loss.isel(step=0, drop=True)


def phase_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell of the sweep: ``c = η·λ₀`` (median over its seeds), the fraction of its
    finished runs in each phase, the median peak loss ratio of its catapults, the largest
    final ``η·λ`` (``η`` times the last logged sharpness) of its catapults, and its runs."""
    require_done(ds, "the phase map")
    ph = phases(ds)
    c = learning_rates(ds) * lambda0_of(ds)
    peak = _peak_ratio(ds)
    final_edge = (
        learning_rates(ds) * ds.sharpness.isel(step=-1, drop=True) if "sharpness" in ds else None
    )
    dims = sweep_dims(ds)
    rows = []
    for sel, label, *_ in cells(ds, dims) if dims else [({}, "all runs")]:
        p = _runs(ds, ph.sel(sel), []).values
        done = p >= 0
        cat = p == 1
        row = {"cell": label, **{d: ds[d].sel({d: v}).item() for d, v in sel.items()}}
        row["c_median"] = _quiet_median(_runs(ds, c.sel(sel), []).values[done]) if done.any() \
            else np.nan  # fmt: skip
        for k, name in enumerate(PHASES):
            row[name] = float(np.mean(p[done] == k)) if done.any() else np.nan
        row["catapult_peak_ratio_median"] = (
            _quiet_median(_runs(ds, peak.sel(sel), []).values[cat]) if cat.any() else np.nan
        )
        row["catapult_final_eta_lambda_max"] = (
            float(np.nanmax(_runs(ds, final_edge.sel(sel), []).values[cat]))
            if final_edge is not None and cat.any()
            else np.nan
        )
        row["runs"] = int(done.sum())
        rows.append(row)
    return pd.DataFrame(rows)


def phase_boundaries(table: pd.DataFrame) -> dict[str, float]:
    """From :func:`phase_table` rows of one line of cells (sorted by ``c``): the first
    ``c_median`` at which at least half the runs are catapult or divergent (``lazy→catapult``)
    and at which at least half are divergent (``→divergent``); NaN if never."""
    t = table.dropna(subset=["c_median"]).sort_values("c_median")
    out = {}
    for name, frac in (("lazy→catapult", t.catapult + t.divergent), ("→divergent", t.divergent)):
        at = np.flatnonzero(frac.to_numpy() >= 0.5)
        out[name] = float(t.c_median.iloc[at[0]]) if len(at) else np.nan
    return out


@figure("phase_map", table=phase_table)
def phase_map(ds: xr.Dataset) -> plt.Figure:
    """The catapult phases against ``η·λ₀``. With one swept axis besides the learning rate's
    (e.g. ``init.scale``): each cell's majority phase over (that axis × η) with the curves
    ``η = 2/λ₀`` and ``4/λ₀``; otherwise the phases' fractions, the catapults' peak loss ratio
    and every run's final ``η·λ`` against ``c = η·λ₀``, with lines at 2 and 4."""
    table = phase_table(ds)
    lr_dim = _dim_of(ds, LR_PATH)
    dims = sweep_dims(ds)
    other = [d for d in dims if d != lr_dim]
    name = ds.attrs.get("name", "sweep")
    if lr_dim in dims and len(other) == 1 and np.asarray(ds[other[0]]).dtype.kind in "fi":
        return _phase_plane(ds, table, lr_dim, other[0], name)
    return _phase_line(ds, table, name)


def _phase_line(ds: xr.Dataset, table: pd.DataFrame, name: str) -> plt.Figure:
    ph = phases(ds)
    c = (learning_rates(ds) * lambda0_of(ds)).where(ph >= 0)
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained", sharex=True)
    t = table.dropna(subset=["c_median"]).sort_values("c_median")
    if t.empty:
        raise NothingToDraw("no finished run with a finite η·λ₀")
    bottom = np.zeros(len(t))
    for pname in PHASES:
        ax.fill_between(t.c_median, bottom, bottom + t[pname], step="mid",
                        color=PHASE_COLOURS[pname], alpha=0.7, label=pname, lw=0)  # fmt: skip
        bottom = bottom + t[pname].to_numpy()
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of runs")
    peak = _peak_ratio(ds)
    cv, pv, phv = (np.ravel(a.values) for a in xr.broadcast(c, peak, ph))
    for k, pname in enumerate(PHASES):
        m = (phv == k) & np.isfinite(pv) & np.isfinite(cv)
        bx.scatter(cv[m], np.maximum(pv[m], 1e-3), s=6, alpha=0.5, color=PHASE_COLOURS[pname],
                   label=pname)  # fmt: skip
    bx.axhline(10, color="0.4", ls=":", lw=0.9, label="ratio 10")
    bx.set_yscale("log")
    bx.set_ylabel("peak loss / initial loss (logged steps)")
    if "sharpness" in ds:
        fe = learning_rates(ds) * ds.sharpness.isel(step=-1, drop=True)
        fv = np.ravel(xr.broadcast(fe, ph)[0].values)
        for k, pname in enumerate(PHASES[:2]):
            m = (phv == k) & np.isfinite(fv)
            cx.scatter(cv[m], fv[m], s=6, alpha=0.5, color=PHASE_COLOURS[pname], label=pname)
        cx.axhline(2.0, color="k", ls="--", lw=0.9, label="η·λ = 2")
        cx.set_ylabel("final η·λ_max (lazy and catapult runs)")
    else:
        cx.axis("off")
    bounds = phase_boundaries(table)
    for axx in (ax, bx, cx):
        for v in (2.0, 4.0):
            axx.axvline(v, color="k", lw=0.8, ls="--" if v == 2 else "-.")
        axx.set_xlabel("c = η·λ₀")
        if len(t) and t.c_median.max() / max(t.c_median.min(), 1e-12) > 20:
            axx.set_xscale("log")
    ax.legend(fontsize=7, loc="center right")
    bx.legend(fontsize=7)
    if "sharpness" in ds:
        cx.legend(fontsize=7)
    text = ", ".join(f"{k} at c = {v:.3g}" for k, v in bounds.items())
    ax.set_title(f"where half the runs are beyond: {text}\n(theory for the uv model: 2 and 4)",
                 fontsize=8)  # fmt: skip
    fig.suptitle(f"{name}: catapult phases against η·λ₀ (Lewkowycz et al. 2020)")
    return fig


def _phase_plane(ds, table, lr_dim: str, y_dim: str, name: str) -> plt.Figure:
    ph = phases(ds)
    eta = learning_rates(ds)
    lam0 = lambda0_of(ds)
    xs, ys = ds[lr_dim].values.astype(float), ds[y_dim].values.astype(float)
    majority = np.full((len(ys), len(xs)), np.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            p = np.ravel(ph.sel({y_dim: yv, lr_dim: xv}).values)
            p = p[p >= 0]
            if len(p):
                majority[i, j] = np.bincount(p, minlength=3).argmax()
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([PHASE_COLOURS[p] for p in PHASES])
    ax.pcolormesh(xs, ys, majority, cmap=cmap, vmin=-0.5, vmax=2.5, shading="nearest")
    # the curves η = 2/λ₀ and 4/λ₀ in the plotted η units (the lr axis' own units)
    per_unit = (eta / ds[lr_dim]).broadcast_like(lam0)  # η per unit of the lr axis
    lam_y = _quiet_median(_runs(ds, (lam0 * per_unit), [y_dim]).values, axis=1)
    for v, style in ((2.0, "--"), (4.0, "-.")):
        ax.plot(v / lam_y, ys, color="k", ls=style, lw=1.2, label=f"η·λ₀ = {v:g}")
    ax.set_xlim(xs.min(), xs.max())
    for setter, vals in ((ax.set_xscale, xs), (ax.set_yscale, ys)):
        if _log_axis(vals):
            setter("log")
    ax.set_xlabel(axis_label(ds, lr_dim))
    ax.set_ylabel(axis_label(ds, y_dim))
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[p]) for p in PHASES]
    lines, labels = ax.get_legend_handles_labels()
    ax.legend([*handles, *lines], [*PHASES, *labels], fontsize=7, loc="best")
    ax.set_title("majority phase over seeds; λ₀ median over seeds per row", fontsize=8)
    fig.suptitle(f"{name}: phases over {axis_label(ds, y_dim)} × η")
    return fig


# ---- the fractal boundary -----------------------------------------------------------------------


def trained(ds: xr.Dataset) -> xr.DataArray:
    """Per run, True when it trained: finished, did not diverge, and its mean loss over the
    last tenth of the logged steps (:data:`TAIL`, at least the last one) is below its loss at
    step 0 (Sohl-Dickstein 2024's criterion, on the logged steps)."""
    n = max(1, int(round(TAIL * ds.sizes["step"])))
    first = ds.loss.isel(step=0, drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tail = ds.loss.isel(step=slice(-n, None)).mean("step")
    ok = ds.done & (tail < first)
    if "diverged" in ds:
        ok = ok & ~ds.diverged
    return ok.rename("trained")


def _map_dims(ds: xr.Dataset) -> tuple[str, str]:
    dims = [d for d in sweep_dims(ds) if np.asarray(ds[d]).dtype.kind in "fi"]
    if len(dims) < 2 or any(ds.sizes[d] < MIN_MAP for d in dims[:2]):
        raise NothingToDraw(
            f"the boundary needs a map: two numeric axes of at least {MIN_MAP} values (box "
            "sizes 2, 4, 8 pixels)"
        )
    if len(sweep_dims(ds)) > 2:
        raise NothingToDraw("the boundary needs a map over exactly two swept axes (and seeds)")
    return dims[0], dims[1]


def dimension_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per seed: the fraction of its map that trained, its box-counting dimension
    (:func:`jaxinit.analysis.maps.boundary_dimension`, default box sizes), the smallest and
    largest local slope (the spread over the fitted range) and the counts ``N(s)``; then rows
    ``mean`` and ``std`` over the seeds."""
    require_done(ds, "the boundary")
    rows_dim, cols_dim = _map_dims(ds)
    ok = trained(ds)
    seeds = list(ds.seed.values) if "seed" in ok.dims else [None]
    rows = []
    for s in seeds:
        m = (ok.sel(seed=s) if s is not None else ok).transpose(rows_dim, cols_dim).values
        fit = box_count(np.asarray(m, bool))
        slopes = fit.local_slopes[np.isfinite(fit.local_slopes)]
        rows.append({
            "seed": str(s if s is not None else 0),
            "trained_fraction": float(m.mean()),
            "dimension": fit.dimension,
            "local_slope_min": float(slopes.min()) if len(slopes) else np.nan,
            "local_slope_max": float(slopes.max()) if len(slopes) else np.nan,
            **{f"N({int(b)})": int(n) for b, n in zip(fit.box_sizes, fit.counts)},
        })  # fmt: skip
    table = pd.DataFrame(rows)
    num = table.drop(columns="seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = [
            {"seed": "mean", **num.mean().to_dict()},
            {"seed": "std", **num.std(ddof=0).to_dict()},
        ]
    return pd.concat([table, pd.DataFrame(stats)], ignore_index=True)


@figure("boundary_dimension", table=dimension_table)
def boundary_dimension(ds: xr.Dataset) -> plt.Figure:
    """Left: the fraction of seeds that trained at each pixel of the map (white: all, black:
    none; grey pixels are where the seeds disagree), with seed 0's boundary. Middle: each
    seed's box counts ``N(s)`` against ``1/s`` and its fit. Right: the local slopes between
    consecutive box sizes, per seed, beside the paper's range of dimensions."""
    table = dimension_table(ds)
    rows_dim, cols_dim = _map_dims(ds)
    ok = trained(ds)
    frac = (ok.mean("seed") if "seed" in ok.dims else ok.astype(float)).transpose(
        rows_dim, cols_dim
    )
    xs, ys = ds[cols_dim].values.astype(float), ds[rows_dim].values.astype(float)
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained",
                                     gridspec_kw={"width_ratios": [1.2, 1, 1]})  # fmt: skip
    mesh = ax.pcolormesh(xs, ys, frac.values, cmap="gray", vmin=0, vmax=1, shading="nearest")
    fig.colorbar(mesh, ax=ax, label="fraction of seeds that trained")
    for setter, vals in ((ax.set_xscale, xs), (ax.set_yscale, ys)):
        if _log_axis(vals):
            setter("log")
    ax.set_xlabel(axis_label(ds, cols_dim))
    ax.set_ylabel(axis_label(ds, rows_dim))
    per_seed = table[~table.seed.isin(["mean", "std"])]
    colours = distinct_colors(len(per_seed))
    sizes = [c for c in table.columns if c.startswith("N(")]
    s_vals = np.array([int(c[2:-1]) for c in sizes])
    for k, row in enumerate(per_seed.itertuples(index=False)):
        counts = per_seed.iloc[k][sizes].to_numpy(float)
        keep = counts > 0
        if keep.sum() < 2:
            continue
        bx.plot(1.0 / s_vals[keep], counts[keep], "o", color=colours[k], ms=4)
        slope, icpt = np.polyfit(np.log(1.0 / s_vals[keep]), np.log(counts[keep]), 1)
        xx = 1.0 / s_vals[keep]
        bx.plot(xx, np.exp(icpt) * xx**slope, color=colours[k], lw=1,
                label=f"seed {row.seed}: D = {slope:.2f}")  # fmt: skip
        local = np.diff(np.log(counts)) / np.diff(np.log(1.0 / s_vals))
        mids = np.sqrt(s_vals[1:] * s_vals[:-1])
        cx.plot(mids, np.where(keep[1:] & keep[:-1], local, np.nan), "o-", color=colours[k],
                ms=4, lw=1, label=f"seed {row.seed}")  # fmt: skip
    from matplotlib.ticker import NullFormatter, NullLocator

    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xticks(1.0 / s_vals, [f"1/{s}" for s in s_vals])
    bx.xaxis.set_minor_formatter(NullFormatter())
    bx.set_xlabel("1 / box size (pixels⁻¹)")
    bx.set_ylabel("boxes holding the boundary, N(s)")
    bx.legend(fontsize=7)
    cx.axhspan(*PAPER_DIMENSION, color="tab:green", alpha=0.12,
               label="Sohl-Dickstein 2024: 1.2 to 2.0")  # fmt: skip
    cx.axhline(1.0, color="0.5", lw=0.8, ls=":")
    cx.set_xscale("log")
    mids = np.sqrt(s_vals[1:] * s_vals[:-1])
    cx.set_xticks(mids, [f"{a}–{b}" for a, b in zip(s_vals[:-1], s_vals[1:])])
    cx.xaxis.set_minor_locator(NullLocator())
    cx.set_xlabel("between box sizes s (pixels)")
    cx.set_ylabel("local slope of log N(s) against log 1/s")
    cx.set_ylim(0.5, 2.2)
    cx.legend(fontsize=7)
    mean, std = table.set_index("seed").loc[["mean", "std"], "dimension"]
    lo = per_seed.local_slope_min.min()
    hi = per_seed.local_slope_max.max()
    ax.set_title(f"{len(per_seed)} seeds; box-counting dimension {mean:.3f} ± {std:.3f} "
                 f"(local slopes {lo:.2f} to {hi:.2f})", fontsize=8)  # fmt: skip
    fig.suptitle(
        f"{ds.attrs.get('name', 'sweep')}: the trainability boundary (Sohl-Dickstein 2024)"
    )
    return fig
