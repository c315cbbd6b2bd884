"""Tasks: array shapes and dtypes, determinism, and the losses and metrics on worked examples."""

import math

import numpy as np
import pytest

from jaxinit.tasks import TASKS, loss_value, metric_value

NAMES = sorted(TASKS)
SEEDED = [n for n in NAMES if "seed" in TASKS[n].__code__.co_varnames]


@pytest.fixture(scope="module")
def tasks():
    return {name: TASKS[name]() for name in NAMES}


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
    again = TASKS[name]()
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
