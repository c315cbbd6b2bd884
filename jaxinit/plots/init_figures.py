"""Why-random-init figures: distinct units, gradient norms, scale sweeps, time to threshold,
implicit bias, convex controls, symmetry breaking (the magic numbers: :mod:`.depth_figures`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.core import (
    MARKERS,
    NothingToDraw,
    axes_of,
    axis_label,
    cells,
    is_log,
    log_x,
    pool_runs,
    require_done,
    short_label,
    sweep_dims,
    value_text,
)
from jaxinit.plots.names import figure


def _cells(ds: xr.Dataset, dims: list[str]):
    """Every combination of the values of ``dims``: ``(selection dict, label, colour, style)``.

    The first dim picks the colour, the second the line style (see :func:`.core.cells`)."""
    for sel, label, colour, style, _ in cells(ds, dims):
        yield sel, label, colour, style


def _hidden_layers(da: xr.DataArray) -> list[int]:
    """Indices of the ``layer`` dim that hold values (per-hidden-layer curves are NaN elsewhere)."""
    finite = np.isfinite(da.values).reshape(-1, da.sizes["layer"]).any(0)
    return [int(i) for i in np.flatnonzero(finite)]


def _quantiles(a: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return tuple(np.nanquantile(a, q, axis=axis) for q in (0.1, 0.5, 0.9))


def _nanmean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.nanmean`` without the all-NaN warning (cells with no finished run stay NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _units_per_layer(ds: xr.Dataset) -> list[int] | None:
    """Hidden widths of the sweep's model (None when the axes vary them)."""
    if "model_widths" in ds.dims and ds.sizes["model_widths"] > 1:
        return None
    widths = from_dataset(ds).spec.model.widths
    return [int(w) for w in widths] if widths else None


def _merged_label(ds: xr.Dataset, dims: list[str], sels: list[dict]) -> str:
    """One legend entry for cells that drew the same curve: ``scheme=zeros/constant`` when they
    form a product of values, else their labels joined by " | "."""
    values = {d: list(dict.fromkeys(s[d] for s in sels)) for d in dims}
    if int(np.prod([len(v) for v in values.values()])) == len(sels):
        text = ", ".join(
            f"{short_label(ds, d)}={'/'.join(value_text(d, v) for v in vs)}"
            for d, vs in values.items()
        )
    else:
        text = " | ".join(
            ", ".join(f"{short_label(ds, d)}={value_text(d, s[d])}" for d in dims) for s in sels
        )
    return text + (" (same curve)" if len(sels) > 1 else "")


@figure("distinct_units")
def distinct_units(ds: xr.Dataset) -> plt.Figure:
    """Distinct hidden units over training (mean over seeds, 10–90% band), per hidden layer:
    does the init break the symmetry between hidden units? 1 means every unit of the layer
    computes the same function. Cells whose curves coincide in every panel are drawn once,
    named together in the legend (so no line hides another one). With
    ``distinct_units_coarse`` recorded, a second row at the coarse (10%) tolerance."""
    rows = [v for v in ("distinct_units", "distinct_units_coarse") if v in ds]
    if not rows:
        raise NothingToDraw("the sweep records no distinct_units (add it to train.diagnostics)")
    require_done(ds, "distinct_units")
    dims = [d for d in sweep_dims(ds) if d in ds[rows[0]].dims]
    layers = _hidden_layers(ds[rows[0]])
    widths = _units_per_layer(ds)
    panels = [(var, layer) for var in rows for layer in layers]
    # (cell, panel) -> (mean, lo, hi) over seeds
    cell_list = list(cells(ds, dims))
    curves = []
    for sel, *_ in cell_list:
        per_panel = []
        for var, layer in panels:
            da = pool_runs(ds.sel(sel).isel(layer=layer), var, ["step"]).values
            lo, _, hi = _quantiles(da)
            per_panel.append(np.stack([_nanmean(da), lo, hi]))
        curves.append(np.stack(per_panel))
    groups: list[list[int]] = []
    for k, c in enumerate(curves):
        twin = next(
            (g for g in groups if np.allclose(curves[g[0]], c, atol=1e-9, equal_nan=True)), None
        )
        twin.append(k) if twin is not None else groups.append([k])
    fig, axes = plt.subplots(len(rows), len(layers), figsize=(5 * len(layers) + 3.5, 3.2 * len(rows) + 1.2),
                             squeeze=False, sharex=True, layout="constrained")  # fmt: skip
    every = max(len(ds.step) // 8, 1)
    for p, (var, layer) in enumerate(panels):
        ax = axes[rows.index(var), layers.index(layer)]
        for j, g in enumerate(groups):
            _, _, colour, style, _ = cell_list[g[0]]
            centre, lo, hi = curves[g[0]][p]
            label = _merged_label(ds, dims, [cell_list[k][0] for k in g]) if dims else "all runs"
            # markers at staggered steps: lines that nearly coincide stay visible
            ax.plot(ds.step, centre, style, color=colour, marker=MARKERS[j % len(MARKERS)], ms=4,
                    markevery=((j * max(every // len(groups), 1)) % every, every),
                    label=label if p == 0 else None)  # fmt: skip
            ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.1)
        n_units = widths[layer] if widths and layer < len(widths) else None
        tol = "1%" if var == "distinct_units" else "10%"
        if n_units:
            ax.set_ylim(0.5, n_units + 0.5)
            ax.axhline(n_units, color="0.7", lw=0.6, zorder=0)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(f"distinct units{f' of {n_units}' if n_units else ''}")
        ax.set_title(f"hidden layer {layer + 1}" + (f" ({n_units} units)" if n_units else "")
                     + f"; equal = within {tol}", fontsize=9)  # fmt: skip
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.legend(loc="outside right center", fontsize=7, title_fontsize=7,
               title=", ".join(short_label(ds, d) for d in dims) or None)  # fmt: skip
    fig.suptitle(
        f"{ds.attrs['name']}: does training break the symmetry between hidden units?\n"
        f"distinct units per layer, 1 = all units identical; line: mean over "
        f"{ds.sizes.get('seed', 1)} seeds, band: 10–90%\ntwo units are equal when their incoming "
        "weights and their activations on the data agree within the tolerance",
        fontsize=9,
    )
    return fig


@figure("layer_grad_norm")
def layer_grad_norm(ds: xr.Dataset, max_panels: int = 6) -> plt.Figure:
    """Gradient norm of each layer (median over seeds, 10–90% band; exact zeros sit at 0 on a
    symlog axis): which layers move at all. Up to ``max_panels`` layers: one panel per layer,
    over steps; a deeper net: the norm against the layer index, at the first and the last
    logged step (vanishing or exploding gradients read as a slope across layers)."""
    dims = sweep_dims(ds)
    n = ds.sizes["layer"]
    if n <= max_panels:
        fig, axes = plt.subplots(1, n, figsize=(4.5 * n + 3.5, 4), squeeze=False, sharey=True,
                                 layout="constrained")  # fmt: skip
        for layer, ax in enumerate(axes[0]):
            for sel, label, colour, style in _cells(ds, dims):
                da = pool_runs(ds.sel(sel).isel(layer=layer), "layer_grad_norm", ["step"]).values
                lo, med, hi = _quantiles(da)
                ax.plot(ds.step, med, style, color=colour, label=label if layer == 0 else None)
                ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.12)
            ax.set_yscale("symlog", linthresh=1e-8)
            ax.set_xlabel("step")
            ax.set_title("output layer" if layer == n - 1 else f"layer {layer + 1}")
    else:
        steps = [0, ds.sizes["step"] - 1]
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2), squeeze=False, sharey=True,
                                 layout="constrained")  # fmt: skip
        for ax, k in zip(axes[0], steps):
            for j, (sel, label, colour, style) in enumerate(_cells(ds, dims)):
                da = pool_runs(ds.sel(sel).isel(step=k), "layer_grad_norm", ["layer"]).values
                lo, med, hi = _quantiles(da)
                ax.plot(np.arange(n), med, style, marker=MARKERS[j % len(MARKERS)], ms=3,
                        color=colour, label=label if k == 0 else None)  # fmt: skip
                ax.fill_between(np.arange(n), lo, hi, color=colour, alpha=0.12)
            ax.set_yscale("symlog", linthresh=1e-8)
            ticks = np.unique(np.linspace(0, n - 1, min(n, 12)).round().astype(int))
            ax.set_xticks(ticks, [str(t + 1) for t in ticks])
            ax.set_xlabel("layer (1 = input side; a line's last point is its output layer)")
            ax.set_title(f"at step {int(ds.step[k])}" + (" (init)" if k == 0 else " (end)"))
    axes[0, 0].set_ylabel("‖∂L/∂θ_layer‖ (median, 10–90%)")
    if dims:
        fig.legend(loc="outside right center", fontsize=7, title_fontsize=7,
                   title=", ".join(short_label(ds, d) for d in dims))  # fmt: skip
    fig.suptitle(f"{ds.attrs['name']}: per-layer gradient norm ({ds.sizes.get('seed', 1)} seeds)")
    return fig


def _scale_dim(ds: xr.Dataset) -> str:
    for d in ("init_scale", "init_perturbation"):
        if d in ds.dims:
            return d
    return sweep_dims(ds)[0]


def _layer_mean(ds: xr.Dataset, var: str) -> xr.DataArray:
    """Mean over hidden layers of a per-layer curve at step 0 (NaN where not defined)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ds[var].isel(step=0).mean("layer", skipna=True)


@figure("scale_sweep", analyses=("time_to_threshold",))
def scale_sweep(ds: xr.Dataset) -> plt.Figure:
    """Final loss, saturated fraction at init and gradient norm at init vs init scale (log x),
    median with a 10–90% band over seeds, one line per activation (colour) × depth (style)."""
    x = _scale_dim(ds)
    dims = [d for d in sweep_dims(ds) if d != x]
    panels = [("final_loss", "final training loss (clipped to [1e-8, 1e3])", True)]
    if "saturation" in ds:
        panels.append(("saturation", "saturated fraction of pre-activations at init", False))
    if "dead_units" in ds:
        panels.append(("dead_units", "dead ReLU fraction at init", False))
    if "grad_norm" in ds:
        panels.append(("grad_norm", "gradient norm at init", True))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    xs = ds[x].values
    for ax, (var, ylabel, log) in zip(axes[0], panels):
        for sel, label, colour, style in _cells(ds, dims):
            sub = ds.sel(sel)
            if var in ("saturation", "dead_units"):
                da = _layer_mean(sub, var).where(sub.done)
            elif var == "grad_norm":
                da = sub[var].isel(step=0).where(sub.done)
            else:  # clipped so that a few blown-up runs do not flatten the plot
                da = sub[var].where(sub.done).clip(1e-8, 1e3)
            other = [d for d in da.dims if d != x]
            a = da.transpose(x, *other).values.reshape(len(xs), -1)
            if not np.isfinite(a).any():
                continue
            lo, med, hi = _quantiles(a)
            centre = np.nanmean(a, -1) if var in ("saturation", "dead_units") else med
            ax.plot(xs, centre, style, marker=".", color=colour, label=label)
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.12)
        log_x(ax, xs)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(axis_label(ds, x))
        ax.set_title(ylabel, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: loss and saturation vs init scale ({ds.sizes['seed']} seeds; "
                 "line = median, or mean for fractions; band = 10–90%)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def time_to_threshold_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell and scale, over finished runs: median time-to-threshold (runs that never get there,
    NaN in the Dataset, count as +∞, so the median is ``inf`` when fewer than half of them do) and
    the fraction that gets there; both NaN where no run has finished."""

    x = _scale_dim(ds)
    dims = [d for d in axes_of(ds) if d not in ("seed", x)]  # size-1 axes too: stable columns
    rows = []
    for sel, _, _, _ in _cells(ds, dims):
        sub = ds.sel(sel)
        t = sub.time_to_threshold.transpose(x, ...).values.reshape(len(ds[x]), -1).astype(float)
        done = sub.done.transpose(x, ...).values.reshape(len(ds[x]), -1)
        for k, v in enumerate(ds[x].values):
            times = np.where(np.isnan(t[k]), np.inf, t[k])[done[k]]
            rows.append({**sel, x: float(v),
                         "median_time": float(np.median(times)) if times.size else np.nan,
                         "reached": float(np.isfinite(times).mean()) if times.size else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


@figure("time_to_threshold", analyses=("time_to_threshold",))
def time_to_threshold(ds: xr.Dataset) -> plt.Figure:
    """Median time-to-threshold vs init scale per activation (colour) and depth (style); scales
    where most runs never reach the threshold are drawn at the step budget with an ×."""
    x = _scale_dim(ds)
    dims = [d for d in sweep_dims(ds) if d != x]
    tab = time_to_threshold_table(ds)
    steps = from_dataset(ds).spec.train.steps
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for sel, label, colour, style in _cells(ds, dims):
        rows = tab
        for d, v in sel.items():
            rows = rows[rows[d] == v]
        med = rows.median_time.to_numpy()
        shown = np.where(np.isfinite(med), med, steps)
        ax.plot(rows[x], shown, style, color=colour, label=label)
        ax.scatter(rows[x][~np.isfinite(med)], shown[~np.isfinite(med)], marker="x", color=colour)
        ax2.plot(rows[x], rows.reached, style, marker=".", color=colour, label=label)
    ax.axhline(steps, color="0.6", lw=0.8)
    log_x(ax, ds[x].values)
    ax.set_yscale("log")
    ax.set_xlabel(axis_label(ds, x))
    ax.set_ylabel("median steps to loss < threshold (× = not reached)")
    log_x(ax2, ds[x].values)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel(axis_label(ds, x))
    ax2.set_ylabel("fraction of runs that reach the threshold")
    ax.legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: time to threshold vs init scale ({ds.sizes['seed']} seeds)")
    fig.tight_layout()
    return fig


def best_scale_bands(ds: xr.Dataset, factor: float = 2.0, reach: float = 0.9) -> pd.DataFrame:
    """The "magic numbers": per cell (activation × depth …), the best scale (smallest median
    time-to-threshold among scales where at least ``reach`` of the runs get there) and the band
    of such scales whose median time is within ``factor`` of the best."""
    x = _scale_dim(ds)
    tab = time_to_threshold_table(ds)
    keys = [c for c in tab.columns if c not in (x, "median_time", "reached")]
    rows = []
    for key, g in tab.groupby(keys, sort=False) if keys else [((), tab)]:
        key = key if isinstance(key, tuple) else (key,)
        ok = g[(g.reached >= reach) & np.isfinite(g.median_time)]
        row = dict(zip(keys, key))
        if ok.empty:
            rows.append({**row, "best_scale": np.nan, "band_lo": np.nan, "band_hi": np.nan,
                         "best_median_steps": np.inf, "reached_at_best": np.nan})  # fmt: skip
            continue
        best = ok.loc[ok.median_time.idxmin()]
        band = ok[ok.median_time <= factor * best.median_time]
        rows.append({**row, "best_scale": float(best[x]), "band_lo": float(band[x].min()),
                     "band_hi": float(band[x].max()), "best_median_steps": float(best.median_time),
                     "reached_at_best": float(best.reached)})  # fmt: skip
    return pd.DataFrame(rows)


def diag_linear_beta(ds: xr.Dataset) -> np.ndarray:
    """``β = u⊙u − v⊙v`` of every run of a saved ``diag_linear`` sweep: dims = axes + (D,)."""
    return (ds["params/u"].values ** 2 - ds["params/v"].values ** 2)[..., 0]


@figure("implicit_bias")
def implicit_bias(ds: xr.Dataset) -> plt.Figure:
    """Relative distance of the learned β to the min-ℓ1 and min-ℓ2 interpolants vs α (median
    and 10–90% band over seeds), with the gradient-flow prediction drawn as thin lines."""
    from jaxinit.blocks import theory

    task = from_dataset(ds).task
    x, y = task.x_train, task.y_train
    b1, b2 = theory.min_l1_interpolant(x, y), theory.min_l2_interpolant(x, y)
    alphas = ds.init_scale.values
    beta = diag_linear_beta(ds.transpose("init_scale", ..., "params/u_dim0", "params/u_dim1"))
    beta = beta.reshape(len(alphas), -1, beta.shape[-1])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    dense = np.geomspace(alphas.min(), alphas.max(), 25)
    for ref, name, colour in ((b1, "min-ℓ1", "C0"), (b2, "min-ℓ2", "C1")):
        lo, med, hi = _quantiles(theory.relative_distance(beta, ref))
        ax.plot(alphas, med, "o-", color=colour, label=f"‖β − β_{name}‖ / ‖β_{name}‖ (runs)")
        ax.fill_between(alphas, lo, hi, color=colour, alpha=0.2)
        flow = [theory.relative_distance(theory.diag_linear_limit(x, y, a), ref) for a in dense]
        ax.plot(
            dense, flow, "-", lw=0.8, color=colour, alpha=0.7, label=f"gradient-flow limit, {name}"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("init scale α  (u(0) = v(0) = α·1)")
    ax.set_ylabel("relative distance of the learned β")
    ax.legend(fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: small α finds the sparse (min-ℓ1) solution, large α the "
                 "min-ℓ2 one", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


@figure("convex_control")
def convex_control(ds: xr.Dataset) -> plt.Figure:
    """Convex controls: the final loss of every run relative to the task's median, per task
    (panel) and init scheme (colour). Zero and random init should sit on the same value."""
    dims = sweep_dims(ds)
    task_dim = next((d for d in dims if d.startswith("task")), None)
    other = [d for d in dims if d != task_dim]
    tasks = list(ds[task_dim].values) if task_dim else [None]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        sub = ds.sel({task_dim: t}) if task_dim else ds
        ref = float(np.nanmedian(sub.final_loss.where(sub.done).values))
        for k, (sel, _, colour, _) in enumerate(_cells(sub, other)):
            v = sub.sel(sel).final_loss.where(sub.sel(sel).done).values.ravel()
            rel = (v - ref) / abs(ref)
            jitter = np.random.default_rng(k).uniform(-0.2, 0.2, len(rel))
            ax.scatter(k + jitter, rel, s=4, color=colour, alpha=0.5)
            ax.errorbar([k], [np.nanmedian(rel)], fmt="_", color="k", ms=20)
        ax.set_xticks(range(k + 1), [lab for _, lab, _, _ in _cells(sub, other)], fontsize=7)
        ax.axhspan(-1e-3, 1e-3, color="0.85", zorder=0, label="±1e-3 relative")
        ax.set_ylabel("(final loss − median) / median")
        ax.set_title(f"{t}: median final loss {ref:.4g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: zero vs random init on convex problems")
    fig.tight_layout()
    return fig


@figure("symmetry_breaking")
def symmetry_breaking(ds: xr.Dataset) -> plt.Figure:
    """Steps until the first hidden layer has more than one distinct unit, vs the first sweep
    axis (e.g. the perturbation ε of a constant init), median and 10–90% over seeds; runs that
    never break symmetry count as +∞ (drawn at the step budget)."""
    if "distinct_units" not in ds:
        raise NothingToDraw("the sweep records no distinct_units (add it to train.diagnostics)")
    require_done(ds, "symmetry_breaking")
    x = (
        _scale_dim(ds)
        if ("init_perturbation" in ds.dims or "init_scale" in ds.dims)
        else (sweep_dims(ds) or [None])[0]
    )
    if x is None:
        raise NothingToDraw("one cell: no axis to draw the symmetry-breaking time against")
    du = ds.distinct_units.isel(layer=0).where(ds.done)
    broke = (du > 1).values  # (..., step)
    steps = ds.step.values
    first = np.where(broke.any(-1), steps[np.argmax(broke, -1)], np.inf)
    da = xr.DataArray(first, dims=du.dims[:-1]).transpose(x, ...)
    budget = steps[-1]
    a = np.minimum(da.values.reshape(ds.sizes[x], -1), budget)  # never: censored at the budget
    lo, med, hi = (np.quantile(a, q, axis=-1) for q in (0.1, 0.5, 0.9))
    xs = ds[x].values
    fig, ax = plt.subplots(figsize=(7, 4))
    numeric = xs.dtype.kind in "fiu"
    if not numeric:  # categories (init schemes …): one tick each, not joined by lines
        ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30 if len(xs) > 4 else 0)
        xs = np.arange(len(xs), dtype=float)
    ax.plot(xs, med, "o-" if numeric else "o", label="median")
    if numeric:
        ax.fill_between(xs, lo, hi, alpha=0.2, label="10–90%")
    else:
        ax.vlines(xs, lo, hi, alpha=0.5, label="10–90%")
    ax.axhline(budget, color="0.6", lw=0.8, label="never (step budget)")
    positive = xs[xs > 0]
    if numeric and is_log(xs):
        ax.set_xscale("log")
    elif numeric and len(positive) > 1 and positive.max() / positive.min() > 20:  # log grid + 0
        ax.set_xscale("symlog", linthresh=positive.min())
        ax.set_xlim(-0.5 * positive.min(), 3 * positive.max())
    ax.set_xlabel(axis_label(ds, x))
    ax.set_ylabel("first logged step with > 1 distinct unit")
    ax.legend(fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: symmetry-breaking time")
    fig.tight_layout()
    return fig
