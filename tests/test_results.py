"""Results: chunks → Dataset (partial sweeps marked), the tidy table, saved parameters."""

import json

import numpy as np
import pytest
from conftest import TINY

from jaxinit.plan import make_plan
from jaxinit.results import assemble, tidy
from jaxinit.spec import Spec

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
    assert (ds.diverged_step.values.ravel()[~expect] == -1).all()
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
    assert ds.diverged.dtype == bool and ds.time_to_threshold.dtype.kind == "i"


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
