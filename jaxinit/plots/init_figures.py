"""Why-random-init figures: distinct units, gradient norms, scale sweeps, time to threshold,
the magic-numbers table, implicit bias, convex controls, symmetry breaking.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.plots.core import FIGURES, _axes_of, _is_log, _label, _pool, sweep_dims


def _cells(ds: xr.Dataset, dims: list[str]):
    """Every combination of the values of ``dims``: ``(selection dict, label, colour, style)``.

    The first dim picks the colour, the second the line style."""
    import itertools

    styles = ["-", "--", ":", "-."]
    values = [list(ds[d].values) for d in dims]
    for idx in itertools.product(*(range(len(v)) for v in values)):
        sel = {d: values[k][i] for k, (d, i) in enumerate(zip(dims, idx))}
        label = ", ".join(f"{_label(ds, d).split('.')[-1]}={v}" for d, v in sel.items())
        colour = f"C{idx[0] % 10}" if idx else "C0"
        style = styles[idx[1] % len(styles)] if len(idx) > 1 else "-"
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


def _layer_curves(ds: xr.Dataset, var: str, ylabel: str, *, mean: bool, log: bool) -> plt.Figure:
    """One panel per hidden layer: ``var`` over steps for every cell of the sweep dims."""
    dims = [d for d in sweep_dims(ds) if d in ds[var].dims]
    layers = _hidden_layers(ds[var])
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers) + 2, 4), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for sel, label, colour, style in _cells(ds, dims):
            da = _pool(ds.sel(sel).isel(layer=layer), var, ["step"]).values
            lo, med, hi = _quantiles(da)
            centre = np.nanmean(da, -1) if mean else med
            ax.plot(ds.step, centre, style, color=colour, label=label)
            ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.12)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"hidden layer {layer + 1}" if len(layers) > 1 else f"{ds.attrs['name']}")
        if log:
            ax.set_yscale("symlog", linthresh=1e-8)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def distinct_units(ds: xr.Dataset) -> plt.Figure:
    """Distinct hidden units over training (mean over seeds, 10–90% band), per hidden layer;
    with ``distinct_units_coarse`` recorded, a second row at the coarse (10%) tolerance."""
    rows = [v for v in ("distinct_units", "distinct_units_coarse") if v in ds]
    figs = [
        _layer_curves(ds, v, f"{v.replace('_', ' ')} (mean, 10–90%)", mean=True, log=False)
        for v in rows
    ]
    if len(figs) == 1:
        return figs[0]
    # Stack the two rows into one figure by redrawing (simple and dependency-free).
    plt.close(figs[0])
    plt.close(figs[1])
    dims = sweep_dims(ds)
    layers = _hidden_layers(ds[rows[0]])
    fig, axes = plt.subplots(2, len(layers), figsize=(5 * len(layers) + 2, 7), squeeze=False)
    for r, var in enumerate(rows):
        tol = "1%" if var == "distinct_units" else "10%"
        for ax, layer in zip(axes[r], layers):
            for sel, label, colour, style in _cells(ds, dims):
                da = _pool(ds.sel(sel).isel(layer=layer), var, ["step"]).values
                lo, _, hi = _quantiles(da)
                ax.plot(ds.step, np.nanmean(da, -1), style, color=colour, label=label)
                ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.1)
            ax.set_ylabel(f"distinct units, tol {tol}")
            ax.set_title(f"hidden layer {layer + 1}: mean over seeds, 10–90% band", fontsize=9)
        axes[r, -1].set_xlabel("step")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: distinct hidden units over training")
    fig.tight_layout()
    return fig


def layer_grad_norm(ds: xr.Dataset) -> plt.Figure:
    """Gradient norm of each layer over training (median, 10–90% band; exact zeros sit at 0 on
    a symlog axis): which layers move at all."""
    dims = sweep_dims(ds)
    n = ds.sizes["layer"]
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n + 2, 4), squeeze=False, sharey=True)
    for layer, ax in enumerate(axes[0]):
        for sel, label, colour, style in _cells(ds, dims):
            da = _pool(ds.sel(sel).isel(layer=layer), "layer_grad_norm", ["step"]).values
            lo, med, hi = _quantiles(da)
            ax.plot(ds.step, med, style, color=colour, label=label)
            ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.12)
        ax.set_yscale("symlog", linthresh=1e-8)
        ax.set_xlabel("step")
        ax.set_title("output layer" if layer == n - 1 else f"layer {layer + 1}")
    axes[0, 0].set_ylabel("‖∂L/∂θ_layer‖ (median, 10–90%)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: per-layer gradient norm")
    fig.tight_layout()
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
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(_label(ds, x))
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
    dims = [d for d in _axes_of(ds) if d not in ("seed", x)]  # size-1 axes too: stable columns
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


def time_to_threshold(ds: xr.Dataset) -> plt.Figure:
    """Median time-to-threshold vs init scale per activation (colour) and depth (style); scales
    where most runs never reach the threshold are drawn at the step budget with an ×."""
    x = _scale_dim(ds)
    dims = [d for d in sweep_dims(ds) if d != x]
    tab = time_to_threshold_table(ds)
    steps = json.loads(ds.attrs["spec"])["train"]["steps"]
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
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_label(ds, x))
    ax.set_ylabel("median steps to loss < threshold (× = not reached)")
    ax2.set_xscale("log")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel(_label(ds, x))
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


def magic_numbers(ds: xr.Dataset) -> plt.Figure:
    """The best init-scale band per activation × depth, as a table (see :func:`best_scale_bands`)."""
    tab = best_scale_bands(ds)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(tab) + 1.4))
    ax.axis("off")
    cells = [[str(v) if not isinstance(v, float) else f"{v:.3g}" for v in row]
             for row in tab.itertuples(index=False)]  # fmt: skip
    labels = [c.replace("model_", "") for c in tab.columns]
    table = ax.table(cellText=cells, colLabels=labels, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    ax.set_title(f"{ds.attrs['name']}: best init scale (× the spec's scheme) and the band within "
                 "2× of the best median time-to-threshold\n(among scales where ≥ 90% of the runs "
                 "reach the threshold)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def _task_of(ds: xr.Dataset, sel: dict | None = None):
    """The task of a sweep (rebuilt from its spec; ``sel`` may fix a static ``task_*`` axis)."""
    from jaxinit.spec import Spec
    from jaxinit.sweep import build_task

    spec = Spec.from_dict(json.loads(ds.attrs["spec"]))
    paths = json.loads(ds.attrs["axes"])
    updates = {paths[d]: v for d, v in (sel or {}).items() if paths.get(d, "").startswith("task.")}
    return build_task(
        spec.replace({k: str(v) if k == "task.name" else v for k, v in updates.items()})
    )


def diag_linear_beta(ds: xr.Dataset) -> np.ndarray:
    """``β = u⊙u − v⊙v`` of every run of a saved ``diag_linear`` sweep: dims = axes + (D,)."""
    return (ds["params/u"].values ** 2 - ds["params/v"].values ** 2)[..., 0]


def implicit_bias(ds: xr.Dataset) -> plt.Figure:
    """Relative distance of the learned β to the min-ℓ1 and min-ℓ2 interpolants vs α (median
    and 10–90% band over seeds), with the gradient-flow prediction drawn as thin lines."""
    from jaxinit import theory

    task = _task_of(ds)
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


def symmetry_breaking(ds: xr.Dataset) -> plt.Figure:
    """Steps until the first hidden layer has more than one distinct unit, vs the first sweep
    axis (e.g. the perturbation ε of a constant init), median and 10–90% over seeds; runs that
    never break symmetry count as +∞ (drawn at the step budget)."""
    x = (
        _scale_dim(ds)
        if ("init_perturbation" in ds.dims or "init_scale" in ds.dims)
        else sweep_dims(ds)[0]
    )
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
    ax.plot(xs, med, "o-", label="median")
    ax.fill_between(xs, lo, hi, alpha=0.2, label="10–90%")
    ax.axhline(budget, color="0.6", lw=0.8, label="never (step budget)")
    positive = xs[xs > 0]
    if _is_log(xs):
        ax.set_xscale("log")
    elif len(positive) > 1 and positive.max() / positive.min() > 20:  # a log grid plus 0
        ax.set_xscale("symlog", linthresh=positive.min())
        ax.set_xlim(-0.5 * positive.min(), 3 * positive.max())
    ax.set_xlabel(_label(ds, x))
    ax.set_ylabel("first logged step with > 1 distinct unit")
    ax.legend(fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: symmetry-breaking time")
    fig.tight_layout()
    return fig


FIGURES.update(
    distinct_units=distinct_units,
    layer_grad_norm=layer_grad_norm,
    scale_sweep=scale_sweep,
    time_to_threshold=time_to_threshold,
    magic_numbers=magic_numbers,
    implicit_bias=implicit_bias,
    convex_control=convex_control,
    symmetry_breaking=symmetry_breaking,
)
