"""The plain-sweep figures and the helpers every figure family uses.

Conventions: only seeds are pooled. The x axis (or the line colour) is the first non-seed axis
(rates: the first numeric one, the axis being studied), the hue or line style the second, and any
further axes get a panel or a line each. Numeric axes sit on a real (log, when they span decades)
axis; categorical ones are separate ticks, never joined by lines; widths read as depth×width.
Bands are the 10–90% range over seeds, lines the median; rates carry 95% Wilson intervals;
colours come from :func:`distinct_colors`, which never repeats. Nothing here selects a matplotlib
backend: a notebook keeps its inline backend, and the command line picks Agg itself.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxinit.analysis.stats import error_bars, rate_interval, wilson
from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.names import FIGURES, figure


class NothingToDraw(ValueError):
    """A figure whose Dataset holds nothing it can show (no finished run, no axis to map …); the
    message says what is missing. ``jaxinit report`` draws the message in place of the figure
    (:func:`note_figure`)."""


def note_figure(name: str, ds: xr.Dataset, note: str) -> plt.Figure:
    """A figure that only says why figure ``name`` has nothing to show for ``ds``."""
    fig, ax = plt.subplots(figsize=(7, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{ds.attrs.get('name', 'sweep')}: {name}: nothing to draw\n{note}",
            ha="center", va="center", wrap=True, fontsize=10)  # fmt: skip
    return fig


def require_done(ds: xr.Dataset, what: str = "this figure") -> None:
    """:class:`NothingToDraw` unless some run of ``ds`` finished (and one did not diverge)."""
    if "done" in ds and not bool(ds.done.any()):
        raise NothingToDraw(f"no run has finished yet ({what} needs finished runs)")


def sweep_dims(ds: xr.Dataset) -> list[str]:
    """The Dataset's axis dimensions other than ``seed``, longest-varying first as in the spec."""
    return [d for d in json.loads(ds.attrs["axes"]) if d != "seed" and ds.sizes[d] > 1]


def axes_of(ds: xr.Dataset) -> list[str]:
    return list(json.loads(ds.attrs["axes"]))


def pool_runs(ds: xr.Dataset, var: str, keep: list[str]) -> xr.DataArray:
    """``ds[var]`` (unfinished runs NaN) with every axis dim not in ``keep`` stacked into ``run``."""
    da = ds[var].where(ds.done)
    other = [d for d in axes_of(ds) if d not in keep and d in da.dims]
    return da.stack(run=other).transpose(*keep, ..., "run") if other else da.expand_dims("run", -1)


def is_log(values) -> bool:
    v = np.asarray(values)
    return v.dtype.kind in "fi" and bool(np.all(v > 0)) and v.max() / v.min() > 20


def axis_label(ds: xr.Dataset, dim: str) -> str:
    return json.loads(ds.attrs["axes"]).get(dim, dim)


def _panels(ds: xr.Dataset, dims: list[str], width: float, height: float):
    """A figure with one panel per combination of ``dims`` (one panel without them):
    ``(fig, [(ax, selection, title)])``; axes beyond the panels are switched off."""
    combos = [(sel, label) for sel, label, *_ in cells(ds, dims)] if dims else [({}, "")]
    cols = min(len(combos), 3)
    rows = -(-len(combos) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.8, height * rows + 0.6),
                             squeeze=False, sharey=True, layout="constrained")  # fmt: skip
    for ax in axes.ravel()[len(combos) :]:
        ax.axis("off")
    return fig, [(ax, sel, label) for ax, (sel, label) in zip(axes.ravel(), combos)]


def _nanquantiles(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10%, 50%, 90% over the last axis, NaN (without a warning) where nothing finished."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return tuple(np.nanquantile(a, q, axis=-1) for q in (0.1, 0.5, 0.9))


@figure("final_loss", default=True)
def final_loss(ds: xr.Dataset) -> plt.Figure:
    """Distribution of the final training loss per value of the first axis (a strip of runs over
    a violin), coloured by the second; further axes get a panel per combination, so that only
    seeds are pooled."""
    dims = sweep_dims(ds)
    x_dim = dims[0] if dims else None
    hue = dims[1] if len(dims) > 1 else None
    fig, panels = _panels(ds, dims[2:], 6.2 if dims[2:] else 7, 4)
    xs = list(ds[x_dim].values) if x_dim else [ds.attrs["name"]]
    hues = list(ds[hue].values) if hue else [None]
    colours = distinct_colors(len(hues))
    width = 0.8 / len(hues)
    rng = np.random.default_rng(0)
    for p, (ax, psel, title) in enumerate(panels):
        for h, hv in enumerate(hues):
            sel = {**psel, **({hue: hv} if hue else {})}
            da = pool_runs(ds.sel(sel), "final_loss", [x_dim] if x_dim else [])
            for i in range(len(xs)):
                vals = np.asarray(da[i] if x_dim else da).ravel()
                vals = np.log10(np.maximum(vals[np.isfinite(vals)], 1e-12))
                pos = i + (h - (len(hues) - 1) / 2) * width
                if len(vals) > 1 and np.ptp(vals) > 0:
                    parts = ax.violinplot(vals, [pos], widths=width * 0.9, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(colours[h])
                        body.set_alpha(0.25)
                jitter = rng.uniform(-width * 0.3, width * 0.3, len(vals))
                ax.scatter(pos + jitter, vals, s=3, color=colours[h], alpha=0.5,
                           label=f"{short_label(ds, hue)}={value_text(hue, hv)}"
                           if (hue and i == 0 and p == 0) else None)  # fmt: skip
        ticks = [value_text(x_dim, x) for x in xs] if x_dim else [str(xs[0])]
        ax.set_xticks(range(len(xs)), ticks, rotation=30 if len(xs) > 4 else 0)
        ax.set_xlabel(axis_label(ds, x_dim) if x_dim else "")
        if title:
            ax.set_title(title, fontsize=9)
    panels[0][0].set_ylabel("log10 final training loss")
    fig.suptitle(f"{ds.attrs['name']}: final training loss of every run "
                 f"({ds.sizes.get('seed', 1)} seeds per cell)", fontsize=10)  # fmt: skip
    if hue:
        fig.legend(loc="outside right center", fontsize=7, markerscale=3)
    return fig


@figure("loss_curves", default=True)
def loss_curves(ds: xr.Dataset) -> plt.Figure:
    """Median training loss over steps with the 10–90% band over seeds: one colour per value of
    the first axis, one line style per value of the second, a panel per combination of the rest
    (only seeds are pooled)."""
    dims = sweep_dims(ds)
    fig, panels = _panels(ds, dims[2:], 6.2 if dims[2:] else 7, 4)
    for p, (ax, psel, title) in enumerate(panels):
        for sel, label, colour, style, _ in cells(ds, dims[:2]):
            da = pool_runs(ds.sel({**psel, **sel}), "loss", ["step"])
            lo, med, hi = _nanquantiles(da.values)
            ax.plot(ds.step, med, style, color=colour, label=(label or None) if p == 0 else None)
            ax.fill_between(ds.step, lo, hi, color=colour, alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        if title:
            ax.set_title(title, fontsize=9)
    panels[0][0].set_ylabel("training loss (median, 10–90% band)")
    if dims:
        fig.legend(loc="outside right center", fontsize=7, title_fontsize=7,
                   title=", ".join(short_label(ds, d) for d in dims[:2]))  # fmt: skip
    fig.suptitle(f"{ds.attrs['name']}: training loss over steps "
                 f"({ds.sizes.get('seed', 1)} seeds per line)", fontsize=10)  # fmt: skip
    return fig


def log_x(ax, values) -> None:
    """A log x axis; with few values (≤ 7) each one is a labelled tick (no 5×10⁻¹ labels)."""
    ax.set_xscale("log")
    values = np.asarray(values, float)
    if len(values) <= 7:
        ax.minorticks_off()
        ax.set_xticks(values, [f"{v:.3g}" for v in values])


def _is_numeric(ds: xr.Dataset, dim: str) -> bool:
    """A numeric axis (scale, learning rate, dropout …): drawn on a real x axis, joined by lines."""
    return ds[dim].dtype.kind in "fiu"


def study_dim(ds: xr.Dataset) -> str | None:
    """The axis a rate figure puts on x: the first numeric sweep axis (the one being studied:
    init scale, learning rate, dropout …), else the first categorical one."""
    dims = sweep_dims(ds)
    numeric = [d for d in dims if _is_numeric(ds, d)]
    return (numeric or dims or [None])[0]


def value_text(dim: str, value) -> str:
    """An axis value as a reader wants it: widths ``"32-32-32"`` as ``"3×32"`` (depth × width)."""
    if dim == "model_widths":
        parts = str(value).split("-") if str(value) else []
        if not parts:
            return "no hidden layer"
        return f"{len(parts)}×{parts[0]}" if len(set(parts)) == 1 else str(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def short_label(ds: xr.Dataset, dim: str) -> str:
    """A short axis name for legends: ``init.scheme`` → ``scheme``, ``task.name`` → ``task``,
    ``model.widths`` → ``depth×width``."""
    parts = axis_label(ds, dim).split(".")
    if dim == "model_widths":
        return "depth×width"
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]  # task.name: task


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def cells(ds: xr.Dataset, dims: list[str]):
    """Every combination of the values of ``dims``: ``(selection, label, colour, style, marker)``.

    The first dim picks the colour, the second the line style, the third the marker."""
    import itertools

    values = [list(ds[d].values) for d in dims]
    palette = distinct_colors(len(values[0])) if values else ["C0"]
    for idx in itertools.product(*(range(len(v)) for v in values)):
        sel = {d: values[k][i] for k, (d, i) in enumerate(zip(dims, idx))}
        label = ", ".join(f"{short_label(ds, d)}={value_text(d, v)}" for d, v in sel.items())
        colour = palette[idx[0]] if idx else "C0"
        style = LINESTYLES[idx[1] % len(LINESTYLES)] if len(idx) > 1 else "-"
        marker = MARKERS[idx[2] % len(MARKERS)] if len(idx) > 2 else "o"
        yield sel, label, colour, style, marker


def distinct_colors(n: int, avoid_green: bool = False) -> list:
    """``n`` colours that are all different: tab10, then tab20's light shades, then evenly
    spread hues at alternating lightness. ``avoid_green`` leaves greens out (global basins use
    them)."""
    import colorsys

    tab20 = [plt.get_cmap("tab20")(i) for i in range(20)]
    base = tab20[0::2] + tab20[1::2]  # tab10 order, then the light shades
    if avoid_green:
        base = [c for i, c in enumerate(base) if i not in (2, 12)]
    out = list(base[:n])
    k = 0
    while len(out) < n:
        hue = (0.07 + 0.618034 * k) % 1.0
        k += 1
        if avoid_green and 0.22 < hue < 0.45:
            continue
        light = (0.45, 0.65, 0.3)[(k // 3) % 3]
        out.append((*colorsys.hls_to_rgb(hue, light, 0.75), 1.0))
    return out


def threshold_of(ds: xr.Dataset) -> str:
    """The loss level of ``time_to_threshold`` as text: ``train.threshold``, else the task's."""
    stored = from_dataset(ds)
    threshold = stored.spec.train.threshold
    if threshold is None:
        try:
            threshold = stored.task.threshold
        except Exception:  # a task the spec cannot rebuild
            return "the task's threshold"
    return f"{threshold:g}"


def _success_text(ds: xr.Dataset) -> str:
    """What counts as solving the task, from the sweep's task (its first static variant)."""
    try:
        task = from_dataset(ds).task
    except Exception:  # a user model or task the spec cannot rebuild: the generic wording
        return "training metric at the task's success level, not diverged"
    metric = "R²" if task.loss == "mse" else "training accuracy"
    return f"{metric} ≥ {task.success_metric:.3g} at the end, not diverged"


@figure("success_rate", default=True)
def success_rate(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs that solve the task vs the axis being studied (the first numeric axis,
    else the first one), one line (or marker set) per combination of the other axes; only seeds
    are pooled. Categorical x values are separate markers, never joined by lines."""
    x_dim = study_dim(ds)
    others = [d for d in sweep_dims(ds) if d != x_dim]
    numeric = bool(x_dim) and _is_numeric(ds, x_dim)
    log = bool(x_dim) and is_log(ds[x_dim])
    combos = list(cells(ds, others))
    fig, ax = plt.subplots(figsize=(7.5 if others else 7, 4.2))
    n_x = ds.sizes[x_dim] if x_dim else 1
    for h, (sel, label, colour, style, marker) in enumerate(combos):
        sub = ds.sel(sel)
        ok = pool_runs(sub, "success", [x_dim] if x_dim else [])
        k = np.asarray(ok.sum("run")).reshape(-1)
        n = np.asarray(pool_runs(sub, "done", [x_dim] if x_dim else []).sum("run")).reshape(-1)
        p, lo, hi = rate_interval(k, n)  # one set of counts, 0 <= lo <= p <= hi <= 1
        if numeric:
            xs = ds[x_dim].values.astype(float)
            kw = dict(linestyle=style)
        else:  # categories: side by side around each tick, no lines between them
            dodge = 0.6 * (h - (len(combos) - 1) / 2) / max(len(combos), 1)
            xs = np.arange(n_x) + dodge
            kw = dict(linestyle="none")
        has = n > 0
        ax.errorbar(xs[has], p[has], yerr=error_bars(p, lo, hi)[:, has], marker=marker, ms=4,
                    capsize=3, color=colour, label=label or None, **kw)  # fmt: skip
    if numeric and log:
        log_x(ax, ds[x_dim].values)  # few values: each one labelled; many: the decades
    elif numeric:
        if n_x <= 7:
            ax.set_xticks(ds[x_dim].values, [value_text(x_dim, v) for v in ds[x_dim].values])
    else:
        ticks = [value_text(x_dim, v) for v in ds[x_dim].values] if x_dim else ["all runs"]
        ax.set_xticks(range(n_x), ticks, rotation=30 if n_x > 5 else 0)
        ax.set_xlim(-0.6, n_x - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(axis_label(ds, x_dim) if x_dim else "")
    ax.set_ylabel("fraction of runs that solve the task")
    if others:
        ax.legend(title=", ".join(short_label(ds, d) for d in others), fontsize=7, title_fontsize=7,
                  loc="center left", bbox_to_anchor=(1.0, 0.5))  # fmt: skip
    ax.set_title(
        f"{ds.attrs['name']}: success rate, {ds.sizes.get('seed', 1)} seeds per point, "
        f"95% Wilson interval\nsuccess = {_success_text(ds)}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


__all__ = [
    "FIGURES",
    "NothingToDraw",
    "note_figure",
    "require_done",
    "cells",
    "distinct_colors",
    "error_bars",
    "final_loss",
    "loss_curves",
    "study_dim",
    "success_rate",
    "sweep_dims",
    "value_text",
    "wilson",
]
