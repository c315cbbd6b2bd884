"""``jaxinit report``: a sweep's figures as PNG files, a text summary, and ``index.html``, one
self-contained page with all of it (:mod:`jaxinit.report_html`).

A report writes every figure and table it can: one that fails (an edge case of the data that a
figure does not handle) is recorded as a :class:`Failure`, its traceback goes to
``errors.log`` in the report folder, and the others are still written (:func:`draw_report`).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots import DEFAULT_FIGURES, FIGURES, sweep_dims
from jaxinit.plots.core import value_text
from jaxinit.plots.names import analyses_of


def summarize(ds: xr.Dataset, max_rows: int = 16) -> str:
    """A plain-text table: per value of the first non-seed axis, runs done, median/best final loss,
    success rate and diverged count. A long axis (a map's grid) shows ``max_rows`` evenly spaced
    values. A probe sweep (random nets at init, :mod:`jaxinit.engine.probes`) gets its own table."""
    from jaxinit.engine import probes

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


class Failure(NamedTuple):
    """A figure or table that could not be drawn."""

    name: str  # "basin_sizes", or a table: "table basins", "summary"
    cause: str  # one line: "ValueError: 'yerr' must not contain negative values"
    trace: str  # the full traceback (what errors.log holds)


class Report(NamedTuple):
    """What :func:`draw_report` wrote, and what it could not."""

    paths: list[Path]  # the files written: PNGs, table CSV/TXT, summary.txt, index.html
    failed: list[Failure]  # empty when everything was drawn
    log: Path | None  # errors.log with the failures' tracebacks (None: nothing failed)


ERRORS_LOG = "errors.log"
"""The file in the report folder that holds the tracebacks of the figures that failed."""


def _failure(name: str, err: BaseException) -> Failure:
    text = str(err).strip().splitlines()
    cause = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return Failure(name, cause if len(cause) <= 200 else cause[:199] + "…", traceback.format_exc())


def _attempt(name: str, fn: Callable[[], Any], failed: list[Failure] | None) -> Any:
    """``fn()``; with a ``failed`` list, an exception is recorded there (None returned) instead
    of raised."""
    if failed is None:
        return fn()
    try:
        return fn()
    except Exception as err:  # any figure bug: recorded, the report goes on
        failed.append(_failure(name, err))
        return None


def report(source: xr.Dataset | str | Path, out: str | Path | None = None) -> Report:
    """``jaxinit.report``: what ``jaxinit report DIR`` draws, from Python. ``source`` is a sweep
    directory (the report goes to ``DIR/report`` unless ``out`` is given) or a loaded Dataset
    (``out`` required). Returns the :class:`Report`; a figure that failed is named in
    :attr:`Report.failed`, never raised."""
    if isinstance(source, xr.Dataset):
        if out is None:
            raise ValueError("jaxinit.report(ds): give out=, the folder to write the report into")
        return draw_report(source, out)
    from jaxinit.engine.results import load

    out = Path(source) / "report" if out is None else out
    return draw_report(load(source), out, sweep_dir=source)


def draw_report(ds: xr.Dataset, out: str | Path, sweep_dir: str | Path | None = None) -> Report:
    """Draw the spec's ``report`` figures (or the defaults) into ``out``, each figure's table as
    CSV and text, ``summary.txt``, and ``index.html`` with all of it on one page
    (:mod:`jaxinit.report_html`; its run facts say when the chunks were written when the sweep
    directory is known: ``sweep_dir``, or ``out``'s parent when that holds this sweep). A figure
    or table that raises is left out and recorded (:attr:`Report.failed`, tracebacks in
    ``out/errors.log``) and the page says so; everything else is written."""
    import matplotlib.pyplot as plt

    from jaxinit.engine.store import atomic_write, claim_outputs, record_outputs
    from jaxinit.plots import TABLES, NothingToDraw, note_figure
    from jaxinit.report_html import HTML_FILE

    out = Path(out)
    names = from_dataset(ds).data.get("report") or list(DEFAULT_FIGURES)
    files = [f"{n}.png" for n in names] + [
        f"{n}.{x}" for n in names if n in TABLES for x in ("csv", "txt")
    ]
    # Never over a file jaxinit did not write; errors.log, when claimed, is ours to replace.
    claim_outputs(out, [*files, "summary.txt", ERRORS_LOG, HTML_FILE])
    (out / ERRORS_LOG).unlink(missing_ok=True)  # a log of an earlier report is stale
    paths: list[Path] = []
    failed: list[Failure] = []

    def draw(name: str) -> Path:
        before = set(plt.get_fignums())
        try:
            try:
                fig = FIGURES[name](ds)
            except NothingToDraw as why:  # the data has nothing for it: the figure says so
                fig = note_figure(name, ds, str(why))
            fig.savefig(out / f"{name}.png", dpi=110)
        finally:  # also a half-drawn figure: no figure left open
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
        return out / f"{name}.png"

    def table(name: str) -> list[Path]:
        try:
            tab = TABLES[name](ds)
        except NothingToDraw:  # its figure says why (a note); there are no numbers to write
            return []
        tab.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.txt").write_text(tab.to_string(index=False) + "\n")
        return [out / f"{name}.csv", out / f"{name}.txt"]

    drawn: dict[str, Path] = {}
    for name in names:
        path = _attempt(name, lambda name=name: draw(name), failed)
        paths += [path] if path else []
        drawn.update({name: path} if path else {})
    for name in names:  # a figure's numbers, as CSV and as a text table (e.g. magic_numbers)
        if name in TABLES:
            paths += _attempt(f"table {name}", lambda name=name: table(name), failed) or []
    head, tables = _summary_parts(ds, names, failed)
    page = _attempt(
        HTML_FILE, lambda: _page(ds, out, names, drawn, head, tables, failed, sweep_dir), failed
    )
    (out / "summary.txt").write_text(_summary_text(head, tables, failed) + "\n")
    paths.append(out / "summary.txt")
    if page is not None:  # written whole or not at all: a browser never sees half a page
        atomic_write(out / HTML_FILE, page.encode("utf-8"))
        paths.append(out / HTML_FILE)
    else:  # an earlier report's page (ours: claimed above) would show other results
        (out / HTML_FILE).unlink(missing_ok=True)
    log = None
    if failed:
        log = out / ERRORS_LOG
        log.write_text("".join(f"== {f.name}: {f.cause}\n{f.trace}\n" for f in failed))
    record_outputs(out, [*paths, *([log] if log else [])])
    return Report(paths, failed, log)


def _page(
    ds: xr.Dataset,
    out: Path,
    names: list[str],
    drawn: dict[str, Path],
    summary: str,
    tables: list[tuple[str, pd.DataFrame]],
    failed: list[Failure],
    sweep_dir: str | Path | None,
) -> str:
    """The text of ``index.html`` (:func:`jaxinit.report_html.render_page`) for what
    :func:`draw_report` drew: the PNGs in ``drawn``, a note for each figure that failed."""
    from jaxinit.report_html import Missing, render_page, run_facts

    if sweep_dir is None and (out.parent / "spec.json").is_file():
        sweep_dir = out.parent  # DIR/report: its chunk times, if DIR holds this sweep
    pngs = {n: p.read_bytes() for n, p in drawn.items() if p.is_file()}
    missing = [Missing(f.name, f.cause) for f in failed]
    facts = run_facts(ds, sweep_dir)
    return render_page(ds, names, pngs, summary, tables, missing, facts, from_dataset(ds).data)


def write_report(ds: xr.Dataset, out: str | Path) -> list[Path]:
    """:func:`draw_report`, returning the files written; each figure that failed is a warning
    (one line: the figure and the cause; the traceback is in ``out/errors.log``)."""
    import warnings

    rep = draw_report(ds, out)
    for f in rep.failed:
        warnings.warn(f"{f.name} was not drawn: {f.cause} (traceback in {rep.log})", stacklevel=2)
    return rep.paths


# -- every analysis table of a sweep, for summary.txt --------------------------------------------
def curvature_kinds(
    ds: xr.Dataset, grad_tol: float | None = None, max_runs: int = 256
) -> pd.DataFrame:
    """Per static group, how many endpoints are minima, saddles, plateaus … (:func:`jaxinit.
    curvature.classify`: float64 Hessian, drift check) over at most ``max_runs`` evenly spaced
    runs; ``grad_tol`` defaults to the spec's ``[basins] grad_tol``."""
    from jaxinit.analysis import basins
    from jaxinit.analysis.curvature import KINDS

    rows = []
    for g in basins.groups(ds):
        n = len(g.run_ids)
        pick = np.unique(np.linspace(0, n - 1, min(n, max_runs)).round().astype(int))
        kinds = np.bincount(basins.endpoint_kinds(ds, g, pick, grad_tol), minlength=len(KINDS))
        rows.append({"group": basins.group_label(ds, g), "classified": len(pick),
                     **dict(zip(KINDS, kinds.tolist()))})  # fmt: skip
    return pd.DataFrame(rows)


def _basin_tables(ds: xr.Dataset, wanted: frozenset[str]) -> list[tuple[str, pd.DataFrame]]:
    """Basins, runs left out of them, basin counts vs ``f_tol``, barriers and restarts."""
    from jaxinit.analysis import basins

    out: list[tuple[str, pd.DataFrame]] = []
    b = basins.find_basins(ds, kinds=True)
    cols = [
        "label",
        "basin",
        "kind",
        "kind_votes",
        "size",
        "fraction",
        "ci_lo",
        "ci_hi",
        "mean_loss",
        "min_loss",
        "is_global",
    ]
    out.append((f"Basins of the converged runs, per group (kind: what the basin's representative "
                f"runs end at, jaxinit.analysis.curvature: a saddle or plateau is not a minimum; fraction "
                f"of the group's clustered runs, 95% Wilson interval; global: mean loss within {b.config.loss_tol:g} of the "
                f"group's lowest; same function: RMS output distance < f_tol = {b.config.f_tol:g})",
                b.table[[c for c in cols if c in b.table]]))  # fmt: skip
    out.append(("Runs not in a basin, per group (unconverged: |∇L| ≥ grad_tol above the lowest "
                "loss)", b.excluded.drop(columns="group")))  # fmt: skip
    sens = basins.f_tol_sensitivity(ds, b.config)
    out.append(("Number of basins vs the clustering tolerance f_tol (a count that moves with "
                "f_tol is a property of the tolerance, not of the landscape)",
                sens.pivot(index="label", columns="f_tol", values="basins").reset_index()))  # fmt: skip
    if "barriers" in wanted:
        for gi, table in list(b.table.groupby("group", sort=True))[:4]:
            ids, mat = basins.barrier_matrix(b, gi)
            star = {int(r.basin): "*" if r.is_global else "" for r in table.itertuples()}
            keys = [f"{i}{star[int(i)]}" for i in ids]
            out.append((f"Loss barriers between basins (* global; diagonal: two runs of the "
                        f"same basin), {table.label.iloc[0]}",
                        pd.DataFrame(mat, index=keys, columns=keys).reset_index(names="basin")))  # fmt: skip
    if "restarts" in wanted:
        out.append(("Random restarts: P(a run ends in a global basin), best of k, restarts "
                    "needed for 99% (k_needed, with the interval that p's implies)",
                    basins.restart_stats(ds, b)))  # fmt: skip
    if b.notes:
        out.append(("Notes of the basin analysis", pd.DataFrame({"note": b.notes})))
    return out


def _optima_tables(ds: xr.Dataset) -> list[tuple[str, pd.DataFrame]]:
    """k-means / EM restarts (:mod:`jaxinit.analysis.restarts`): distinct optima and best of r."""
    from jaxinit.analysis import restarts

    opt = restarts.find_optima(ds)
    return [("Restarts per cell: distinct optima of the converged runs (modulo relabelling), "
             "P(a run reaches the global optimum) with its 95% Wilson interval, the global "
             "loss and the loss reached from the generating partition (ref_loss)", opt.summary),
            ("Distinct optima per cell (fraction of the cell's runs; distance_to_global in "
             "units of the data's spread)", opt.table),
            ("Best of r restarts: measured on disjoint blocks of r seeds (emp, Wilson "
             "interval) and 1 - (1 - p)^r (formula)", restarts.best_of_k(ds, opt))]  # fmt: skip


def _threshold_tables(ds: xr.Dataset, names: list[str]) -> list[tuple[str, pd.DataFrame]]:
    from jaxinit import plots

    out = [("Time to threshold: median steps (inf: fewer than half the runs get there) and the "
            "fraction that gets there", plots.time_to_threshold_table(ds))]  # fmt: skip
    if "magic_numbers" not in getattr(plots, "TABLES", {}):
        out.append(("Best init scale and the band within 2× of its median time (scales where "
                    "≥ 90% reach the threshold)", plots.best_scale_bands(ds)))  # fmt: skip
    return out


def analysis_tables(
    ds: xr.Dataset, names: list[str] | None = None, failed: list[Failure] | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """``(title, table)`` for every analysis table behind the sweep's figures (``names``, by
    default the spec's ``report`` list): basins (with each basin's endpoint kind), runs left out
    of them, basin counts vs ``f_tol``, barriers, restarts and endpoint kinds for basin figures;
    spurious rates; time to threshold and the best scale bands; and every figure's own table in
    :data:`jaxinit.plots.TABLES`. With a ``failed`` list, a part that raises is recorded there
    (:class:`Failure`) and the other tables are still returned."""
    from jaxinit import plots

    stored = from_dataset(ds)
    names = list(names if names is not None else (stored.data.get("report") or DEFAULT_FIGURES))
    tables = getattr(plots, "TABLES", {})
    if ds.attrs.get("kind") is not None:  # a probe sweep: random nets at init, no training
        parts = [(f"table {n}", lambda n=n: _figure_table(ds, n)) for n in names if n in tables]
        return [t for name, fn in parts for t in (_attempt(name, fn, failed) or [])]
    with_params = any(k.startswith("params/") for k in ds.data_vars)
    wanted = analyses_of(names)  # what the figures registered (jaxinit.plots.names.ANALYSES)
    parts: list[tuple[str, Callable[[], list]]] = []
    if with_params and "basins" in wanted:
        parts.append(("basin tables", lambda: _basin_tables(ds, wanted)))
    if stored.spec.algorithm.name != "gradient" and with_params:
        parts.append(("restart tables", lambda: _optima_tables(ds)))
    if "spurious" in wanted:
        from jaxinit.analysis.basins import spurious_rates

        parts.append(("spurious-rate table", lambda: [(
            "Spurious minima: converged runs with loss > 1e-3 (rate over all runs, 95% Wilson "
            "interval)", spurious_rates(ds))]))  # fmt: skip
    if with_params and "endpoint_kinds" in wanted:
        parts.append(("endpoint-kind table", lambda: [(
            "Endpoint kinds (float64 Hessian and drift check, jaxinit.analysis.curvature; at most 256 "
            "evenly spaced runs per group)", curvature_kinds(ds))]))  # fmt: skip
    if "time_to_threshold" in wanted and "time_to_threshold" in ds:
        parts.append(("time-to-threshold tables", lambda: _threshold_tables(ds, names)))
    for n in names:
        if n in tables:
            parts.append((f"table {n}", lambda n=n: _figure_table(ds, n)))
    return [t for name, fn in parts for t in (_attempt(name, fn, failed) or [])]


def _figure_table(ds: xr.Dataset, name: str) -> list[tuple[str, pd.DataFrame]]:
    """Figure ``name``'s own table, titled; none when the figure has nothing to draw (its note
    says why)."""
    from jaxinit.plots import TABLES, NothingToDraw

    try:
        return [(f"Table of the {name} figure", TABLES[name](ds))]
    except NothingToDraw:
        return []


def _text_table(df: pd.DataFrame) -> str:
    with pd.option_context(
        "display.width", 200, "display.max_columns", 40, "display.max_rows", 400
    ):
        return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def full_summary(
    ds: xr.Dataset, names: list[str] | None = None, failed: list[Failure] | None = None
) -> str:
    """:func:`summarize` followed by every table of :func:`analysis_tables`: what
    ``summary.txt`` holds. With a ``failed`` list, a part that raises is recorded there and
    named at the end of the text (with any failures already in it); the rest is still
    written."""
    return _summary_text(*_summary_parts(ds, names, failed), failed)


def _summary_parts(
    ds: xr.Dataset, names: list[str] | None, failed: list[Failure] | None
) -> tuple[str, list[tuple[str, pd.DataFrame]]]:
    """:func:`summarize`'s text and :func:`analysis_tables`, each computed once (summary.txt
    and index.html show the same)."""
    head = _attempt("summary", lambda: summarize(ds), failed)
    head = head if head is not None else f"{ds.attrs.get('name', 'sweep')}: (no summary)"
    return head, analysis_tables(ds, names, failed)


def _summary_text(
    head: str, tables: list[tuple[str, pd.DataFrame]], failed: list[Failure] | None
) -> str:
    parts = [head]
    for title, table in tables:
        parts.append(f"{title}\n{_text_table(table)}")
    if failed:  # the figures that failed before, too
        parts.append("Not written (tracebacks in errors.log):\n" + "\n".join(
            f"  {f.name}: {f.cause}" for f in failed))  # fmt: skip
    return "\n\n".join(parts)
