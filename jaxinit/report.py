"""``jaxinit report``: a sweep's figures as PNG files and a short text summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from jaxinit.plots import DEFAULT_FIGURES, FIGURES, sweep_dims


def summarize(ds: xr.Dataset, max_rows: int = 16) -> str:
    """A plain-text table: per value of the first non-seed axis, runs done, median/best final loss,
    success rate and diverged count. A long axis (a map's grid) shows ``max_rows`` evenly spaced
    values."""
    dims = sweep_dims(ds)
    head = f"{ds.attrs['name']}: {ds.attrs['n_done']}/{ds.attrs['n_runs']} runs"
    if ds.attrs.get("partial"):
        head += " (partial)"
    rows = [
        head,
        f"{'cell':<28} {'runs':>6} {'median loss':>12} {'best loss':>10} {'success':>8} {'diverged':>8}",
    ]
    key = dims[0] if dims else None
    values = list(ds[key].values) if key else [None]
    if len(values) > max_rows:
        step = -(-len(values) // max_rows)
        rows.append(f"(every {step}th of {len(values)} values of {key})")
        values = values[::step]
    for v in values:
        sub = ds.sel({key: v}) if key else ds
        done = sub.done.values
        loss = sub.final_loss.values[done]
        finite = loss[np.isfinite(loss)]
        med = f"{np.median(finite):.3g}" if finite.size else "-"
        best = f"{finite.min():.3g}" if finite.size else "-"
        rate = f"{sub.success.values[done].mean():.2f}" if done.any() else "-"
        label = f"{json.loads(ds.attrs['axes'])[key]}={v}" if key else "all"
        rows.append(
            f"{label:<28} {int(done.sum()):>6} {med:>12} {best:>10} {rate:>8} {int(sub.diverged.values[done].sum()):>8}"
        )
    return "\n".join(rows)


def write_report(ds: xr.Dataset, out: str | Path) -> list[Path]:
    """Draw the spec's ``report`` figures (or the defaults) into ``out`` and write ``summary.txt``."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = json.loads(ds.attrs["spec"]).get("report") or list(DEFAULT_FIGURES)
    paths = []
    for name in names:
        fig = FIGURES[name](ds)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    (out / "summary.txt").write_text(summarize(ds) + "\n")
    return [*paths, out / "summary.txt"]
