"""Figures of k-means / EM restart sweeps (:mod:`jaxinit.analysis.restarts`): P(global) vs k per init,
best-of-k restart curves, distinct optima, and the inits' losses side by side.

Every figure reads the same analysis (:func:`jaxinit.analysis.restarts.find_optima`, computed once per
Dataset). Lines are per ``algorithm.init`` when that is an axis; the x axis is the number of
clusters (``task.k`` or ``algorithm.k``) when it is one; any further axis (e.g.
``task.separation``) gets a row of panels. Rates carry 95% Wilson intervals. A categorical x
axis (names, not numbers) puts its values at 0..n-1, named on the ticks, never joined by lines;
without an x axis the inits themselves sit side by side on it. Each init keeps one colour of
:func:`~jaxinit.plots.core.distinct_colors` in every panel of a figure.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.analysis.stats import error_bars
from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.core import axis_label, distinct_colors
from jaxinit.plots.names import figure


def _optima(ds: xr.Dataset):
    from jaxinit.analysis import restarts

    return restarts.find_optima(ds)  # computed once per Dataset, shared by every figure


def _roles(ds: xr.Dataset) -> tuple[str | None, str | None, list[str]]:
    """``(x dim, line dim, panel dims)``: clusters on x, inits as lines, the rest as panels."""
    dims = [d for d in json.loads(ds.attrs["axes"]) if d != "seed"]
    line = "algorithm_init" if "algorithm_init" in dims else None
    x = next((d for d in ("task_k", "algorithm_k") if d in dims), None)
    rest = [d for d in dims if d not in (line, x)]
    if x is None and rest:
        x, rest = rest[0], rest[1:]
    return x, line, rest


def _panels(ds: xr.Dataset, rest: list[str]) -> list[dict]:
    if not rest:
        return [{}]
    grid = np.meshgrid(*[ds[d].values for d in rest], indexing="ij")
    return [{d: g.ravel()[i].item() for d, g in zip(rest, grid)} for i in range(grid[0].size)]


def _title(ds: xr.Dataset, panel: dict) -> str:
    return ", ".join(f"{axis_label(ds, d)} = {v}" for d, v in panel.items()) or ds.attrs["name"]


def _select(df: pd.DataFrame, sel: dict) -> pd.DataFrame:
    for d, v in sel.items():
        df = df[df[d] == v]
    return df


def _lines(ds: xr.Dataset, line: str | None) -> list:
    return list(ds[line].values) if line else [None]


def _numeric(ds: xr.Dataset, x: str | None) -> bool:
    return bool(x) and ds[x].dtype.kind in "iuf"


def _place(ds: xr.Dataset, x: str | None, line: str | None, r: pd.DataFrame, i: int,
           n_lines: int) -> tuple[pd.DataFrame, np.ndarray, dict]:  # fmt: skip
    """Where line ``i``'s rows ``r`` go on x: ``(rows in drawing order, x positions, style)``.
    Numeric x: the values themselves, joined by a line. Categorical x: positions 0..n-1 in the
    sweep's order, the lines side by side around each tick, not joined. No x axis: line ``i``
    at position ``i`` (its name is the tick), so the lines never pile up at one x."""
    if _numeric(ds, x):
        r = r.sort_values(x)
        return r, r[x].to_numpy(), {}
    if x:
        pos = {v: j for j, v in enumerate(ds[x].values.tolist())}
        at = r[x].map(pos).to_numpy(float)
        order = np.argsort(at, kind="stable")
        dodge = 0.6 * (i - (n_lines - 1) / 2) / n_lines
        return r.iloc[order], at[order] + dodge, {"ls": "none"}
    return r, np.full(len(r), float(i if line else 0)), {"ls": "none"}


def _tick_labels(ax, labels: list[str]) -> None:
    """Categories at 0..n-1, their names on the ticks (slanted when long or many)."""
    slant = len(labels) > 5 or max((len(t) for t in labels), default=0) > 8
    kw = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if slant else {}
    ax.set_xticks(range(len(labels)), labels, **kw)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def _ticks(ax, ds: xr.Dataset, x: str | None, line: str | None = None) -> None:
    """Ticks at the swept values of a numeric x axis (the numbers of clusters); a categorical
    one at 0..n-1 with the names; without an x axis, the lines' names (see :func:`_place`)."""
    if _numeric(ds, x):
        ax.set_xticks(ds[x].values)
    elif x:
        _tick_labels(ax, [str(v) for v in ds[x].values])
    elif line:
        _tick_labels(ax, [str(v) for v in ds[line].values])
        x = line
    else:
        ax.set_xticks([])
    ax.set_xlabel(axis_label(ds, x) if x else "")


def _figure(n_panels: int, n_lines: int):
    """A row of panels, wide enough for the two-line title; room on the right for a legend of
    many lines (see :func:`_legend`)."""
    width = max(5 * n_panels, 7.5) + (1.8 if n_lines > 5 else 0)
    return plt.subplots(1, n_panels, figsize=(width, 4), squeeze=False)


def _legend(axes, ds: xr.Dataset, x: str | None, line: str | None, n_lines: int) -> None:
    """The inits' key: in each panel for a few lines, once beside the last panel for many (it
    would hide the points); none without an x axis, where the ticks name the inits."""
    if not (line and x):
        return
    if n_lines > 5:
        axes[-1].legend(title=axis_label(ds, line), fontsize=7, title_fontsize=8, loc="center left",
                        bbox_to_anchor=(1.02, 0.5))  # fmt: skip
    else:
        for ax in axes:
            ax.legend(title=axis_label(ds, line), fontsize=8)


def _algorithm(ds: xr.Dataset) -> str:
    return from_dataset(ds).spec.algorithm.name


def _per_init(ds: xr.Dataset, opt, draw, style) -> plt.Figure:
    """One panel per value of the axes left over, one line per init, from ``opt.summary``:
    ``draw(ax, xs, rows, **kw)`` draws a line's points, ``style(ax)`` its panel's y axis."""
    x, line, rest = _roles(ds)
    panels = _panels(ds, rest)
    lines = _lines(ds, line)
    palette = distinct_colors(len(lines))  # one colour per init, the same in every panel
    fig, axes = _figure(len(panels), len(lines))
    for ax, panel in zip(axes[0], panels):
        s = _select(opt.summary, panel)
        for i, lv in enumerate(lines):
            r, xs, kw = _place(ds, x, line, _select(s, {line: lv} if line else {}), i, len(lines))
            draw(ax, xs, r, color=palette[i], label=str(lv) if line else None, **kw)
        style(ax)
        _ticks(ax, ds, x, line)
        ax.set_title(_title(ds, panel), fontsize=9)
    _legend(axes[0], ds, x, line, len(lines))
    return fig


@figure("p_global")
def p_global(ds: xr.Dataset) -> plt.Figure:
    """P(a run reaches the global optimum) against the number of clusters, one line per init."""

    def draw(ax, xs, r, **kw):
        ax.errorbar(xs, r.p_global, yerr=error_bars(r.p_global, r.p_lo, r.p_hi), marker="o", ms=4,
                    capsize=3, **kw)  # fmt: skip

    def style(ax):
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("P(run reaches the global optimum)")
        ax.grid(alpha=0.3)

    fig = _per_init(ds, _optima(ds), draw, style)
    fig.suptitle(
        f"{ds.attrs['name']}: how often one {_algorithm(ds)} run from a random start reaches the "
        f"global optimum\n({ds.sizes['seed']} seeds per point, 95% Wilson intervals; global = "
        "lowest optimum found or reached from the generating partition)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


@figure("best_of_k")
def best_of_k(ds: xr.Dataset) -> plt.Figure:
    """P(the best of r restarts is global) against r: measured on disjoint blocks of seeds
    (points, Wilson intervals) and ``1 - (1 - p)^r`` from the one-run rate (lines, bands)."""
    from jaxinit.analysis import restarts

    opt = _optima(ds)
    table = restarts.best_of_k(ds, opt)
    x, line, rest = _roles(ds)
    cols = list(ds[x].values) if x else [None]
    panels = _panels(ds, rest)
    lines = _lines(ds, line)
    palette = distinct_colors(len(lines))  # one colour per init, the same in every panel
    fig, axes = plt.subplots(len(panels), len(cols), figsize=(2.6 * len(cols) + 1, 2.6 * len(panels) + 0.8),
                             squeeze=False, sharey=True)  # fmt: skip
    for r_i, panel in enumerate(panels):
        for c_i, cv in enumerate(cols):
            ax = axes[r_i][c_i]
            t = _select(table, {**panel, **({x: cv} if x else {})})
            for i, lv in enumerate(lines):
                u = _select(t, {line: lv} if line else {}).sort_values("restarts")
                r, colour = u.restarts, palette[i]
                ax.plot(r, u.formula, color=colour, lw=1)
                ax.fill_between(r, u.formula_lo, u.formula_hi, color=colour, alpha=0.15, lw=0)
                ax.errorbar(r, u.emp, yerr=error_bars(u.emp, u.emp_lo, u.emp_hi), fmt="o", ms=3,
                            capsize=2, color=colour, label=str(lv) if line else None)  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(set(t.restarts)), [str(v) for v in sorted(set(t.restarts))])
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            head = f"{axis_label(ds, x)} = {cv}" if x else ""
            ax.set_title(", ".join(p for p in (head, _title(ds, panel) if panel else "") if p),
                         fontsize=8)  # fmt: skip
            if r_i == len(panels) - 1:
                ax.set_xlabel("restarts r (best of r kept)")
            if c_i == 0:
                ax.set_ylabel("P(best of r is global)")
    if line:
        axes[0][0].legend(title=axis_label(ds, line), fontsize=7, title_fontsize=7)
    fig.suptitle(
        f"{ds.attrs['name']}: P(the lowest-loss of r restarts is the global optimum)\npoints: "
        "measured on disjoint blocks of r seeds, 95% Wilson intervals;\nlines and bands: "
        "1 − (1 − p)^r from the one-run rate p and its interval",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


@figure("distinct_optima")
def distinct_optima(ds: xr.Dataset) -> plt.Figure:
    """How many distinct optima (modulo relabelling) the converged runs reached, per init."""
    opt = _optima(ds)

    def draw(ax, xs, r, **kw):
        ax.plot(xs, r.n_optima, marker="o", ms=4, **kw)

    def style(ax):
        ax.set_yscale("log")
        ax.set_ylabel(f"distinct optima among {ds.sizes['seed']} runs")
        ax.grid(alpha=0.3, which="both")

    fig = _per_init(ds, opt, draw, style)
    fig.suptitle(
        f"{ds.attrs['name']}: distinct local optima reached\n(converged runs; same optimum "
        f"= centres equal up to relabelling within {opt.x_tol:g} × the data's spread)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


@figure("excess_loss")
def excess_loss(ds: xr.Dataset) -> plt.Figure:
    """Each run's final loss relative to the global optimum, the inits side by side per k."""
    opt = _optima(ds)
    x, line, rest = _roles(ds)
    panels = _panels(ds, rest)
    xs = list(ds[x].values) if x else [None]
    lines = _lines(ds, line)
    palette = distinct_colors(len(lines))  # one colour per init, the same in every panel
    width = 0.8 / len(lines)
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 1.1 * len(xs) + 2), 3.4 * len(panels)),
                             squeeze=False)  # fmt: skip
    for ax, panel in zip(axes[:, 0], panels):
        drawn = 0
        for i, lv in enumerate(lines):
            for j, xv in enumerate(xs):
                cell = {**panel, **({x: xv} if x else {}), **({line: lv} if line else {})}
                g = float(_select(opt.summary, cell).global_loss.iloc[0])
                sub = ds.sel(cell)
                loss = np.where(sub.diverged.values, np.nan, sub.final_loss.values)
                # relative excess (a mixture's NLL may be negative: then the absolute one)
                rel = np.maximum((loss - g) / abs(g) if g != 0 else loss - g, 1e-6)
                rel = rel[np.isfinite(rel)]
                pos = j + (i - (len(lines) - 1) / 2) * width
                jitter = rng.uniform(-width * 0.35, width * 0.35, len(rel))
                ax.scatter(pos + jitter, rel, s=3, alpha=0.4, color=palette[i],
                           label=str(lv) if (line and j == 0) else None)  # fmt: skip
                if len(rel):
                    ax.hlines(np.median(rel), pos - width * 0.4, pos + width * 0.4, color="k", lw=1)
                drawn += len(rel)
        if not drawn:  # every run of the panel unfinished or diverged: an empty log axis
            ax.set_ylim(1e-7, 1.0)
            ax.text(0.5, 0.5, "no finished run with a finite loss", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)  # fmt: skip
        ax.set_yscale("log")
        _tick_labels(ax, [str(v) for v in xs] if x else ["all runs"])
        ax.set_xlabel(axis_label(ds, x) if x else "")
        ax.set_ylabel("(final loss − global) / |global|")
        ax.set_title(_title(ds, panel) + "  (1e-6 = at the global optimum; black: median)",
                     fontsize=9)  # fmt: skip
        ax.grid(alpha=0.3, axis="y")
        if line:
            ax.legend(title=axis_label(ds, line), fontsize=8, markerscale=4)
    fig.suptitle(f"{ds.attrs['name']}: how far above the global optimum each run stops, per init",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


__all__ = ["best_of_k", "distinct_optima", "excess_loss", "p_global"]
