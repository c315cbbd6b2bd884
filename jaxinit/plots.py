"""Figures of a sweep's Dataset (matplotlib). Each figure is ``fn(ds) -> Figure``, by name in
:data:`FIGURES`; ``jaxinit report`` draws a spec's ``report`` list (or the defaults).

Conventions: the x axis (or the line colour) is the first non-seed axis, the hue the second;
any further axes are pooled with the seeds. Bands are the 10–90% range over pooled runs, lines
the median; rates carry 95% Wilson intervals.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402


def sweep_dims(ds: xr.Dataset) -> list[str]:
    """The Dataset's axis dimensions other than ``seed``, longest-varying first as in the spec."""
    return [d for d in json.loads(ds.attrs["axes"]) if d != "seed" and ds.sizes[d] > 1]


def _axes_of(ds: xr.Dataset) -> list[str]:
    return list(json.loads(ds.attrs["axes"]))


def _pool(ds: xr.Dataset, var: str, keep: list[str]) -> xr.DataArray:
    """``ds[var]`` (unfinished runs NaN) with every axis dim not in ``keep`` stacked into ``run``."""
    da = ds[var].where(ds.done)
    other = [d for d in _axes_of(ds) if d not in keep and d in da.dims]
    return da.stack(run=other).transpose(*keep, ..., "run") if other else da.expand_dims("run", -1)


def _is_log(values) -> bool:
    v = np.asarray(values)
    return v.dtype.kind in "fi" and bool(np.all(v > 0)) and v.max() / v.min() > 20


def wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of a binomial rate ``k / n``."""
    n = np.maximum(n, 1)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def _label(ds: xr.Dataset, dim: str) -> str:
    return json.loads(ds.attrs["axes"]).get(dim, dim)


def final_loss(ds: xr.Dataset) -> plt.Figure:
    """Distribution of the final training loss per axis value (strip over a violin)."""
    dims = sweep_dims(ds)
    x_dim = dims[0] if dims else None
    hue = dims[1] if len(dims) > 1 else None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(ds[x_dim].values) if x_dim else [ds.attrs["name"]]
    hues = list(ds[hue].values) if hue else [None]
    width = 0.8 / len(hues)
    rng = np.random.default_rng(0)
    for h, hv in enumerate(hues):
        sel = {hue: hv} if hue else {}
        da = _pool(ds.sel(sel), "final_loss", [x_dim] if x_dim else [])
        for i in range(len(xs)):
            vals = np.asarray(da[i] if x_dim else da).ravel()
            vals = np.log10(np.maximum(vals[np.isfinite(vals)], 1e-12))
            pos = i + (h - (len(hues) - 1) / 2) * width
            if len(vals) > 1 and np.ptp(vals) > 0:
                parts = ax.violinplot(vals, [pos], widths=width * 0.9, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(f"C{h}")
                    body.set_alpha(0.25)
            jitter = rng.uniform(-width * 0.3, width * 0.3, len(vals))
            ax.scatter(pos + jitter, vals, s=3, color=f"C{h}", alpha=0.5,
                       label=f"{_label(ds, hue)}={hv}" if (hue and i == 0) else None)  # fmt: skip
    ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30 if len(xs) > 4 else 0)
    ax.set_xlabel(_label(ds, x_dim) if x_dim else "")
    ax.set_ylabel("log10 final training loss")
    ax.set_title(
        f"{ds.attrs['name']}: final loss per run ({ds.sizes.get('seed', 1)} seeds per cell)"
    )
    if hue:
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def loss_curves(ds: xr.Dataset) -> plt.Figure:
    """Median training loss over steps, with the 10–90% band over seeds, one line per value."""
    dims = sweep_dims(ds)
    line = dims[0] if dims else None
    fig, ax = plt.subplots(figsize=(7, 4))
    values = list(ds[line].values) if line else [None]
    for k, v in enumerate(values):
        da = _pool(ds.sel({line: v}) if line else ds, "loss", ["step"])
        lo, med, hi = (np.nanquantile(da.values, q, axis=-1) for q in (0.1, 0.5, 0.9))
        ax.plot(ds.step, med, color=f"C{k % 10}", label=f"{v}" if line else None)
        ax.fill_between(ds.step, lo, hi, color=f"C{k % 10}", alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (median, 10–90% band)")
    if line:
        ax.legend(title=_label(ds, line), fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: loss curves")
    fig.tight_layout()
    return fig


def success_rate(ds: xr.Dataset) -> plt.Figure:
    """Fraction of runs that solve the task, vs the first axis (one line per second-axis value)."""
    dims = sweep_dims(ds)
    x_dim = dims[0] if dims else None
    hue = dims[1] if len(dims) > 1 else None
    fig, ax = plt.subplots(figsize=(7, 4))
    for h, hv in enumerate(list(ds[hue].values) if hue else [None]):
        sub = ds.sel({hue: hv}) if hue else ds
        ok = _pool(sub, "success", [x_dim] if x_dim else [])
        k = np.asarray(ok.sum("run")).reshape(-1)
        n = np.asarray(_pool(sub, "done", [x_dim] if x_dim else []).sum("run")).reshape(-1)
        lo, hi = wilson(k, n)
        xs = np.arange(len(k)) if not x_dim or not _is_log(ds[x_dim]) else ds[x_dim].values
        ax.errorbar(xs, k / np.maximum(n, 1), yerr=[k / np.maximum(n, 1) - lo, hi - k / np.maximum(n, 1)],
                    marker="o", capsize=3, color=f"C{h}", label=str(hv) if hue else None)  # fmt: skip
    if x_dim and _is_log(ds[x_dim]):
        ax.set_xscale("log")
    elif x_dim:
        ax.set_xticks(range(ds.sizes[x_dim]), [str(v) for v in ds[x_dim].values])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(_label(ds, x_dim) if x_dim else "")
    ax.set_ylabel("success rate (95% CI)")
    if hue:
        ax.legend(title=_label(ds, hue), fontsize=7)
    ax.set_title(f"{ds.attrs['name']}: success rate")
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[xr.Dataset], plt.Figure]] = {
    "final_loss": final_loss,
    "loss_curves": loss_curves,
    "success_rate": success_rate,
}
"""Registry ``figure name -> fn(ds) -> Figure`` used by ``jaxinit report``."""

DEFAULT_FIGURES = ("final_loss", "loss_curves", "success_rate")


# -- basins (jaxinit.basins; imported lazily, plots must not pull in JAX at spec validation) ---
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
    from jaxinit.basins import DIVERGED, find_basins

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
        series += [("unclustered", [DIVERGED - 1], "0.9")]
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
        ax.set_title(
            f"{table.label.iloc[0]} ({len(table)} basins, {int(total.max())} runs per bar)",
            fontsize=9,
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
                "basin (by size; grey: diverged)",
                rank.where(rank >= 0),
                dict(cmap="tab20", vmin=-0.5, vmax=19.5),
            )
        )
    loss = np.log10(np.maximum(sl.final_loss, 1e-12))
    panels.append(("log10 final loss", loss, dict(cmap="viridis")))
    hit = sl.time_to_threshold.where(sl.time_to_threshold >= 0)
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
    conv = (_pool(ds, "time_to_threshold", keep) >= 0) & done & ~div
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


# -- why random init? symmetry, scale and implicit-bias figures --------------------------------
import pandas as pd  # noqa: E402


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
    """Per cell and scale: median time-to-threshold (runs that never get there count as +∞, so
    the median is ``inf`` when fewer than half of them do) and the fraction that gets there."""

    x = _scale_dim(ds)
    dims = [d for d in _axes_of(ds) if d not in ("seed", x)]  # size-1 axes too: stable columns
    rows = []
    for sel, _, _, _ in _cells(ds, dims):
        sub = ds.sel(sel)
        t = sub.time_to_threshold.where(sub.done).transpose(x, ...).values
        t = t.reshape(len(ds[x]), -1).astype(float)
        never = t < 0
        t[never] = np.inf
        for k, v in enumerate(ds[x].values):
            rows.append({**sel, x: float(v), "median_time": float(np.median(t[k])),
                         "reached": float(1 - never[k].mean())})  # fmt: skip
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
