"""k-means (Lloyd) as an engine algorithm: inits, fixed points with known answers, the spec's
[algorithm] section through validation, identity and the store (issue 11)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinit
from jaxinit.analysis import restarts
from jaxinit.analysis.stats import wilson
from jaxinit.blocks import kmeans
from jaxinit.blocks.tasks import TASKS, Task
from jaxinit.config.spec import SpecError
from jaxinit.engine import algorithms
from jaxinit.engine.store import StoreError

# Four points at the corners of a wide rectangle (10 × 1), labelled left / right.
CORNERS = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]], np.float32)


def rectangle() -> Task:
    y = np.array([0, 0, 1, 1], np.int32)
    return Task(CORNERS, y, CORNERS, y, "ce", 0.99, 0.05)


@pytest.fixture
def with_rectangle(monkeypatch):
    monkeypatch.setitem(TASKS, "rectangle", rectangle)


def _spec(**algorithm):
    return {
        "name": "rect",
        "task": {"name": "rectangle"},
        "algorithm": {"name": "kmeans", "init": "forgy", **algorithm},
        "train": {"steps": 10, "log_every": 5, "diagnostics": []},
        "store": {"save_params": True},
        "axes": {"seed": 256},
    }


def test_lloyd_stops_in_the_known_non_global_fixed_point():
    """Acceptance: k = 2 on the rectangle's corners. Centres splitting the long sides (bottom /
    top, (5, 0) and (5, 1)) are a fixed point of Lloyd with loss 25; splitting the short sides
    (left / right) is the global optimum, loss 0.25. Both stay put exactly."""
    x = jnp.asarray(CORNERS)
    bad = {"centres": jnp.array([[5.0, 0.0], [5.0, 1.0]])}
    good = {"centres": jnp.array([[0.0, 0.5], [10.0, 0.5]])}
    for state, value in ((bad, 25.0), (good, 0.25)):
        after = kmeans.step(state, x)
        assert np.array_equal(after["centres"], state["centres"])
        assert float(kmeans.changed(state, after, x)) == 0
        assert float(kmeans.loss(after, x)) == pytest.approx(value)
    # a start on the bad side of the watershed goes there: both left corners as centres
    s = {"centres": x[jnp.array([0, 1])]}
    for _ in range(3):
        s = kmeans.step(s, x)
    assert np.allclose(s["centres"], bad["centres"])


def test_forgy_on_the_rectangle_matches_the_exact_rate(with_rectangle):
    """Forgy picks 2 of the 4 corners: 2 of the 6 pairs (a short side) end in the long-side fixed
    point, so P(global) = 2/3 exactly; the sweep's rate is within its Wilson interval, and every
    run ends at one of the two known optima."""
    ds = jaxinit.run(_spec(), progress=False)
    loss = ds.final_loss.values
    assert np.all(np.isclose(loss, 0.25) | np.isclose(loss, 25.0))
    assert (ds.converged_step <= 2).all()
    hit = int(np.isclose(loss, 0.25).sum())
    lo, hi = wilson(hit, loss.size)
    assert lo <= 2 / 3 <= hi
    opt = restarts.find_optima(ds)
    row = opt.summary.iloc[0]
    assert row.n_optima == 2 and row.p_global == hit / loss.size and row.ref_is_global
    bad = opt.table[~opt.table.is_global].iloc[0]
    assert bad.loss == pytest.approx(25.0) and bad.fraction == pytest.approx(1 - hit / loss.size)
    # the success flag and the ARI metric agree with the analysis
    assert np.array_equal(ds.success.values, opt.is_global.values)


@pytest.mark.parametrize("how", kmeans.INITS)
def test_inits_are_valid_starts(how):
    task = TASKS["blobs"](k=6, n_per_cluster=20)
    x = jnp.asarray(task.x_train)
    keys = jax.random.split(jax.random.key(0), 32)
    c = jax.vmap(lambda k: kmeans.init_centres(k, x, 6, how))(keys)
    assert c.shape == (32, 6, 2) and bool(jnp.isfinite(c).all())
    if how == "random_partition":  # means of random halves of the data: near the data's mean
        # each centre averages ~20 of the 120 points: about 1/√20 of the data's spread away
        spread = np.linalg.norm(np.asarray(c) - np.asarray(x).mean(0), axis=-1)
        size = np.linalg.norm(np.asarray(x).std(0))
        assert spread.mean() < 0.35 * size and spread.max() < 0.8 * size
    else:  # data points, all different
        on_data = np.abs(np.asarray(c)[:, :, None] - np.asarray(x)[None, None]).sum(-1) == 0
        assert on_data.any(-1).all()
        assert all(len({tuple(r) for r in ci}) == 6 for ci in np.asarray(c))


def test_plus_plus_beats_forgy_and_lloyd_never_goes_up():
    """On 8 well-separated blobs, k-means++ finds the generating partition far more often than
    Forgy (D² sampling rarely puts two seeds in one blob), and no run's loss increases."""
    spec = {
        "task": {"name": "blobs", "k": 8},
        "algorithm": {"name": "kmeans"},
        "train": {"steps": 30, "log_every": 3, "diagnostics": []},
        "axes": {"algorithm.init": ["forgy", "kmeans++"], "seed": 64},
    }
    ds = jaxinit.run(spec, progress=False)
    rate = ds.success.mean("seed")
    assert (
        float(rate.sel(algorithm_init="kmeans++")) > float(rate.sel(algorithm_init="forgy")) + 0.2
    )
    steps = ds.loss.diff("step")
    assert float(steps.max()) <= 1e-5 * float(ds.loss.max())
    assert ds.final_metric.where(ds.success).min() >= 0.99  # ARI of the generating partition


def test_spec_checks_name_the_field(with_rectangle):
    with pytest.raises(SpecError, match="algorithm.name"):
        jaxinit.validate(jaxinit.Spec.from_dict({"algorithm": {"name": "kmedoids"}}))
    with pytest.raises(SpecError, match=r"algorithm.init \(for kmeans\).*random_resp"):
        jaxinit.resolve_spec(_spec(init="random_resp"))
    with pytest.raises(SpecError, match="algorithm.k must be in 1..4"):
        jaxinit.resolve_spec(_spec(k=5))
    with pytest.raises(SpecError, match="set algorithm.k"):
        jaxinit.resolve_spec({**_spec(), "task": {"name": "sinusoid"}})
    with pytest.raises(SpecError, match="axis 'init.scale' does nothing for algorithm 'kmeans'"):
        jaxinit.resolve_spec({**_spec(), "axes": {"init.scale": [1.0, 2.0], "seed": 2}})
    with pytest.raises(SpecError, match="uses no model"):
        jaxinit.run(_spec(), model=jaxinit.mlp((2,), in_dim=2, out_dim=2), progress=False)


def test_identity_holds_the_algorithm_not_the_model(with_rectangle, tmp_path):
    rec = jaxinit.prepare(_spec()).record
    ident = rec["identity"]
    assert ident["algorithm.name"] == "kmeans" and ident["algorithm.init"] == "forgy"
    assert ident["model.name"] == "kmeans" and ident["model.params"] == {
        "centres": [[2, 2], "float32"]
    }
    assert not any(k.startswith(("init.", "optimizer.", "model.widths")) for k in ident)
    # gradient training keeps the identity it had before [algorithm] existed
    plain = jaxinit.prepare({"task": {"name": "xor"}}).record["identity"]
    assert not any(k.startswith("algorithm.") for k in plain)
    # a store resumes only the same algorithm settings, and loads back unchanged
    out = tmp_path / "s"
    first = jaxinit.run({**_spec(), "axes": {"seed": 8}}, out, progress=False)
    again = jaxinit.run({**_spec(), "axes": {"seed": 8}}, out, progress=False)
    assert np.array_equal(first.final_loss.values, again.final_loss.values)
    assert json.loads(jaxinit.load(out).attrs["model"])["name"] == "kmeans"
    with pytest.raises(StoreError, match=r"algorithm\.init: \"forgy\" there, \"kmeans\+\+\" here"):
        jaxinit.run({**_spec(init="kmeans++"), "axes": {"seed": 8}}, out, progress=False)


def test_runs_share_their_start_across_other_axes():
    """Common random numbers: seed s draws the same start whatever the other axes are, and
    the same data give the same run bit for bit in another chunk size."""
    spec = {"task": {"name": "blobs", "k": 4}, "algorithm": {"name": "kmeans", "init": "forgy"},
            "train": {"steps": 6, "log_every": 3, "diagnostics": []},
            "store": {"save_params": True}, "axes": {"seed": 6}}  # fmt: skip
    a = jaxinit.run(spec, progress=False, chunk_size=6)
    b = jaxinit.run(spec, progress=False, chunk_size=4)
    assert np.array_equal(a["params/centres"].values, b["params/centres"].values)
    key = algorithms.run_key(0, jnp.int32(3))
    x = jnp.asarray(TASKS["blobs"](k=4).x_train)
    assert np.array_equal(a["params0/centres"].values[3], kmeans.init_centres(key, x, 4, "forgy"))
