"""Tasks: array shapes and dtypes, determinism, and the losses and metrics on worked examples."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.blocks import user_data
from jaxinit.blocks.tasks import (
    TASKS,
    loss_value,
    metric_value,
    relu_kernel,
    relu_population_loss,
    relu_population_terms,
)

NAMES = sorted(TASKS)
SEEDED = [n for n in NAMES if "seed" in TASKS[n].__code__.co_varnames]


def task_args(name: str) -> dict:
    """Every task builds from its defaults, but ``arrays`` (a user's data): here a small set."""
    if name != "arrays":
        return {}
    x = np.arange(12.0).reshape(6, 2)
    return {
        "loss": "ce",
        "data_sha256": user_data.register({"x_train": x, "y_train": np.arange(6) % 3}),
    }


@pytest.fixture(scope="module")
def tasks():
    return {name: TASKS[name](**task_args(name)) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_finite(tasks, name):
    t = tasks[name]
    assert t.loss in ("bce", "ce", "mse")
    for x, y in ((t.x_train, t.y_train), (t.x_test, t.y_test)):
        assert x.ndim == 2 and x.shape[1] == t.in_dim and x.shape[0] == y.shape[0] > 0
        assert x.dtype == np.float32 and np.isfinite(x).all()
        if t.loss == "ce":
            assert y.ndim == 1 and y.dtype.kind == "i"
        else:
            assert y.shape == (x.shape[0], t.out_dim) and y.dtype == np.float32
            assert np.isfinite(y).all()
        if t.loss == "bce":
            assert set(np.unique(y)) <= {0.0, 1.0}
    assert 0 < t.success_metric <= 1
    assert math.isfinite(t.threshold) and t.threshold > 0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(tasks, name):
    again = TASKS[name](**task_args(name))
    for a, b in zip(tasks[name][:4], again[:4]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", SEEDED)
def test_seed_changes_data(tasks, name):
    other = TASKS[name](seed=1)
    assert not np.array_equal(tasks[name].x_train, other.x_train)


def test_xor_truth_table(tasks):
    t = tasks["xor"]
    table = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}
    got = {tuple(int(v) for v in x): int(y[0]) for x, y in zip(t.x_train, t.y_train)}
    assert got == table
    assert t.loss == "bce"


@pytest.mark.parametrize("n", [2, 4])
def test_parity_labels(n):
    t = TASKS["parity"](n=n)
    rows = {tuple(int(v) for v in x) for x in t.x_train}
    assert len(rows) == 2**n and all(set(r) <= {0, 1} for r in rows)
    np.testing.assert_array_equal(t.y_train[:, 0], t.x_train.sum(1) % 2)
    assert t.y_train.mean() == 0.5


def test_bce_by_hand():
    z = np.array([[0.0], [2.0], [-3.0]], np.float32)
    y = np.array([[0.0], [1.0], [1.0]], np.float32)
    # -y log σ(z) - (1-y) log(1-σ(z)), each row by hand
    rows = [math.log(2), math.log(1 + math.exp(-2)), math.log(1 + math.exp(3))]
    assert float(loss_value("bce", z, y)) == pytest.approx(np.mean(rows), rel=1e-6)
    # stable for large logits: log(1 + e^100) - 0 = 100
    assert float(loss_value("bce", np.array([[100.0]]), np.array([[0.0]]))) == pytest.approx(100)
    # z > 0 predicts 1: rows 1 and 2 are right, row 3 is wrong
    assert float(metric_value("bce", z, y)) == pytest.approx(2 / 3)


def test_ce_by_hand():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    y = np.array([2, 1])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    expected = ((lse - 3.0) + math.log(3)) / 2
    assert float(loss_value("ce", logits, y)) == pytest.approx(expected, rel=1e-6)
    # argmax of row 2 is class 0 (ties go to the first), so one of two is right
    assert float(metric_value("ce", logits, y)) == pytest.approx(0.5)


def test_mse_and_r2_by_hand():
    y = np.array([[1.0], [2.0], [3.0], [6.0]], np.float32)
    pred = np.array([[1.0], [3.0], [3.0], [4.0]], np.float32)
    # half the mean squared error: (0 + 1 + 0 + 4) / 4 / 2
    assert float(loss_value("mse", pred, y)) == pytest.approx(5 / 8)
    # R² = 1 - 5 / Σ(y - 3)² = 1 - 5/14
    assert float(metric_value("mse", pred, y)) == pytest.approx(1 - 5 / 14, rel=1e-6)
    assert float(metric_value("mse", y, y)) == pytest.approx(1.0)
    assert float(metric_value("mse", np.full_like(y, 3.0), y)) == pytest.approx(0.0, abs=1e-7)


def test_mse_sums_outputs():
    y = np.zeros((2, 2), np.float32)
    pred = np.array([[1.0, 1.0], [0.0, 2.0]], np.float32)
    assert float(loss_value("mse", pred, y)) == pytest.approx((2 + 4) / 2 / 2)


def test_unknown_loss_raises():
    with pytest.raises(ValueError):
        loss_value("hinge", np.zeros((1, 1)), np.zeros((1, 1)))


# -- teacher-student population loss -------------------------------------------------------------
def _expanded_population_loss(w, a, v):
    """The textbook expanded form ``(aᵀK_ww a - 2 aᵀK_wv 1 + 1ᵀK_vv 1) / 2``: exact in theory,
    but k² terms of size ~0.1-0.5 cancel at the optimum."""
    w, a = jnp.asarray(w), jnp.asarray(a)
    v = jnp.asarray(v, w.dtype)

    def gram(x):
        k = relu_kernel(x, x)
        return k - jnp.diag(jnp.diag(k)) + jnp.diag(jnp.sum(x**2, 0) / 2)

    return (a @ gram(w) @ a - 2 * a @ relu_kernel(w, v).sum(1) + gram(v).sum()) / 2


def _params(w, a):
    return {"layers": [{"w": jnp.asarray(w)}, {"w": jnp.asarray(a)[:, None]}]}


@pytest.mark.parametrize("shape", [(5, 4, 3), (7, 3, 5)])
def test_population_parts_are_nonnegative_and_sum_to_the_expanded_form(shape):
    """In float64 the stable split equals the expanded sum (value, gradient and, once, the
    Hessian) for any widths and output weights, and each of its four parts is ≥ 0."""
    i, ks, kt = shape
    rng = np.random.default_rng(i)
    w, a, v = rng.normal(size=(i, ks)), rng.normal(size=ks), np.eye(i)[:, :kt]
    with jax.enable_x64(True):
        parts = jax.jit(relu_population_terms)(_params(w, a), v)  # eager: ~4 s of op dispatch
        assert (np.asarray(parts) >= 0).all()
        new = lambda w: relu_population_loss(_params(w, a), v)  # noqa: E731
        old = lambda w: _expanded_population_loss(w, a, v)  # noqa: E731
        w = jnp.asarray(w)
        ops = (lambda f: f, jax.grad, jax.hessian) if i == 5 else (lambda f: f, jax.grad)
        for op in ops:
            np.testing.assert_allclose(
                jax.jit(op(new))(w), jax.jit(op(old))(w), rtol=1e-12, atol=1e-12
            )


def test_population_loss_float_floor_near_the_global_minimum():
    """k = n = 10, float32, the teacher with its rows permuted and perturbed by 1e-4 … 1e-2:
    the stable form is never negative and within 2e-7 of a float64 evaluation at the same
    float32 point (the measured floor: max 1.3e-7), while the expanded sum errs by up to ~4e-6
    and prints negative losses. The spurious threshold (1e-3) is far above either."""
    k, rng = 10, np.random.default_rng(0)
    v = np.eye(k)
    w = np.stack(
        [
            v[:, rng.permutation(k)] + scale * rng.normal(size=(k, k))
            for scale in (0.0, 1e-4, 1e-3, 1e-2)
            for _ in range(50)
        ]
    ).astype(np.float32)
    a = np.ones(k, np.float32)
    new32 = np.asarray(jax.jit(jax.vmap(lambda w: relu_population_loss(_params(w, a), v)))(w))
    old32 = np.asarray(jax.jit(jax.vmap(lambda w: _expanded_population_loss(w, a, v)))(w))
    with jax.enable_x64(True):
        a64 = a.astype(np.float64)
        one = lambda w: relu_population_loss(_params(w, a64), v)  # noqa: E731
        ref = np.asarray(jax.jit(jax.vmap(one))(w.astype(np.float64)))
    assert (new32 >= 0).all() and (ref >= 0).all()
    assert np.abs(new32 - ref).max() < 2e-7
    assert old32.min() < 0 and np.abs(old32 - ref).max() > 1e-6  # what the stable form fixes


def test_population_loss_is_zero_and_smooth_at_the_teacher():
    """At the (permuted) teacher the loss is 0, the gradient 0 and the Hessian finite and PSD:
    pairs at cosine exactly 1 do not produce inf or NaN."""
    v = np.eye(6)[:, :4]
    w = v[:, [2, 0, 3, 1]].astype(np.float32)
    a = np.ones(4, np.float32)
    f = lambda w: relu_population_loss(_params(w, a), v)  # noqa: E731
    assert float(jax.jit(f)(jnp.asarray(w))) == 0.0
    assert float(jnp.abs(jax.jit(jax.grad(f))(jnp.asarray(w))).max()) < 1e-6
    with jax.enable_x64(True):
        a = a.astype(np.float64)
        h = np.asarray(jax.jit(jax.hessian(f))(jnp.asarray(w, jnp.float64))).reshape(24, 24)
    assert np.isfinite(h).all() and np.linalg.eigvalsh(h).min() > -1e-12


def test_rotated_teacher():
    """teacher_rotation_seed draws a Haar-random orthonormal teacher: its rows are orthonormal,
    not axis-aligned, the same for the same seed; labels follow it; the landscape is the
    axis-aligned one rotated (L(Q w; Q e) = L(w; e))."""
    from jaxinit.blocks.tasks import haar_orthogonal_np

    q = haar_orthogonal_np(6, 3)
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-12)
    np.testing.assert_array_equal(q, haar_orthogonal_np(6, 3))
    base = TASKS["teacher_student"](in_dim=6, teacher_widths=[4], population=True)
    rot = TASKS["teacher_student"](
        in_dim=6, teacher_widths=[4], population=True, teacher_rotation_seed=3
    )
    v = q[:, :4]
    np.testing.assert_allclose(
        rot.y_train[:, 0], np.maximum(rot.x_train @ v, 0).sum(1), rtol=1e-5, atol=1e-5
    )
    w = np.random.default_rng(1).normal(size=(6, 4)) / 2
    a = np.ones(4)
    with jax.enable_x64(True):
        lhs = float(rot.objective(_params(q @ w, a)))
        rhs = float(base.objective(_params(w, a)))
        assert float(rot.objective(_params(v, a))) < 1e-12
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
    assert not np.allclose(np.abs(v), np.eye(6)[:, :4], atol=0.1)
    with pytest.raises(ValueError, match="population"):
        TASKS["teacher_student"](teacher_rotation_seed=0)
