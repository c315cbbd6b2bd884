"""The sharpness figures (jaxinit.plots.sharpness_figures) on tiny sweeps with known answers: the
uv model's phases at η·λ₀ = 1, 3, 5, its sharpness against 2/η, and a small trainability map."""

import json

import matplotlib

matplotlib.use("Agg")  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import jaxinit  # noqa: E402
from jaxinit.analysis.maps import boundary_dimension as box_count  # noqa: E402
from jaxinit.config.bundled import find_spec  # noqa: E402
from jaxinit.plots import FIGURES, TABLES  # noqa: E402
from jaxinit.plots.sharpness_figures import (  # noqa: E402
    phase_boundaries,
    phase_table,
    sharpness_table,
    trained,
)
from jaxinit.reports import draw_report  # noqa: E402

UV = {
    "task": {"name": "arrays", "path": str(find_spec("catapult").parent / "data/one_point.csv"),
             "inputs": ["x"], "target": "y", "loss": "mse"},
    "model": {"widths": [64], "activation": "linear", "bias": False, "parameterization": "ntk"},
    "init": {"scheme": "normal"},
    "optimizer": {"name": "sgd"},
    "train": {"steps": 60, "log_every": 2, "diagnostics": ["sharpness"]},
}  # fmt: skip
"""The catapult's uv model at width 64 (λ₀ ≈ 2), 60 steps."""


def _run(tmp_path_factory, name, spec, report):
    out = tmp_path_factory.mktemp(name)
    ds = jaxinit.run({"name": name, **spec, "report": report}, out / "sweep", progress=False)
    return ds, out


@pytest.fixture(scope="module")
def uv_phases(tmp_path_factory):
    """η·λ₀ = 1, 3, 5 (learning rate in units of 2/λ₀), 4 seeds."""
    spec = {**UV, "optimizer": {"name": "sgd", "lr_unit": "2/lambda0"},
            "axes": {"optimizer.learning_rate": [0.5, 1.5, 2.5], "seed": 4}}  # fmt: skip
    return _run(tmp_path_factory, "uv_phases", spec, ["phase_map", "sharpness_curves"])


def test_phase_map_table_has_the_uv_models_phases(uv_phases):
    ds, _ = uv_phases
    t = phase_table(ds)
    np.testing.assert_allclose(t.c_median, [1.0, 3.0, 5.0], rtol=1e-5)
    assert t.lazy.tolist() == [1, 0, 0] and t.catapult.tolist() == [0, 1, 0]
    assert t.divergent.tolist() == [0, 0, 1] and t.runs.tolist() == [4, 4, 4]
    assert t.catapult_peak_ratio_median[1] > 10  # a catapult: the loss rose by > 10x
    assert t.catapult_final_eta_lambda_max[1] < 2  # ... and ended below the edge
    assert phase_boundaries(t) == pytest.approx({"lazy→catapult": 3.0, "→divergent": 5.0})


def test_sharpness_table_in_units_of_the_edge(uv_phases):
    """η·λ₀ = 3 starts beyond the edge (step 0) and falls below it; η·λ₀ = 1 never reaches it."""
    ds, _ = uv_phases
    t = sharpness_table(ds)
    assert t.reach_edge.tolist() == [0, 4, 0]  # the divergent cell's runs are left out
    assert t.runs.tolist() == [4, 4, 0]
    np.testing.assert_allclose(t.eta, 2 * t.eta[0] * np.array([0.5, 1.5, 2.5]), rtol=0.1)
    assert t.first_step_at_edge[1] == 0 and np.isnan(t.first_step_at_edge[0])
    for k, unit in enumerate([0.5, 1.5]):  # η = unit · 2/λ₀, per seed
        lam0 = ds.lambda0.isel(optimizer_learning_rate=k).values
        np.testing.assert_allclose(t.eta[k], np.median(unit * 2 / lam0), rtol=1e-5)
        np.testing.assert_allclose(t.two_over_eta[k], np.median(lam0 / unit), rtol=1e-5)


def test_uv_report_writes_both_figures_and_their_tables(uv_phases, tmp_path):
    ds, _ = uv_phases
    rep = draw_report(ds, tmp_path)
    assert rep.failed == []
    names = {p.name for p in rep.paths}
    assert {"phase_map.png", "phase_map.csv", "sharpness_curves.png"} <= names
    csv = pd.read_csv(tmp_path / "phase_map.csv")
    assert csv.catapult.tolist() == [0, 1, 0]
    fig = FIGURES["sharpness_curves"](ds)  # η differs between seeds: η·λ/2 against 1
    ax = fig.axes[0]
    assert "η·λ_max / 2" in ax.get_ylabel()
    assert any(np.allclose(ln.get_ydata(), 1.0) for ln in ax.lines)
    plt.close(fig)


@pytest.fixture(scope="module")
def uv_plane(tmp_path_factory):
    """init scale × absolute η: λ₀ ∝ scale², so the edge η = 2/λ₀ moves with the scale."""
    spec = {**UV, "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "train": {**UV["train"], "lambda0": True},
            "axes": {"init.scale": [0.5, 1.0, 2.0], "optimizer.learning_rate": [0.1, 0.4, 1.6],
                     "seed": 2}}  # fmt: skip
    return _run(tmp_path_factory, "uv_plane", spec, ["phase_map", "sharpness_curves"])


def test_phase_plane_draws_the_2_over_lambda0_curve(uv_plane):
    ds, _ = uv_plane
    fig = FIGURES["phase_map"](ds)
    ax = fig.axes[0]
    line = next(ln for ln in ax.lines if ln.get_label() == "η·λ₀ = 2")
    lam0 = ds.lambda0.median(["seed", "optimizer_learning_rate"]).values  # per scale
    np.testing.assert_allclose(line.get_xdata(), 2 / lam0, rtol=1e-5)
    np.testing.assert_allclose(lam0 / lam0[1], [0.25, 1, 4], rtol=0.05)  # λ₀ ∝ scale²
    plt.close(fig)
    t = sharpness_table(ds)  # absolute η: the 2/η of each cell
    np.testing.assert_allclose(t.two_over_eta, 2 / t.eta)
    assert sorted(set(np.round(t.eta, 6))) == [0.1, 0.4, 1.6]
    fig = FIGURES["sharpness_curves"](ds)
    ys = {
        round(float(ln.get_ydata()[0]), 6) for ln in fig.axes[0].lines if len(ln.get_ydata()) == 2
    }
    assert {20.0, 5.0, 1.25} <= ys  # the dashed 2/η lines
    plt.close(fig)


@pytest.fixture(scope="module")
def small_map(tmp_path_factory):
    """fractal_boundary at 12 × 12 pixels, 2 seeds, 60 steps."""
    over = {"axes.init.scale": np.logspace(-1, 1, 12).round(5).tolist(),
            "axes.optimizer.learning_rate": np.logspace(1.5, 2.3, 12).round(5).tolist(),
            "axes.seed": 2, "train.steps": 60, "train.log_every": 6}  # fmt: skip
    out = tmp_path_factory.mktemp("map")
    return jaxinit.run("fractal_boundary", out / "sweep", progress=False, **over), out


def test_boundary_dimension_table_is_the_box_count_of_each_seeds_map(small_map, tmp_path):
    ds, _ = small_map
    ok = trained(ds)
    frac = float(ok.mean())
    assert 0.1 < frac < 0.9  # both classes: a boundary to measure
    first, tail = ds.loss.isel(step=0), ds.loss.isel(step=-1)  # 11 logged steps: the tail is 1
    want = ds.done & ~ds.diverged & (tail < first)
    assert (ok == want).all()
    t = TABLES["boundary_dimension"](ds)
    assert t.seed.tolist() == ["0", "1", "mean", "std"]
    for s in (0, 1):
        m = ok.sel(seed=s).transpose("init_scale", "optimizer_learning_rate").values
        assert t.dimension[s] == pytest.approx(box_count(m).dimension)
        assert t.trained_fraction[s] == pytest.approx(m.mean())
    assert t.dimension[2] == pytest.approx(t.dimension[:2].mean())
    rep = draw_report(ds, tmp_path)
    assert rep.failed == [] and (tmp_path / "boundary_dimension.png").stat().st_size > 0
    assert "box-counting dimension" in (tmp_path / "boundary_dimension.txt").read_text() or (
        (tmp_path / "boundary_dimension.csv").exists()
    )
    spec = json.loads(ds.attrs["spec"])
    assert spec["report"][0] == "boundary_dimension"


def test_figures_say_what_is_missing(uv_plane, small_map):
    """Before: a map smaller than 9 x 9 (test_report's tiny fractal_boundary at 3 x 3) failed
    with boundary_dimension's ValueError about box sizes instead of a note."""
    from jaxinit.plots import NothingToDraw

    with pytest.raises(NothingToDraw, match="at least 9 values"):
        FIGURES["boundary_dimension"](small_map[0].isel(init_scale=slice(0, 5)))
    ds, _ = uv_plane
    with pytest.raises(NothingToDraw, match="two numeric axes|exactly two"):
        FIGURES["boundary_dimension"](ds.isel(init_scale=[0]))
    with pytest.raises(NothingToDraw, match="sharpness"):
        FIGURES["sharpness_curves"](ds.drop_vars(["sharpness", "sharpness_residual"]))
