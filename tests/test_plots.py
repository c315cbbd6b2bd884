"""Plots and report: the figures draw and say what they show (categorical axes, colour keys,
cells on the grid), and write_report writes PNGs and a summary with every analysis table."""

import json
import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from conftest import TINY

from jaxinit.config.spec import Spec
from jaxinit.engine.plan import make_plan
from jaxinit.engine.results import assemble
from jaxinit.engine.validation import resolve_spec
from jaxinit.plots import DEFAULT_FIGURES, FIGURES, sweep_dims, time_to_threshold_table, wilson
from jaxinit.plots.basin_figures import _basin_colors, _text_color, cell_edges
from jaxinit.plots.core import distinct_colors, study_dim
from jaxinit.plots.names import FIGURE_NAMES
from jaxinit.reports import full_summary, summarize, write_report

# Figures that need only a plain sweep (named explicitly: figures that need special datasets,
# added elsewhere, have their own tests).
PLAIN = ["final_loss", "loss_curves", "success_rate"]
PNG = b"\x89PNG\r\n\x1a\n"


def _has_marks(fig):
    return any(ax.lines or ax.collections or ax.patches for ax in fig.axes)


@pytest.fixture(scope="module")
def partial_sweep(tiny_sweep):
    """The tiny sweep with only its first group's runs done (the rest NaN, done=False)."""
    spec = Spec.from_dict(json.loads(tiny_sweep.attrs["spec"]))
    plan = make_plan(spec, chunk_size=6)
    stacked = tiny_sweep.stack(run=list(tiny_sweep.done.dims))
    ids = plan.groups[0].run_ids
    chunk = {"run_id": ids}
    for name, var in stacked.data_vars.items():
        if name != "done" and not name.startswith("params"):
            section = "curves" if "step" in var.dims else "final"
            chunk[f"{section}/{name}"] = var.transpose("run", ...).values[ids]
    return assemble(plan, [chunk], partial=True)


def test_sweep_dims(tiny_sweep):
    assert sweep_dims(tiny_sweep) == ["init_scheme", "init_scale"]


@pytest.mark.parametrize("name", PLAIN)
def test_figure_draws(tiny_sweep, name):
    fig = FIGURES[name](tiny_sweep)
    try:
        assert _has_marks(fig)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", PLAIN)
def test_figure_draws_partial_and_one_axis(partial_sweep, tiny_sweep, name):
    assert partial_sweep.attrs["partial"] == 1 and 0 < partial_sweep.attrs["n_done"] < 12
    for ds in (partial_sweep, tiny_sweep.isel(init_scheme=[1], init_scale=[0])):
        fig = FIGURES[name](ds)
        try:
            assert _has_marks(fig)
        finally:
            plt.close(fig)


def test_write_report(tiny_sweep, tmp_path):
    paths = write_report(tiny_sweep, tmp_path / "report")
    names = sorted(p.name for p in paths)
    assert names == sorted([f"{n}.png" for n in PLAIN] + ["summary.txt", "index.html"])
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    text = (tmp_path / "report" / "summary.txt").read_text()
    assert text.startswith("tiny: 12/12 runs")
    assert "init.scheme=zeros" in text and "init.scheme=he_normal" in text


def test_write_report_uses_spec_report_list(tiny_sweep, tmp_path):
    ds = tiny_sweep.copy()
    spec = json.loads(ds.attrs["spec"])
    spec["report"] = ["loss_curves"]
    ds.attrs["spec"] = json.dumps(spec)
    paths = write_report(ds, tmp_path)
    assert [p.name for p in paths] == ["loss_curves.png", "summary.txt", "index.html"]
    assert not (tmp_path / "final_loss.png").exists()


def test_summarize_counts(tiny_sweep):
    rows = summarize(tiny_sweep).splitlines()
    zeros = next(r for r in rows if r.startswith("init.scheme=zeros")).split()
    sub = tiny_sweep.sel(init_scheme="zeros")
    assert int(zeros[1]) == 6  # runs
    assert float(zeros[2]) == pytest.approx(float(np.median(sub.final_loss)), rel=1e-2)
    assert float(zeros[4]) == pytest.approx(float(sub.success.mean()), abs=0.005)
    assert int(zeros[5]) == int(sub.diverged.sum())


def test_summarize_partial(partial_sweep):
    text = summarize(partial_sweep)
    assert "(partial)" in text.splitlines()[0]
    assert f"{partial_sweep.attrs['n_done']}/12" in text


def test_wilson_known_values():
    lo, hi = wilson(np.array([5, 0, 10]), np.array([10, 10, 10]))
    np.testing.assert_allclose(lo[0], 0.2366, atol=1e-4)
    np.testing.assert_allclose(hi[0], 0.7634, atol=1e-4)
    assert lo[1] == pytest.approx(0.0, abs=1e-12) and hi[1] == pytest.approx(0.2775, abs=1e-4)
    assert hi[2] == pytest.approx(1.0) and lo[2] == pytest.approx(0.7225, abs=1e-4)


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (no MPLBACKEND) and return its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.slow
def test_importing_and_validating_leave_the_users_backend_alone():
    """A notebook's inline backend survives ``import jaxinit.plots`` and specs with figures."""
    out = _python(
        "import matplotlib; matplotlib.use('svg'); import jaxinit, jaxinit.plots; "
        "from jaxinit.config.spec import Spec; Spec.from_dict({'report': ['final_loss']}); "
        "from jaxinit.engine.validation import resolve_spec; "
        "resolve_spec({'report': ['final_loss', 'basin_map']}); "
        "jaxinit.plots.FIGURES; print(matplotlib.get_backend())"
    )
    assert out == "svg"


@pytest.mark.slow
def test_figure_names_and_validation_do_not_import_pyplot():
    out = _python(
        "import sys; import jaxinit, jaxinit.plots; from jaxinit.plots.names import FIGURE_NAMES; "
        "from jaxinit.engine.validation import resolve_spec; resolve_spec({'report': ['final_loss']}); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    assert out == "False"


def test_figure_names_match_the_registry():
    assert sorted(FIGURES) == sorted(FIGURE_NAMES)
    assert set(DEFAULT_FIGURES) <= set(FIGURE_NAMES)


def _ttt_dataset(times, done):
    """The TINY plan's Dataset with given ``time_to_threshold`` (engine values: -1 = never)."""
    plan = make_plan(Spec.from_dict(TINY), chunk_size=12)
    ids = np.flatnonzero(done)
    chunk = {"run_id": ids, "final/time_to_threshold": np.asarray(times, np.int32)[ids]}
    return assemble(plan, [chunk], partial=False)


def test_time_to_threshold_table_never_is_infinite_and_unfinished_runs_are_left_out():
    # runs in C order over (init_scheme, init_scale, seed) = (2, 2, 3)
    times = [10, -1, -1, 5, 10, -1, 4, 4, 4, 7, 8, 9]
    done = np.ones(12, bool)
    done[9:] = False  # he_normal, scale 1.0: nothing finished
    tab = time_to_threshold_table(_ttt_dataset(times, done)).set_index(
        ["init_scheme", "init_scale"]
    )
    assert tab.loc[("zeros", 0.5), "median_time"] == np.inf
    assert tab.loc[("zeros", 0.5), "reached"] == pytest.approx(1 / 3)
    assert tab.loc[("zeros", 1.0), "median_time"] == 10
    assert tab.loc[("zeros", 1.0), "reached"] == pytest.approx(2 / 3)
    assert tab.loc[("he_normal", 0.5), "median_time"] == 4
    assert np.isnan(tab.loc[("he_normal", 1.0), ["median_time", "reached"]].astype(float)).all()


def test_summarize_with_no_finished_run():
    """A just-started sweep: a summary with empty cells, not a KeyError."""
    ds = assemble(make_plan(Spec.from_dict(TINY), chunk_size=4), [], partial=False)
    text = summarize(ds)
    assert text.startswith("tiny: 0/12 runs (partial)")
    zeros = next(r for r in text.splitlines() if r.startswith("init.scheme=zeros")).split()
    assert zeros[1:] == ["0", "-", "-", "-", "0"]


# -- figures that explain themselves (issue 11) ---------------------------------------------------


def _grid_ds(coords: dict, data: dict, *, widths=(4,), name="synthetic") -> xr.Dataset:
    """A hand-made sweep Dataset: ``coords`` are the axes in spec order (``seed`` included; and
    ``step`` / ``layer`` for curves), ``data`` maps variable -> (dims, values); ``done`` is
    added (all runs finished)."""
    run_dims = [d for d in coords if d not in ("step", "layer")]
    axes = {d: d if d == "seed" else d.replace("_", ".", 1) for d in run_dims}
    shape = [len(coords[d]) for d in run_dims]
    data = {"done": (run_dims, np.ones(shape, bool)), **data}
    ds = xr.Dataset(data, coords=coords)
    spec = {"name": name, "model": {"widths": list(widths)}, "train": {"threshold": 0.05}}
    ds.attrs.update(name=name, axes=json.dumps(axes), spec=json.dumps(spec),
                    traced_axes=json.dumps([d for d in coords if ds[d].dtype.kind == "f"]))  # fmt: skip
    return ds


def test_success_rate_categorical_x_is_never_joined_by_lines():
    coords = {"init_scheme": ["zeros", "constant", "he_normal"], "seed": np.arange(4)}
    ok = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]], bool)
    fig = FIGURES["success_rate"](_grid_ds(coords, {"success": (list(coords), ok)}))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["zeros", "constant", "he_normal"]
        drawn = [c.lines[0] for c in ax.containers]  # each errorbar's data line
        assert drawn and all(ln.get_linestyle() == "None" for ln in drawn)
        np.testing.assert_allclose(drawn[0].get_ydata(), [0, 0.25, 1])
    finally:
        plt.close(fig)


def test_success_rate_puts_the_studied_axis_on_x_and_pools_only_seeds():
    coords = {"init_scheme": ["zeros", "he_normal"], "init_scale": [0.1, 1.0, 10.0],
              "seed": np.arange(4)}  # fmt: skip
    ok = np.zeros((2, 3, 4), bool)
    ok[0, 1:, :2] = True  # zeros: 0, 0.5, 0.5
    ok[1, 2] = True  # he_normal: 0, 0, 1
    ds = _grid_ds(coords, {"success": (list(coords), ok)})
    assert study_dim(ds) == "init_scale"
    fig = FIGURES["success_rate"](ds)
    try:
        ax = fig.axes[0]
        lines = [c.lines[0] for c in ax.containers]  # each errorbar's data line
        assert len(lines) == 2  # one per scheme: init_scale is not pooled
        np.testing.assert_allclose(lines[0].get_xdata(), [0.1, 1.0, 10.0])
        np.testing.assert_allclose(lines[0].get_ydata(), [0, 0.5, 0.5])
        np.testing.assert_allclose(lines[1].get_ydata(), [0, 0, 1])
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "init.scale"
        assert "scheme" in ax.get_legend().get_title().get_text()
    finally:
        plt.close(fig)


def test_success_rate_numeric_axis_sits_on_its_values():
    """Eight σ_w values on a linear axis: points at the values themselves, not at 0..7."""
    scales = [0.894, 1.0, 1.118, 1.225, 1.327, 1.581, 2.0, 2.449]
    coords = {"model_widths": ["32-32", "32-32-32-32"], "init_scale": scales, "seed": np.arange(2)}
    ok = np.ones((2, 8, 2), bool)
    fig = FIGURES["success_rate"](_grid_ds(coords, {"success": (list(coords), ok)}))
    try:
        ax = fig.axes[0]
        np.testing.assert_allclose(ax.containers[0].lines[0].get_xdata(), scales)
        lo, hi = ax.get_xlim()
        assert lo < 0.894 and 2.449 < hi < 3 and ax.get_xscale() == "linear"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["depth×width=2×32", "depth×width=4×32"]
    finally:
        plt.close(fig)


def test_distinct_units_draws_coinciding_curves_once_and_names_them_all():
    schemes = ["zeros", "constant", "identical_rows", "he_normal", "glorot_normal"]
    coords = {"init_scheme": schemes, "seed": np.arange(3), "step": np.arange(0, 50, 10),
              "layer": np.arange(2)}  # fmt: skip
    du = np.full((5, 3, 5, 2), np.nan)
    du[:3, ..., 0] = 1.0  # the symmetric inits: one distinct unit throughout
    du[3:, ..., 0] = 4.0
    ds = _grid_ds(coords, {"distinct_units": (list(coords), du)}, widths=(4,))
    fig = FIGURES["distinct_units"](ds)
    try:
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert texts == ["scheme=zeros/constant/identical_rows (same curve)",
                         "scheme=he_normal/glorot_normal (same curve)"]  # fmt: skip
        ax = fig.axes[0]
        assert len([ln for ln in ax.lines if len(ln.get_xdata()) == 5]) == 2
        assert ax.get_ylim() == (0.5, 4.5) and "of 4" in ax.get_ylabel()
        assert "symmetry" in fig._suptitle.get_text() and "3 seeds" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_layer_grad_norm_of_a_deep_net_is_two_panels_against_the_layer():
    coords = {"init_scheme": ["glorot_normal", "he_normal"], "seed": np.arange(2),
              "step": np.arange(0, 30, 10), "layer": np.arange(21)}  # fmt: skip
    g = np.broadcast_to(2.0 ** -np.arange(21)[::-1], (2, 2, 3, 21)).copy()
    fig = FIGURES["layer_grad_norm"](_grid_ds(coords, {"layer_grad_norm": (list(coords), g)}))
    try:
        maps = [ax for ax in fig.axes if ax.lines]
        assert len(maps) == 2 and "layer" in maps[0].get_xlabel()
        np.testing.assert_allclose(maps[0].lines[0].get_xdata(), np.arange(21))
    finally:
        plt.close(fig)


def test_colours_stay_distinct_past_ten():
    assert len(set(distinct_colors(40))) == 40
    import pandas as pd

    table = pd.DataFrame({"basin": range(24), "mean_loss": np.linspace(0, 1, 24),
                          "is_global": [True] * 12 + [False] * 12})  # fmt: skip
    colours = _basin_colors(table)
    assert len(colours) == 24 and len(set(colours.values())) == 24
    import colorsys

    for b in range(12, 24):  # non-global basins are never green (green = global)
        h, _, s = colorsys.rgb_to_hls(*colours[b][:3])
        assert not (0.22 < h < 0.45 and s > 0.2), (b, colours[b])


def test_cell_edges_centre_each_cell_on_its_value():
    xs = np.linspace(-3, 3, 7)
    e = cell_edges(xs)
    np.testing.assert_allclose((e[:-1] + e[1:]) / 2, xs)  # an even grid: centred cells
    uneven = np.array([-1.0, 0.0, 0.5, 2.0])
    e = cell_edges(uneven)  # an uneven one: each cell reaches halfway to its neighbours
    np.testing.assert_allclose(e[1:-1], (uneven[:-1] + uneven[1:]) / 2)
    assert np.all((e[:-1] < uneven) & (uneven < e[1:]))
    logs = np.geomspace(0.01, 100, 5)
    e = cell_edges(logs, log=True)
    np.testing.assert_allclose(np.sqrt(e[:-1] * e[1:]), logs)


def test_outcome_map_cells_align_with_the_grid_and_list_only_outcomes_that_happened():
    scales, lrs = np.geomspace(0.01, 100, 5), np.array([0.1, 0.2, 0.3, 0.4])
    coords = {"init_scale": scales, "optimizer_learning_rate": lrs, "seed": np.arange(3)}
    t = np.where(np.arange(5)[:, None, None] > 1, 10.0, np.nan) * np.ones((5, 4, 3))
    ds = _grid_ds(coords, {"time_to_threshold": (list(coords), t),
                           "diverged": (list(coords), np.zeros((5, 4, 3), bool))})  # fmt: skip
    fig = FIGURES["outcome_map"](ds)
    try:
        ax = fig.axes[0]
        mesh = ax.collections[0]
        xy = mesh.get_coordinates()  # (ny + 1, nx + 1, 2) cell corners
        ex, ey = xy[0, :, 0], xy[:, 0, 1]
        np.testing.assert_allclose(np.sqrt(ex[:-1] * ex[1:]), scales)  # log x: geometric centres
        np.testing.assert_allclose((ey[:-1] + ey[1:]) / 2, lrs)
        assert ax.get_xscale() == "log"
        z = np.asarray(mesh.get_array()).reshape(4, 5)  # (y, x): converged (0) where scale > 1
        np.testing.assert_array_equal(z[:, 2:], 0)
        np.testing.assert_array_equal(z[:, :2], 1)
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts == ["converged (36 runs)", "stalled (24 runs)"]
    finally:
        plt.close(fig)


def test_text_colour_contrasts_with_its_cell():
    assert _text_color((1.0, 1.0, 0.8)) == "black" and _text_color((0.05, 0.0, 0.1)) == "white"


@pytest.fixture(scope="module")
def plane_sweep():
    """A 4×3 plane of XOR 2-3-1 tanh inits through θ₀ (a = b = 0 on the grid), saved params."""
    import jaxinit

    spec = {
        "name": "plane_tiny",
        "report": ["basin_map", "barrier_matrix", "restarts"],
        "task": {"name": "xor"},
        "model": {"widths": [3], "activation": "tanh"},
        "init": {"scale": 2.0, "bias_scheme": "normal", "bias_scale": 0.1, "plane_seed": 0},
        "optimizer": {"learning_rate": 1.0},
        "train": {"steps": 300, "log_every": 300, "diagnostics": []},
        "store": {"save_params": True},
        "axes": {"init.plane_a": [-2.0, 0.0, 1.0, 2.0], "init.plane_b": [-1.0, 0.0, 1.5]},
    }
    return jaxinit.run(spec, progress=False)


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


def test_basin_map_has_a_colour_key_marks_theta0_and_lists_only_what_happened(plane_sweep):
    assert not plane_sweep.diverged.any()
    fig = FIGURES["basin_map"](plane_sweep)
    try:
        maps = [ax for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]
        assert len(maps) == 3
        key = _legend_texts(maps[0])
        assert key and key[0].startswith("basin ") and "cells" in key[0]
        assert not any("diverged" in t for t in key)
        for ax in maps:  # θ₀, the init the plane goes through, is starred on every panel
            stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
            assert stars and (stars[0].get_xdata()[0], stars[0].get_ydata()[0]) == (0.0, 0.0)
        assert any("θ₀" in t.get_text() for lg in fig.legends for t in lg.get_texts())
    finally:
        plt.close(fig)
    ds = plane_sweep.copy()
    ds["diverged"] = ds.diverged.copy(data=np.zeros(ds.diverged.shape, bool))
    ds["diverged"][0, 0] = True
    fig = FIGURES["basin_map"](ds)
    try:
        assert "diverged or unfinished: 1 cells" in _legend_texts(fig.axes[0])
    finally:
        plt.close(fig)


def test_barrier_matrix_is_readable_and_explains_its_diagonal(plane_sweep):
    fig = FIGURES["barrier_matrix"](plane_sweep)
    try:
        ax = fig.axes[0]
        cells = [t for t in ax.texts]
        n = len(ax.get_xticks())
        assert len(cells) == n * n and min(t.get_fontsize() for t in cells) >= 8
        boxes = [p for p in ax.patches if not p.get_fill()]
        assert len(boxes) == n  # the diagonal is boxed ...
        assert any("Diagonal" in t.get_text() for t in fig.texts)  # ... and explained
    finally:
        plt.close(fig)


def test_summary_holds_every_analysis_table(plane_sweep):
    text = full_summary(plane_sweep)
    assert text.startswith(summarize(plane_sweep))
    for title in ("Basins of the converged runs", "Runs not in a basin",
                  "clustering tolerance f_tol", "Loss barriers between basins",
                  "Random restarts", "Endpoint kinds"):  # fmt: skip
        assert title in text, title


def test_summary_of_a_plain_sweep_is_its_table(tiny_sweep):
    assert full_summary(tiny_sweep) == summarize(tiny_sweep)


# -- restart and depth figures: colours that never repeat, categorical axes that read ------------
def _restart_ds(coords: dict, monkeypatch, n_optima=None) -> xr.Dataset:
    """A k-means restart sweep over ``coords`` (axes in spec order, ``seed`` last) whose restart
    analysis is a hand-made summary: P(global) = 0.1·(line index + 1), no training."""
    import types

    import pandas as pd

    from jaxinit.plots import restart_figures

    ds = _grid_ds(coords, {}, name="restarts_synthetic")
    cells = [d for d in coords if d != "seed"]
    grid = pd.MultiIndex.from_product([coords[d] for d in cells], names=cells).to_frame(False)
    line = list(coords["algorithm_init"]).index
    p = np.array([0.1 * (line(v) % 9 + 1) for v in grid.algorithm_init])
    summary = grid.assign(p_global=p, p_lo=p - 0.05, p_hi=p + 0.05, global_loss=1.0,
                          n_optima=n_optima if n_optima is not None else np.arange(len(grid)) + 1)  # fmt: skip
    fake = types.SimpleNamespace(summary=summary, x_tol=0.05)
    monkeypatch.setattr(restart_figures, "_optima", lambda _ds: fake)
    return ds


def _data_lines(ax) -> list:
    """The data line of each errorbar (``p_global``), else every line (``distinct_optima``)."""
    return [c.lines[0] for c in ax.containers] if ax.containers else ax.get_lines()


def _distinct(colours) -> bool:
    from matplotlib.colors import to_rgba

    rgba = [tuple(np.round(to_rgba(c), 6)) for c in colours]
    return len(set(rgba)) == len(rgba)


INITS12 = [f"init_{i:02d}" for i in range(12)]


@pytest.mark.parametrize("name", ["p_global", "distinct_optima"])
def test_restart_figures_give_twelve_inits_twelve_colours_on_a_numeric_k_axis(name, monkeypatch):
    coords = {"task_k": [3, 5, 10], "algorithm_init": INITS12, "seed": np.arange(2)}
    fig = FIGURES[name](_restart_ds(coords, monkeypatch))
    try:
        ax = fig.axes[0]
        drawn = _data_lines(ax)  # a line per init
        assert len(drawn) == 12 and _distinct([ln.get_color() for ln in drawn])
        np.testing.assert_allclose(drawn[0].get_xdata(), [3, 5, 10])  # numbers sit on their values
        assert list(ax.get_xticks()) == [3, 5, 10] and ax.get_xlabel() == "task.k"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == INITS12
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", ["p_global", "distinct_optima"])
def test_restart_figures_put_a_categorical_x_at_named_positions(name, monkeypatch):
    data = ["blobs", "anisotropic_blobs", "unequal_variances"]
    coords = {"algorithm_init": ["forgy", "kmeans++"], "task_data": data, "seed": np.arange(2)}
    fig = FIGURES[name](_restart_ds(coords, monkeypatch))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == data
        assert list(ax.get_xticks()) == [0, 1, 2] and ax.get_xlabel() == "task.data"
        assert all(t.get_rotation() > 0 for t in ax.get_xticklabels())  # long names slant
        drawn = _data_lines(ax)
        assert len(drawn) == 2 and all(ln.get_linestyle() == "None" for ln in drawn)
        xs = np.concatenate([ln.get_xdata() for ln in drawn])
        assert len(set(np.round(xs, 6))) == 6  # side by side around each tick, never piled up
        np.testing.assert_allclose(np.round(drawn[0].get_xdata()), [0, 1, 2])
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", ["p_global", "distinct_optima"])
def test_restart_figures_without_an_x_axis_spread_the_inits_over_named_ticks(name, monkeypatch):
    coords = {"algorithm_init": INITS12, "seed": np.arange(2)}
    fig = FIGURES[name](_restart_ds(coords, monkeypatch))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == INITS12
        drawn = _data_lines(ax)
        assert len(drawn) == 12 and _distinct([ln.get_color() for ln in drawn])
        np.testing.assert_allclose([ln.get_xdata()[0] for ln in drawn], range(12))  # not all at 0
    finally:
        plt.close(fig)


def test_excess_loss_colours_and_names_stay_distinct(monkeypatch):
    coords = {"algorithm_init": INITS12, "seed": np.arange(3)}
    ds = _restart_ds(coords, monkeypatch)
    shape = (12, 3)
    ds["final_loss"] = (("algorithm_init", "seed"), 1.0 + np.arange(36).reshape(shape) / 10)
    ds["diverged"] = (("algorithm_init", "seed"), np.zeros(shape, bool))
    fig = FIGURES["excess_loss"](ds)
    try:
        ax = fig.axes[0]
        assert _distinct(
            [c.get_facecolor()[0] for c in ax.collections if len(c.get_offsets()) == 3]
        )
        assert [t.get_text() for t in ax.get_xticklabels()] == ["all runs"]
    finally:
        plt.close(fig)


def test_magic_numbers_gives_every_line_its_own_colour_in_every_panel():
    import jaxinit

    lrs = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]  # × two activations: 12 lines per panel
    axes = {"model.activation": ["tanh", "relu"], "optimizer.learning_rate": lrs,
            "model.widths": [[2], [2, 2]], "init.bias_scale": [0.0, 0.3],
            "init.scale": [0.5, 1.0, 2.0], "seed": 2}  # fmt: skip
    spec = {"task": {"name": "xor"}, "init": {"scheme": "lecun_normal", "bias_scheme": "normal"}}
    full = jaxinit.Spec.from_dict({**spec, "axes": axes}).to_dict()
    dims = {p.replace(".", "_"): p for p in axes}
    coords = {d: np.arange(v) if p == "seed" else
              ["-".join(map(str, w)) for w in v] if p == "model.widths" else v
              for (d, p), v in zip(dims.items(), axes.values())}  # fmt: skip
    shape = tuple(len(c) for c in coords.values())
    ds = xr.Dataset(
        {"final_loss": (tuple(dims), np.ones(shape)), "final_metric": (tuple(dims), np.ones(shape)),
         "done": (tuple(dims), np.ones(shape, bool))},
        coords, attrs={"name": "grid", "spec": json.dumps(full), "axes": json.dumps(dims)},
    )  # fmt: skip
    fig = FIGURES["magic_numbers"](ds)
    try:
        keys = []
        for ax in fig.axes:
            best = {ln.get_label(): ln.get_color() for ln in ax.get_lines()
                    if ln.get_marker() == "o"}  # fmt: skip
            assert len(best) == 12 and _distinct(best.values())
            keys.append(best)
        assert keys[0] == keys[1]  # the same line keeps its colour across the σ_b panels
        legend = _legend_texts(fig.axes[-1])  # one entry per line, one for all dashed lines
        assert legend[:12] == list(keys[0]) and legend.count("critical σ_w (theory)") == 1
        assert len(legend) == 12 + 4
    finally:
        plt.close(fig)


def test_restarts_without_a_traced_axis_names_each_cell_on_the_x_axis():
    """Only static axes (schemes × activations): each cell at its own x, named on the ticks;
    before, every cell sat at x = 0 and only the legend told them apart."""
    import jaxinit

    spec = {
        "name": "restarts_static",
        "task": {"name": "xor"},
        "model": {"widths": [3]},
        "train": {"steps": 100, "log_every": 100, "diagnostics": []},
        "optimizer": {"learning_rate": 1.0},
        "store": {"save_params": True},
        "axes": {
            "init.scheme": ["he_normal", "glorot_normal"],
            "model.activation": ["tanh", "relu"],
            "seed": 6,
        },
    }
    fig = FIGURES["restarts"](jaxinit.run(spec, progress=False))
    try:
        for ax in fig.axes[:2]:
            names = [t.get_text() for t in ax.get_xticklabels()]
            assert len(names) == 4 and len(set(names)) == 4
            assert all("scheme=" in n and "activation=" in n for n in names)
        xs = {float(x) for ln in fig.axes[1].lines for x in ln.get_xdata()}
        assert xs == {0.0, 1.0, 2.0, 3.0}
    finally:
        plt.close(fig)


def test_a_figure_registers_itself_with_its_table_and_analyses(monkeypatch):
    """One registration next to the figure (jaxinit.plots.names.figure) is all report and
    validation read: on 426ca25 names.py and report.py listed the figures again."""
    from jaxinit.plots import names

    for registry in (names.FIGURES, names.TABLES, names.ENTRIES):
        monkeypatch.setitem(registry, "my_figure", None)  # removed again after the test

    def my_table(ds):
        return None

    @names.figure("my_figure", table=my_table, analyses=("basins",))
    def my_figure(ds):
        return None

    assert FIGURES["my_figure"] is my_figure and names.TABLES["my_figure"] is my_table
    assert "my_figure" in names.figure_names()
    assert resolve_spec({"task": {"name": "xor"}, "report": ["my_figure"]}).report == ("my_figure",)
    assert names.analyses_of(["my_figure", "final_loss"]) == {"basins"}
    assert names.analyses_of(["barrier_matrix"]) == {"basins", "barriers", "endpoint_kinds"}
    with pytest.raises(ValueError, match="unknown analyses"):
        names.figure("bad", analyses=("basin",))


def test_every_registered_figure_is_declared_in_its_source():
    """FIGURE_NAMES and DEFAULT_FIGURES are read from the figure(...) calls without importing
    the figure modules; they are the live registry's names and defaults."""
    from jaxinit.plots import names

    assert dict(names.declared()) == {n: e.default for n, e in names.ENTRIES.items()}
    assert DEFAULT_FIGURES == ("final_loss", "loss_curves", "success_rate")
