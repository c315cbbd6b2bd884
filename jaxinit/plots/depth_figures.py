"""Depth-and-scale figures: the magic numbers (measured best init scale vs the critical σ_w), the
trainability phase diagram over (σ_w², depth), and the probe sweeps of random nets at init
(signal propagation, Jacobian spectra), each beside mean-field theory (:mod:`jaxinit.blocks.theory`).

Tables (:data:`TABLES`, name -> ``fn(ds) -> DataFrame``) hold the numbers of a figure;
``jaxinit report`` writes them as ``<name>.csv`` and ``<name>.txt`` next to the PNG.
"""

from __future__ import annotations

import json
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.blocks import theory
from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.core import axes_of, distinct_colors
from jaxinit.plots.names import TABLES, figure

TRAINED = 0.9
"""A cell "trains" when the median final train metric (accuracy, or R²) over seeds is at least
this."""


def _spec(ds: xr.Dataset) -> dict:
    """The stored spec as dicts: a probe sweep's too (its ``[probe]`` section)."""
    return from_dataset(ds).data


def _depth(widths) -> int:
    """Hidden layers of a ``model_widths`` coordinate (``"32-32-32"`` or a tuple)."""
    return len(widths) if isinstance(widths, (tuple, list)) else len(str(widths).split("-"))


def _value(ds: xr.Dataset, row: dict, path: str):
    """A spec field of one cell: its axis coordinate if it is an axis, else the spec's value."""
    dims = {p: d for d, p in json.loads(ds.attrs["axes"]).items()}
    if path in dims and dims[path] in row:
        return row[dims[path]]
    section, name = path.split(".")
    return _spec(ds)[section][name]


def _sigma_b(ds: xr.Dataset, row: dict) -> float:
    """The bias std σ_b of a cell: ``bias_scale`` for normal biases, 0 for zero biases."""
    scheme = _value(ds, row, "init.bias_scheme")
    if scheme == "zeros":
        return 0.0
    return float(_value(ds, row, "init.bias_scale")) if scheme == "normal" else math.nan


def _med(da: xr.DataArray, dim: str = "seed") -> xr.DataArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return da.median(dim) if dim in da.dims else da


# -- magic numbers --------------------------------------------------------------------------------
_MAGIC_DIMS = ("model_activation", "model_widths", "init_bias_scale")
_MAGIC_COLUMNS = ("activation", "sigma_b", "depth", "critical_sigma_w", "best_scale", "trains_lo",
                  "trains_hi", "median_loss_at_best", "seeds")  # fmt: skip


def magic_numbers_table(ds: xr.Dataset, wide: bool = True) -> pd.DataFrame:
    """Per activation × σ_b (× depth): the critical σ_w of mean-field theory
    (:func:`jaxinit.blocks.theory.critical_scale`) and the **measured** best ``init.scale``.

    Best scale: the lowest median final training loss among the scales whose median final train
    metric (accuracy, or R²) reaches :data:`TRAINED`; ``trains_lo``–``trains_hi``: the smallest
    and largest such scale; NaN where no scale trains. With ``init.scheme = "lecun_normal"``
    the scale is σ_w itself (``W ~ N(0, scale²/fan_in)``); for another scheme the critical value
    is NaN (not comparable). Any other axis (e.g. ``init_scheme``) is a column of its own.
    ``wide``: one row per activation × σ_b (× other axes), a column per depth.
    """
    if "init_scale" not in ds.dims:
        raise ValueError("magic numbers need an init.scale axis")
    loss = _med(ds.final_loss.where(ds.done))
    metric = _med(ds.final_metric.where(ds.done))
    keep = [d for d in axes_of(ds) if d not in ("seed", "init_scale") and d in loss.dims]
    lecun = _spec(ds)["init"]["scheme"] == "lecun_normal" and "init_scheme" not in ds.dims
    scales = ds.init_scale.values
    rows = []
    cells = loss.stack(cell=keep) if keep else loss.expand_dims("cell")
    for k in range(cells.sizes["cell"]):
        c = cells.isel(cell=k)
        row = {d: c[d].item() for d in keep}
        sel = {d: row[d] for d in keep}
        lo = loss.sel(sel).transpose("init_scale").values
        ok = metric.sel(sel).transpose("init_scale").values >= TRAINED
        act = str(_value(ds, row, "model.activation"))
        sb = _sigma_b(ds, row)
        good = np.flatnonzero(ok & np.isfinite(lo))
        best = good[np.argmin(lo[good])] if good.size else None
        other = {d: row[d] for d in keep if d not in _MAGIC_DIMS}  # e.g. init_perturbation
        rows.append({
            **other,
            "activation": act,
            "sigma_b": sb,
            "depth": _depth(_value(ds, row, "model.widths")),
            "critical_sigma_w": theory.critical_scale(act, sb) if lecun and sb == sb else math.nan,
            "best_scale": float(scales[best]) if best is not None else math.nan,
            "trains_lo": float(scales[good].min()) if good.size else math.nan,
            "trains_hi": float(scales[good].max()) if good.size else math.nan,
            "median_loss_at_best": float(lo[best]) if best is not None else math.nan,
            "seeds": int(ds.sizes.get("seed", 1)),
        })  # fmt: skip
    long = pd.DataFrame(rows)
    first = {a: k for k, a in reversed(list(enumerate(long.activation)))}  # the spec's order
    long = long.assign(_o=long.activation.map(first))
    long = long.sort_values(["_o", "sigma_b", "depth"], kind="stable").drop(columns="_o")
    if not wide:
        return long.reset_index(drop=True)
    wide = {}
    extra = [c for c in long.columns if c not in _MAGIC_COLUMNS]
    for r in long.to_dict("records"):
        head = {c: r[c] for c in (*extra, "activation", "sigma_b", "critical_sigma_w")}
        row = wide.setdefault(tuple(map(repr, head.values())), head)
        row[f"best_scale_depth_{r['depth']}"] = r["best_scale"]
    return pd.DataFrame(list(wide.values()))


@figure("magic_numbers", table=magic_numbers_table, analyses=("time_to_threshold",))
def magic_numbers(ds: xr.Dataset) -> plt.Figure:
    """Measured best init scale vs depth, one colour per activation and a panel per σ_b; the
    bar spans the scales that train, the dashed line is the critical σ_w of mean-field theory."""
    tab = magic_numbers_table(ds, wide=False)
    sbs = sorted(tab.sigma_b.unique(), key=lambda v: (math.isnan(v), v))
    fig, axes = plt.subplots(1, len(sbs), figsize=(4.6 * len(sbs) + 1.5, 4.2), squeeze=False,
                             sharey=True)  # fmt: skip
    depths = sorted(tab.depth.unique())
    extra = [c for c in tab.columns if c not in _MAGIC_COLUMNS]  # other axes: one line each
    tab = tab.assign(_line=[", ".join([r["activation"], *(f"{c}={r[c]}" for c in extra)])
                            for r in tab.to_dict("records")])  # fmt: skip
    lines = list(dict.fromkeys(tab._line))
    palette = distinct_colors(len(lines))  # one colour per line, the same in every panel
    scales = ds.init_scale.values
    for ax, sb in zip(axes[0], sbs):
        sub = tab[(tab.sigma_b == sb) | (np.isnan(tab.sigma_b) & math.isnan(sb))]
        for i, name in enumerate(lines):
            g = sub[sub._line == name].set_index("depth").reindex(depths)
            # side by side around each depth, within 0.6 of a tick however many lines
            x = np.arange(len(depths)) + (i - (len(lines) - 1) / 2) * min(0.08, 0.6 / len(lines))
            colour = palette[i]
            ax.plot(x, g.best_scale, "o-", color=colour, label=name)
            ax.vlines(x, g.trains_lo, g.trains_hi, color=colour, lw=3, alpha=0.25)
            crit = g.critical_sigma_w.dropna()
            if len(crit):  # one legend entry explains every dashed line (below)
                ax.axhline(crit.iloc[0], color=colour, ls="--", lw=1, label="_critical")
            nope = x[~np.isfinite(g.best_scale.to_numpy())]
            ax.plot(nope, np.full(len(nope), scales.min()), "x", color=colour, ms=7)
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set_yscale("log")
        ax.set_ylim(scales.min() / 1.5, scales.max() * 1.5)
        ax.set_xlabel("depth (hidden layers)")
        ax.set_title(f"σ_b = {sb:g}" if sb == sb else "σ_b: not Gaussian biases", fontsize=9)
    axes[0, 0].set_ylabel("init.scale (σ_w for lecun_normal)")
    from matplotlib.lines import Line2D

    handles, _ = axes[0, -1].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.5", marker="o", label="measured best scale"),
                Line2D([], [], color="0.5", ls="--", lw=1, label="critical σ_w (theory)"),
                Line2D([], [], color="0.5", lw=3, alpha=0.35, label="scales that train"),
                Line2D([], [], color="0.5", marker="x", ls="", label="no scale trains")]  # fmt: skip
    axes[0, -1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{ds.attrs['name']}: measured best init scale vs the critical σ_w of mean-field "
                 f"theory (dashed), {ds.sizes.get('seed', 1)} seeds\nbest = lowest median final "
                 f"loss among the scales that train (median accuracy ≥ {TRAINED})",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


# -- trainability phase diagram ---------------------------------------------------------------------
def phase_diagram_table(ds: xr.Dataset, factor: float = 6.0) -> pd.DataFrame:
    """Per σ_w² (``init.scale``² of ``lecun_normal`` weights): the measured trainable depth (the
    largest depth up to which every depth's median accuracy is ≥ :data:`TRAINED`), the first
    depth that fails, and theory's ``ξ_c`` and ``factor · ξ_c``."""
    acc = _med(ds.final_metric.where(ds.done)).transpose("model_widths", "init_scale")
    depths = [_depth(w) for w in ds.model_widths.values]
    order = np.argsort(depths)
    act, sb = str(_spec(ds)["model"]["activation"]), _sigma_b(ds, {})
    rows = []
    for j, s in enumerate(ds.init_scale.values):
        col = acc.values[order, j]
        fails = [depths[i] for i, a in zip(order, col) if not a >= TRAINED]
        ok = [depths[i] for i in order if depths[i] < (fails[0] if fails else math.inf)]
        xi = theory.depth_scales(act, float(s) ** 2, sb**2).xi_c
        rows.append({"sigma_w2": float(s) ** 2, "measured_trainable_depth": max(ok, default=0),
                     "first_failing_depth": fails[0] if fails else math.nan, "xi_c": xi,
                     f"theory_{factor:g}_xi_c": factor * xi})  # fmt: skip
    return pd.DataFrame(rows)


@figure("phase_diagram", table=phase_diagram_table)
def phase_diagram(ds: xr.Dataset) -> plt.Figure:
    """Median training accuracy over (σ_w², depth), with theory's trainable depth ``6 ξ_c`` (line),
    the critical σ_w² (dotted) and the measured trainable depth of each σ_w² (white dots)."""
    acc = _med(ds.final_metric.where(ds.done)).transpose("model_widths", "init_scale")
    depths = np.array([_depth(w) for w in ds.model_widths.values])
    order = np.argsort(depths)
    depths, acc = depths[order], acc.values[order]
    sw2 = ds.init_scale.values.astype(float) ** 2
    act, sb = str(_spec(ds)["model"]["activation"]), _sigma_b(ds, {})
    tab = phase_diagram_table(ds)
    iy = np.arange(len(depths))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    m = ax.pcolormesh(np.arange(len(sw2)), iy, acc, vmin=0.5, vmax=1.0, cmap="viridis",
                      shading="nearest")  # fmt: skip
    fig.colorbar(m, ax=ax, label=f"median training accuracy ({ds.sizes.get('seed', 1)} seeds)")
    crit = theory.critical_sigma_w2(act, sb**2)
    lo, hi = sw2.min(), sw2.max()
    # 6 ξ_c bends sharply only near the critical point; the chaotic side is costly to compute
    near = np.geomspace(1e-3, 1, 8)
    fine = np.concatenate(
        [np.linspace(lo, hi, 8), crit - (crit - lo) * near, crit + (hi - crit) * near]
    )
    fine = np.unique(fine[(fine >= lo) & (fine <= hi)])
    pred = np.array([theory.trainable_depth(act, s, sb**2) for s in fine])
    top = iy[-1] + 0.45
    y = np.minimum(np.interp(pred, depths, iy, right=np.inf), top)
    ax.plot(np.interp(fine, sw2, np.arange(len(sw2))), y, "w-", lw=2,
            label="theory: trainable depth 6 ξ_c (beyond the chart: on its top edge)")  # fmt: skip
    if sw2.min() <= crit <= sw2.max():
        ax.axvline(np.interp(crit, sw2, np.arange(len(sw2))), color="w", ls=":",
                   label=f"critical σ_w² = {crit:.3g}")  # fmt: skip
    meas = np.interp(tab.measured_trainable_depth, depths, iy, left=-0.45)
    ax.plot(np.arange(len(sw2)), meas, "o", color="w", mec="k", ms=6,
            label=f"measured: deepest depth that trains (accuracy ≥ {TRAINED}; below the grid: none)")  # fmt: skip
    ax.set_xticks(np.arange(len(sw2)), [f"{s:.3g}" for s in sw2])
    ax.set_yticks(iy, [str(d) for d in depths])
    ax.set_ylim(-0.5, len(depths) - 0.5)
    ax.set_xlabel(f"σ_w²  ({act}, σ_b² = {sb**2:.3g})")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=1,
        facecolor="0.3",
        labelcolor="w",
        framealpha=1.0,
    )
    ax.set_title(f"{ds.attrs['name']}: trainability after the step budget", fontsize=9, pad=52)
    fig.tight_layout()
    return fig


# -- probe sweeps: signal propagation ---------------------------------------------------------------
def _display_sigma_b(ds: xr.Dataset) -> float:
    """The σ_b whose curves are drawn: the middle of the grid (σ_b > 0 where there is one)."""
    sbs = ds.sigma_b.values
    pos = sbs[sbs > 0]
    return float(pos[(len(pos) - 1) // 2] if len(pos) else sbs[0])


def _theory_q_c(ds: xr.Dataset, act: str, sw: float, sb: float) -> tuple[np.ndarray, np.ndarray]:
    """Theory's ``q^l`` and ``c^l`` of the two inputs; NaN beyond ``q = 1e11``, where the
    quadrature's range (``q ≤ 1e12``) ends."""
    g = theory.gram_curve(act, ds.x_gram.values, sw**2, sb**2, ds.sizes["layer"])
    q, c = g[:, 0, 0], g[:, 0, 1] / np.sqrt(g[:, 0, 0] * g[:, 1, 1])
    out = np.maximum.accumulate(q > 1e11)
    return np.where(out, np.nan, q), np.where(out, np.nan, c)


@figure("signal_propagation")
def signal_propagation(ds: xr.Dataset) -> plt.Figure:
    """Per activation (row): pre-activation variance, correlation of the two inputs, and squared
    gradient norm per layer; measured (dots: median over seeds, band 10–90%) vs mean-field theory
    (lines), one colour per σ_w at one σ_b."""
    sb = _display_sigma_b(ds)
    rows = [(a, w) for a in ds.activation.values for w in ds.weights.values]
    ncol = 3 if "grad_sq" in ds else 2
    fig, axes = plt.subplots(len(rows), ncol, figsize=(4.3 * ncol + 1.6, 3.3 * len(rows)),
                             squeeze=False)  # fmt: skip
    layers = ds.layer.values
    cmap = plt.get_cmap("plasma")
    sws = ds.sigma_w.values
    every = max(1, len(layers) // 25)
    for r, (act, w) in enumerate(rows):
        sub = ds.sel(activation=act, weights=w, sigma_b=sb)
        crit = theory.critical_scale(str(act), sb)
        for k, sw in enumerate(sws):
            colour = cmap(0.88 * k / max(len(sws) - 1, 1))
            one = sub.sel(sigma_w=sw)
            q_th, c_th = _theory_q_c(ds, str(act), float(sw), sb)
            curves = [(one.q.isel(input=0).values, q_th), (one.c.values, c_th)]
            if ncol == 3:
                g = one.grad_sq.values / one.grad_sq.isel(layer=-1).values[:, None]
                curves.append(
                    (g, theory.gradient_growth(str(act), float(sw) ** 2, sb**2, len(layers)))
                )
            for ax, (emp, th) in zip(axes[r], curves):
                lo, med, hi = np.nanquantile(emp, [0.1, 0.5, 0.9], axis=0)
                ax.fill_between(layers, lo, hi, color=colour, alpha=0.15, lw=0)
                ax.plot(layers[::every], med[::every], "o", ms=2.5, color=colour)
                tag = " (critical)" if abs(sw - crit) < 0.02 * crit else ""
                ax.plot(layers, th, "-", lw=2.2 if tag else 1, color=colour,
                        label=f"σ_w = {sw:.3g}{tag}")  # fmt: skip
        titles = ["q^l: pre-activation variance", "c^l: correlation of the two inputs",
                  "|δ^l|² / |δ^L|²: gradient going back"]  # fmt: skip
        for c, ax in enumerate(axes[r]):
            ax.set_title(f"{act}, {w} weights: {titles[c]}", fontsize=8)
            ax.set_xlabel("layer l")
            if c != 1:
                ax.set_yscale("log")
        axes[r, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5),
                           title=f"critical σ_w = {crit:.3g}", title_fontsize=6)  # fmt: skip
    fig.suptitle(f"{ds.attrs['name']}: random nets of width {_spec(ds)['probe']['width']}, "
                 f"σ_b = {sb:.3g}, {ds.sizes['seed']} seeds — measured (dots = median, band = "
                 "10–90%) vs mean-field theory (lines)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def _chi1_measured(ds: xr.Dataset) -> xr.DataArray:
    """Per-layer growth of the squared gradient norm over the whole net: the geometric mean of
    ``|δ^l|²/|δ^{l+1}|²``, median over seeds."""
    g = ds.grad_sq
    ratio = np.log(g.isel(layer=0)) - np.log(g.isel(layer=-1))
    return np.exp(_med(ratio) / (ds.sizes["layer"] - 1))


@figure("signal_phase")
def signal_phase(ds: xr.Dataset) -> plt.Figure:
    """Measured per-layer gradient growth χ₁ over the (σ_w, σ_b) grid, one panel per activation,
    with theory's χ₁ in each cell and the critical line χ₁ = 1 drawn on top."""
    chi = _chi1_measured(ds).isel(weights=0)
    acts = list(ds.activation.values)
    fig, axes = plt.subplots(1, len(acts), figsize=(5.6 * len(acts), 4.2), squeeze=False)
    sws, sbs = ds.sigma_w.values, ds.sigma_b.values
    for ax, act in zip(axes[0], acts):
        m = chi.sel(activation=act).transpose("sigma_b", "sigma_w").values
        im = ax.pcolormesh(np.arange(len(sws)), np.arange(len(sbs)), np.log(m), cmap="RdBu_r",
                           vmin=-1, vmax=1, shading="nearest")  # fmt: skip
        for i, sb in enumerate(sbs):
            for j, sw in enumerate(sws):
                th = theory.chi1(str(act), float(sw) ** 2, float(sb) ** 2)
                ax.text(j, i, f"{m[i, j]:.2f}\n({th:.2f})", ha="center", va="center", fontsize=6,
                        color="w" if abs(np.log(m[i, j])) > 0.6 else "k")  # fmt: skip
        fine = np.linspace(sbs.min(), sbs.max(), 25)
        crit = np.array([theory.critical_scale(str(act), b) for b in fine])
        ax.plot(np.interp(crit, sws, np.arange(len(sws)), left=np.nan, right=np.nan),
                np.interp(fine, sbs, np.arange(len(sbs))), "--", color="0.2", lw=1.2,
                alpha=0.7, label="theory: critical line χ₁ = 1")  # fmt: skip
        ax.set_xticks(np.arange(len(sws)), [f"{s:.3g}" for s in sws], fontsize=7)
        ax.set_yticks(np.arange(len(sbs)), [f"{s:.3g}" for s in sbs], fontsize=7)
        ax.set_xlabel("σ_w")
        ax.set_ylabel("σ_b")
        ax.set_title(f"{act}: measured χ₁ (theory in brackets)", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        fig.colorbar(im, ax=ax, label="log χ₁ (blue: gradients vanish, red: explode)")
    fig.suptitle(f"{ds.attrs['name']}: per-layer growth of |δ^l|² over {ds.sizes['layer']} layers "
                 f"({ds.weights.values[0]} weights, median of {ds.sizes['seed']} seeds)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


# -- probe sweeps: Jacobian spectra -----------------------------------------------------------------
@figure("jacobian_spectrum")
def jacobian_spectrum(ds: xr.Dataset) -> plt.Figure:
    """Mean and variance of the squared singular values λ of the input-output Jacobian vs depth
    (dots, mean over seeds) beside free-probability theory (lines), and the distribution of λ at
    the largest depth (Gaussian: solid, orthogonal: dashed)."""
    sb = float(ds.attrs.get("sigma_b", 0.0))
    fig, (a_mean, a_var, a_hist) = plt.subplots(1, 3, figsize=(16, 4.4))
    depths = ds.depth.values
    dmax = int(depths[(len(depths) - 1) // 2])  # the middle depth: deeper ones underflow float32
    palette = distinct_colors(ds.sizes["activation"])  # one colour per activation, every panel
    for i, act in enumerate(ds.activation.values):
        sw = float(ds.sigma_w_used.sel(activation=act))
        colour = palette[i]
        for w in ds.weights.values:
            style = "-" if w == "gaussian" else "--"
            sub = ds.sel(activation=act, weights=w)
            th = np.array([theory.jacobian_moments(str(act), sw**2, sb**2, int(d), str(w))
                           for d in depths])  # fmt: skip
            label = f"{act} (σ_w = {sw:.3g}), {w}"
            for ax, var, k in ((a_mean, "sv_mean", 0), (a_var, "sv_var", 1)):
                v = sub[var].mean("seed").values
                ax.plot(
                    depths,
                    np.maximum(v, 1e-9),
                    "o",
                    color=colour,
                    mfc="none" if w != "gaussian" else colour,
                )
                ax.plot(depths, np.maximum(th[:, k], 1e-9), style, color=colour, lw=1, label=label)
            lam = sub.sq_sv.sel(depth=dmax).values.ravel()
            lam = np.sort(np.log10(np.maximum(lam, 1e-12)))
            a_hist.step(lam, np.arange(1, len(lam) + 1) / len(lam), where="post", color=colour,
                        ls=style, label=label)  # fmt: skip
    for ax, what in ((a_mean, "mean of λ (theory χ₁^L; isometry: 1)"),
                     (a_var, "variance of λ (isometry: 0)")):  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log" if ax is a_var else "linear")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlabel("depth L")
        ax.set_title(f"{what}: dots measured, lines theory", fontsize=9)
    a_var.text(0.02, 0.02, "values < 1e-9 drawn at 1e-9", transform=a_var.transAxes, fontsize=7)
    a_hist.set_xlabel(f"log10 λ at depth {dmax} (< 10⁻¹², below float32's reach: at −12)")
    a_hist.set_ylabel("fraction of λ ≤ x (pooled over seeds)")
    a_hist.set_title("distribution of λ (isometry: a step at 0)", fontsize=9)
    a_var.legend(fontsize=7)
    fig.suptitle(f"{ds.attrs['name']}: input-output Jacobian at init, width "
                 f"{ds.sizes['sv']}, σ_b = {sb:.3g}, {ds.sizes['seed']} seeds"
                 + ("; every activation at its critical σ_w"
                    if _spec(ds)["probe"]["sigma_w"] == "critical" else ""), fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


__all__ = ["TABLES", "TRAINED", "jacobian_spectrum", "magic_numbers", "magic_numbers_table",
           "phase_diagram", "phase_diagram_table", "signal_phase", "signal_propagation"]  # fmt: skip
