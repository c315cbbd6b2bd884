"""Endpoint classification: saddles scaled to the spectrum, plateaus, escapes to infinity, and
the drift check, on small functions whose critical points are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.analysis.curvature import (
    DIVERGED,
    ESCAPING,
    KINDS,
    MINIMUM,
    NOT_CONVERGED,
    PLATEAU,
    SADDLE,
    classify,
    descend,
    saddle_tolerance,
)


def _tilted_double_well(p):
    """Minima near x = -1 (global) and x = +1 (strict, not global), a saddle near x = 0.08."""
    x, y = p["x"]
    return (x**2 - 1) ** 2 + 0.3 * x + y**2


def _tilt_critical_points() -> np.ndarray:
    """The three critical points ``(x, 0)``: roots of ``4x³ - 4x + 0.3`` (to float64)."""
    x = np.sort(np.roots([4.0, 0.0, -4.0, 0.3]).real)[::-1]  # +1-ish, saddle, -1-ish
    return np.stack([x[[0, 2, 1]], np.zeros(3)], 1)


def test_kinds_keep_their_indices():
    assert KINDS[:4] == ("minimum", "saddle", "not_converged", "diverged")
    assert (MINIMUM, SADDLE, NOT_CONVERGED, DIVERGED) == (0, 1, 2, 3)
    assert (KINDS[PLATEAU], KINDS[ESCAPING]) == ("plateau", "escaping")


def test_strict_non_global_minimum_stays_a_minimum():
    """Acceptance 2: a strict local minimum that is not global keeps "minimum" after the drift
    check (descent stays put), next to the global one; the saddle between them is a saddle."""
    pts = _tilt_critical_points()
    losses = [float(_tilted_double_well({"x": p})) for p in pts]
    assert losses[0] > losses[1] + 0.5  # the right-hand minimum is not global
    ends = classify(_tilted_double_well, {"x": pts.astype(np.float32)}, grad_tol=1e-4)
    assert [KINDS[k] for k in ends.kind_R] == ["minimum", "minimum", "saddle"]
    assert ends.drift is not None and list(ends.drift.ran_R) == [True, True, False]
    assert (ends.drift.late_move_R[:2] < 1e-9).all() and (ends.drift.loss_drop_R[:2] < 1e-9).all()
    np.testing.assert_allclose(ends.loss_R[:2], losses[:2], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shallow_saddle_is_a_saddle(dtype):
    """Acceptance 2: λ = (2, -1e-5) at the origin. The test is relative to the spectrum
    (τ · max|λ|, τ = 1e-6 above the float error of the Hessian), so it is a saddle in either
    precision; the old absolute threshold (1e-3) called it a minimum."""

    def f(p):
        x, y = p["x"]
        return x**2 - 0.5e-5 * y**2 + y**4

    ends = classify(f, {"x": np.zeros((1, 2), np.float32)}, dtype=dtype)
    assert ends.kind_R[0] == SADDLE
    np.testing.assert_allclose(ends.eig_min_R[0], -1e-5, rtol=1e-3)
    assert ends.saddle_tol_R[0] < 1e-5
    assert classify(f, {"x": np.zeros((1, 2))}, eig_tol=1e-3).kind_R[0] == MINIMUM


def test_minimum_at_infinity_is_escaping():
    """Acceptance 2: logistic loss on separable points has its infimum at |w| → ∞. At w = (6, 6)
    the gradient is below grad_tol and every Hessian eigenvalue is positive (the old classifier
    said "minimum"), but continued descent keeps lowering the loss while |w| grows."""
    x = jnp.array([[1.0, 0.5], [0.3, 1.0]])

    def f(p):
        return jnp.mean(jnp.logaddexp(0.0, -x @ p["w"]))

    ends = classify(f, {"w": np.array([[6.0, 6.0]], np.float32)})
    assert ends.grad_norm_R[0] < 1e-3 and ends.eig_min_R[0] > 0
    assert ends.kind_R[0] == ESCAPING
    assert ends.drift.late_growth_R[0] > 0.1 and ends.drift.loss_drop_R[0] > 0
    no_drift = classify(f, {"w": np.array([[6.0, 6.0]], np.float32)}, drift_steps=0)
    assert no_drift.kind_R[0] == MINIMUM and no_drift.drift is None


def test_plateau():
    """Far out on a Gaussian bump the gradient and the whole spectrum are tiny, the loss still
    falls under descent and |θ| shrinks (towards the minimum at 0): a plateau."""

    def f(p):
        return 1 - jnp.exp(-jnp.sum(p["x"] ** 2) / 200)

    ends = classify(f, {"x": np.array([[50.0, 0.0]], np.float32)})
    assert ends.kind_R[0] == PLATEAU
    assert ends.drift.loss_drop_R[0] > 0.5


def test_slow_valley_is_not_a_minimum_yet():
    """f = x² + 1e-6 y² at (0, 100): gradient 2e-4 and no negative curvature, but descent has
    far to go (κ = 2e6) and keeps moving without |θ| growing: not converged, not a minimum."""

    def f(p):
        x, y = p["x"]
        return x**2 + 1e-6 * y**2

    ends = classify(f, {"x": np.array([[0.0, 100.0]], np.float32)})
    assert ends.grad_norm_R[0] < 1e-3 and ends.kind_R[0] == NOT_CONVERGED
    assert ends.drift.late_growth_R[0] < 0


def test_diverged_and_not_converged_are_kept_apart():
    pts = np.array([[0.5, 0.5], [np.nan, 0.0], [1.0, 0.0]], np.float32)
    ends = classify(_tilted_double_well, {"x": pts}, diverged_R=np.array([False, False, True]))
    assert list(ends.kind_R) == [NOT_CONVERGED, DIVERGED, DIVERGED]
    assert np.isnan(ends.loss_R[1:]).all() and not ends.drift.ran_R.any()


def test_saddle_tolerance_is_relative_with_a_float_floor():
    lo, hi = np.array([-1e-3, -1.0]), np.array([10.0, 0.5])
    np.testing.assert_allclose(saddle_tolerance(lo, hi, 4, "float64", 1e-6), [1e-5, 1e-6])
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(
        saddle_tolerance(lo, hi, 100, "float32", 0.0), [16e3 * eps32, 1600 * eps32]
    )


def test_descend_is_monotone_gradient_descent_per_run():
    """f = x²/2 from x = 1: step 0.5 halves x each step; step 3 would overshoot to f = 2, so it
    is refused and halved to 1.5 (x → -0.5)."""

    def f(p):
        return 0.5 * p["x"][0] ** 2

    out = descend(f, {"x": np.ones((2, 1))}, None, np.array([0.5, 3.0]), steps=2)
    np.testing.assert_allclose(out["loss_half"], [0.125, 0.5])
    np.testing.assert_allclose(out["loss_end"], [0.5 * 0.25**2, 0.125])
    np.testing.assert_allclose(out["late_move"], [0.25, 1.5])
    np.testing.assert_allclose(out["gnorm0"], [1.0, 1.0])


def _xor_net(p, x):
    h = jax.nn.sigmoid(x @ p["w1"] + p["b1"])
    return (h @ p["w2"] + p["b2"])[:, 0]


def _xor_loss(p):
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = jnp.array([0.0, 1.0, 1.0, 0.0])
    z = _xor_net(p, x)
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)


def test_xor_221_sigmoid_has_no_non_global_minimum():
    """Acceptance 1 in small: 2-2-1 sigmoid XOR (cross-entropy) has no strict local minimum with
    non-zero error. Of 64 gradient-descent endpoints, those with loss > 0.01 that the old test
    (coarse saddle tolerance eig_tol = 1e-3, no drift) calls minima are saddles, escaping or not
    converged."""
    seeds = 64
    keys = jax.random.split(jax.random.key(0), seeds)

    def init(key):  # init scale 8: saturated units, where the non-global endpoints gather
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "w1": 8 * jax.random.normal(k1, (2, 2)),
            "b1": 0.1 * jax.random.normal(k3, (2,)),
            "w2": 8 * jax.random.normal(k2, (2, 1)) / jnp.sqrt(2.0),
            "b2": jnp.zeros((1,)),
        }

    def train(p):
        grad = jax.grad(_xor_loss)
        step = lambda _, q: jax.tree.map(lambda a, g: a - g, q, grad(q))  # noqa: E731
        return jax.lax.fori_loop(0, 2000, step, p)

    params = jax.jit(jax.vmap(train))(jax.vmap(init)(keys))
    old = classify(_xor_loss, params, eig_tol=1e-3, drift_steps=0)
    old_bad = (old.kind_R == MINIMUM) & (old.loss_R > 0.01)
    ends = classify(_xor_loss, params)
    assert old_bad.any()  # the test has teeth: the old rule finds non-global "minima" here
    assert not ((ends.kind_R == MINIMUM) & (ends.loss_R > 0.01)).any()
    assert set(ends.kind_R[old_bad]) <= {SADDLE, ESCAPING, NOT_CONVERGED, PLATEAU}
