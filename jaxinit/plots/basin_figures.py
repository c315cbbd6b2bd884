"""Basin figures: sizes, loss histograms, barriers, restarts, basin and outcome maps.

Computed from a Dataset with saved parameters through :mod:`jaxinit.basins` (imported lazily).
"""

from __future__ import annotations

import json

import matplotlib.colors
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxinit.plots.core import FIGURES, _is_log, _label, _pool, sweep_dims


def _basin_colors(table) -> dict[int, tuple]:
    """One colour per basin of a group: global basins in greens, the others in a qualitative map."""
    cmap, greens = plt.get_cmap("tab10"), plt.get_cmap("Greens")
    out, k, g = {}, 0, 0
    for _, row in table.sort_values("mean_loss").iterrows():
        if row.is_global:
            out[row.basin] = greens(0.8 - 0.15 * (g % 4))
            g += 1
        else:
            out[row.basin] = cmap((k + 1) % 10)
            k += 1
    return out


def _group_rows(basins, max_groups: int = 8):
    return list(basins.table.groupby("group", sort=True))[:max_groups]


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


def _basin_name(row) -> str:
    return f"basin {row.basin}: loss {row.mean_loss:.3g}" + (" (global)" if row.is_global else "")


def _group_runs(b, gi: int) -> np.ndarray:
    return next(g for g in b.groups if g.index == gi).run_ids


def basin_sizes(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs per basin (stacked bars), per value of the first traced axis, one panel
    per static group; global basins green, the nine largest named, the rest pooled in grey."""
    from jaxinit.basins import DIVERGED, UNCLUSTERED, UNCONVERGED, find_basins

    b = find_basins(ds)
    x_dim = _x_dim(ds)
    groups = _group_rows(b)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.5 * len(groups) + 0.6), squeeze=False)
    lab = b.label.values.reshape(-1)
    for ax, (gi, table) in zip(axes[:, 0], groups):
        cell = np.zeros(lab.size, bool)
        cell[_group_runs(b, gi)] = True
        in_group = xr.DataArray(cell.reshape(b.label.shape), b.label.coords, b.label.dims)
        keep = [d for d in b.label.dims if d != x_dim]
        total = in_group.sum(keep).values.reshape(-1)
        shown, rest = _shown_basins(table)
        colors = _basin_colors(table)
        series = [(_basin_name(r), [r.basin], colors[r.basin]) for r in shown]
        series += [(f"{len(rest)} other basins", rest, "0.75"), ("diverged", [DIVERGED], "0.3")]
        series += [("unconverged (not in a basin)", [UNCONVERGED], "0.6")]
        series += [("unclustered", [UNCLUSTERED], "0.9")]
        xs = list(ds[x_dim].values) if x_dim else [None]
        bottom = np.zeros(len(xs))
        for name, ids, color in series:
            hit = b.label.isin(ids) & in_group
            frac = hit.sum(keep).values.reshape(-1) / np.maximum(total, 1)
            if frac.any():
                ax.bar(
                    range(len(xs)),
                    frac,
                    bottom=bottom,
                    color=color,
                    label=name,
                    edgecolor="white",
                    lw=0.3,
                )
                bottom += frac
        ax.set_xticks(range(len(xs)), [f"{x:.3g}" if x is not None else "all" for x in xs])
        ax.set_ylabel("fraction of runs")
        ax.set_ylim(0, 1)
        ex = b.excluded.set_index("group").loc[gi]
        ax.set_title(
            f"{table.label.iloc[0]} ({len(table)} basins of converged runs, "
            f"{int(total.max())} runs per bar; excluded: {ex.unconverged} still moving "
            f"(|∇L| ≥ {b.config.grad_tol:g} above the lowest loss), "
            f"{ex.diverged_or_unfinished} diverged)",
            fontsize=8,
        )
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[-1, 0].set_xlabel(_label(ds, x_dim) if x_dim else "")
    fig.suptitle(f"{ds.attrs['name']}: which basin each run reached")
    fig.tight_layout()
    return fig


def basin_loss_hist(ds: xr.Dataset) -> plt.Figure:
    """Histogram of log10 final loss, stacked and coloured by basin (nine largest; the rest
    grey), one panel per group."""
    from jaxinit.basins import find_basins, flat_runs

    b = find_basins(ds)
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
        data = [loss[runs][lab[runs] == r.basin] for r in shown] + [
            loss[runs][np.isin(lab[runs], rest)]
        ]
        colours = [colors[r.basin] for r in shown] + ["0.75"]
        names = [f"{r.basin}" + ("*" if r.is_global else "") + f" ({r.size})" for r in shown]
        ax.hist(data, edges, stacked=True, color=colours, label=[*names, f"{len(rest)} others"])
        ax.set_yscale("log")
        ax.set_xlabel("log10 final loss")
        ax.set_ylabel("runs")
        ax.set_title(table.label.iloc[0], fontsize=9)
        ax.legend(title="basin (* global) (runs)", fontsize=6, title_fontsize=6, ncol=2)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    fig.suptitle(f"{ds.attrs['name']}: final loss by basin")
    fig.tight_layout()
    return fig


def barrier_matrix(ds: xr.Dataset) -> plt.Figure:
    """Loss barrier between the largest basins (median over representative pairs, aligned by
    weight matching), one panel per group (at most four)."""
    from jaxinit.basins import barrier_matrix as barriers
    from jaxinit.basins import find_basins

    b = find_basins(ds)
    groups = _group_rows(b, 4)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4), squeeze=False)
    for ax, (gi, table) in zip(axes[0], groups):
        ids, mat = barriers(b, gi)
        im = ax.imshow(mat, cmap="magma_r", vmin=0)
        names = [f"{i}" + ("*" if table[table.basin == i].is_global.iloc[0] else "") for i in ids]
        ax.set_xticks(range(len(ids)), names, fontsize=7)
        ax.set_yticks(range(len(ids)), names, fontsize=7)
        if len(ids) <= 8:
            for i in range(len(ids)):
                for j in range(len(ids)):
                    ax.text(j, i, f"{mat[i, j]:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if mat[i, j] > 0.6 * max(mat.max(), 1e-12) else "black")  # fmt: skip
        ax.set_title(table.label.iloc[0], fontsize=8)
        ax.set_xlabel("basin (* global)")
        fig.colorbar(im, ax=ax, shrink=0.7, label="barrier (max on path − mean of ends)")
    fig.suptitle(f"{ds.attrs['name']}: loss barriers between basins")
    fig.tight_layout()
    return fig


def restarts(ds: xr.Dataset) -> plt.Figure:
    """Random restarts, per value of the first traced axis (one line per other-axes cell):
    P(one run reaches a global basin) with its 95% interval, and the restarts needed for 99%
    success, ``ceil(log 0.01 / log(1 - p))``, with the interval that ``p``'s interval implies."""
    from jaxinit.basins import find_basins, restart_stats

    stats = restart_stats(ds, find_basins(ds), (1,))
    x_dim = _x_dim(ds)
    others = [d for d in sweep_dims(ds) if d != x_dim and d in stats.columns]
    lines = stats.groupby(others, sort=False) if others else [((), stats)]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (key, rows) in enumerate(lines):
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{_label(ds, d)}={v}" for d, v in zip(others, key)) or "all runs"
        xs = rows[x_dim].to_numpy() if x_dim else np.zeros(len(rows))
        color = f"C{i % 10}"
        ax0.errorbar(xs, rows.p_global, yerr=[rows.p_global - rows.p_lo, rows.p_hi - rows.p_global],
                     marker="o", ms=3, capsize=2, color=color, label=name)  # fmt: skip
        k = rows.k_needed.replace(np.inf, np.nan)
        ax1.plot(xs, k, "o-", ms=3, color=color, label=name)
        lo, hi = rows.k_needed_lo.replace(np.inf, np.nan), rows.k_needed_hi.replace(np.inf, np.nan)
        ax1.fill_between(xs, lo, hi, color=color, alpha=0.15)
    for ax in (ax0, ax1):
        if x_dim and _is_log(ds[x_dim]):
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(ds[x_dim].values, [f"{v:.3g}" for v in ds[x_dim].values])
        ax.set_xlabel(_label(ds, x_dim) if x_dim else "")
    ax0.set_ylim(-0.02, 1.02)
    ax0.set_ylabel("P(run ends in a global basin), 95% CI")
    ax1.set_yscale("log")
    ax1.set_ylabel("restarts for 99% success (band: from the CI)")
    ax0.legend(fontsize=6)
    fig.suptitle(f"{ds.attrs['name']}: how many random restarts does it take?")
    fig.tight_layout()
    return fig


def _map_dims(ds: xr.Dataset) -> tuple[str, str]:
    dims = [d for d in sweep_dims(ds) if ds.sizes[d] > 2]
    if len(dims) < 2:
        raise ValueError("a map needs two axes with more than two values each")
    return dims[0], dims[1]


def _image(ax, da: xr.DataArray, x: str, y: str, ds: xr.Dataset, **kw):
    xs, ys = ds[x].values, ds[y].values
    logx, logy = _is_log(xs), _is_log(ys)
    ext = [np.log10(xs[0]) if logx else xs[0], np.log10(xs[-1]) if logx else xs[-1],
           np.log10(ys[0]) if logy else ys[0], np.log10(ys[-1]) if logy else ys[-1]]  # fmt: skip
    im = ax.imshow(da.transpose(y, x).values, origin="lower", extent=ext, aspect="auto",
                   interpolation="nearest", **kw)  # fmt: skip
    ax.set_xlabel(("log10 " if logx else "") + _label(ds, x))
    ax.set_ylabel(("log10 " if logy else "") + _label(ds, y))
    return im


def _first(ds: xr.Dataset, keep: list[str]) -> xr.Dataset:
    """The first value of every axis not in ``keep`` (a map shows one slice)."""
    return ds.isel({d: 0 for d in json.loads(ds.attrs["axes"]) if d not in keep})


def basin_map(ds: xr.Dataset) -> plt.Figure:
    """A 2-D slice of init space (e.g. ``init.plane_a × init.plane_b``): each pixel one run,
    coloured by the basin it reached (when params are saved), its log10 final loss and the step
    its loss first fell below the threshold."""
    x, y = _map_dims(ds)
    sl = _first(ds, [x, y])
    panels = []
    if any(k.startswith("params/") for k in ds.data_vars):
        from jaxinit.basins import find_basins

        b = find_basins(ds)
        lab = b.label.isel({d: 0 for d in b.label.dims if d not in (x, y)})
        table = b.table.sort_values("size", ascending=False)
        order = {bid: k for k, bid in enumerate(table.basin)}
        rank = xr.apply_ufunc(np.vectorize(lambda v: order.get(v, -1)), lab)
        panels.append(
            (
                "basin (by size; grey: unconverged or diverged)",
                rank.where(rank >= 0),
                dict(cmap="tab20", vmin=-0.5, vmax=19.5),
            )
        )
    loss = np.log10(np.maximum(sl.final_loss, 1e-12))
    panels.append(("log10 final loss", loss, dict(cmap="viridis")))
    hit = sl.time_to_threshold  # NaN where never reached
    panels.append(("steps to threshold (white: never)", hit, dict(cmap="plasma")))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (title, da, kw) in zip(axes[0], panels):
        ax.set_facecolor("0.85" if "basin" in title else "white")
        im = _image(ax, da, x, y, ds, **kw)
        ax.set_title(title, fontsize=9)
        if "basin" not in title:
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{ds.attrs['name']}: {ds.sizes[x]}×{ds.sizes[y]} map of where training goes")
    fig.tight_layout()
    return fig


OUTCOMES = ("converged", "stalled", "diverged")


def outcome_map(ds: xr.Dataset) -> plt.Figure:
    """Where training converges (loss below threshold), stalls (finite, above it) or diverges over
    two axes (e.g. ``init.scale × optimizer.learning_rate``), pooled over seeds: the majority
    outcome per cell and the fraction converged."""
    x, y = _map_dims(ds)
    keep = [x, y]
    done = _pool(ds, "done", keep).fillna(0).astype(bool)
    div = _pool(ds, "diverged", keep).fillna(0).astype(bool) & done
    conv = _pool(ds, "time_to_threshold", keep).notnull() & done & ~div  # NaN: never reached
    stall = done & ~div & ~conv
    n = done.sum("run")
    fracs = xr.concat([conv.sum("run"), stall.sum("run"), div.sum("run")], "outcome") / np.maximum(
        n, 1
    )
    majority = fracs.argmax("outcome").where(n > 0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    cmap = matplotlib.colors.ListedColormap(["#2ca02c", "#ffbf00", "#d62728"])
    _image(axes[0], majority, x, y, ds, cmap=cmap, vmin=-0.5, vmax=2.5)
    handles = [matplotlib.patches.Patch(color=cmap(i), label=o) for i, o in enumerate(OUTCOMES)]
    axes[0].legend(handles=handles, fontsize=7, loc="lower left")
    axes[0].set_title("majority outcome", fontsize=9)
    im = _image(axes[1], fracs.sel(outcome=0) if "outcome" in fracs.coords else fracs[0], x, y, ds,
                cmap="viridis", vmin=0, vmax=1)  # fmt: skip
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="fraction converged")
    axes[1].set_title(f"fraction of {int(n.max())} seeds below the loss threshold", fontsize=9)
    fig.suptitle(f"{ds.attrs['name']}: converge / stall / diverge")
    fig.tight_layout()
    return fig


def spurious_rate(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs converging to a spurious critical point (loss above 1e-3 at a small
    gradient) per value of the first axis, with 95% Wilson intervals."""
    from jaxinit.basins import spurious_rates

    tab = spurious_rates(ds)
    col = tab.columns[0]
    xs = np.asarray(tab[col])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, tab.rate, yerr=[tab.rate - tab.ci_lo, tab.ci_hi - tab.rate], marker="o", capsize=3,
                label="spurious (converged, loss > 1e-3)")  # fmt: skip
    ax.plot(xs, 1 - tab.converged / np.maximum(tab.runs, 1), "s--", color="0.5", ms=3,
            label="not converged within the step budget")  # fmt: skip
    ax.set_xlabel(_label(ds, col) if col in ds.dims else col)
    ax.set_ylabel("fraction of runs (95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: spurious minima ({int(tab.runs.iloc[0])} runs per value)")
    fig.tight_layout()
    return fig


FIGURES.update(
    basin_sizes=basin_sizes,
    basin_loss_hist=basin_loss_hist,
    barrier_matrix=barrier_matrix,
    restarts=restarts,
    basin_map=basin_map,
    outcome_map=outcome_map,
    spurious_rate=spurious_rate,
)
