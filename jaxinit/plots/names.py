"""The figure registry: each figure registers itself, next to its code, with :func:`figure`.

``@figure("basin_sizes", analyses=("basins", "endpoint_kinds"))`` above a ``fn(ds) -> Figure``
(or ``figure(name, table=fn_table)(fn)`` after both) records its name, the table of its numbers
that ``jaxinit report`` writes as ``<name>.csv`` / ``<name>.txt``, the analysis tables it adds to
``summary.txt`` (:data:`ANALYSES`) and whether it is drawn by default. The live registry
(:data:`FIGURES`, :data:`TABLES`, :data:`ENTRIES`) fills as the figure modules are imported
(:mod:`jaxinit.plots` imports them all on first use).

Spec validation only needs the names, and importing this module must neither load
``matplotlib.pyplot`` nor touch the user's backend: :data:`FIGURE_NAMES` and
:data:`DEFAULT_FIGURES` are read from the ``figure(...)`` calls in the figure modules' source
(computed on first use), so they are the same declarations, never a second list.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

FAMILIES = (
    "core",
    "basin_figures",
    "init_figures",
    "depth_figures",
    "restart_figures",
    "landscape_figures",
    "sharpness_figures",
)
"""The modules of :mod:`jaxinit.plots` that register figures, in the order they are listed."""

ANALYSES = {
    "basins": "basins of the converged runs, runs left out, basin counts vs f_tol",
    "barriers": "loss barriers between the basins",
    "restarts": "random restarts: P(global basin), best of k",
    "spurious": "spurious-minimum rates",
    "endpoint_kinds": "what the runs end at: minima, saddles, plateaus (jaxinit.analysis.curvature)",
    "time_to_threshold": "time to threshold and the best init-scale bands",
}
"""The analysis tables a figure can add to ``summary.txt`` (``jaxinit report``)."""


class FigureEntry(NamedTuple):
    """One registered figure."""

    name: str
    draw: Callable[[Any], Any]  # fn(ds) -> matplotlib Figure
    table: Callable[[Any], Any] | None  # fn(ds) -> DataFrame: the figure's numbers, or None
    analyses: frozenset[str]  # keys of ANALYSES that summary.txt gets with this figure
    default: bool  # drawn when a spec lists no report figures


ENTRIES: dict[str, FigureEntry] = {}
FIGURES: dict[str, Callable[[Any], Any]] = {}
"""``figure name -> fn(ds) -> Figure``; use :data:`jaxinit.plots.FIGURES`, which imports every
family first."""
TABLES: dict[str, Callable[[Any], Any]] = {}
"""``figure name -> fn(ds) -> DataFrame``: the numbers behind a figure, written by ``jaxinit
report`` as ``<name>.csv`` and ``<name>.txt``."""


def figure(
    name: str,
    *,
    table: Callable[[Any], Any] | None = None,
    analyses: Sequence[str] = (),
    default: bool = False,
) -> Callable[[Callable], Callable]:
    """Register the decorated ``fn(ds) -> Figure`` as figure ``name`` (returned unchanged).

    Write ``name`` and ``default`` as literals: :data:`FIGURE_NAMES` reads them from the source.
    """
    unknown = set(analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(
            f"figure {name!r}: unknown analyses {sorted(unknown)}; known: {list(ANALYSES)}"
        )

    def register(fn: Callable) -> Callable:
        ENTRIES[name] = FigureEntry(name, fn, table, frozenset(analyses), default)
        FIGURES[name] = fn
        if table is not None:
            TABLES[name] = table
        return fn

    return register


def analyses_of(names: Sequence[str]) -> frozenset[str]:
    """The analysis tables (keys of :data:`ANALYSES`) that the figures ``names`` ask for."""
    return frozenset().union(*(ENTRIES[n].analyses for n in names if n in ENTRIES))


@functools.cache
def declared() -> tuple[tuple[str, bool], ...]:
    """``(name, default)`` of every ``figure(...)`` call in the figure modules' source, in the
    order of :data:`FAMILIES` and of the source (no module is imported)."""
    out = []
    here = Path(__file__).parent
    for family in FAMILIES:
        tree = ast.parse((here / f"{family}.py").read_text(encoding="utf-8"))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "figure"
        ]
        for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
            default = next((k.value for k in call.keywords if k.arg == "default"), None)
            out.append(
                (ast.literal_eval(call.args[0]), bool(default and ast.literal_eval(default)))
            )
    return tuple(out)


def figure_names() -> tuple[str, ...]:
    """Every figure ``jaxinit report`` can draw: the declared ones and any registered since."""
    names = [n for n, _ in declared()]
    return (*names, *(n for n in FIGURES if n not in names))


def __getattr__(name: str) -> Any:
    if name == "FIGURE_NAMES":  # every figure ``jaxinit report`` can draw, by name
        return tuple(n for n, _ in declared())
    if name == "DEFAULT_FIGURES":  # what ``jaxinit report`` draws when a spec lists none
        return tuple(n for n, default in declared() if default)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ANALYSES",
    "ENTRIES",
    "FAMILIES",
    "FIGURES",
    "FigureEntry",
    "TABLES",
    "analyses_of",
    "declared",
    "figure",
    "figure_names",
]
