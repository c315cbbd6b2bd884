"""Initializers: sampled statistics against their formulas, scale, orthogonality, symmetry."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.blocks.initializers import INITIALIZERS, expected_std

SCHEMES = sorted(INITIALIZERS)
RANDOM = [s for s in SCHEMES if s not in ("zeros", "constant")]
SYMMETRIC = ("zeros", "constant", "identical_rows")
BIG, SMALL = (512, 128), (8, 6)  # few distinct shapes: each one compiles the samplers again

# The formulas of the module docstring, written out independently of expected_std.
FORMULAS = {
    "zeros": lambda i, o: 0.0,
    "constant": lambda i, o: 0.0,
    "normal": lambda i, o: 1.0,
    "uniform": lambda i, o: 1.0,
    "lecun_normal": lambda i, o: math.sqrt(1 / i),
    "glorot_normal": lambda i, o: math.sqrt(2 / (i + o)),
    "glorot_uniform": lambda i, o: math.sqrt(2 / (i + o)),
    "he_normal": lambda i, o: math.sqrt(2 / i),
    "he_uniform": lambda i, o: math.sqrt(2 / i),
    "orthogonal": lambda i, o: math.sqrt(1 / max(i, o)),
    "identical_rows": lambda i, o: math.sqrt(1 / i),
}


def test_formula_table_covers_registry():
    assert set(FORMULAS) == set(INITIALIZERS)


@pytest.mark.parametrize("shape", [BIG, BIG[::-1]])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_expected_std_formula(scheme, shape):
    assert expected_std(scheme, shape, 2.5) == pytest.approx(2.5 * FORMULAS[scheme](*shape))


@pytest.mark.parametrize("scheme", RANDOM)
def test_empirical_std_matches_formula(scheme):
    """Sample mean and std agree with (0, expected_std) within 5 standard errors.

    The standard error of the sample std comes from the sample's own fourth moment,
    SE(s) ≈ sqrt((m4 - s⁴) / n) / (2 s), so it is right for normal and uniform alike.
    ``identical_rows`` has only ``fan_in`` independent draws (one shared column). fan_in ≠
    fan_out, so a formula that mixes them up fails.
    """
    shape = BIG
    w = np.asarray(INITIALIZERS[scheme](jax.random.key(3), shape, 1.0), np.float64)
    assert w.shape == shape
    sample = w[:, 0] if scheme == "identical_rows" else w.ravel()
    n = sample.size
    mean, std = sample.mean(), sample.std()
    m4 = np.mean((sample - mean) ** 4)
    se_std = math.sqrt((m4 - std**4) / n) / (2 * std)
    target = FORMULAS[scheme](*shape)
    assert abs(std - target) < 5 * se_std, (std, target, se_std)
    assert abs(mean) < 5 * std / math.sqrt(n)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_scale_multiplies(scheme):
    key, shape = jax.random.key(1), SMALL
    w1 = INITIALIZERS[scheme](key, shape, 1.0)
    w3 = INITIALIZERS[scheme](key, shape, 3.0)
    np.testing.assert_allclose(w3, 3.0 * w1, rtol=1e-6, atol=1e-7)
    if scheme not in ("zeros", "constant"):
        assert float(jnp.std(w3)) > 0


def test_constant_value_and_zeros():
    w = INITIALIZERS["constant"](jax.random.key(0), SMALL, 0.5, value=2.0)
    np.testing.assert_array_equal(w, np.full(SMALL, 1.0))
    z = INITIALIZERS["zeros"](jax.random.key(0), SMALL, 7.0)
    np.testing.assert_array_equal(z, np.zeros(SMALL))


@pytest.mark.parametrize("shape", [SMALL, SMALL[::-1], (6, 6)])
def test_orthogonal(shape):
    scale = 1.7
    w = np.asarray(INITIALIZERS["orthogonal"](jax.random.key(2), shape, scale), np.float64)
    assert w.shape == shape
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(shape)), atol=1e-5)


@pytest.mark.parametrize("scheme", SYMMETRIC)
def test_symmetric_schemes_give_identical_units(scheme):
    w = np.asarray(INITIALIZERS[scheme](jax.random.key(5), SMALL, 0.8))
    np.testing.assert_array_equal(w, np.broadcast_to(w[:, :1], w.shape))


@pytest.mark.parametrize("scheme", [s for s in RANDOM if s not in SYMMETRIC])
def test_random_schemes_give_distinct_units(scheme):
    w = np.asarray(INITIALIZERS[scheme](jax.random.key(5), SMALL, 1.0))
    assert not np.allclose(w[:, 0], w[:, 1])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_deterministic_in_key(scheme):
    init = INITIALIZERS[scheme]
    a = init(jax.random.key(7), SMALL, 1.0)
    b = init(jax.random.key(7), SMALL, 1.0)
    np.testing.assert_array_equal(a, b)
    if scheme in RANDOM:
        c = init(jax.random.key(8), SMALL, 1.0)
        assert not np.allclose(a, c)


def test_jit_vmap_over_traced_scale():
    """One compiled program draws every scheme at a vector of scales (as a sweep does)."""
    key, scales = jax.random.key(4), jnp.array([0.5, 1.0, 2.0])

    @jax.jit
    def draw_all(scale):
        return {s: INITIALIZERS[s](key, SMALL, scale, value=1.5) for s in SCHEMES}

    batched = jax.vmap(draw_all)(scales)
    for scheme in SCHEMES:
        assert batched[scheme].shape == (3, *SMALL)
        for k, s in enumerate([0.5, 1.0, 2.0]):
            eager = INITIALIZERS[scheme](key, SMALL, s, value=1.5)
            np.testing.assert_allclose(batched[scheme][k], eager, rtol=1e-5, atol=1e-6)


def _original_float32(scheme: str, key, shape, scale):
    """The float32 draws as jax.random gives them (the code path before float32 draws were
    shared with float64), written out with JAX directly."""
    i, o = shape
    z = jax.random.normal(key, shape, jnp.float32)
    if scheme in ("normal", "lecun_normal", "glorot_normal", "he_normal"):
        return scale * FORMULAS[scheme](i, o) * z
    limit = math.sqrt(3.0) * FORMULAS[scheme](i, o)
    return scale * jax.random.uniform(key, shape, jnp.float32, -limit, limit)


@pytest.mark.parametrize("scheme", ["normal", "he_normal", "glorot_uniform", "uniform"])
def test_float32_draws_unchanged_and_float64_draws_the_same_numbers(scheme):
    """float32 weights are bit for bit jax.random's float32 draws; float64 weights are those
    same float32 draws, cast, then scaled in float64 (before: drawn in float64, a different
    sample: a seed started from other weights in a float64 sweep)."""
    key, shape, scale = jax.random.key(3), SMALL, 1.7
    w32 = INITIALIZERS[scheme](key, shape, scale, dtype=jnp.float32)
    want = _original_float32(scheme, key, shape, scale)
    assert w32.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(w32), np.asarray(want))
    with jax.enable_x64(True):
        w64 = INITIALIZERS[scheme](key, shape, scale)  # default dtype under x64: float64
        assert w64.dtype == jnp.float64
        w64 = np.asarray(w64)
    np.testing.assert_allclose(w64, np.asarray(want, np.float64), rtol=3e-7, atol=1e-7)
