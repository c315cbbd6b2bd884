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
    question: str | None = None,
    about: str | None = None,
) -> Callable[[Callable], Callable]:
    """Register the decorated ``fn(ds) -> Figure`` as figure ``name`` (returned unchanged).

    Write ``name`` and ``default`` as literals: :data:`FIGURE_NAMES` reads them from the source.
    ``question`` and ``about`` (both or neither) are the figure guide's entry for a figure
    registered outside this package (the package's own are in :data:`GUIDE`); the report's
    ``index.html`` prints them above the figure.
    """
    if (question is None) != (about is None):
        raise ValueError(f"figure {name!r}: give both question= and about=, or neither")
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
        if question is not None and about is not None:
            GUIDE[name] = FigureText(question, about)
        return fn

    return register


def analyses_of(names: Sequence[str]) -> frozenset[str]:
    """The analysis tables (keys of :data:`ANALYSES`) that the figures ``names`` ask for."""
    return frozenset().union(*(ENTRIES[n].analyses for n in names if n in ENTRIES))


@functools.cache
def declared() -> tuple[tuple[str, bool], ...]:
    """``(name, default)`` of every ``figure(...)`` call in the figure modules' source, in the
    order of :data:`FAMILIES` and of the source (no module is imported)."""
    return tuple(d for family in FAMILIES for d in _declared_in(family))


@functools.cache
def _declared_in(family: str) -> tuple[tuple[str, bool], ...]:
    """``(name, default)`` of the ``figure(...)`` calls in module ``family``, in source order."""
    out = []
    tree = ast.parse((Path(__file__).parent / f"{family}.py").read_text(encoding="utf-8"))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "figure"
    ]
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        default = next((k.value for k in call.keywords if k.arg == "default"), None)
        out.append((ast.literal_eval(call.args[0]), bool(default and ast.literal_eval(default))))
    return tuple(out)


def figure_names() -> tuple[str, ...]:
    """Every figure ``jaxinit report`` can draw: the declared ones and any registered since."""
    names = [n for n, _ in declared()]
    return (*names, *(n for n in FIGURES if n not in names))


# -- the figure guide: what each figure answers (docs/figures.md and report/index.html) -----------
class FigureText(NamedTuple):
    """What a figure is for: the figure guide's entry (``docs/figures.md``, ``index.html``)."""

    question: str  # the question it answers, one sentence
    about: str  # how it is drawn and how to read it (Markdown: only `code` spans)


GUIDE_INTRO = (
    "`jaxinit report DIR` draws the figures a spec lists under `report` (default: `final_loss`, "
    "`loss_curves`, `success_rate`) into `DIR/report/`, and writes `summary.txt`: the per-cell "
    "table that `jaxinit run` prints, then every analysis table behind the figures (basins, runs "
    "left out of them, basin counts at ×0.5/×1/×2 `f_tol`, barriers, restart statistics, "
    "endpoint kinds from the Hessian, spurious rates, time to threshold, best scale bands, each "
    "figure's own table). It also writes `index.html`: one self-contained page (nothing is "
    "fetched from the network) with every figure, this guide's paragraph for each, every table, "
    "the spec and the run counts, to open in a browser or send to someone."
)
"""What a report holds: the figure guide's first paragraph."""

GUIDE_CONVENTIONS = (
    "Common conventions: lines are medians (means for counts and fractions) over seeds, bands the "
    "10–90% range, rates carry 95% Wilson intervals; only seeds are pooled (a map pools whatever "
    "is not on its two axes), every other axis gets its own line, colour or panel; numeric axes "
    "(scale, learning rate, dropout) sit on a real axis (log when they span decades), categorical "
    "ones (scheme, activation, widths, shown as depth×width) are separate ticks whose markers are "
    "never joined by lines."
)
"""The conventions every figure follows: the figure guide's second paragraph."""

FAMILY_GUIDE = {
    "core": ("Plain sweeps", "Any training sweep; the default report."),
    "basin_figures": (
        "Basins and restarts",
        "`xor_minima`, `basin_map`, `teacher_student`, `digits_minima`, `sinusoid_landscape` "
        "and `scale_lr_map`; every figure but `outcome_map` needs `save_params = true`.",
    ),
    "init_figures": (
        "Why random init",
        "`symmetry`, `dropout`, `init_scale`, `deep_relu`, `deep_linear`, `convex_control`, "
        "`implicit_bias`.",
    ),
    "depth_figures": (
        "Depth and scale",
        "`magic_numbers`, `depth_phase`, `init_scale` and the probe specs "
        "(`signal_propagation`, `jacobian_spectrum`): mean-field theory beside the measurement.",
    ),
    "restart_figures": (
        "k-means and EM restarts",
        "`kmeans_restarts`, `gmm_em_restarts`: how often a restart finds the global optimum, per "
        "initialisation.",
    ),
    "landscape_figures": (
        "Landscapes",
        "`sinusoid_landscape`: the minima a sweep found and the saddles between them.",
    ),
    "sharpness_figures": (
        "Sharpness dynamics",
        "`edge_of_stability`, `catapult`, `catapult_relu`, `fractal_boundary`: how the "
        "curvature decides which step sizes train from which init.",
    ),
}
"""Per family of :data:`FAMILIES`: the figure guide's section title and the specs that use it."""

GUIDE: dict[str, FigureText] = {
    # core
    "final_loss": FigureText(
        "How spread out is the end result per cell?",
        "One dot per run (log10 final training loss) over a violin, per value of the first axis, "
        "coloured by the second, a panel per combination of any further axes. Two clusters in one "
        "column mean two outcomes (e.g. solved vs stuck at chance).",
    ),
    "loss_curves": FigureText(
        "How fast does training go, and do some cells stall?",
        "Median training loss per logged step with the 10–90% band; colour = first axis, line "
        "style = second, a panel per combination of the rest.",
    ),
    "success_rate": FigureText(
        "How often is the task solved?",
        "Fraction of runs whose final training metric reaches the task's success level (the title "
        "says which) against the axis being studied (the first numeric axis, else the first), one "
        "line or marker set per combination of the other axes. Non-overlapping intervals are real "
        "differences.",
    ),
    # basin_figures
    "basin_sizes": FigureText(
        "Which minimum does a run reach, and how often, per init scale?",
        "Stacked fractions per scale, one panel per static group; global basins in greens, the "
        "others in colours that never repeat, grey: runs still moving (not in a basin), dark grey: "
        "diverged (only when some did). The panel title counts the runs left out.",
    ),
    "basin_loss_hist": FigureText(
        "Are the basins different minima or one spread-out one?",
        "Histogram of log10 final loss, stacked by basin (`*` = global): separated bars are "
        "distinct loss levels.",
    ),
    "barrier_matrix": FigureText(
        "Are the basins separated by loss barriers?",
        "Entry (i, j) is the median barrier (max on the straight path − mean of its ends) between "
        "the best runs of basins i and j after aligning hidden units, printed in each cell. The "
        "boxed diagonal compares two runs of the same basin: ≈ 0 means one connected valley; a "
        "clearly positive value (it can happen for the global basin `*`) means runs with the same "
        "function sitting in separate valleys of weight space.",
    ),
    "restarts": FigureText(
        "How many random restarts does it take?",
        "Left: P(a run ends in a global basin) with its interval, per init scale; right: restarts "
        "needed for 99% success, with the band that p's interval implies.",
    ),
    "basin_map": FigureText(
        "Where in init space does each basin start?",
        "A 2-D slice through θ₀ (☆, the init of `plane_seed`; ✚ the other seeds spanning the "
        "plane): each cell one run, coloured by the basin it reached (the key names each basin "
        "with its loss and cell count, and lists unconverged or diverged cells only when there are "
        "any), its final loss, and its steps to threshold (white: never). Cells are centred on "
        "their grid values.",
    ),
    "outcome_map": FigureText(
        "For which (scale, learning rate) does training converge, stall or diverge?",
        "The majority outcome of each cell's seeds (the legend lists only outcomes that happened, "
        "with run counts) and the fraction that converged; cells centred on the grid values.",
    ),
    "spurious_rate": FigureText(
        "How often does a student stop in a spurious minimum?",
        "Fraction of runs that converged to a loss above 1e-3 per value of the first axis (e.g. "
        "width k), with Wilson intervals; grey: runs that never converged within the budget.",
    ),
    # init_figures
    "distinct_units": FigureText(
        "Does training break the symmetry between hidden units?",
        "Distinct units per hidden layer over steps, out of the layer's width (1 = every unit "
        "computes the same thing). Cells whose curves coincide exactly are drawn once and named "
        'together ("scheme=zeros/constant (same curve)"). With `distinct_units_coarse` a second '
        "row counts near-copies (10%) as one.",
    ),
    "layer_grad_norm": FigureText(
        "Which layers move at all?",
        "Gradient norm of each layer over steps on a symlog axis; exact zeros (a zero init's "
        "hidden layer) sit on the 0 line. A net deeper than six layers gets the norm against the "
        "layer index at the first and the last logged step instead: a slope across layers is a "
        "vanishing (or exploding) gradient.",
    ),
    "scale_sweep": FigureText(
        "How big should initial weights be?",
        "Against the init scale (log x): final loss, saturated fraction and dead-ReLU fraction at "
        "init, gradient norm at init; colour = activation, line style = depth. The good scales are "
        "where the loss dips and the gradient norm is neither vanishing nor exploding.",
    ),
    "time_to_threshold": FigureText(
        "How long does it take, per scale?",
        "Median steps until the loss first falls below the threshold (× at the step budget: most "
        "runs never got there), and the fraction that gets there.",
    ),
    "implicit_bias": FigureText(
        "Which solution does the init scale pick?",
        "Relative distance of the learned β to the min-ℓ1 and min-ℓ2 interpolants vs α, with the "
        "gradient-flow prediction as thin lines: small α lands on the sparse solution, large α on "
        "the min-ℓ2 one.",
    ),
    "convex_control": FigureText(
        "Does init matter on a convex problem?",
        "Every run's final loss relative to the task's median, per init scheme; everything inside "
        "the grey ±1e-3 band means no.",
    ),
    "symmetry_breaking": FigureText(
        "How long until a perturbed constant init stops being symmetric?",
        "First logged step with more than one distinct unit vs the perturbation (at the step "
        "budget: never).",
    ),
    # depth_figures
    "magic_numbers": FigureText(
        "Which init scale is best, per activation and depth, and does it match mean-field "
        "theory's critical `σ_w`?",
        "Measured best init scale (lowest median final loss among the scales that train) vs "
        "depth, one colour per activation and a panel per `σ_b`; the bar spans the scales that "
        "train, the dashed line is the critical `σ_w` of mean-field theory, × marks a depth where "
        "no scale trains. Its numbers are also written as `magic_numbers.csv` and `.txt`.",
    ),
    "phase_diagram": FigureText(
        "Up to which depth does each `σ_w²` train, against theory's `6 ξ_c`?",
        "Median training accuracy over (`σ_w²`, depth), with theory's trainable depth `6 ξ_c` "
        "(line), the critical `σ_w²` (dotted) and the measured trainable depth of each `σ_w²` "
        "(white dots). Its numbers are also written as `phase_diagram.csv` and `.txt`.",
    ),
    "signal_propagation": FigureText(
        "Do the signal's variance and the correlation of two inputs survive depth, as mean-field "
        "theory predicts?",
        "Per activation (row): pre-activation variance, correlation of the two inputs, and squared "
        "gradient norm per layer; measured (dots: median over seeds, band 10–90%) vs mean-field "
        "theory (lines), one colour per `σ_w` at one `σ_b`.",
    ),
    "signal_phase": FigureText(
        "Where is the per-layer gradient growth `χ₁ = 1`?",
        "Measured `χ₁` over the (`σ_w`, `σ_b`) grid, one panel per activation, with theory's `χ₁` "
        "in each cell and the critical line `χ₁ = 1` drawn on top: below it gradients vanish with "
        "depth, above it they explode.",
    ),
    "jacobian_spectrum": FigureText(
        "Do the input-output Jacobian's singular values stay near 1 with depth, Gaussian vs "
        "orthogonal?",
        "Mean and variance of the squared singular values λ of the input-output Jacobian vs depth "
        "(dots, mean over seeds) beside free-probability theory (lines), and the distribution of λ "
        "at the largest depth (Gaussian: solid, orthogonal: dashed).",
    ),
    # restart_figures
    "p_global": FigureText(
        "How often does one run reach the global optimum?",
        "P(a run reaches the global optimum) against the number of clusters k, one line per "
        "initialisation, with 95% Wilson intervals.",
    ),
    "best_of_k": FigureText(
        "How many restarts make the global optimum near certain?",
        "P(the best of r restarts is global) against r: measured on disjoint blocks of seeds "
        "(points, Wilson intervals) and `1 - (1 - p)^r` from the one-run rate (lines, bands).",
    ),
    "distinct_optima": FigureText(
        "How many different optima do the restarts find?",
        "The number of distinct optima (modulo relabelling of the clusters) that the converged "
        "runs reached, per initialisation.",
    ),
    "excess_loss": FigureText(
        "How much worse than the global optimum are the other optima?",
        "Each run's final loss relative to the global optimum, (loss − global) / |global| on a log "
        "axis (1e-6: at the global optimum), the initialisations side by side per k, the median "
        "as a black bar: the spread above the bottom is what a bad restart costs.",
    ),
    # landscape_figures
    "disconnectivity": FigureText(
        "How are the minima connected, and how high are the saddles between them?",
        "Left: the disconnectivity graph of the sweep's minima (relaxed saddles; a minimum found "
        "inside a relaxed path is marked apart). Right: relaxed vs straight-line barrier per "
        "edge (CI-NEB vs after weight matching): a point below the dashed diagonal is a barrier "
        "that the straight line overestimates. Its numbers are also written as `disconnectivity.csv` and `.txt`.",
    ),
    # sharpness
    "sharpness_curves": FigureText(
        "Does the sharpness rise to 2/η and hover there (the edge of stability)?",
        "The top eigenvalue of the training-loss Hessian (the `sharpness` diagnostic) against the "
        "step, one colour per cell (median over seeds, 10–90% band), with each cell's 2/η as a "
        "dashed line of its colour; when η differs between a cell's seeds "
        '(`optimizer.lr_unit = "2/lambda0"`) it draws η·λ_max/2 against a line at 1. Its table '
        "gives per cell the first step with η·λ_max ≥ 2 and the median η·λ_max/2 after it.",
    ),
    "phase_map": FigureText(
        "Which step sizes stay lazy, catapult or diverge from this init?",
        "Each run's phase (lazy / catapult / divergent, `jaxinit.analysis.maps.phases`) against "
        "η·λ₀ with lines at 2 and 4, beside the peak loss ratio and the final η·λ; over (init "
        "scale × η) a map of the seeds' majority phase with the curves η = 2/λ₀ and 4/λ₀.",
    ),
    "boundary_dimension": FigureText(
        "Is the boundary between training and diverging fractal, and how rough is it?",
        "Which runs of a map over two numeric axes trained, each seed's box counts of the "
        "converge/diverge boundary and their local slopes: the box-counting dimension, with its "
        "spread over seeds and over the fitted range of box sizes, beside the paper's 1.2–2.0.",
    ),
}
"""Figure name -> :class:`FigureText`, for every declared figure (a test checks both ways); a
figure registered later with ``figure(name, question=..., about=...)`` adds its own."""


def figure_text(name: str) -> FigureText:
    """The guide's entry for figure ``name``; for a figure registered without one, the first
    paragraph of its function's docstring (or nothing to say)."""
    if name in GUIDE:
        return GUIDE[name]
    entry = ENTRIES.get(name)
    doc = (entry.draw.__doc__ or "").strip() if entry is not None else ""
    first = " ".join(doc.split("\n\n")[0].split())
    return FigureText(f"What does {name} show?", first or "(no description was registered)")


def figure_guide_markdown() -> str:
    """The figure guide, ``docs/figures.md``: :data:`GUIDE_INTRO`, :data:`GUIDE_CONVENTIONS`,
    then a section per family (:data:`FAMILY_GUIDE`) with one entry per declared figure. The
    committed page is this text (a test compares them)."""
    lines = [
        "# Figure guide",
        "",
        "<!-- Generated by jaxinit.plots.names.figure_guide_markdown() from the figure "
        "registry; edit the text there. -->",
        "",
        GUIDE_INTRO,
        "",
        GUIDE_CONVENTIONS,
    ]
    by_family = {f: [n for n, _ in _declared_in(f)] for f in FAMILIES}
    for family in FAMILIES:
        title, intro = FAMILY_GUIDE[family]
        lines += ["", f"## {title}", "", intro]
        for name in by_family[family]:
            text = GUIDE[name]
            lines += ["", f"### `{name}`", "", f"*{text.question}*", "", text.about]
    return "\n".join(lines) + "\n"


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
    "FAMILY_GUIDE",
    "FIGURES",
    "FigureEntry",
    "FigureText",
    "GUIDE",
    "GUIDE_CONVENTIONS",
    "GUIDE_INTRO",
    "TABLES",
    "analyses_of",
    "declared",
    "figure",
    "figure_guide_markdown",
    "figure_names",
    "figure_text",
]
