"""Empirical signal propagation and Jacobian spectra (jaxinit.blocks.signal) against mean-field theory."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.blocks import signal as S
from jaxinit.blocks import theory as T


def _two_inputs(n0: int, corr: float) -> jax.Array:
    k1, k2 = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k1, (2, n0))
    return x.at[1].set(corr * x[0] + math.sqrt(1 - corr**2) * jax.random.normal(k2, (n0,)))


def _curves(gram_LxBxB):
    """Per-layer variance of input 0 and correlation of inputs 0 and 1."""
    g = np.asarray(gram_LxBxB, np.float64)
    return g[..., 0, 0], g[..., 0, 1] / np.sqrt(g[..., 0, 0] * g[..., 1, 1])


# -- acceptance 2: per-layer variance and correlation at depth >= 20, width 256 -------------------


@pytest.mark.parametrize(
    "activation, sigma_w2s, sigma_b2",
    [("tanh", (1.2, 2.5), 0.1), ("relu", (1.5, 2.0), 0.05)],  # ordered and chaotic / critical
)
def test_propagation_matches_mean_field_within_sampling_error(activation, sigma_w2s, sigma_b2):
    width, depth, n_seeds = 256, 24, 16
    x = _two_inputs(64, 0.8)
    x_gram = np.asarray(x @ x.T / x.shape[1], np.float64)
    grams = S.propagate_grid(
        jax.random.key(0),
        x,
        jnp.sqrt(jnp.array(sigma_w2s)),
        jnp.sqrt(jnp.array([sigma_b2])),
        n_seeds=n_seeds,
        depth=depth,
        width=width,
        activation=activation,
    )
    assert grams.shape == (2, 1, n_seeds, depth, 2, 2)
    for i, sw2 in enumerate(sigma_w2s):
        q, c = _curves(grams[i, 0])  # (seeds, depth)
        q_th, c_th = _curves(T.gram_curve(activation, x_gram, sw2, sigma_b2, depth))
        for emp, th, what in ((q, q_th, "q"), (c, c_th, "c")):
            se = emp.std(0, ddof=1) / math.sqrt(n_seeds)
            err = np.abs(emp.mean(0) - th)
            assert np.all(err <= 4.5 * se + 1e-3), (what, sw2, err / se)
    # the theory curves themselves move: variance towards q*, correlation towards c*
    q_th, c_th = _curves(T.gram_curve(activation, x_gram, sigma_w2s[0], sigma_b2, depth))
    assert abs(q_th[-1] - T.fixed_point_q(activation, sigma_w2s[0], sigma_b2)) < 2e-2 * q_th[-1]
    assert c_th[-1] > c_th[0]  # the ordered point pulls the two inputs together


def test_gradient_norms_grow_by_chi1_per_layer():
    # the "gradient" half of mean-field theory: E|δ^l|² = χ₁^(L−l) |δ^L|², ordered and chaotic
    depth, width, n_seeds = 20, 256, 64
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(0), s))(jnp.arange(n_seeds))
    for sw2, sb2 in ((1.2, 0.1), (2.5, 0.1)):
        q = T.fixed_point_q("tanh", sw2, sb2)
        x0 = S.input_at_variance(jax.random.key(7), (q - sb2) / sw2, 64)
        one = partial(S.backprop_norms, depth=depth, width=width)
        norms = np.asarray(jax.vmap(one, (0, None, None, None))(keys, x0, sw2**0.5, sb2**0.5))
        want = T.gradient_growth("tanh", sw2, sb2, depth)
        rel_se = norms.std(0, ddof=1) / math.sqrt(n_seeds) / norms.mean(0)
        err = np.abs(norms.mean(0) / want - 1)
        assert np.all(err <= 4 * rel_se + 0.02), (sw2, err / rel_se)
        assert (want[0] < 0.05) if sw2 < 1.5 else (want[0] > 5)  # a real trend, not noise


def test_grid_uses_common_random_numbers_per_seed():
    x = _two_inputs(16, 0.5)
    kw = dict(depth=4, width=32, activation="linear")
    grid = S.propagate_grid(
        jax.random.key(3), x, jnp.array([1.0, 2.0]), jnp.array([0.0, 0.2]), n_seeds=3, **kw
    )
    one = S.propagate(jax.random.fold_in(jax.random.key(3), 2), x, 2.0, 0.2, **kw)
    np.testing.assert_allclose(grid[1, 1, 2], one, rtol=1e-5)
    # linear, no bias: the Gram scales exactly by σ_w² per layer (the same draws at every σ_w)
    scale = 4.0 ** jnp.arange(1, 5)[:, None, None]
    np.testing.assert_allclose(grid[1, 0], grid[0, 0] * scale, rtol=1e-4)


# -- weights ----------------------------------------------------------------------------------------


def test_haar_orthogonal_is_orthogonal_and_haar():
    q = S.haar_orthogonal(jax.random.key(0), 64)
    np.testing.assert_allclose(q.T @ q, np.eye(64), atol=2e-6)
    # trace of a Haar orthogonal matrix: mean 0, variance 1 (for n >= 2); entries have var 1/n
    qs = jax.vmap(lambda k: S.haar_orthogonal(k, 8))(jax.random.split(jax.random.key(1), 4000))
    tr = np.trace(np.asarray(qs), axis1=1, axis2=2)
    assert abs(tr.mean()) < 0.06 and abs(tr.var() - 1) < 0.08
    assert abs(np.asarray(qs)[:, 3, 5].var() * 8 - 1) < 0.08


@pytest.mark.parametrize(
    "weights, shape",
    [
        ("gaussian", (8, 32)),
        ("orthogonal", (32, 32)),
        ("orthogonal", (8, 32)),
        ("orthogonal", (32, 8)),
    ],
)
def test_unit_weight_has_mean_field_sigma_w2_one(weights, shape):
    draw = jax.vmap(lambda k: S.unit_weight(k, shape, weights))
    w = draw(jax.random.split(jax.random.key(2), 64))
    assert float(shape[0] * jnp.var(w)) == pytest.approx(1.0, rel=0.05)


def test_unit_weight_rejects_unknown_weights():
    with pytest.raises(ValueError, match="weights"):
        S.unit_weight(jax.random.key(0), (4, 4), "uniform")


# -- Jacobian spectra (acceptance 1, dynamical isometry) -------------------------------------------


def test_deep_linear_jacobian_variance_grows_linearly_gaussian_zero_orthogonal():
    depths, n_seeds = (2, 4, 8, 16), 16
    x0 = S.input_at_variance(jax.random.key(7), 1.0, 128)
    kw = dict(n_seeds=n_seeds, depths=depths, activation="linear")
    mean, var = (
        np.asarray(a) for a in S.jacobian_moments_grid(jax.random.key(0), x0, 1.0, 0.0, **kw)
    )
    np.testing.assert_allclose(mean.mean(0), 1.0, atol=0.05)
    ratio = var.mean(0) / np.array(depths)  # theory: variance = L (large width)
    assert np.all((ratio > 0.9) & (ratio < 1.15)), ratio
    slope = np.polyfit(depths, var.mean(0), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.12)
    mean, var = S.jacobian_moments_grid(jax.random.key(0), x0, 1.0, 0.0, weights="orthogonal", **kw)
    np.testing.assert_allclose(mean, 1.0, atol=1e-4)
    assert np.all(np.abs(np.asarray(var)) < 1e-5)  # exact isometry, up to float32 rounding


@pytest.mark.parametrize(
    "activation, sigma_w2, sigma_b2, isometry_gain",
    [("relu", 2.0, 0.0, 1.5), ("tanh", 1.76, 0.05, 3.0)],  # both critical
)
def test_nonlinear_jacobian_moments_match_free_probability(
    activation, sigma_w2, sigma_b2, isometry_gain
):
    depths, n_seeds, n = (2, 4, 8), 16, 128
    q = T.fixed_point_q(activation, sigma_w2, sigma_b2)
    x0 = S.input_at_variance(jax.random.key(7), (q - sigma_b2) / sigma_w2, n)
    out = {}
    for w in ("gaussian", "orthogonal"):
        _, var = S.jacobian_moments_grid(
            jax.random.key(0), x0, math.sqrt(sigma_w2), math.sqrt(sigma_b2),
            n_seeds=n_seeds, depths=depths, activation=activation, weights=w,
        )  # fmt: skip
        var = np.asarray(var)
        th = np.array([T.jacobian_moments(activation, sigma_w2, sigma_b2, d, w)[1] for d in depths])
        se = var.std(0, ddof=1) / math.sqrt(n_seeds)
        assert np.all(np.abs(var.mean(0) - th) <= 3 * se + 0.15 * th), (w, var.mean(0), th)
        out[w] = var.mean(0)
    # orthogonal weights narrow the spectrum: by 2× for ReLU (μ₂/μ₁² = 2 stays), far more for
    # tanh, whose q* is small enough that φ' ≈ 1 (Pennington et al.: only sigmoids get isometry)
    assert np.all(out["gaussian"] / out["orthogonal"] > isometry_gain)


def test_jacobians_are_prefix_consistent_and_match_autodiff():
    x0 = S.input_at_variance(jax.random.key(7), 0.5, 16)
    kw = dict(activation="tanh", weights="gaussian")
    both = S.jacobians(jax.random.key(1), x0, 1.3, 0.2, depths=(2, 5), **kw)
    only = S.jacobians(jax.random.key(1), x0, 1.3, 0.2, depths=(5,), **kw)
    np.testing.assert_allclose(both[1], only[0], rtol=1e-5, atol=1e-6)

    def forward(x):  # the same net, written out: layer l uses fold_in(key, l)
        for l in range(5):
            k_w, k_b = jax.random.split(jax.random.fold_in(jax.random.key(1), l))
            h = x @ (1.3 * S.unit_weight(k_w, (16, 16))) + 0.2 * jax.random.normal(k_b, (16,))
            x = jnp.tanh(h)
        return x

    np.testing.assert_allclose(jax.jacfwd(forward)(x0).T, only[0], rtol=1e-4, atol=1e-6)
    sv2 = S.squared_singular_values(both)
    mean, var = S.spectrum_moments(both)
    np.testing.assert_allclose(sv2.mean(-1), mean, rtol=1e-4)
    np.testing.assert_allclose(sv2.var(-1), var, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="increasing"):
        S.jacobians(jax.random.key(1), x0, 1.3, 0.2, depths=(5, 2), **kw)
