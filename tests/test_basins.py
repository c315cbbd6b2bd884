"""Basins: symmetry-aware clustering, barriers, restart statistics, spurious minima (issue 4)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import jaxinit
from jaxinit.analysis import basins, symmetry
from jaxinit.analysis.curvature import MINIMUM, classify
from jaxinit.plots import FIGURES


def _xor_spec(**axes):
    return {
        "name": "xor_tiny",
        "task": {"name": "xor"},
        "model": {"widths": [3], "activation": "tanh"},
        "init": {"scale": 2.0, "bias_scheme": "normal", "bias_scale": 0.1},
        "optimizer": {"learning_rate": 1.0},
        "train": {"steps": 1000, "log_every": 500, "diagnostics": []},
        "store": {"save_params": True},
        "axes": axes or {"seed": 24},
    }


@pytest.fixture(scope="module")
def xor_ds():
    """24 trained XOR 2-3-1 tanh nets at a large init scale, so some fail."""
    return jaxinit.run(_xor_spec(), progress=False)


def _run(ds, i):
    g = basins.groups(ds)[0]
    return jax.tree.map(lambda a: np.asarray(a[i]), g.params_R), g


def _permute_and_flip(params, rng):
    """A random hidden-unit permutation and sign flips of a 1-hidden-layer tanh net."""
    (l0, l1) = params["layers"]
    perm = rng.permutation(l0["w"].shape[1])
    sign = rng.choice([-1.0, 1.0], l0["w"].shape[1])
    sign[0] = -1.0  # at least one flip
    return {
        "layers": [
            {"w": l0["w"][:, perm] * sign, "b": l0["b"][perm] * sign},
            {"w": l1["w"][perm] * sign[:, None], "b": l1["b"]},
        ]
    }


def test_permuted_and_flipped_copy_is_the_same_basin_with_zero_barrier(xor_ds):
    """Acceptance 1: the copy lands in the original's basin and the straight path is flat."""
    i = int(np.nanargmin(xor_ds.final_loss.values))
    params, g = _run(xor_ds, i)
    copy = _permute_and_flip(params, np.random.default_rng(0))
    assert not np.allclose(symmetry.flat(copy), symmetry.flat(params))  # really moved
    x = jnp.asarray(g.task.x_train)
    np.testing.assert_allclose(g.model.apply(copy, x), g.model.apply(params, x), atol=1e-5)
    # canonical forms coincide, and weight matching undoes the permutation exactly
    np.testing.assert_allclose(
        symmetry.flat(symmetry.canonicalize(copy, "odd")),
        symmetry.flat(symmetry.canonicalize(params, "odd")),
        atol=1e-6,
    )
    # put the copy into the Dataset in place of another run: same basin
    j = (i + 1) % xor_ds.sizes["seed"]
    ds = xor_ds.copy(deep=True)
    for name, leaf in zip(["layers/0/b", "layers/0/w", "layers/1/b", "layers/1/w"], _leaves(copy)):
        ds[f"params/{name}"][j] = leaf
    ds["final_loss"][j] = ds["final_loss"][i]
    b = basins.find_basins(ds, basins.BasinConfig(p_tol=1e-4))
    assert int(b.label[i]) == int(b.label[j]) >= 0
    g2 = basins.groups(ds)[0]
    a, c = basins.aligned_pairs(g2, [(i, j)])
    height = basins.barrier_heights(basins.path_losses(g2.loss_fn(), a, c, 17))
    assert abs(height[0]) < 1e-6
    # without alignment the straight path between the two copies does cross a barrier
    raw = basins.path_losses(
        g2.loss_fn(), *(jax.tree.map(lambda v: v[None], p) for p in (params, copy)), 17
    )
    assert basins.barrier_heights(raw)[0] > 1e-2


def _leaves(params):
    return [
        params["layers"][0]["b"],
        params["layers"][0]["w"],
        params["layers"][1]["b"],
        params["layers"][1]["w"],
    ]


def test_different_solutions_are_not_merged(xor_ds):
    """A solved run and a stuck run (losses far apart) are in different basins with a barrier
    (every finished run clustered; by default a run still moving is left out as UNCONVERGED)."""
    b = basins.find_basins(xor_ds, basins.BasinConfig(converged_only=False))
    loss = xor_ds.final_loss.values
    best, worst = int(np.nanargmin(loss)), int(np.nanargmax(loss))
    assert loss[worst] - loss[best] > 0.1, "the fixture should contain a failed run"
    assert int(b.label[best]) != int(b.label[worst])
    row = b.table.set_index("basin")
    assert (
        row.loc[int(b.label[best]), "is_global"] and not row.loc[int(b.label[worst]), "is_global"]
    )
    assert row["fraction"].sum() == pytest.approx(1.0)
    assert ((row.ci_lo <= row.fraction) & (row.fraction <= row.ci_hi)).all()
    ids, mat = basins.barrier_matrix(b, 0, reps=2, n_points=17)
    assert mat.shape == (len(ids), len(ids)) and np.allclose(mat, mat.T)
    assert np.nanmax(mat) > 0.0


def test_spec_basin_tolerances_are_the_default(xor_ds):
    """``[basins]`` in the spec drives find_basins: a huge tolerance merges every run."""
    spec = json.loads(xor_ds.attrs["spec"])
    spec["basins"]["converged_only"] = False
    every = xor_ds.assign_attrs(spec=json.dumps(spec))
    assert len(basins.find_basins(every).table) > 1
    assert len(basins.find_basins(xor_ds).table) < len(basins.find_basins(every).table)
    spec["basins"]["f_tol"] = 1e6
    loose = xor_ds.assign_attrs(spec=json.dumps(spec))
    assert len(basins.find_basins(loose).table) == 1


def test_leader_cluster_respects_tolerance():
    out = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 1.0], [1.0, 1.02], [5.0, 5.0]])
    loss = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    ok = np.array([True, True, True, True, False])
    lab = basins.leader_cluster(out, loss, ok, f_tol=0.05)
    assert lab[0] == lab[1] != lab[2] == lab[3]
    assert lab[4] == basins.DIVERGED
    assert len(set(basins.leader_cluster(out, loss, ok, f_tol=10.0)[:4])) == 1


def test_classifier_on_a_function_with_known_critical_points():
    """Acceptance 2: f = (x² - 1)² + y² has minima (±1, 0) and a saddle at the origin."""

    def loss(p):
        x, y = p["xy"]
        return (x**2 - 1) ** 2 + y**2

    pts = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [jnp.nan, 0.0]])
    for exact_max in (256, 0):  # exact Hessian, then Lanczos
        ends = classify(loss, {"xy": pts}, grad_tol=1e-4, exact_max=exact_max)
        assert list(ends.kind_R) == [0, 0, 1, 2, 3]
        np.testing.assert_allclose(ends.eig_min_R[:3], [2.0, 2.0, -4.0], rtol=1e-4)
        np.testing.assert_allclose(ends.eig_max_R[:2], [8.0, 8.0], rtol=1e-4)


def test_net_at_the_origin_is_a_saddle():
    """A bias-free tanh net at θ = 0 on a regression task is critical with a negative eigenvalue
    (the cross term E[y x] couples the layers); exact and Lanczos agree."""
    task = jaxinit.TASKS["linear_regression"](in_dim=3, n_points=64)
    model = jaxinit.mlp((4,), in_dim=3, out_dim=1, activation="tanh", bias=False)
    from jaxinit.analysis.curvature import loss_function

    zero = jax.tree.map(
        lambda a: jnp.zeros((1, *a.shape)), model.init(jax.random.key(0), jaxinit.InitSpec())
    )
    f = loss_function(model, task)
    exact = classify(f, zero, grad_tol=1e-6)
    lanczos = classify(f, zero, grad_tol=1e-6, exact_max=0, lanczos_steps=16)
    assert exact.grad_norm_R[0] < 1e-6
    assert exact.kind_R[0] == lanczos.kind_R[0] == 1  # saddle
    np.testing.assert_allclose(lanczos.eig_min_R, exact.eig_min_R, rtol=1e-3)
    # the cross-term eigenvalue is -|E[y x]| (for each hidden unit)
    xy = np.asarray(task.x_train).T @ np.asarray(task.y_train)[:, 0] / len(task.x_train)
    np.testing.assert_allclose(exact.eig_min_R[0], -np.linalg.norm(xy), rtol=1e-3)


def test_barrier_of_a_double_well():
    def loss(p):
        return (p["x"][0] ** 2 - 1) ** 2

    a, b = {"x": jnp.array([[-1.0], [1.0]])}, {"x": jnp.array([[1.0], [1.0]])}
    heights = basins.barrier_heights(basins.path_losses(loss, a, b, 21))
    np.testing.assert_allclose(heights, [1.0, 0.0], atol=1e-6)


def _synthetic(hit_CxS, loss_CxS):
    c, s = hit_CxS.shape
    coords = {"init_scale": [0.5, 1.0][:c], "seed": np.arange(s)}
    dims = ("init_scale", "seed")
    ds = xr.Dataset(
        {
            "final_loss": (dims, loss_CxS),
            "done": (dims, np.ones((c, s), bool)),
            "diverged": (dims, np.zeros((c, s), bool)),
        },
        coords,
    )
    ds.attrs["axes"] = json.dumps({"init_scale": "init.scale", "seed": "seed"})
    hit = xr.DataArray(hit_CxS, coords, dims)
    return ds, basins.Basins(hit.astype(int), hit, None, [], None, [])


def test_restart_statistics():
    assert basins.restarts_needed(0.5) == 7  # 1 - 0.5^7 ≥ 0.99 > 1 - 0.5^6
    assert basins.restarts_needed(0.0) == float("inf") and basins.restarts_needed(1.0) == 1
    hit = np.array([[True, False, False, False] * 25, [True, True, False, True] * 25])
    loss = np.where(hit, 0.0, 1.0)
    ds, b = _synthetic(hit, loss)
    stats = basins.restart_stats(ds, b, ks=(1, 2, 4))
    np.testing.assert_allclose(stats.p_global, [0.25, 0.75])
    np.testing.assert_allclose(stats.best_of_2, [1 - 0.75**2, 1 - 0.25**2])
    # blocks of 4 seeds always contain the global run: measured best-of-4 is 1
    np.testing.assert_allclose(stats.emp_4, [1.0, 1.0])
    np.testing.assert_allclose(stats.emp_2, [0.5, 1.0])  # pairs (T,F),(F,F) / (T,T),(F,T)
    assert (stats.p_lo < stats.p_global).all() and (stats.p_global < stats.p_hi).all()
    assert list(stats.k_needed) == [basins.restarts_needed(0.25), basins.restarts_needed(0.75)]
    # each row is labelled by the axis value itself (a one-axis stack gave the 1-tuple (0.5,))
    assert list(stats.init_scale) == [0.5, 1.0]


def test_population_loss_matches_monte_carlo():
    """The closed-form arc-cosine population loss equals a Monte-Carlo estimate (any widths,
    output weights), vanishes with zero gradient at the teacher."""
    from jaxinit.blocks.tasks import relu_population_loss

    task = jaxinit.TASKS["teacher_student"](in_dim=5, teacher_widths=[3], population=True)
    rng = np.random.default_rng(0)
    w, a = rng.normal(size=(5, 4)), rng.normal(size=(4, 1))
    params = {"layers": [{"w": jnp.asarray(w, jnp.float32)}, {"w": jnp.asarray(a, jnp.float32)}]}
    x = rng.normal(size=(100_000, 5))
    err = np.maximum(x @ w, 0) @ a[:, 0] - np.maximum(x[:, :3], 0).sum(1)
    mc, se = np.mean(err**2) / 2, np.std(err**2) / 2 / np.sqrt(len(x))
    assert abs(float(task.objective(params)) - mc) < 4 * se
    v = jnp.eye(5)[:, :3]
    at_teacher = {"layers": [{"w": v}, {"w": jnp.ones((3, 1))}]}
    assert abs(float(relu_population_loss(at_teacher, v))) < 1e-5
    grad = jax.grad(lambda p: relu_population_loss(p, v))(at_teacher)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
    assert float(jnp.abs(grad["layers"][0]["w"]).max()) < 1e-5


def test_teacher_student_reports_spurious_rates_with_intervals():
    """Acceptance 3 at tiny size: a rate per width with a CI; spurious endpoints at k = 10 exist,
    are critical points with a positive-definite Hessian and loss well above zero; none at k = 4.
    The relu_student keeps its output layer at ones."""
    spec = {
        "name": "ts_tiny",
        "task": {
            "name": "teacher_student",
            "population": True,
            "teacher_widths": [],
            "n_train": 16,
            "n_test": 16,
        },
        "model": {"name": "relu_student", "widths": []},
        "init": {"scheme": "glorot_uniform"},
        "optimizer": {"learning_rate": 0.3},
        "train": {"steps": 2000, "log_every": 1000, "grad_tol": 1e-5, "diagnostics": []},
        "store": {"save_params": True},
        "axes": {"task.in_dim": [4, 10], "seed": 40},
    }
    ds = jaxinit.run(spec, progress=False)
    # relu_student trains its first layer only: the output layer stays at ones
    np.testing.assert_array_equal(
        ds["params/layers/1/w"].values[np.isfinite(ds["params/layers/1/w"].values)], 1.0
    )
    assert not np.allclose(
        ds["params/layers/0/w"].values, ds["params0/layers/0/w"].values, equal_nan=True
    )
    tab = basins.spurious_rates(ds).set_index("task_in_dim")
    assert list(tab.index) == [4, 10] and (tab.runs == 40).all()
    assert ((tab.ci_lo <= tab.rate) & (tab.rate <= tab.ci_hi)).all()
    assert tab.loc[4, "spurious"] == 0 and tab.loc[10, "spurious"] > 0
    g = basins.groups(ds)[1]
    loss = ds.final_loss.sel(task_in_dim=10).values
    spurious = ~np.isnan(ds.converged_step.sel(task_in_dim=10).values) & (loss > 1e-3)
    params = jax.tree.map(lambda a: a[spurious], g.params_R)
    ends = basins.classify_group(g._replace(params_R=params), grad_tol=1e-4)
    assert (ends.kind_R == MINIMUM).all() and (ends.eig_min_R > 1e-3).all()
    assert (ends.loss_R > 1e-3).all()


@pytest.fixture(scope="module")
def plane_ds():
    spec = _xor_spec(
        **{"init.plane_a": list(np.linspace(-2, 2, 6)), "init.plane_b": list(np.linspace(-2, 2, 5))}
    )
    spec["init"]["plane_seed"] = 0
    spec["train"] = {"steps": 300, "log_every": 300, "diagnostics": []}
    return jaxinit.run(spec, progress=False)


def test_basin_figures_draw(xor_ds, plane_ds):
    import matplotlib.pyplot as plt

    for name in ("basin_sizes", "basin_loss_hist", "barrier_matrix", "restarts"):
        plt.close(FIGURES[name](xor_ds))
    plt.close(FIGURES["basin_map"](plane_ds))
    plt.close(FIGURES["outcome_map"](plane_ds))
    b = basins.find_basins(plane_ds)
    assert b.label.shape == (6, 5, 1) and (b.label.values >= basins.UNCONVERGED).all()
    assert b.excluded.clustered.sum() == (b.label.values >= 0).sum() > 0


def _user_dense_model() -> jaxinit.Model:
    """A user's own 2-3-1 tanh net in its own layout, declaring its dense-stack symmetry."""

    def init(key, init_spec):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "hidden": {"kernel": init_spec.scale * jax.random.normal(k1, (2, 3)),
                       "bias": 0.1 * jax.random.normal(k3, (3,))},
            "out": {"kernel": jax.random.normal(k2, (3, 1)) / 3**0.5, "bias": jnp.zeros((1,))},
        }  # fmt: skip

    def apply(params, x, *, key=None, train=False):
        h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
        return h @ params["out"]["kernel"] + params["out"]["bias"]

    sym = jaxinit.Symmetry(
        "odd",
        lambda p: [{"w": p[k]["kernel"], "b": p[k]["bias"]} for k in ("hidden", "out")],
        lambda ls: {k: {"kernel": l["w"], "bias": l["b"]} for k, l in zip(("hidden", "out"), ls)},
    )
    return jaxinit.Model(init, apply, symmetry=sym, model_id="user-2-3-1")


def test_user_model_basins_and_barriers():
    """Defect 3: a user model is analysed through the symmetry it declares (it raised
    KeyError 'params/layers/0/b'); without passing the model the error says what to do."""
    model = _user_dense_model()
    spec = {**_xor_spec(seed=16), "basins": {"p_tol": 0.5}}
    ds = jaxinit.run(spec, model=model, progress=False)
    with pytest.raises(ValueError, match="user model.*model="):
        basins.find_basins(ds)
    b = basins.find_basins(ds, model=model)
    assert b.table["size"].sum() == b.excluded["clustered"].sum() > 0 and not b.notes
    ids, barriers = basins.barrier_matrix(b)
    assert barriers.shape == (len(ids), len(ids)) and np.isfinite(barriers).all()
    g = b.groups[0]
    i = int(np.nanargmin(ds.final_loss.values))
    one = jax.tree.map(lambda a: np.asarray(a[i]), g.params_R)
    canon = symmetry.canonical_params(one, g.symmetry)
    f = g.loss_fn()
    assert abs(float(f(canon)) - float(f(one))) < 1e-5  # same function, model's own layout


def test_diag_linear_basins_in_function_space():
    """Defect 3: diag_linear declares no symmetry: clustering and barriers use raw parameters
    (they raised KeyError 'layers'), and the note says so."""
    spec = {
        "task": {"name": "sparse_regression", "in_dim": 8, "n_points": 4},
        "model": {"name": "diag_linear"},
        "init": {"scale": 0.5, "perturbation": 0.1},
        "optimizer": {"learning_rate": 0.05},
        "train": {"steps": 200, "log_every": 100, "diagnostics": []},
        "store": {"save_params": True},
        "basins": {"p_tol": 0.5, "converged_only": False},
        "axes": {"seed": 6},
    }
    ds = jaxinit.run(spec, progress=False)
    b = basins.find_basins(ds)
    assert b.table["size"].sum() == 6 and any("declares no symmetry" in n for n in b.notes)
    ids, barriers = basins.barrier_matrix(b)
    assert np.isfinite(barriers).all()


def test_unconverged_runs_are_reported_apart(xor_ds):
    """Issue 13: basins hold converged runs; the rest is counted, and f_tol sensitivity shown."""
    b = basins.find_basins(xor_ds)
    gnorm = xor_ds.final_grad_norm.values.ravel()
    loss = xor_ds.final_loss.values.ravel()
    lab = b.label.values.ravel()
    finished = lab != basins.DIVERGED
    moving = finished & (gnorm >= 1e-3) & (loss > loss[finished].min() + 1e-2)
    assert np.array_equal(lab == basins.UNCONVERGED, moving) and moving.any()
    ex = b.excluded.iloc[0]
    assert ex.clustered + ex.unconverged + ex.diverged_or_unfinished + ex.unclustered == ex.runs
    sens = basins.f_tol_sensitivity(xor_ds)
    assert list(sens.f_tol) == pytest.approx([0.025, 0.05, 0.1])
    assert sens.basins.is_monotonic_decreasing
