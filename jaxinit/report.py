"""``jaxinit report``: a sweep's figures as PNG files and a short text summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.plots import DEFAULT_FIGURES, FIGURES, sweep_dims
from jaxinit.plots.core import value_text


def summarize(ds: xr.Dataset, max_rows: int = 16) -> str:
    """A plain-text table: per value of the first non-seed axis, runs done, median/best final loss,
    success rate and diverged count. A long axis (a map's grid) shows ``max_rows`` evenly spaced
    values. A probe sweep (random nets at init, :mod:`jaxinit.probes`) gets its own table."""
    from jaxinit import probes

    if ds.attrs.get("kind") in probes.KINDS:
        return probes.summarize(ds)
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
        rows.append(f"(one in {step} of the {len(values)} values of {key})")
        values = values[::step]
    for v in values:
        sub = ds.sel({key: v}) if key else ds
        done = sub.done.values
        loss = sub.final_loss.values[done]
        finite = loss[np.isfinite(loss)]
        med = f"{np.median(finite):.3g}" if finite.size else "-"
        best = f"{finite.min():.3g}" if finite.size else "-"
        rate = f"{sub.success.values[done].mean():.2f}" if done.any() else "-"
        shown = value_text(key, v) if key == "model_widths" else v  # "32-32-…-32" as "16×32"
        label = f"{json.loads(ds.attrs['axes'])[key]}={shown}" if key else "all"
        rows.append(
            f"{label:<28} {int(done.sum()):>6} {med:>12} {best:>10} {rate:>8} {int(sub.diverged.values[done].sum()):>8}"
        )
    return "\n".join(rows)


def write_report(ds: xr.Dataset, out: str | Path) -> list[Path]:
    """Draw the spec's ``report`` figures (or the defaults) into ``out`` and write ``summary.txt``."""
    import matplotlib.pyplot as plt

    from jaxinit.plots import TABLES
    from jaxinit.store import claim_outputs, record_outputs

    out = Path(out)
    names = json.loads(ds.attrs["spec"]).get("report") or list(DEFAULT_FIGURES)
    files = [f"{n}.png" for n in names] + [
        f"{n}.{x}" for n in names if n in TABLES for x in ("csv", "txt")
    ]
    claim_outputs(out, [*files, "summary.txt"])  # never over a file jaxinit did not write
    paths = []
    for name in names:
        fig = FIGURES[name](ds)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    for name in names:  # a figure's numbers, as CSV and as a text table (e.g. magic_numbers)
        if name in TABLES:
            tab = TABLES[name](ds)
            tab.to_csv(out / f"{name}.csv", index=False)
            (out / f"{name}.txt").write_text(tab.to_string(index=False) + "\n")
            paths += [out / f"{name}.csv", out / f"{name}.txt"]
    (out / "summary.txt").write_text(full_summary(ds, names) + "\n")
    record_outputs(out, [*paths, out / "summary.txt"])
    return [*paths, out / "summary.txt"]


# -- every analysis table of a sweep, for summary.txt --------------------------------------------
BASIN_FIGURES = frozenset(
    {"basin_sizes", "basin_loss_hist", "barrier_matrix", "restarts", "basin_map"}
)
"""Figures that cluster endpoints into basins: their spec gets the basin tables."""


def curvature_kinds(
    ds: xr.Dataset, grad_tol: float | None = None, max_runs: int = 256
) -> pd.DataFrame:
    """Per static group, how many endpoints are minima, saddles, plateaus … (:func:`jaxinit.
    curvature.classify`: float64 Hessian, drift check) over at most ``max_runs`` evenly spaced
    runs; ``grad_tol`` defaults to the spec's ``[basins] grad_tol``."""
    import jax

    from jaxinit import basins
    from jaxinit.curvature import KINDS

    grad_tol = grad_tol or basins.BasinConfig.from_spec(basins.spec_of(ds)).grad_tol
    diverged = basins.flat_runs(ds, "diverged") | ~basins.flat_runs(ds, "done")
    rows = []
    for g in basins.groups(ds):
        n = len(g.run_ids)
        pick = np.unique(np.linspace(0, n - 1, min(n, max_runs)).round().astype(int))
        sub = g._replace(
            params_R=jax.tree.map(lambda a, pick=pick: a[pick], g.params_R), run_ids=g.run_ids[pick]
        )
        ends = basins.classify_group(sub, grad_tol=grad_tol, diverged_R=diverged[sub.run_ids])
        kinds = np.bincount(ends.kind_R, minlength=len(KINDS))
        rows.append({"group": basins.group_label(ds, g), "classified": len(pick),
                     **dict(zip(KINDS, kinds.tolist()))})  # fmt: skip
    return pd.DataFrame(rows)


def analysis_tables(
    ds: xr.Dataset, names: list[str] | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """``(title, table)`` for every analysis table behind the sweep's figures (``names``, by
    default the spec's ``report`` list): basins, runs left out of them, basin counts vs ``f_tol``,
    barriers, restarts and endpoint kinds for basin figures; spurious rates; time to threshold
    and the best scale bands; and every figure's own table in :data:`jaxinit.plots.TABLES`."""
    from jaxinit import plots

    spec = json.loads(ds.attrs["spec"])
    names = list(names if names is not None else (spec.get("report") or DEFAULT_FIGURES))
    out: list[tuple[str, pd.DataFrame]] = []
    tables = getattr(plots, "TABLES", {})
    if ds.attrs.get("kind") is not None:  # a probe sweep: random nets at init, no training
        return [(f"Table of the {n} figure", tables[n](ds)) for n in names if n in tables]
    if any(k.startswith("params/") for k in ds.data_vars) and BASIN_FIGURES & set(names):
        from jaxinit import basins

        b = basins.find_basins(ds)
        cols = [
            "label",
            "basin",
            "size",
            "fraction",
            "ci_lo",
            "ci_hi",
            "mean_loss",
            "min_loss",
            "is_global",
        ]
        out.append((f"Basins of the converged runs, per group (fraction of the group's clustered runs, "
                    f"95% Wilson interval; global: mean loss within {b.config.loss_tol:g} of the "
                    f"group's lowest; same function: RMS output distance < f_tol = {b.config.f_tol:g})",
                    b.table[[c for c in cols if c in b.table]]))  # fmt: skip
        out.append(("Runs not in a basin, per group (unconverged: |∇L| ≥ grad_tol above the lowest "
                    "loss)", b.excluded.drop(columns="group")))  # fmt: skip
        sens = basins.f_tol_sensitivity(ds, b.config)
        out.append(("Number of basins vs the clustering tolerance f_tol (a count that moves with "
                    "f_tol is a property of the tolerance, not of the landscape)",
                    sens.pivot(index="label", columns="f_tol", values="basins").reset_index()))  # fmt: skip
        if "barrier_matrix" in names:
            for gi, table in list(b.table.groupby("group", sort=True))[:4]:
                ids, mat = basins.barrier_matrix(b, gi)
                star = {int(r.basin): "*" if r.is_global else "" for r in table.itertuples()}
                keys = [f"{i}{star[int(i)]}" for i in ids]
                out.append((f"Loss barriers between basins (* global; diagonal: two runs of the "
                            f"same basin), {table.label.iloc[0]}",
                            pd.DataFrame(mat, index=keys, columns=keys).reset_index(names="basin")))  # fmt: skip
        if "restarts" in names:
            out.append(("Random restarts: P(a run ends in a global basin), best of k, restarts "
                        "needed for 99% (k_needed, with the interval that p's implies)",
                        basins.restart_stats(ds, b)))  # fmt: skip
        if b.notes:
            out.append(("Notes of the basin analysis", pd.DataFrame({"note": b.notes})))
    if spec.get("algorithm", {}).get("name", "gradient") != "gradient" and any(
        k.startswith("params/") for k in ds.data_vars
    ):  # k-means / EM restarts (jaxinit.restarts)
        from jaxinit import restarts

        opt = restarts.find_optima(ds)
        out.append(("Restarts per cell: distinct optima of the converged runs (modulo relabelling), "
                    "P(a run reaches the global optimum) with its 95% Wilson interval, the global "
                    "loss and the loss reached from the generating partition (ref_loss)",
                    opt.summary))  # fmt: skip
        out.append(("Distinct optima per cell (fraction of the cell's runs; distance_to_global in "
                    "units of the data's spread)", opt.table))  # fmt: skip
        out.append(("Best of r restarts: measured on disjoint blocks of r seeds (emp, Wilson "
                    "interval) and 1 - (1 - p)^r (formula)", restarts.best_of_k(ds, opt)))  # fmt: skip
    if "spurious_rate" in names:
        from jaxinit.basins import spurious_rates

        out.append(("Spurious minima: converged runs with loss > 1e-3 (rate over all runs, 95% "
                    "Wilson interval)", spurious_rates(ds)))  # fmt: skip
    if any(k.startswith("params/") for k in ds.data_vars) and (
        BASIN_FIGURES | {"spurious_rate"}
    ) & set(names):
        out.append(("Endpoint kinds (float64 Hessian and drift check, jaxinit.curvature; at most "
                    "256 evenly spaced runs per group)", curvature_kinds(ds)))  # fmt: skip
    if {"time_to_threshold", "scale_sweep", "magic_numbers"} & set(
        names
    ) and "time_to_threshold" in ds:
        out.append(("Time to threshold: median steps (inf: fewer than half the runs get there) "
                    "and the fraction that gets there", plots.time_to_threshold_table(ds)))  # fmt: skip
        if "magic_numbers" not in tables:
            out.append(("Best init scale and the band within 2× of its median time (scales where "
                        "≥ 90% reach the threshold)", plots.best_scale_bands(ds)))  # fmt: skip
    for name in names:
        if name in tables:
            out.append((f"Table of the {name} figure", tables[name](ds)))
    return out


def _text_table(df: pd.DataFrame) -> str:
    with pd.option_context(
        "display.width", 200, "display.max_columns", 40, "display.max_rows", 400
    ):
        return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def full_summary(ds: xr.Dataset, names: list[str] | None = None) -> str:
    """:func:`summarize` followed by every table of :func:`analysis_tables`: what
    ``summary.txt`` holds."""
    parts = [summarize(ds)]
    for title, table in analysis_tables(ds, names):
        parts.append(f"{title}\n{_text_table(table)}")
    return "\n\n".join(parts)
