"""Reports that never crash (issue 24): every figure and table draws, or skips with a note,
on the Datasets users produce (property tests), ``jaxinit report`` writes every figure it can
and says which failed (exit status 3, tracebacks in errors.log), every bundled spec's report is
produced at two small sizes, and basin figures say what each basin is (minimum, saddle …)."""

import json
import warnings

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (the figures draw off screen here)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import jaxinit  # noqa: E402
from jaxinit import cli  # noqa: E402
from jaxinit.config.bundled import bundled_specs  # noqa: E402
from jaxinit.plots import FIGURES, TABLES  # noqa: E402
from jaxinit.reports import ERRORS_LOG, draw_report, write_report  # noqa: E402

# -- tiny versions of every bundled spec ----------------------------------------------------------
# Each keeps the axes its figures are about (a map stays a map, a depth sweep keeps two depths),
# with few steps; ``bundled_overrides(name, n)`` sets the size: n seeds, or an n-point map grid
# for the maps without a seed axis.
_D2 = [[16], [16, 16]]
BUNDLED_TINY: dict[str, dict] = {
    "basin_map": {"train.steps": 150, "store.save_params": True},
    "catapult": {"train.steps": 40, "axes.optimizer.learning_rate": [0.5, 1.5, 2.5]},
    "catapult_relu": {
        "train.steps": 40,
        "axes.optimizer.learning_rate": [0.5, 1.5, 4.0],
        "task.n_points": 8,
    },
    "convex_control": {"train.steps": 60},
    "deep_linear": {"train.steps": 60, "axes.model.widths": _D2},
    "deep_relu": {"train.steps": 20, "axes.model.widths": [[32] * 2, [32] * 3]},
    "depth_phase": {
        "train.steps": 30,
        "axes.model.widths": [[32] * 2, [32] * 3],
        "axes.init.scale": [1.0, 1.58114, 2.44949],
    },  # fmt: skip
    "digits_minima": {"train.steps": 60, "task.n_train": 50},
    "dropout": {"train.steps": 60, "axes.model.dropout": [0.0, 0.5]},
    "edge_of_stability": {
        "train.steps": 60,
        "task.n_train": 32,
        "axes.optimizer.learning_rate": [0.2, 0.8],
    },
    "fractal_boundary": {"train.steps": 40},
    "gmm_em_restarts": {
        "train.steps": 20,
        "axes.task.k": [4],
        "axes.algorithm.init": ["random_means", "kmeans++"],
    },  # fmt: skip
    "implicit_bias": {"train.steps": 300, "axes.init.scale": [0.01, 0.1, 1.0]},
    "init_scale": {
        "train.steps": 60,
        "axes.model.activation": ["tanh", "relu"],
        "axes.init.scale": [0.01, 0.3, 1.0, 10.0],
    },  # fmt: skip
    "jacobian_spectrum": {"probe.width": 16, "probe.depths": [2, 4]},
    "kmeans_restarts": {
        "train.steps": 20,
        "axes.task.k": [3, 5],
        "axes.algorithm.init": ["forgy", "kmeans++"],
    },  # fmt: skip
    "magic_numbers": {
        "train.steps": 30,
        "axes.model.activation": ["tanh", "relu"],
        "axes.model.widths": [[32], [32, 32, 32]],
        "axes.init.scale": [0.5, 1.0, 2.0, 4.0],
    },  # fmt: skip
    "own_data": {"train.steps": 60},
    "scale_lr_map": {"train.steps": 60},
    "sinusoid_landscape": {"train.steps": 400},
    "signal_propagation": {
        "probe.depth": 6,
        "probe.width": 16,
        "axes.sigma_w": [0.8, 1.0, 1.6],
        "axes.sigma_b": [0.0, 0.5],
    },  # fmt: skip
    "symmetry": {"train.steps": 60},
    "teacher_student": {"train.steps": 150, "axes.task.in_dim": [6, 8]},
    "xor_minima": {"train.steps": 300, "axes.init.scale": [0.125, 8.0], "axes.model.widths": [[2]]},
}
MAP_AXES = {"basin_map": ("init.plane_a", "init.plane_b"),
            "scale_lr_map": ("init.scale", "optimizer.learning_rate"),
            "fractal_boundary": ("init.scale", "optimizer.learning_rate")}  # fmt: skip


def bundled_overrides(name: str, n: int) -> dict:
    """The tiny version of bundled spec ``name`` at size ``n`` (seeds; a map: n × n cells with
    n seeds for scale_lr_map, one run per cell for basin_map)."""
    out = dict(BUNDLED_TINY[name])
    if "train.steps" in out:  # a log point every tenth of the steps
        out["train.log_every"] = out["train.steps"] // 10
    if name == "basin_map":
        grid = np.linspace(-2.0, 2.0, max(n, 3)).round(4).tolist()
        out.update({f"axes.{a}": grid for a in MAP_AXES[name]})
    elif name == "scale_lr_map":
        out.update({f"axes.{a}": np.geomspace(0.05, 5.0, max(n, 3)).round(5).tolist()
                    for a in MAP_AXES[name]})  # fmt: skip
        out["axes.seed"] = 2
    elif name == "fractal_boundary":  # a map around its boundary (learning rate ≈ 100)
        out["axes.init.scale"] = np.geomspace(0.1, 10.0, max(n, 3)).round(5).tolist()
        out["axes.optimizer.learning_rate"] = np.geomspace(30, 200, max(n, 3)).round(5).tolist()
        out["axes.seed"] = 2
    else:
        out["axes.seed"] = n
    return out


def test_every_bundled_spec_has_a_tiny_version():
    assert set(BUNDLED_TINY) == set(bundled_specs())


CHUNK = 3
"""Runs per compiled call of the tiny bundled sweeps: chunks are padded to this shape, so both
sizes run the same compiled programs (the second size compiles nothing new)."""


def bundled_sweep(name: str, n: int, root) -> xr.Dataset:
    """The tiny bundled sweep ``name`` at size ``n``, run in-process into ``root``."""
    from jaxinit.engine.probes import is_probe

    kw = bundled_overrides(name, n)
    chunks = None if is_probe(name) else CHUNK  # a probe sweep's spec fixes its chunks
    return jaxinit.run(name, root / f"{name}-{n}", progress=False, chunk_size=chunks, **kw)


# -- property tests: every figure and table on the Datasets users produce -------------------------
EDGES = ("all_succeed", "none_succeed", "one_seed", "one_cell", "nan_losses", "all_diverged",
         "unfinished", "nothing_done", "float32", "float64", "more_seeds")  # fmt: skip
"""Edge cases of a sweep's Dataset (see :func:`mutate`); "a single basin" is "one_cell" of a
basin sweep at one seed. "more_seeds" repeats the seeds to 6, 21, 31 or 38 of them (rates of
exactly 0 or 1 whose Wilson bound rounds off: the negative error bar of issue 24), on sweeps
without saved parameters (whose runs the spec must still plan)."""


def _per_run(ds: xr.Dataset, name: str) -> bool:
    axes = json.loads(ds.attrs["axes"])
    return all(d in ds[name].dims for d in axes if d in ds.dims)


def mutate(ds: xr.Dataset, edges, rng: np.random.Generator) -> xr.Dataset:
    """``ds`` with each edge case of ``edges`` applied in turn (the store's conventions: a run
    not done has NaN floats, a diverged run non-finite loss and parameters)."""
    ds = ds.copy(deep=True)
    axes = [d for d in json.loads(ds.attrs["axes"]) if d in ds.dims]
    floats = [k for k, v in ds.data_vars.items() if v.dtype.kind == "f" and _per_run(ds, k)]

    def runs_mask(frac):
        shape = tuple(ds.sizes[d] for d in axes)
        return xr.DataArray(rng.random(shape) < frac, {d: ds[d] for d in axes}, axes)

    for edge in edges:
        params = any(k.startswith("params") for k in ds.data_vars)
        if edge == "more_seeds" and "seed" in ds.dims and not params:
            n = int(rng.choice([6, 21, 31, 38]))
            ds = ds.isel(seed=np.arange(n) % ds.sizes["seed"]).assign_coords(seed=np.arange(n))
        elif edge in ("all_succeed", "none_succeed") and "success" in ds:
            ds["success"] = xr.full_like(ds.success, edge == "all_succeed")
            if "done" in ds:
                ds["success"] = ds.success & ds.done
        elif edge == "one_seed" and "seed" in ds.dims:
            ds = ds.isel(seed=[0])
        elif edge == "one_cell":
            ds = ds.isel({d: [0] for d in axes if d != "seed"})
        elif edge == "nan_losses":
            hit = runs_mask(0.5)
            for k in ("final_loss", "loss"):
                if k in ds:
                    ds[k] = ds[k].where(~hit)
        elif edge == "all_diverged" and "diverged" in ds:
            ds["diverged"] = xr.full_like(ds.diverged, True) & ds.done
            for k in floats:
                if k in ds and (k.startswith("params/") or "loss" in k):
                    ds[k] = ds[k].where(~ds.diverged, np.nan)
            if "success" in ds:
                ds["success"] = xr.full_like(ds.success, False)
        elif edge in ("unfinished", "nothing_done") and "done" in ds:
            gone = runs_mask(0.5) if edge == "unfinished" else xr.full_like(ds.done, True)
            ds["done"] = ds.done & ~gone
            for k in floats:
                if k in ds:
                    ds[k] = ds[k].where(ds.done)
            for k in ("success", "diverged"):
                if k in ds:
                    ds[k] = ds[k] & ds.done
            ds.attrs.update(n_done=int(ds.done.sum()), partial=int(not ds.done.all()))
        elif edge in ("float32", "float64"):
            for k, v in ds.data_vars.items():
                if v.dtype.kind == "f":
                    ds[k] = v.astype(edge)
    return ds


FIGURE_SPEC = {
    **dict.fromkeys(["final_loss", "loss_curves", "success_rate", "distinct_units",
                     "layer_grad_norm", "symmetry_breaking"], "symmetry"),
    **dict.fromkeys(["basin_sizes", "basin_loss_hist", "barrier_matrix", "restarts"],
                    "xor_minima"),
    "basin_map": "basin_map",
    "outcome_map": "scale_lr_map",
    "spurious_rate": "teacher_student",
    **dict.fromkeys(["scale_sweep", "time_to_threshold", "magic_numbers"], "init_scale"),
    "implicit_bias": "implicit_bias",
    "convex_control": "convex_control",
    **dict.fromkeys(["p_global", "best_of_k", "distinct_optima", "excess_loss"],
                    "kmeans_restarts"),
    "phase_diagram": "depth_phase",
    **dict.fromkeys(["signal_propagation", "signal_phase"], "signal_propagation"),
    "jacobian_spectrum": "jacobian_spectrum",
    "disconnectivity": "sinusoid_landscape",
    "sharpness_curves": "edge_of_stability",
    "phase_map": "catapult",
    "boundary_dimension": "fractal_boundary",
}  # fmt: skip
"""The tiny bundled sweep each registered figure is drawn on (symmetry_breaking, which no
bundled spec lists, on the symmetry sweep: it records distinct units)."""


def test_every_figure_and_table_has_a_sweep():
    assert set(FIGURE_SPEC) == set(FIGURES)
    assert set(TABLES) <= set(FIGURE_SPEC)


def _draws_or_notes(fn, ds):
    """A figure (closed again) or :class:`NothingToDraw` with a note; nothing else."""
    from jaxinit.plots import NothingToDraw

    try:
        out = fn(ds)
    except NothingToDraw as note:
        assert str(note).strip(), "a skipped figure says why"
        return None
    if isinstance(out, plt.Figure):
        plt.close(out)
    return out


EDGE_LISTS = st.lists(st.sampled_from(EDGES), min_size=1, max_size=3, unique=True)


def check_edge_cases(ds: xr.Dataset, figures: list[str], examples: int = 5) -> None:
    """Property test: ``figures`` (and their tables) draw or note on ``ds`` cut to edge cases."""

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(edges=EDGE_LISTS, seed=st.integers(0, 2**16))
    def check(edges, seed):
        cut = mutate(ds, edges, np.random.default_rng(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for figure in figures:
                _draws_or_notes(FIGURES[figure], cut)
                if figure in TABLES:
                    _draws_or_notes(TABLES[figure], cut)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLED_TINY))
def test_bundled_report_at_3_seeds_and_its_figures_on_every_edge_case(name, tmp_path):
    """The spec's whole report at the small size, every figure and table written; then each
    figure drawn on this sweep (FIGURE_SPEC) on edge cases of it (property test)."""
    ds = bundled_sweep(name, 3, tmp_path)
    _full_report(ds, tmp_path / "report")
    mine = sorted(f for f, spec in FIGURE_SPEC.items() if spec == name)
    if mine:
        check_edge_cases(ds, mine)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLED_TINY))
def test_bundled_report_at_17_seeds(name, tmp_path):
    _full_report(bundled_sweep(name, 17, tmp_path), tmp_path / "report")


def _full_report(ds: xr.Dataset, out) -> None:
    before = set(plt.get_fignums())  # figures other tests in this worker left open
    rep = draw_report(ds, out)
    assert rep.failed == [], [(f.name, f.cause) for f in rep.failed]
    names = json.loads(ds.attrs["spec"]).get("report") or ["final_loss"]
    assert {f"{n}.png" for n in names} | {"index.html"} <= {p.name for p in rep.paths}
    assert (out / "index.html").read_text().count("<img ") == len(names)  # one per figure
    assert all(p.stat().st_size > 0 for p in rep.paths)
    assert set(plt.get_fignums()) <= before  # the report leaves no figure of its own open


def test_mutate_makes_the_edge_cases(tiny_sweep):
    rng = np.random.default_rng(0)
    none = mutate(tiny_sweep, ["nothing_done"], rng)
    assert not none.done.any() and np.isnan(none.final_loss).all() and none.attrs["n_done"] == 0
    div = mutate(tiny_sweep, ["all_diverged", "float64"], rng)
    assert div.diverged.all() and np.isnan(div.final_loss).all()
    assert div.final_loss.dtype == np.float64 and not div.success.any()
    one = mutate(tiny_sweep, ["one_cell", "one_seed"], rng)
    assert one.done.size == 1
    plain = tiny_sweep.drop_vars([k for k in tiny_sweep.data_vars if k.startswith("params")])
    assert mutate(plain, ["more_seeds"], rng).sizes["seed"] in (6, 21, 31, 38)


def test_success_rate_at_every_seed_count_where_wilson_rounds(tiny_sweep):
    """Before: success_rate raised "'yerr' must not contain negative values" when every (or no)
    run of a point succeeded at 6, 21, 31 … seeds (jaxinit run xor_minima --set
    axes.seed=128 --report)."""
    ds = tiny_sweep.drop_vars([k for k in tiny_sweep.data_vars if k.startswith("params")])
    for n in (6, 21, 31):
        for edge in ("all_succeed", "none_succeed"):
            cut = ds.isel(seed=np.arange(n) % ds.sizes["seed"]).assign_coords(seed=np.arange(n))
            cut = mutate(cut, [edge], np.random.default_rng(0))
            plt.close(FIGURES["success_rate"](cut))


# -- a report writes every figure it can ----------------------------------------------------------
def _broken(ds):
    raise RuntimeError("boom: a figure bug\nsecond line of the message")


def _with_report(ds, names):
    ds = ds.copy()
    spec = json.loads(ds.attrs["spec"])
    spec["report"] = names
    ds.attrs["spec"] = json.dumps(spec)
    return ds


def test_a_failing_figure_leaves_the_others_written_and_logs_its_traceback(
    tiny_sweep, tmp_path, monkeypatch
):
    """Before: the first failing figure ended the report (a traceback, later figures and
    summary.txt never written)."""
    monkeypatch.setitem(FIGURES, "final_loss", _broken)
    ds = _with_report(tiny_sweep, ["final_loss", "loss_curves", "success_rate"])
    before = set(plt.get_fignums())  # figures other tests in this worker left open
    rep = draw_report(ds, tmp_path)
    assert [p.name for p in rep.paths] == [
        "loss_curves.png", "success_rate.png", "summary.txt", "index.html"]  # fmt: skip
    assert [(f.name, f.cause) for f in rep.failed] == [
        ("final_loss", "RuntimeError: boom: a figure bug")
    ]
    assert rep.log == tmp_path / ERRORS_LOG
    log = rep.log.read_text()
    assert "Traceback (most recent call last)" in log and "_broken" in log
    assert "final_loss: RuntimeError: boom" in (tmp_path / "summary.txt").read_text()
    assert set(plt.get_fignums()) <= before  # nothing of its own left open
    with pytest.warns(UserWarning, match="final_loss was not drawn: RuntimeError: boom"):
        paths = write_report(ds, tmp_path / "again")
    assert [p.name for p in paths] == [
        "loss_curves.png", "success_rate.png", "summary.txt", "index.html"]  # fmt: skip


def test_a_clean_report_removes_a_stale_error_log(tiny_sweep, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(FIGURES, "final_loss", _broken)
        rep = draw_report(_with_report(tiny_sweep, ["final_loss", "loss_curves"]), tmp_path)
    assert rep.log == tmp_path / ERRORS_LOG and rep.log.exists()  # the report's own log
    rep = draw_report(_with_report(tiny_sweep, ["final_loss", "loss_curves"]), tmp_path)
    assert rep.failed == [] and rep.log is None and not (tmp_path / ERRORS_LOG).exists()


def test_an_errors_log_the_report_did_not_write_is_left_alone(tiny_sweep, tmp_path):
    from jaxinit.engine.store import StoreError

    (tmp_path / ERRORS_LOG).write_text("mine")
    with pytest.raises(StoreError, match="was not written by jaxinit"):
        draw_report(_with_report(tiny_sweep, ["loss_curves"]), tmp_path)
    assert (tmp_path / ERRORS_LOG).read_text() == "mine"
    assert not (tmp_path / "loss_curves.png").exists()


def test_a_figure_with_nothing_to_draw_is_a_note_not_a_failure(tiny_sweep, tmp_path):
    ds = mutate(tiny_sweep, ["nothing_done"], np.random.default_rng(0))
    rep = draw_report(_with_report(ds, ["final_loss", "success_rate"]), tmp_path)
    assert rep.failed == []
    assert {p.name for p in rep.paths} == {
        "final_loss.png", "success_rate.png", "summary.txt", "index.html"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from conftest import TINY

    out = tmp_path_factory.mktemp("cli") / "tiny"
    jaxinit.run({**TINY, "report": ["final_loss", "loss_curves"]}, out, progress=False)
    return out


def test_cli_report_names_the_failed_figure_on_one_line_and_exits_3(
    tiny_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(FIGURES, "final_loss", _broken)
    code = cli.main(["report", str(tiny_dir), "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == cli.REPORT_FAILED == 3
    assert "Traceback" not in err and "Traceback" not in out
    lines = [ln for ln in err.splitlines() if "final_loss" in ln]
    assert lines == ["jaxinit: error: final_loss not written: RuntimeError: boom: a figure bug"]
    assert str(tmp_path / ERRORS_LOG) in err
    assert (tmp_path / "loss_curves.png").exists() and (tmp_path / "summary.txt").exists()
    assert str(tmp_path / "loss_curves.png") in out.splitlines()


def test_cli_report_exits_0_when_every_figure_draws(tiny_dir, tmp_path, capsys):
    assert cli.main(["report", str(tiny_dir), "--out", str(tmp_path)]) == 0
    assert "error" not in capsys.readouterr().err
    assert "exit status" in cli.build_parser().format_help()
    assert "3 the report left out" in cli.EPILOG


# -- basin figures say what each basin is ---------------------------------------------------------
@pytest.fixture(scope="module")
def sigmoid_xor():
    """xor_minima's sigmoid 2-2-1 at init scale 0.125: most runs stop at loss 0.693, the point
    where every output is 0.5 (a saddle), the rest reach the global basin."""
    return jaxinit.run("xor_minima", progress=False, **{
        "axes.model.widths": [[2]], "axes.model.activation": ["sigmoid"],
        "axes.init.scale": [0.125, 8.0], "axes.seed": 8, "train.steps": 1000})  # fmt: skip


def test_the_0693_basin_of_sigmoid_xor_is_a_saddle_in_table_legend_and_bars(sigmoid_xor):
    """Before: basin_sizes called the 0.693 endpoints "basin 2: loss 0.693", coloured like a
    minimum, and the basins table had no kind."""
    from jaxinit.analysis.basins import find_basins
    from jaxinit.plots.basin_figures import KIND_HATCH, basin_sizes

    table = find_basins(sigmoid_xor, kinds=True).table
    flat = table[(table.mean_loss - np.log(2)).abs() < 1e-3]
    assert len(flat) == 1 and flat.kind.iloc[0] in ("saddle", "plateau")
    assert set(table.kind) <= {"minimum", "saddle", "plateau", "escaping", "not_converged"}
    fig = basin_sizes(sigmoid_xor)
    try:
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        name = next(lb for lb in labels if "loss 0.693" in lb)
        assert name.endswith(flat.kind.iloc[0])
        bars = handles[labels.index(name)]
        assert all(p.get_hatch() == KIND_HATCH[flat.kind.iloc[0]] for p in bars.patches)
        assert all(p.get_hatch() is None for h, lb in zip(handles, labels)
                   if lb.endswith(", minimum") for p in h.patches)  # fmt: skip
        assert "hatched: not a minimum" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_basins_table_in_the_summary_has_the_kind(sigmoid_xor):
    from jaxinit.reports import analysis_tables

    title, table = analysis_tables(sigmoid_xor, ["basin_sizes"])[0]
    assert title.startswith("Basins") and {"kind", "kind_votes"} <= set(table.columns)
    assert table.kind.isin(["saddle", "plateau"]).any()


def test_kind_of_tallies_and_breaks_ties_by_the_lowest_loss_run():
    from jaxinit.analysis.basins import kind_of
    from jaxinit.analysis.curvature import ESCAPING, MINIMUM, SADDLE

    assert kind_of([SADDLE, SADDLE, SADDLE]) == ("saddle", "saddle 3/3")
    assert kind_of([ESCAPING, MINIMUM]) == ("escaping", "escaping 1/2, minimum 1/2")
    assert kind_of([]) == ("unknown", "")
