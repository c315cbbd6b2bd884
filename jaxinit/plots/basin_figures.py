"""Basin figures: sizes, loss histograms, barriers, restarts, basin and outcome maps.

Computed from a Dataset with saved parameters through :mod:`jaxinit.analysis.basins` (imported lazily).
Every basin of a group keeps one colour across figures (global basins in greens, the others never
repeating); maps draw each run as a cell centred on its grid values, mark the inits a plane goes
through, and their keys list only the outcomes that occur.
"""

from __future__ import annotations

import json

import matplotlib.colors
import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxinit.analysis.stats import error_bars
from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.core import (
    NothingToDraw,
    axis_label,
    distinct_colors,
    is_log,
    pool_runs,
    require_done,
    sweep_dims,
    threshold_of,
)
from jaxinit.plots.names import figure


def _basin_colors(table) -> dict[int, tuple]:
    """One colour per basin of a group, all different however many: global basins in distinct
    greens (darkest = lowest loss), the others from a palette without greens, by loss."""
    t = table.sort_values("mean_loss")
    glob, other = t[t.is_global], t[~t.is_global]
    greens = plt.get_cmap("Greens")(np.linspace(0.85, 0.45, len(glob))) if len(glob) else []
    out = {int(b): tuple(c) for b, c in zip(glob.basin, greens)}
    out.update(zip((int(b) for b in other.basin), distinct_colors(len(other), avoid_green=True)))
    return out


def _group_rows(basins, max_groups: int = 8):
    """``[(group index, its basins' table rows)]``; :class:`NothingToDraw` when no run of any
    group converged into a basin (all diverged, unfinished or still moving)."""
    rows = list(basins.table.groupby("group", sort=True))[:max_groups]
    if not rows:
        ex = basins.excluded
        raise NothingToDraw(
            "no run converged into a basin: "
            + (f"{int(ex.diverged_or_unfinished.sum())} diverged or unfinished, "
               f"{int(ex.unconverged.sum())} still moving" if len(ex) else "no runs")
        )  # fmt: skip
    return rows


def _x_dim(ds: xr.Dataset) -> str | None:
    """The first non-seed axis with several float values (a traced axis: init scale, lr …)."""
    traced = json.loads(ds.attrs.get("traced_axes", "[]"))
    dims = [d for d in sweep_dims(ds) if d in traced]
    return dims[0] if dims else None


def _shown_basins(table, n: int = 9) -> tuple[list, list]:
    """The ``n`` largest basins of a group (ordered by loss) and the ids of the rest."""
    top = table.nlargest(n, "size")
    rest = [int(x) for x in table.basin if x not in set(top.basin)]
    return list(top.sort_values("mean_loss").itertuples()), rest


KIND_HATCH = {"saddle": "xx", "plateau": "..", "escaping": "/", "not_converged": "\\"}
"""Hatch of a basin whose endpoints are not minima, by kind (:data:`jaxinit.analysis.curvature.KINDS`);
minima (and kinds not known) are plain."""
NOT_MINIMUM_NOTE = (
    "hatched: not a minimum (xx saddle, .. plateau, / escaping: a minimum at infinity, "
    "\\ still moving)"
)


def _kind_text(row) -> str:
    """What a basin's endpoints are: ``"saddle"``, or the tally when its runs disagree."""
    kind = getattr(row, "kind", "unknown")
    if kind == "unknown":
        return "kind unknown"
    votes = getattr(row, "kind_votes", "")
    text = votes if votes and "," in votes else kind
    return text.replace("not_converged", "still moving")


def _hatch(row) -> str | None:
    return KIND_HATCH.get(getattr(row, "kind", "unknown"))


def _basin_name(row) -> str:
    glob = " (global)" if row.is_global else ""
    return f"basin {row.basin}: loss {row.mean_loss:.3g}{glob}, {_kind_text(row)}"


def _group_runs(b, gi: int) -> np.ndarray:
    return next(g for g in b.groups if g.index == gi).run_ids


@figure("basin_sizes", analyses=("basins", "endpoint_kinds"))
def basin_sizes(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs per basin (stacked bars), per value of the first traced axis, one panel
    per static group; global basins green, the nine largest named, the rest pooled in grey."""
    from jaxinit.analysis.basins import DIVERGED, UNCLUSTERED, UNCONVERGED, find_basins

    b = find_basins(ds, kinds=True)
    x_dim = _x_dim(ds)
    groups = _group_rows(b)
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(10.5, 2.5 * len(groups) + 0.9), squeeze=False, layout="constrained"
    )  # fmt: skip (legends fit)
    lab = b.label.values.reshape(-1)
    for ax, (gi, table) in zip(axes[:, 0], groups):
        cell = np.zeros(lab.size, bool)
        cell[_group_runs(b, gi)] = True
        in_group = xr.DataArray(cell.reshape(b.label.shape), b.label.coords, b.label.dims)
        keep = [d for d in b.label.dims if d != x_dim]
        total = in_group.sum(keep).values.reshape(-1)
        shown, rest = _shown_basins(table)
        colors = _basin_colors(table)
        series = [(_basin_name(r), [r.basin], colors[r.basin], _hatch(r)) for r in shown]
        series += [(f"{len(rest)} other basins", rest, "0.75", None)]
        series += [("diverged", [DIVERGED], "0.3", None)]
        series += [("unconverged (not in a basin)", [UNCONVERGED], "0.6", None)]
        series += [("unclustered", [UNCLUSTERED], "0.9", None)]
        xs = list(ds[x_dim].values) if x_dim else [None]
        bottom = np.zeros(len(xs))
        for name, ids, color, hatch in series:
            hit = b.label.isin(ids) & in_group
            frac = hit.sum(keep).values.reshape(-1) / np.maximum(total, 1)
            if frac.any():
                ax.bar(range(len(xs)), frac, bottom=bottom, color=color, label=name, hatch=hatch,
                       edgecolor="0.2" if hatch else "white", lw=0.3)  # fmt: skip
                bottom += frac
        ax.set_xticks(range(len(xs)), [f"{x:.3g}" if x is not None else "all" for x in xs])
        ax.set_ylabel("fraction of runs")
        ax.set_ylim(0, 1)
        ex = b.excluded.set_index("group").loc[gi]
        ax.set_title(
            f"{table.label.iloc[0]}: {len(table)} basins of converged runs, "
            f"{int(total.max())} runs per bar\nnot in a basin: {ex.unconverged} still moving "
            f"(|∇L| ≥ {b.config.grad_tol:g} above the lowest loss), "
            f"{ex.diverged_or_unfinished} diverged",
            fontsize=8,
        )
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[-1, 0].set_xlabel(axis_label(ds, x_dim) if x_dim else "")
    fig.suptitle(f"{ds.attrs['name']}: which basin each run reached\n{NOT_MINIMUM_NOTE},\n"
                 "by jaxinit.analysis.curvature on each basin's lowest-loss runs", fontsize=9)  # fmt: skip
    return fig


@figure("basin_loss_hist", analyses=("basins", "endpoint_kinds"))
def basin_loss_hist(ds: xr.Dataset) -> plt.Figure:
    """Histogram of log10 final loss, stacked and coloured by basin (nine largest; the rest
    grey), one panel per group."""
    from jaxinit.analysis.basins import find_basins, flat_runs

    b = find_basins(ds, kinds=True)
    groups = _group_rows(b)
    loss = np.log10(np.maximum(flat_runs(ds, "final_loss").astype(float), 1e-12))
    lab = b.label.values.reshape(-1)
    cols = min(len(groups), 2)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.4 * rows), squeeze=False)
    for ax, (gi, table) in zip(axes.ravel(), groups):
        runs = _group_runs(b, gi)
        ok = np.isfinite(loss[runs])
        edges = np.histogram_bin_edges(loss[runs][ok], 60) if ok.any() else 10
        shown, rest = _shown_basins(table)
        colors = _basin_colors(table)
        data = [loss[runs][lab[runs] == r.basin] for r in shown]
        colours = [colors[r.basin] for r in shown]
        names = [f"{r.basin}" + ("*" if r.is_global else "") + f" ({r.size}) {_kind_text(r)}"
                 for r in shown]  # fmt: skip
        hatches = [_hatch(r) for r in shown]
        if rest:
            data.append(loss[runs][np.isin(lab[runs], rest)])
            colours.append("0.75")
            names.append(f"{len(rest)} others")
            hatches.append(None)
        _, _, bars = ax.hist(data, edges, stacked=True, color=colours, label=names)
        for container, hatch in zip(bars if len(data) > 1 else [bars], hatches):
            for patch in container if hatch else []:
                patch.set_hatch(hatch)
                patch.set_edgecolor("0.2")
        ax.set_yscale("log")
        ax.set_xlabel("log10 final loss")
        ax.set_ylabel("runs")
        ax.set_title(table.label.iloc[0], fontsize=9)
        ax.legend(title="basin (* global) (runs) kind", fontsize=7, title_fontsize=7, ncol=2)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    fig.suptitle(f"{ds.attrs['name']}: final loss of the converged runs, stacked by basin\n"
                 f"({NOT_MINIMUM_NOTE})", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def _text_color(rgba) -> str:
    """Black or white, whichever reads better on ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


BARRIER_NOTE = (
    "Entry (i, j): median loss barrier (max along the straight path − mean of its two ends) "
    "between the lowest-loss runs of basins i and j, hidden units aligned first.\n"
    "Diagonal (boxed): between two runs of the same basin. ≈ 0: one connected valley. Clearly "
    "> 0 (as it can be for a global basin *): its runs compute the same function on the probe set\n"
    "but sit in separate valleys of weight space (a symmetry the alignment does not undo, or "
    "minima at infinity); 0 exactly when the basin has a single run."
)


@figure("barrier_matrix", analyses=("basins", "barriers", "endpoint_kinds"))
def barrier_matrix(ds: xr.Dataset) -> plt.Figure:
    """Loss barrier between the largest basins (median over representative pairs, aligned by
    weight matching), one panel per group (at most four); each cell carries its value, the
    diagonal (two runs of one basin) is boxed and explained under the panels."""
    from jaxinit.analysis.basins import barrier_matrix as barriers
    from jaxinit.analysis.basins import find_basins

    b = find_basins(ds)
    groups = _group_rows(b, 4)
    cols = min(len(groups), 2)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 5.2 * rows + 1.0), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (gi, table) in zip(axes.ravel(), groups):
        ids, mat = barriers(b, gi)
        norm = matplotlib.colors.Normalize(0, max(float(mat.max()), 1e-12))
        cmap = plt.get_cmap("magma_r")
        im = ax.imshow(mat, cmap=cmap, norm=norm)
        rows_of = {int(r.basin): r for r in table.itertuples()}
        ticks = [f"{i}" + ("*" if rows_of[int(i)].is_global else "") for i in ids]
        ax.set_xticks(range(len(ids)), ticks, fontsize=9)
        ax.set_yticks(range(len(ids)), [f"{t}  (loss {rows_of[int(i)].mean_loss:.2g})"
                                        for t, i in zip(ticks, ids)], fontsize=8)  # fmt: skip
        size = 11 if len(ids) <= 4 else 9 if len(ids) <= 6 else 8
        for i in range(len(ids)):
            for j in range(len(ids)):
                ax.text(j, i, f"{mat[i, j]:.2g}", ha="center", va="center", fontsize=size,
                        color=_text_color(cmap(norm(mat[i, j]))))  # fmt: skip
            ax.add_patch(matplotlib.patches.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False,
                                                      ec="tab:blue", lw=1.5))  # fmt: skip
        ax.set_title(table.label.iloc[0], fontsize=9)
        ax.set_xlabel("basin (* = global)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="barrier (loss units)")
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    fig.suptitle(f"{ds.attrs['name']}: is there a loss barrier between the basins?")
    fig.text(0.5, 0, BARRIER_NOTE, ha="center", va="bottom", fontsize=7.5, wrap=True)
    bottom = 0.5 / fig.get_figheight()  # room for the three lines of the note
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    return fig


@figure("restarts", analyses=("basins", "restarts", "endpoint_kinds"))
def restarts(ds: xr.Dataset) -> plt.Figure:
    """Random restarts, per value of the first traced axis (one line per other-axes cell):
    P(one run reaches a global basin) with its 95% interval, and the restarts needed for 99%
    success, ``ceil(log 0.01 / log(1 - p))``, with the interval that ``p``'s interval implies."""
    from jaxinit.analysis.basins import find_basins, restart_stats

    stats = restart_stats(ds, find_basins(ds), (1,))
    x_dim = _x_dim(ds)
    others = [d for d in sweep_dims(ds) if d != x_dim and d in stats.columns]
    lines = stats.groupby(others, sort=False) if others else [((), stats)]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    lines = list(lines)
    palette = distinct_colors(len(lines))  # never repeats, however many cells
    names = []
    for i, (key, rows) in enumerate(lines):
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{axis_label(ds, d)}={v}" for d, v in zip(others, key)) or "all runs"
        names.append(name)
        # no traced axis: each cell at its own position, named on the axis (not all at x = 0)
        xs = rows[x_dim].to_numpy() if x_dim else np.full(len(rows), float(i))
        color = palette[i]
        ax0.errorbar(xs, rows.p_global, yerr=error_bars(rows.p_global, rows.p_lo, rows.p_hi),
                     marker="o", ms=3, capsize=2, color=color, label=name)  # fmt: skip
        k = rows.k_needed.replace(np.inf, np.nan)
        ax1.plot(xs, k, "o-", ms=3, color=color, label=name)
        lo, hi = rows.k_needed_lo.replace(np.inf, np.nan), rows.k_needed_hi.replace(np.inf, np.nan)
        ax1.fill_between(xs, lo, hi, color=color, alpha=0.15)
    for ax in (ax0, ax1):
        if x_dim and is_log(ds[x_dim]):
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(ds[x_dim].values, [f"{v:.3g}" for v in ds[x_dim].values])
        if not x_dim:
            slant = len(names) > 3 or max(map(len, names)) > 12
            kw = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if slant else {}
            ax.set_xticks(range(len(names)), names, **kw)
            ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel(axis_label(ds, x_dim) if x_dim else "")
    ax0.set_ylim(-0.02, 1.02)
    ax0.set_ylabel("P(run ends in a global basin), 95% CI")
    if np.isfinite(stats.k_needed.to_numpy(float)).any():
        ax1.set_yscale("log")
    else:  # no cell has a run in a global basin: every k is infinite
        ax1.text(0.5, 0.5, "no run ended in a global basin:\nno number of restarts is enough",
                 ha="center", va="center", transform=ax1.transAxes, fontsize=9)  # fmt: skip
    ax1.set_ylabel("restarts for 99% success (band: from the CI)")
    ax0.legend(fontsize=6)
    fig.suptitle(f"{ds.attrs['name']}: how many random restarts does it take?")
    fig.tight_layout()
    return fig


def _map_dims(ds: xr.Dataset) -> tuple[str, str]:
    dims = [d for d in sweep_dims(ds) if ds.sizes[d] > 2]
    if len(dims) < 2:
        raise NothingToDraw(
            "a map needs two axes with more than two values each; this sweep has "
            + (", ".join(f"{axis_label(ds, d)} ({ds.sizes[d]})" for d in sweep_dims(ds)) or "none")
        )
    return dims[0], dims[1]


def cell_edges(values, log: bool = False) -> np.ndarray:
    """Edges of a map's cells around ``values``: cell ``k`` spans ``[edges[k], edges[k + 1]]``,
    halfway to each neighbouring value (geometric midpoints on a log axis), so on an even grid
    every cell is centred on its value, never half a cell off."""
    v = np.log10(np.asarray(values, float)) if log else np.asarray(values, float)
    if v.size == 1:
        edges = v[0] + np.array([-0.5, 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        edges = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return 10**edges if log else edges


def _image(ax, da: xr.DataArray, x: str, y: str, ds: xr.Dataset, **kw):
    """``da`` over ``(x, y)`` as cells centred on the grid values (``pcolormesh``; log axes
    where the values span a wide positive range). NaN cells show the axes' face colour."""
    xs, ys = ds[x].values, ds[y].values
    logx, logy = is_log(xs), is_log(ys)
    z = np.ma.masked_invalid(np.asarray(da.transpose(y, x).values, float))
    mesh = ax.pcolormesh(cell_edges(xs, logx), cell_edges(ys, logy), z, shading="flat", **kw)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(axis_label(ds, x))
    ax.set_ylabel(axis_label(ds, y))
    return mesh


def _first(ds: xr.Dataset, keep: list[str]) -> xr.Dataset:
    """The first value of every axis not in ``keep`` (a map shows one slice)."""
    return ds.isel({d: 0 for d in json.loads(ds.attrs["axes"]) if d not in keep})


def _anchors(ds: xr.Dataset, x: str, y: str) -> list[tuple[float, float, str]]:
    """The inits a plane map is built from, as ``(x, y, name)``: θ₀ (the init of
    ``plane_seed``) at the origin, and the seeds that span the plane at (1, 0) and (0, 1)."""
    if {x, y} != {"init_plane_a", "init_plane_b"}:
        return []
    init = from_dataset(ds).spec.init
    if init.plane_seed < 0:
        return []
    points = {(0.0, 0.0): f"θ₀ (init of seed {init.plane_seed})"}
    for seed, at in ((init.plane_seed_a, (1.0, 0.0)), (init.plane_seed_b, (0.0, 1.0))):
        if seed >= 0:
            points[at] = f"init of seed {seed}"
    out = []
    for (a, b), name in points.items():
        px, py = (a, b) if x == "init_plane_a" else (b, a)
        xs, ys = ds[x].values, ds[y].values
        if xs.min() <= px <= xs.max() and ys.min() <= py <= ys.max():
            out.append((px, py, name))
    return out


def _mark_anchors(ax, anchors, legend: bool) -> None:
    for k, (px, py, name) in enumerate(anchors):
        ax.plot(px, py, marker="*" if k == 0 else "P", ms=13, mfc="white", mec="black", mew=1.2,
                ls="none", label=name if legend else None, zorder=5)  # fmt: skip


@figure("basin_map", analyses=("basins", "endpoint_kinds"))
def basin_map(ds: xr.Dataset) -> plt.Figure:
    """A 2-D slice of init space (e.g. ``init.plane_a × init.plane_b``): each cell one run,
    coloured by the basin it reached (when params are saved; a colour key names each basin and
    only the outcomes that occur), its log10 final loss and the step its loss first fell below
    the threshold. θ₀, the init the plane goes through, is marked with a star."""
    from jaxinit.analysis.basins import DIVERGED, UNCLUSTERED, UNCONVERGED

    x, y = _map_dims(ds)
    sl = _first(ds, [x, y])
    anchors = _anchors(ds, x, y)
    with_basins = any(k.startswith("params/") for k in ds.data_vars)
    n_panels = 2 + with_basins
    fig, axes = plt.subplots(1, n_panels, figsize=(4.8 * n_panels + 2.4, 5.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    axes = list(axes[0])
    if with_basins:
        ax = axes.pop(0)
        from jaxinit.analysis.basins import find_basins

        b = find_basins(ds, kinds=True)
        lab = b.label.isel({d: 0 for d in b.label.dims if d not in (x, y)})
        seen = set(np.unique(lab.values).tolist())
        table = b.table[b.table.basin.isin(seen)].sort_values("size", ascending=False)
        colors = {}  # the colours of basin_sizes: per group, from all of the group's basins
        for _, group_table in b.table.groupby("group"):
            colors.update(_basin_colors(group_table))
        keys = [int(v) for v in table.basin]
        special = [(UNCONVERGED, "unconverged (still moving)", "0.8"),
                   (DIVERGED, "diverged or unfinished", "0.25"),
                   (UNCLUSTERED, "unclustered (past max_basins)", "0.55")]  # fmt: skip
        special = [t for t in special if t[0] in seen]
        palette = [colors[k] for k in keys] + [c for _, _, c in special]
        code = {k: i for i, k in enumerate(keys + [t[0] for t in special])}
        idx = xr.apply_ufunc(np.vectorize(lambda v: code.get(int(v), np.nan), otypes=[float]), lab)
        cmap = matplotlib.colors.ListedColormap(palette)
        _image(ax, idx, x, y, ds, cmap=cmap, vmin=-0.5, vmax=len(palette) - 0.5)
        counts = {int(v): int(c) for v, c in zip(*np.unique(lab.values, return_counts=True))}
        shown = keys[:12]
        rows = {int(r.basin): r for r in table.itertuples()}
        handles = [
            matplotlib.patches.Patch(
                facecolor=colors[k],
                hatch=_hatch(rows[k]),
                edgecolor="0.2" if _hatch(rows[k]) else colors[k],
                label=f"basin {k}{' (global)' if rows[k].is_global else ''}: "
                f"loss {rows[k].mean_loss:.2g}, {_kind_text(rows[k])}, {counts[k]} cells",
            )
            for k in shown
        ]
        odd = [k for k in keys if _hatch(rows[k])]  # not minima: an × on each of their cells
        if odd:
            yy, xx = np.nonzero(np.isin(lab.transpose(y, x).values, odd))
            ax.scatter(ds[x].values[xx], ds[y].values[yy], marker="x", s=6, lw=0.5, color="0.1")
            handles.append(matplotlib.lines.Line2D([], [], marker="x", ls="none", color="0.1",
                                                   label="× on a cell: its basin is not a minimum"))  # fmt: skip
        if len(keys) > len(shown):
            rest = sum(counts[k] for k in keys[len(shown) :])
            handles.append(matplotlib.patches.Patch(
                color="white", label=f"{len(keys) - len(shown)} smaller basins: {rest} cells"))  # fmt: skip
        handles += [matplotlib.patches.Patch(color=c, label=f"{name}: {counts[v]} cells")
                    for v, name, c in special]  # fmt: skip
        _mark_anchors(ax, anchors, legend=False)
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncol=1, title="basin reached (same colours in basin_sizes)", title_fontsize=7)  # fmt: skip
        n = len(keys)
        ax.set_title(f"basin reached ({n} basin{'s' if n != 1 else ''} in this slice)", fontsize=9)
    threshold = threshold_of(ds)
    loss = np.log10(np.maximum(sl.final_loss, 1e-12))
    mesh = _image(axes[0], loss, x, y, ds, cmap="viridis")
    fig.colorbar(mesh, ax=axes[0], shrink=0.8, label="log10 final training loss")
    axes[0].set_title("final training loss", fontsize=9)
    mesh = _image(axes[1], sl.time_to_threshold, x, y, ds, cmap="plasma")  # NaN: never
    axes[1].set_facecolor("white")
    fig.colorbar(mesh, ax=axes[1], shrink=0.8, label="steps")
    axes[1].set_title(f"steps until the loss first fell below {threshold}\n(white: never)",
                      fontsize=9)  # fmt: skip
    for k, ax in enumerate(axes):
        _mark_anchors(ax, anchors, legend=k == 0 and not with_basins)
    if anchors:
        fig.legend(handles=[matplotlib.lines.Line2D([], [], marker="*" if k == 0 else "P", ms=11,
                                                    mfc="white", mec="black", ls="none", label=n)
                            for k, (_, _, n) in enumerate(anchors)],
                   loc="outside lower center", ncol=len(anchors), fontsize=8)  # fmt: skip
    fig.suptitle(f"{ds.attrs['name']}: {ds.sizes[x]}×{ds.sizes[y]} map of where training goes "
                 "from each start (one run per cell)")  # fmt: skip
    return fig


OUTCOMES = ("converged", "stalled", "diverged")


@figure("outcome_map")
def outcome_map(ds: xr.Dataset) -> plt.Figure:
    """Where training converges (loss below threshold), stalls (finite, above it) or diverges over
    two axes (e.g. ``init.scale × optimizer.learning_rate``), pooled over seeds: the majority
    outcome per cell and the fraction converged. Each cell is centred on its grid value."""
    x, y = _map_dims(ds)
    require_done(ds, "outcome_map")
    keep = [x, y]
    done = pool_runs(ds, "done", keep).fillna(0).astype(bool)
    div = pool_runs(ds, "diverged", keep).fillna(0).astype(bool) & done
    conv = pool_runs(ds, "time_to_threshold", keep).notnull() & done & ~div  # NaN: never reached
    stall = done & ~div & ~conv
    n = done.sum("run")
    counts = xr.concat([conv.sum("run"), stall.sum("run"), div.sum("run")], "outcome")
    fracs = counts / np.maximum(n, 1)
    majority = fracs.argmax("outcome").where(n > 0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    colours = ["#2ca02c", "#ffbf00", "#d62728"]
    cmap = matplotlib.colors.ListedColormap(colours)
    _image(axes[0], majority, x, y, ds, cmap=cmap, vmin=-0.5, vmax=2.5)
    total = counts.sum([d for d in counts.dims if d != "outcome"]).values
    handles = [matplotlib.patches.Patch(color=colours[i], label=f"{o} ({int(total[i])} runs)")
               for i, o in enumerate(OUTCOMES) if total[i] > 0]  # fmt: skip
    axes[0].legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13),
                   ncol=len(handles), title="outcome (runs of all cells)", title_fontsize=7)  # fmt: skip
    axes[0].set_title("majority outcome of each cell's seeds", fontsize=9)
    im = _image(axes[1], fracs.isel(outcome=0), x, y, ds, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="fraction converged")
    axes[1].set_title(f"fraction of the {int(n.max())} seeds that converged", fontsize=9)
    fig.suptitle(
        f"{ds.attrs['name']}: where does training converge, stall or diverge?\nconverged: training "
        f"loss below {threshold_of(ds)} at some step; stalled: finite but never below it; "
        "diverged: loss or parameters non-finite",
        fontsize=10,
    )
    return fig


@figure("spurious_rate", analyses=("spurious", "endpoint_kinds"))
def spurious_rate(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs converging to a spurious critical point (loss above 1e-3 at a small
    gradient) per value of the first axis, with 95% Wilson intervals."""
    from jaxinit.analysis.basins import spurious_rates

    tab = spurious_rates(ds)
    col = tab.columns[0]
    xs = np.asarray(tab[col])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, tab.rate, yerr=error_bars(tab.rate, tab.ci_lo, tab.ci_hi), marker="o", capsize=3,
                label="spurious (converged, loss > 1e-3)")  # fmt: skip
    ax.plot(xs, 1 - tab.converged / np.maximum(tab.runs, 1), "s--", color="0.5", ms=3,
            label="not converged within the step budget")  # fmt: skip
    if len(xs) <= 12 and xs.dtype.kind in "iuf":
        ax.set_xticks(xs, [f"{v:g}" for v in xs])  # the measured values, not a fine grid
    ax.set_xlabel(axis_label(ds, col) if col in ds.dims else col)
    ax.set_ylabel("fraction of runs (95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: spurious minima ({int(tab.runs.iloc[0])} runs per value)")
    fig.tight_layout()
    return fig
