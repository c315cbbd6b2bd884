"""The plain-sweep figures and the helpers every figure family uses.

Conventions: the x axis (or the line colour) is the first non-seed axis, the hue the second;
any further axes are pooled with the seeds. Bands are the 10–90% range over pooled runs, lines
the median; rates carry 95% Wilson intervals. Nothing here selects a matplotlib backend: a
notebook keeps its inline backend, and the command line picks Agg itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxinit.stats import wilson


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
"""Registry ``figure name -> fn(ds) -> Figure``; the families add theirs when imported, so use
:data:`jaxinit.plots.FIGURES`, which imports them all (its names: :data:`.names.FIGURE_NAMES`)."""

__all__ = ["FIGURES", "final_loss", "loss_curves", "success_rate", "sweep_dims", "wilson"]
