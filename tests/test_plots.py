"""Plots and report: the plain-sweep figures draw, and write_report writes PNGs and a summary."""

import json
import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import TINY

from jaxinit.plan import make_plan
from jaxinit.plots import DEFAULT_FIGURES, FIGURES, sweep_dims, time_to_threshold_table, wilson
from jaxinit.plots.names import FIGURE_NAMES
from jaxinit.report import summarize, write_report
from jaxinit.results import assemble
from jaxinit.spec import Spec

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
    assert names == sorted([f"{n}.png" for n in PLAIN] + ["summary.txt"])
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
    assert [p.name for p in paths] == ["loss_curves.png", "summary.txt"]
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
        "from jaxinit.spec import Spec; Spec.from_dict({'report': ['final_loss']}); "
        "from jaxinit.validation import resolve_spec; "
        "resolve_spec({'report': ['final_loss', 'basin_map']}); "
        "jaxinit.plots.FIGURES; print(matplotlib.get_backend())"
    )
    assert out == "svg"


@pytest.mark.slow
def test_figure_names_and_validation_do_not_import_pyplot():
    out = _python(
        "import sys; import jaxinit, jaxinit.plots; from jaxinit.plots.names import FIGURE_NAMES; "
        "from jaxinit.validation import resolve_spec; resolve_spec({'report': ['final_loss']}); "
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
