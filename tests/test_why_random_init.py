"""Issue 3's acceptance criteria ("why random init?") as tests on tiny sweeps, plus the analytic
references (theory) and the new figures. Each sweep runs in memory with few seeds and steps."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxinit  # noqa: E402
from jaxinit import plots
from jaxinit.blocks import theory  # noqa: E402
from jaxinit.blocks.tasks import TASKS  # noqa: E402

XOR = {"task": {"name": "xor"}, "optimizer": {"name": "sgd", "learning_rate": 0.5}}


def _run(d):
    return jaxinit.run({**XOR, **d}, progress=False)


@pytest.fixture(scope="module")
def symmetry():
    """Criterion 1/2 sweep: XOR, tanh 2-4-4-1 (two hidden layers), five schemes, 16 seeds."""
    return _run(
        {
            "name": "symmetry_test",
            "model": {"widths": [4, 4], "activation": "tanh"},
            "init": {"value": 0.5},
            "train": {
                "steps": 600,
                "log_every": 20,
                "diagnostics": ["layer_grad_norm", "distinct_units"],
            },  # fmt: skip
            "axes": {
                "init.scheme": [
                    "zeros",
                    "constant",
                    "identical_rows",
                    "he_normal",
                    "glorot_normal",
                ],
                "seed": 16,
            },  # fmt: skip
        }
    )


def test_1_symmetric_inits_keep_one_distinct_unit_random_inits_keep_all(symmetry):
    du = symmetry.distinct_units.isel(layer=[0, 1])  # (scheme, seed, step, hidden layer)
    for scheme in ("zeros", "constant", "identical_rows"):
        assert np.all(du.sel(init_scheme=scheme).values == 1), scheme
    for scheme in ("he_normal", "glorot_normal"):
        assert np.all(du.sel(init_scheme=scheme).values == 4), scheme
    # the symmetric runs do learn something (units move, they just move together)
    g = symmetry.layer_grad_norm.sel(init_scheme="constant").isel(step=0, layer=0).values
    assert np.all(g > 0)


def test_2_zero_init_first_layer_gradient_is_exactly_zero(symmetry):
    g0 = symmetry.layer_grad_norm.sel(init_scheme="zeros").isel(step=0).values  # (seed, layer)
    assert np.all(g0[:, 0] == 0.0)
    # with tanh(0) = 0 every hidden activation is 0, so no layer ever moves
    assert np.all(symmetry.layer_grad_norm.sel(init_scheme="zeros").values == 0.0)
    assert np.all(symmetry.layer_grad_norm.sel(init_scheme="he_normal").isel(step=0).values > 0)


def test_2b_zero_init_with_sigmoid_first_layer_starts_at_zero_then_moves():
    ds = _run(
        {
            "model": {"widths": [3], "activation": "sigmoid"},
            "init": {"scheme": "zeros"},
            "train": {"steps": 40, "log_every": 20, "diagnostics": ["layer_grad_norm"]},
            "task": {"name": "circles", "n_points": 33},  # unbalanced labels: dL/db2 ≠ 0
            "axes": {"seed": 2},
        }
    )
    g = ds.layer_grad_norm.values  # (seed, step, layer)
    assert np.all(g[:, 0, 0] == 0.0)  # dW1 = W2ᵀ·dZ2 ⊙ σ'(Z1) = 0 while W2 = 0
    assert np.all(g[:, 0, 1] > 0)  # σ(0) = 1/2 ≠ 0: the output layer gets signal at once …
    assert np.all(g[:, -1, 0] > 0)  # … so W2 ≠ 0 after one step and layer 1 starts to move


def test_3_dropout_partly_breaks_the_symmetry_of_a_constant_init():
    ds = _run(
        {
            "model": {"widths": [8], "activation": "tanh"},
            "init": {"value": 0.5},
            "train": {
                "steps": 800,
                "log_every": 100,
                "diagnostics": ["distinct_units", "distinct_units_coarse"],
            },  # fmt: skip
            "axes": {
                "init.scheme": ["constant", "glorot_normal"],
                "model.dropout": [0.0, 0.3],
                "seed": 24,
            },  # fmt: skip
        }
    )
    end = ds.isel(step=-1, layer=0)
    const_drop = end.sel(init_scheme="constant", model_dropout=0.3)
    assert np.all(end.distinct_units.sel(init_scheme="constant", model_dropout=0.0) == 1)
    assert float((const_drop.distinct_units > 1).mean()) > 0.5
    random = end.sel(init_scheme="glorot_normal", model_dropout=0.0)
    assert float(const_drop.distinct_units_coarse.mean()) < float(
        random.distinct_units_coarse.mean()
    )


def test_4_saturation_rises_with_scale_and_time_to_threshold_has_an_interior_minimum():
    scales = [0.001, 0.01, 0.1, 1.0, 10.0, 30.0, 100.0]
    ds = _run(
        {
            "model": {"widths": [8], "activation": "tanh"},
            "init": {"scheme": "lecun_normal"},
            "train": {
                "steps": 600,
                "log_every": 50,
                "threshold": 0.05,
                "diagnostics": ["saturation"],
            },  # fmt: skip
            "axes": {"model.activation": ["tanh", "sigmoid"], "init.scale": scales, "seed": 24},
        }
    )
    for act in ("tanh", "sigmoid"):
        sub = ds.sel(model_activation=act)
        sat = sub.saturation.isel(step=0, layer=0).mean("seed").values
        assert np.all(np.diff(sat) >= 0) and sat[-1] > sat[0] + 0.3, (act, sat)
        tab = plots.time_to_threshold_table(sub.expand_dims("model_activation"))
        t = tab.median_time.to_numpy()
        best = int(np.argmin(t))
        assert np.isfinite(t[best]) and 0 < best < len(scales) - 1, (act, t)
        assert t[0] > t[best] and t[-1] > t[best]


def test_5_convex_controls_zero_and_random_init_reach_the_same_loss():
    # Glorot-normal at scale 0 is exactly the all-zero init, and keeps one compilation per task.
    ds = jaxinit.run(
        {
            "model": {"widths": []},
            "init": {"scheme": "glorot_normal"},
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "train": {"steps": 1500, "log_every": 500, "diagnostics": []},
            "store": {"save_params": True},
            "axes": {
                "task.name": ["linear_regression", "logistic_regression"],
                "init.scale": [0.0, 1.0],
                "seed": 4,
            },  # fmt: skip
        },
        progress=False,
    )
    w0 = ds["params0/layers/0/w"]  # NaN-padded where a task has fewer inputs
    zero_w, rand_w = w0.sel(init_scale=0.0).values, w0.sel(init_scale=1.0).values
    assert np.all(zero_w[np.isfinite(zero_w)] == 0) and np.all(rand_w[np.isfinite(rand_w)] != 0)
    for task in ("linear_regression", "logistic_regression"):
        loss = ds.final_loss.sel(task_name=task)
        zero = float(loss.sel(init_scale=0.0).isel(seed=0))
        rand = loss.sel(init_scale=1.0).values
        assert np.all(np.abs(rand - zero) / zero < 1e-3), (task, zero, rand)
        assert bool(ds.success.sel(task_name=task).all()), task  # every init reaches the optimum
    # the linear-regression optimum is the least-squares solution, from either init
    t = TASKS["linear_regression"]()
    x1 = np.hstack([t.x_train, np.ones((len(t.x_train), 1))])
    w_star = theory.least_squares(x1, t.y_train)
    sub = ds.sel(task_name="linear_regression")
    w = np.concatenate(
        [sub["params/layers/0/w"].values[..., 0], sub["params/layers/0/b"].values], -1
    )
    assert np.all(theory.relative_distance(w, w_star) < 1e-3)
    plt.close(plots.FIGURES["convex_control"](ds))


def test_theory_min_l1_recovers_a_sparse_vector_and_min_l2_is_the_pseudo_inverse():
    t = TASKS["sparse_regression"](in_dim=30, n_points=15, sparsity=2, seed=1)
    x, y = t.x_train.astype(np.float64), t.y_train[:, 0].astype(np.float64)
    b1, b2 = theory.min_l1_interpolant(x, y), theory.min_l2_interpolant(x, y)
    assert np.allclose(x @ b1, y, atol=1e-6) and np.allclose(x @ b2, y, atol=1e-6)
    assert np.sum(np.abs(b1) > 1e-6) == 2  # exact recovery of the 2-sparse truth
    assert np.abs(b1).sum() < np.abs(b2).sum() and np.linalg.norm(b2) < np.linalg.norm(b1)
    small, large = (theory.diag_linear_limit(x, y, a) for a in (1e-3, 3.0))
    assert theory.relative_distance(small, b1) < 0.02
    assert theory.relative_distance(large, b2) < 0.02


def test_implicit_bias_diag_linear_follows_the_gradient_flow_prediction():
    ds = jaxinit.run(
        {
            "task": {"name": "sparse_regression", "in_dim": 30, "n_points": 15, "sparsity": 2},
            "model": {"name": "diag_linear"},
            "optimizer": {"name": "sgd", "learning_rate": 0.02},
            "train": {"steps": 6000, "log_every": 3000, "diagnostics": []},
            "store": {"save_params": True},
            "axes": {"init.scale": [0.01, 1.0], "seed": 1},
        },
        progress=False,
    )
    beta = plots.diag_linear_beta(ds)[:, 0]  # (scale, D)
    t = TASKS["sparse_regression"](in_dim=30, n_points=15, sparsity=2)
    b1, b2 = (
        theory.min_l1_interpolant(t.x_train, t.y_train),
        theory.min_l2_interpolant(t.x_train, t.y_train),
    )
    d1, d2 = theory.relative_distance(beta, b1), theory.relative_distance(beta, b2)
    assert d1[0] < d2[0] and d2[1] < d1[1]  # small α: sparse solution; large α: min-ℓ2
    for k, a in enumerate((0.01, 1.0)):
        lim = theory.diag_linear_limit(t.x_train, t.y_train, a)
        assert theory.relative_distance(beta[k], lim) < 0.05
    fig = plots.FIGURES["implicit_bias"](ds)
    assert len(fig.axes[0].lines) == 4  # runs and theory, for min-ℓ1 and min-ℓ2
    plt.close(fig)


@pytest.fixture(scope="module")
def tiny():
    """A small perturbation × scale sweep with every diagnostic the figures read."""
    return _run(
        {
            "model": {"widths": [3], "activation": "tanh"},
            "init": {"scheme": "constant", "value": 0.5},
            "train": {
                "steps": 40,
                "log_every": 20,
                "diagnostics": [
                    "grad_norm",
                    "layer_grad_norm",
                    "distinct_units",
                    "distinct_units_coarse",
                    "saturation",
                ],
            },  # fmt: skip
            "axes": {"init.perturbation": [0.0, 0.1], "init.scale": [0.1, 1.0], "seed": 2},
        }
    )


@pytest.mark.parametrize(
    "name", ["distinct_units", "layer_grad_norm", "scale_sweep", "time_to_threshold",
             "magic_numbers", "symmetry_breaking"],
)  # fmt: skip
def test_new_figures_draw(name, tiny):
    fig = plots.FIGURES[name](tiny)
    assert fig.axes
    plt.close(fig)


@pytest.mark.parametrize(
    "name", ["symmetry", "dropout", "init_scale", "convex_control", "implicit_bias"]
)
def test_bundled_specs_have_256_seeds_per_cell_and_known_figures(name):
    from jaxinit.config.bundled import find_spec

    spec = jaxinit.Spec.from_toml(find_spec(name))
    assert len(dict(spec.axes)["seed"]) >= 256
    assert spec.report and all(f in plots.FIGURES for f in spec.report)
