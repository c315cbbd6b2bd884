"""``report/index.html``: a sweep's report as one self-contained web page.

Every figure (its PNG inlined as a ``data:`` URI) under the figure guide's paragraph for it
(:data:`jaxinit.plots.names.GUIDE`), every table of ``summary.txt`` as an HTML table (long ones
cut, with a count of the rows left out), the run counts, when the chunks were written, and the
spec. The page loads nothing: no script, no font, no style sheet or image from elsewhere, so it
opens offline and can be mailed as one file. Every text that comes from a spec or a Dataset is
escaped (:func:`html.escape`): names and values are the user's.

:func:`render_page` builds the text from what the report drew (:func:`jaxinit.reports.draw_report`
calls it); :func:`run_facts` reads the counts from the Dataset and the chunk times from the sweep
directory's manifests.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.engine.rebuild import from_dataset
from jaxinit.plots.names import figure_text

HTML_FILE = "index.html"
"""The page's name in the report folder."""

MAX_ROWS = 40
"""Rows of a table shown on the page; a longer one shows this many and counts the rest (all of
them are in ``summary.txt`` and the figure's CSV)."""


class Fact(NamedTuple):
    """One line of the page's run facts: ``label: value``."""

    label: str
    value: str


class Missing(NamedTuple):
    """A figure that is not on the page, and why (one line)."""

    name: str
    cause: str


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


def _span(s: float) -> str:
    if s < 1:
        return "under a second"
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def chunk_times(sweep_dir: str | Path, ds: xr.Dataset) -> list[float]:
    """When each chunk of the sweep directory was written (its writer's clock, as the manifests
    record it; chunks of versions that recorded no time are left out), sorted. Empty when the
    directory holds another sweep than ``ds`` (another spec or identity fingerprint) or cannot
    be read."""
    from jaxinit.engine.store import StoreError, read_manifests, read_spec, stamp_of

    try:
        spec, meta = read_spec(sweep_dir)
        same = json.loads(json.dumps(spec.to_dict())) == from_dataset(ds).data
        if not same or meta.get("fingerprint") != ds.attrs.get("fingerprint"):
            return []
        entries = read_manifests(Path(sweep_dir), stamp=stamp_of(meta)).values()
    except (StoreError, OSError, KeyError, ValueError):
        return []
    times = [e.get("written") for e in entries]
    return sorted(
        float(t) for t in times if isinstance(t, (int, float)) and not isinstance(t, bool)
    )


def run_facts(ds: xr.Dataset, sweep_dir: str | Path | None = None) -> list[Fact]:
    """What the page says of the sweep: runs done (of the planned), diverged and successful runs,
    the axes and their sizes, when its chunks were written (from ``sweep_dir``'s manifests, when
    given; the store records when each chunk was written, not when the sweep started), the
    jaxinit version. Each count is left out when the Dataset lacks its variable."""
    a = ds.attrs
    facts = []
    if a.get("description"):
        facts.append(Fact("description", str(a["description"])))
    if "n_runs" in a:
        done = f"{int(a.get('n_done', 0)):,} of {int(a['n_runs']):,}"
        facts.append(Fact("runs done", done + (" (partial)" if a.get("partial") else "")))
    finished = ds["done"].values.astype(bool) if "done" in ds else None
    for var, label in (("diverged", "diverged"), ("success", "reached the success level")):
        if var in ds and finished is not None and ds[var].dims == ds["done"].dims:
            n = int(np.asarray(ds[var].values, bool)[finished].sum())
            facts.append(Fact(label, f"{n:,} of the {int(finished.sum()):,} finished runs"))
    try:
        axes = from_dataset(ds).axes
    except (KeyError, ValueError):  # no stored axes: a Dataset made by hand
        axes = {}
    sizes = [f"{path} × {ds.sizes[d]}" for d, path in axes.items() if d in ds.sizes]
    if sizes:
        facts.append(Fact("axes", ", ".join(sizes)))
    times = chunk_times(sweep_dir, ds) if sweep_dir is not None else []
    if len(times) == 1:
        facts.append(Fact("computed", f"one chunk, written at {_when(times[0])}"))
    elif times:
        facts.append(Fact("computed", f"{len(times):,} chunks written from {_when(times[0])} to "
                                      f"{_when(times[-1])} ({_span(times[-1] - times[0])} "
                                      "between the first and the last)"))  # fmt: skip
    if a.get("jaxinit_version"):
        facts.append(Fact("jaxinit", str(a["jaxinit_version"])))
    return facts


# -- HTML pieces ----------------------------------------------------------------------------------
def _inline(text: str) -> str:
    """Escaped ``text`` with its Markdown ``code`` spans as ``<code>`` (the guide's only markup)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _anchor(name: str) -> str:
    """An id for ``name`` (letters, digits, ``-`` and ``_`` kept; the rest as ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _cell(v: object) -> str:
    """A table cell: numbers right-aligned (floats to 4 significant digits), text left."""
    if isinstance(v, (float, np.floating)):
        return f"<td>{'NaN' if math.isnan(v) else f'{v:.4g}'}</td>"
    if isinstance(v, (int, np.integer, bool, np.bool_)):
        return f"<td>{v}</td>"
    return f'<td class="text">{html.escape(str(v))}</td>'


def spec_text(data: Mapping) -> str:
    """The stored spec as JSON, one line per top-level key (a section's fields on its line)."""
    items = [
        f"  {json.dumps(str(k))}: {json.dumps(v, ensure_ascii=False)}" for k, v in data.items()
    ]
    return "{\n" + ",\n".join(items) + "\n}"


def table_html(df: pd.DataFrame, max_rows: int = MAX_ROWS) -> str:
    """``df`` (its columns, without the index) as an escaped HTML table; beyond ``max_rows`` rows,
    the first ``max_rows`` and a last row counting the others."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.head(max_rows).itertuples(index=False):
        rows.append("<tr>" + "".join(_cell(v) for v in rec) + "</tr>")
    more = len(df) - max_rows
    if more > 0:
        rows.append(f'<tr class="more"><td colspan="{max(len(df.columns), 1)}">… {more:,} more '
                    f"row(s) of {len(df):,} (all of them: summary.txt)</td></tr>")  # fmt: skip
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")  # fmt: skip


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG from its header; None when ``data`` is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _figure_html(name: str, png: bytes | None, missing: str | None) -> str:
    text = figure_text(name)
    parts = [f'<section class="figure" id="fig-{_anchor(name)}">',
             f"<h3><code>{html.escape(name)}</code></h3>",
             f'<p class="question">{_inline(text.question)}</p>',
             f'<p class="about">{_inline(text.about)}</p>']  # fmt: skip
    size = png_size(png) if png is not None else None
    if png is not None and size is not None:
        w, h = size
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img src="data:image/png;base64,{data}" width="{w}" height="{h}" '
                     f'alt="{html.escape(name, quote=True)} figure">')  # fmt: skip
    else:
        why = missing or "its PNG was not written"
        parts.append(f'<p class="missing">Not drawn: {html.escape(why)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1.2em 1.5em 3em}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:2em;border-bottom:1px solid #ddd}
h3{margin:1.2em 0 .2em}h3 code{font-size:1em}h3.table{font-size:1em}code{font:13px ui-monospace,Menlo,Consolas,monospace;background:#eef;
padding:0 .2em;border-radius:3px}
pre{font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;background:#fff;border:1px solid #ddd;
padding:.6em;overflow-x:auto}pre.spec{white-space:pre-wrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:.8em 0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
nav a{margin-right:.8em;white-space:nowrap}
.figure{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:.4em 1em 1em;
margin:1em 0}
.question{font-style:italic;margin:.2em 0}.about{margin:.3em 0 .8em;color:#333}
img{max-width:100%;height:auto;display:block}
.missing,.failed{background:#fff3f0;border-left:4px solid #d33;padding:.5em .8em;margin:.8em 0}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:.4em 0 1.2em}
th,td{border:1px solid #ddd;padding:.15em .5em;text-align:right;white-space:nowrap}
td.text{text-align:left}th{background:#f0f0f4}tr.more td{text-align:left;font-style:italic;color:#555}
"""
"""The page's own style sheet (inline; nothing is loaded)."""


def render_page(
    ds: xr.Dataset,
    names: Sequence[str],
    pngs: Mapping[str, bytes],
    summary: str,
    tables: Sequence[tuple[str, pd.DataFrame]],
    missing: Sequence[Missing] = (),
    facts: Sequence[Fact] = (),
    spec: Mapping | None = None,
) -> str:
    """The whole page.

    Args:
      ds: the sweep (its name, for the title).
      names: the report's figures, in order; each gets a section.
      pngs: figure name -> its PNG bytes, for the figures drawn; a name without one gets a note
        (its cause from ``missing``, when it is there).
      summary: the per-cell text table (:func:`jaxinit.reports.summarize`), shown as is.
      tables: ``(title, table)`` of ``summary.txt``, each an HTML table.
      missing: the parts of the report that failed (figures and tables), listed at the top.
      facts: :func:`run_facts`.
      spec: the stored spec (``from_dataset(ds).data``), shown as JSON (:func:`spec_text`).
    """
    name = str(ds.attrs.get("name", "sweep"))
    causes = {m.name: m.cause for m in missing}
    nav = ['<a href="#figures">figures</a>'] + [
        f'<a href="#fig-{_anchor(n)}">{html.escape(n)}</a>' for n in names
    ] + ['<a href="#tables">tables</a>', '<a href="#spec">spec</a>']  # fmt: skip
    body = [f"<h1>jaxinit report: {html.escape(name)}</h1>",
            "<dl class=\"facts\">" + "".join(
                f"<dt>{html.escape(f.label)}</dt><dd>{html.escape(f.value)}</dd>" for f in facts
            ) + "</dl>",
            "<nav>" + " ".join(nav) + "</nav>"]  # fmt: skip
    if missing:
        items = "".join(f"<li><code>{html.escape(m.name)}</code>: {html.escape(m.cause)}</li>"
                        for m in missing)  # fmt: skip
        body.append(f'<div class="failed"><strong>Left out of this report</strong> (tracebacks '
                    f"in errors.log next to this page):<ul>{items}</ul></div>")  # fmt: skip
    body.append(f'<h2 id="figures">Figures ({len(names)})</h2>')
    for n in names:
        body.append(_figure_html(n, pngs.get(n), causes.get(n)))
    body.append('<h2 id="tables">Tables</h2>')
    body.append("<h3>Summary (as <code>jaxinit run</code> prints it)</h3>")
    body.append(f"<pre>{html.escape(summary)}</pre>")
    for title, df in tables:
        body.append(f'<h3 class="table">{html.escape(title)}</h3>')
        body.append(table_html(df))
    body.append('<h2 id="spec">Spec</h2>')
    body.append(f'<pre class="spec">{html.escape(spec_text(spec or {}))}</pre>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # nothing from elsewhere, even if a text slipped through unescaped
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>jaxinit report: {html.escape(name)}</title><style>{STYLE}</style></head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


__all__ = [
    "Fact",
    "HTML_FILE",
    "MAX_ROWS",
    "Missing",
    "chunk_times",
    "png_size",
    "render_page",
    "run_facts",
    "spec_text",
    "table_html",
]
