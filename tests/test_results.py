"""Results: chunks → Dataset (partial sweeps marked), the tidy table, saved parameters."""

import json

import numpy as np
import pytest
from conftest import TINY

import jaxinit
from jaxinit.config.spec import Spec
from jaxinit.engine.plan import make_plan
from jaxinit.engine.results import FINAL_VARIABLES, STEP_VARIABLES, VARIABLE_ATTRS, assemble, tidy

T = TINY["train"]["steps"] // TINY["train"]["log_every"] + 1


def _fake_chunks(plan):
    """Chunks whose values encode their run id, so misplaced runs are visible."""
    chunks = []
    for g, c in plan.chunks():
        ids = g.run_ids[c * plan.chunk_size : (c + 1) * plan.chunk_size]
        chunks.append(
            {
                "run_id": ids,
                "final/final_loss": ids.astype(np.float32),
                "final/success": ids % 2 == 0,
                "final/diverged_step": ids.astype(np.int32),
                "curves/loss": np.repeat(ids[:, None], T, 1).astype(np.float32),
                "curves/layer_grad_norm": np.ones((len(ids), T, 2), np.float32),
            }
        )
    return chunks


@pytest.fixture(scope="module")
def plan():
    return make_plan(Spec.from_dict(TINY), chunk_size=4)


def test_assemble_all_chunks(plan):
    ds = assemble(plan, _fake_chunks(plan), partial=False)
    assert ds.done.dims == ("init_scheme", "init_scale", "seed") and bool(ds.done.all())
    np.testing.assert_array_equal(ds.final_loss.values.ravel(), np.arange(12))  # C order
    assert ds.loss.dims == (*ds.done.dims, "step")
    assert ds.layer_grad_norm.dims == (*ds.done.dims, "step", "layer")
    np.testing.assert_array_equal(ds.step, np.arange(T) * TINY["train"]["log_every"])
    assert ds.attrs["partial"] == 0 and ds.attrs["n_done"] == ds.attrs["n_runs"] == 12
    assert json.loads(ds.attrs["traced_axes"]) == ["init_scale", "seed"]
    assert Spec.from_dict(json.loads(ds.attrs["spec"])) == plan.spec


def test_assemble_subset_marks_missing_runs(plan):
    chunks = _fake_chunks(plan)
    have = chunks[::2]
    ds = assemble(plan, have, partial=False)
    done_ids = np.concatenate([c["run_id"] for c in have])
    expect = np.isin(np.arange(12), done_ids)
    assert 0 < expect.sum() < 12
    np.testing.assert_array_equal(ds.done.values.ravel(), expect)
    loss = ds.final_loss.values.ravel()
    np.testing.assert_array_equal(loss[expect], np.flatnonzero(expect))
    assert np.isnan(loss[~expect]).all()
    assert np.isnan(ds.loss.values.reshape(12, -1)[~expect]).all()
    assert np.isnan(ds.diverged_step.values.ravel()[~expect]).all()
    assert not ds.success.values.ravel()[~expect].any()
    assert ds.attrs["partial"] == 1 and ds.attrs["n_done"] == expect.sum()
    assert assemble(plan, [], partial=False).attrs["n_done"] == 0


def test_tidy_one_row_per_run(tiny_sweep):
    df = tidy(tiny_sweep)
    assert len(df) == 12
    assert {"init_scheme", "init_scale", "seed", "final_loss", "success", "done"} <= set(df)
    assert "loss" not in df and not any(c.startswith("params") for c in df)
    assert not df[["init_scheme", "init_scale", "seed"]].duplicated().any()
    for row in df.itertuples():
        cell = tiny_sweep.sel(init_scheme=row.init_scheme, init_scale=row.init_scale, seed=row.seed)
        assert float(cell.final_loss) == row.final_loss


def test_sweep_dataset_layout(tiny_sweep):
    ds = tiny_sweep
    assert dict(ds.done.sizes) == {"init_scheme": 2, "init_scale": 2, "seed": 3}
    assert bool(ds.done.all()) and ds.attrs["partial"] == 0
    assert ds.loss.sizes["step"] == T and np.isfinite(ds.loss.values).all()
    for name in ("final_loss", "final_metric", "test_loss", "test_metric", "final_grad_norm"):
        assert np.isfinite(ds[name].values).all(), name
    assert ds.diverged.dtype == bool and ds.time_to_threshold.dtype.kind == "f"


def test_params_variables(tiny_sweep):
    ds = tiny_sweep
    for which in ("params0", "params"):
        w = ds[f"{which}/layers/0/w"]
        assert w.dims == (*ds.done.dims, f"{which}/layers/0/w_dim0", f"{which}/layers/0/w_dim1")
        assert w.shape == (2, 2, 3, 2, 3)
        assert ds[f"{which}/layers/1/b"].shape == (2, 2, 3, 1)
    w0 = ds["params0/layers/0/w"]
    assert float(abs(w0.sel(init_scheme="zeros")).max()) == 0
    # common random numbers: the same seed draws the same weights at every scale
    he = w0.sel(init_scheme="he_normal")
    np.testing.assert_allclose(he.sel(init_scale=1.0), 2 * he.sel(init_scale=0.5), rtol=1e-6)
    assert not np.allclose(he.isel(init_scale=0, seed=0), he.isel(init_scale=0, seed=1))
    moved = ds["params/layers/0/w"].sel(init_scheme="he_normal").values - he.values
    assert np.abs(moved).max() > 0


def test_assemble_without_chunks_has_every_per_run_variable(plan):
    """A sweep that has just started: every final (and the loss curve) exists, nothing is done."""
    ds = assemble(plan, [], partial=False)
    assert set(FINAL_VARIABLES) | {"done", "loss"} <= set(ds.data_vars)
    assert not ds.done.any() and ds.attrs["partial"] == 1
    for name, kind in FINAL_VARIABLES.items():
        values = ds[name].values
        assert values.shape == ds.done.shape, name
        if kind == "bool":
            assert values.dtype == bool and not values.any(), name
        else:
            assert values.dtype.kind == "f" and np.isnan(values).all(), name
    assert ds.loss.sizes["step"] == T and np.isnan(ds.loss.values).all()


def test_load_a_directory_with_no_finished_chunk(tmp_path):
    """spec.json written, no chunk finished (this shard has nothing to run): NaN, not KeyError."""
    spec = {**TINY, "axes": {"seed": 2}, "store": {}}
    with pytest.warns(UserWarning, match="partial"):
        jaxinit.run(spec, out=tmp_path / "d", chunk_size=4, shard="1/2", progress=False)
        ds = jaxinit.load(tmp_path / "d")
    assert ds.attrs["n_done"] == 0 and not ds.done.any()
    for name in FINAL_VARIABLES:
        assert name in ds, name
    assert np.isnan(ds.final_loss.values).all()


def test_a_big_sweep_with_no_finished_chunk_loads_its_loss_lazily(tmp_path, monkeypatch):
    """Curves over LAZY_BYTES and nothing done yet: the all-NaN loss is not built in memory."""
    from jaxinit.engine import results

    spec = {**TINY, "axes": {"seed": 2}, "store": {}}
    with pytest.warns(UserWarning, match="partial"):
        jaxinit.run(spec, out=tmp_path / "d", chunk_size=4, shard="1/2", progress=False)
        monkeypatch.setattr(results, "LAZY_BYTES", 0)
        ds = jaxinit.load(tmp_path / "d")
    assert isinstance(ds.loss.variable._data, results.indexing.LazilyIndexedArray)
    assert ds.loss.shape == (2, T) and np.isnan(ds.loss.values).all()


def test_never_is_nan_not_minus_one(plan):
    """Steps of events that never happened are NaN, so means and medians leave them out."""
    chunks = _fake_chunks(plan)
    for c in chunks:
        ids = c["run_id"]
        for name in STEP_VARIABLES:
            c[f"final/{name}"] = np.where(ids % 3 == 0, -1, 10 * ids).astype(np.int32)
    ds = assemble(plan, chunks, partial=False)
    ids = np.arange(12)
    expect = np.where(ids % 3 == 0, np.nan, 10.0 * ids)
    for name in STEP_VARIABLES:
        assert ds[name].dtype.kind == "f", name
        np.testing.assert_array_equal(ds[name].values.ravel(), expect)
        assert float(ds[name].mean()) == pytest.approx(np.nanmean(expect))
        assert "NaN" in ds[name].attrs["description"]


def test_every_variable_has_attrs_and_layer_has_a_coordinate(plan):
    ds = assemble(plan, _fake_chunks(plan), partial=False)
    for name, var in ds.data_vars.items():
        assert var.attrs.get("long_name") and var.attrs.get("description"), name
    assert ds.final_loss.attrs["units"] == "1" and ds.time_to_threshold.attrs["units"] == "steps"
    assert ds.step.attrs["units"] == "steps"
    np.testing.assert_array_equal(ds.layer.values, [0, 1])  # layer_grad_norm of 2 layers
    assert ds.layer_grad_norm.sel(layer=1).shape == ds.loss.shape


def test_attrs_table_covers_every_diagnostic_and_final():
    from jaxinit.blocks.metrics import DIAGNOSTICS

    assert set(FINAL_VARIABLES) | set(DIAGNOSTICS) | {"done", "loss", "step", "layer"} <= set(
        VARIABLE_ATTRS
    )


def test_saved_params_have_attrs(tiny_sweep):
    w = tiny_sweep["params0/layers/0/w"]
    assert "initial" in w.attrs["long_name"] and w.attrs["description"]


def test_lazy_curves_equal_eager_and_read_only_the_chunks_they_need(tmp_path, monkeypatch):
    """``load(lazy=True)`` (the default for curves over LAZY_BYTES, e.g. a million runs) gives
    the eager Dataset's values under every kind of selection, NaN for runs not done and NaN
    padding for narrower groups, and a one-run selection opens one chunk file."""
    from jaxinit.engine import results, store

    spec = {
        "name": "lazy",
        "task": {"name": "xor"},
        "train": {"steps": 40, "log_every": 10, "diagnostics": ["grad_norm", "layer_grad_norm"]},
        "axes": {"model.widths": [[3], [2, 2]], "init.scale": [0.5, 2.0], "seed": 5},
    }
    out = tmp_path / "sweep"
    with pytest.warns(UserWarning, match="partial"):
        jaxinit.run(spec, out, progress=False, chunk_size=4, shard="0/2")  # half the chunks
    eager = results.load(out, lazy=False)
    lazy = results.load(out, lazy=True)
    assert not eager.done.all() and eager.done.any()
    for name in eager.data_vars:
        assert lazy[name].dims == eager[name].dims, name
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)
    selections = [
        {"seed": 0},
        {"seed": [3, 1], "init_scale": 1},
        {"step": slice(1, 3), "layer": 1},
        {"model_widths": 1, "seed": slice(None, None, 2), "step": [0, 4]},
    ]
    for sel in selections:
        for name in ("loss", "layer_grad_norm"):
            want = eager[name].isel({d: i for d, i in sel.items() if d in eager[name].dims})
            got = lazy[name].isel({d: i for d, i in sel.items() if d in lazy[name].dims})
            np.testing.assert_array_equal(got.values, want.values)
    assert np.isnan(lazy.layer_grad_norm.isel(model_widths=0, layer=2).values).all()  # padding
    opened = []
    real = store.read_member
    monkeypatch.setattr(results, "read_member", lambda f, n: opened.append(f) or real(f, n))
    done = np.argwhere(eager.done.values)[0]
    np.testing.assert_array_equal(lazy.loss[tuple(done)].values, eager.loss[tuple(done)].values)
    assert len(opened) == 1
    monkeypatch.setattr(results, "LAZY_BYTES", 0)  # the default picks lazy above the limit
    assert isinstance(results.load(out).loss.variable._data, results.indexing.LazilyIndexedArray)
