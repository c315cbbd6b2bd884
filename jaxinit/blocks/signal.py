"""Empirical signal propagation and Jacobian spectra of deep random nets, to set beside
:mod:`jaxinit.blocks.theory`.

A random net of ``depth`` layers has pre-activations ``h^1 = x W^1 + b^1`` and
``h^{l+1} = φ(h^l) W^{l+1} + b^{l+1}`` with weights of variance ``σ_w²/fan_in`` (Gaussian, or
``σ_w`` times a Haar-orthogonal matrix) and biases ``N(0, σ_b²)``. Everything here is pure JAX:
a net's randomness is one key, layer ``l`` uses ``fold_in(key, l)``, and grids use
``fold_in(root, seed)`` per seed, shared across ``(σ_w, σ_b)`` (common random numbers: weights are
drawn at unit scale and multiplied by ``σ_w``, so one draw serves every grid point).

* :func:`propagate`: the per-layer pre-activation Gram matrix ``h_a · h_b / N`` of a batch of
  inputs (its diagonal is the variance ``q^l``, its normalized off-diagonal the correlation
  ``c^l``); :func:`propagate_grid` vmaps it over ``σ_w × σ_b × seeds``; :func:`split_gram`;
  :func:`backprop_norms`: how a gradient's norm grows or shrinks per layer going backwards.
* :func:`jacobians`: the input-output Jacobians ``∂φ(h^l)/∂x⁰`` at chosen depths;
  :func:`squared_singular_values` (their spectra), :func:`spectrum_moments` (mean and variance
  of the squared singular values, from traces), :func:`jacobian_moments_grid` over seeds.

>>> import jax, jax.numpy as jnp
>>> x = jnp.ones((2, 16)).at[1, 0].set(-1.0)
>>> propagate(jax.random.key(0), x, 1.0, 0.1, depth=5, width=32).shape
(5, 2, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.blocks.models import ACTIVATIONS

WEIGHTS = ("gaussian", "orthogonal")


def activation_fn(name: str):
    """The JAX function of a registered activation (a registry entry, or its ``.fn``)."""
    entry = ACTIVATIONS[name]
    return getattr(entry, "fn", entry)


def haar_orthogonal(key: Array, n: int) -> Array:
    """A Haar-distributed ``n × n`` orthogonal matrix from ``n`` Householder reflections.

    Householder QR of a Gaussian matrix with the signs of ``R``'s diagonal moved into ``Q``
    (Mezzadri 2007), except that each reflection is built from a fresh Gaussian vector: that is
    what the QR's k-th column is after the first ``k − 1`` reflections (they are orthogonal and
    independent of it), so the law is the same. Only matrix-vector products (``O(n³)`` in ``n``
    steps of a ``fori_loop``): no LAPACK call, which on a CPU shared by many threads can be
    hundreds of times slower than its flops.
    """
    z = jax.random.normal(key, (n, n))
    idx = jnp.arange(n)

    def reflect(k, carry):
        q, signs = carry
        x = jnp.where(idx >= k, z[:, k], 0.0)
        s = jnp.where(x[k] >= 0, 1.0, -1.0)
        u = x.at[k].add(s * jnp.linalg.norm(x))  # x − α e_k with α = −s |x|
        u = u / jnp.linalg.norm(u)
        return q - 2.0 * jnp.outer(q @ u, u), signs.at[k].set(-s)  # sign(R_kk) = sign(α)

    q, signs = jax.lax.fori_loop(0, n, reflect, (jnp.eye(n), jnp.ones(n)))
    return q * signs[None, :]


def unit_weight(key: Array, shape: tuple[int, int], weights: str = "gaussian") -> Array:
    """A ``(fan_in, fan_out)`` weight whose mean-field ``σ_w²`` is 1: ``fan_in · Var(W_ij) = 1``.

    ``gaussian``: ``N(0, 1/fan_in)``. ``orthogonal``: a Haar-orthogonal matrix (orthonormal rows
    or columns) times ``√(max(fan_in, fan_out) / fan_in)``, so a square one is exactly orthogonal.
    """
    fan_in, fan_out = shape
    if weights == "gaussian":
        return jax.random.normal(key, shape) / math.sqrt(fan_in)
    if weights == "orthogonal":
        q = haar_orthogonal(key, max(fan_in, fan_out))[:fan_in, :fan_out]
        return q * math.sqrt(max(fan_in, fan_out) / fan_in)
    raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")


def _layer(key: Array, x_BxI: Array, sigma_w, sigma_b, width: int, weights: str) -> Array:
    """``σ_w · x W + σ_b · b`` with ``W`` from :func:`unit_weight`, ``b ~ N(0, 1)``; ``(B, width)``."""
    k_w, k_b = jax.random.split(key)
    w = unit_weight(k_w, (x_BxI.shape[-1], width), weights)
    return sigma_w * (x_BxI @ w) + sigma_b * jax.random.normal(k_b, (width,))


@partial(jax.jit, static_argnames=("depth", "width", "activation", "weights"))
def propagate(
    key: Array,
    x_BxN0: Array,
    sigma_w: float | Array,
    sigma_b: float | Array,
    *,
    depth: int,
    width: int,
    activation: str = "tanh",
    weights: str = "gaussian",
) -> Array:
    """Pre-activation Gram matrices ``G^l = h^l h^lᵀ / width`` of layers ``1..depth``.

    ``x_BxN0``: a batch of ``B`` inputs. Returns ``(depth, B, B)``; theory:
    :func:`jaxinit.blocks.theory.gram_curve` with ``x_gram = x xᵀ / N0``. ``σ_w``, ``σ_b`` may be traced.
    """
    act = activation_fn(activation)
    gram = lambda h: h @ h.T / width
    h = _layer(jax.random.fold_in(key, 0), x_BxN0, sigma_w, sigma_b, width, weights)

    def step(h, l):
        h = _layer(jax.random.fold_in(key, l), act(h), sigma_w, sigma_b, width, weights)
        return h, gram(h)

    _, grams = jax.lax.scan(step, h, jnp.arange(1, depth))
    return jnp.concatenate([gram(h)[None], grams])


@partial(jax.jit, static_argnames=("n_seeds", "depth", "width", "activation", "weights"))
def propagate_grid(
    root: Array,
    x_BxN0: Array,
    sigma_ws: Array,
    sigma_bs: Array,
    *,
    n_seeds: int,
    depth: int,
    width: int,
    activation: str = "tanh",
    weights: str = "gaussian",
    first_seed: int | Array = 0,
) -> Array:
    """:func:`propagate` vmapped over ``σ_w × σ_b × seed``: shape ``(W, B_σ, S, depth, B, B)``.

    Seed ``s`` (``first_seed … first_seed + n_seeds - 1``, traced: a block of seeds) uses
    ``fold_in(root, s)`` at every ``(σ_w, σ_b)`` (common random numbers).
    """
    one = lambda k, sw, sb: propagate(
        k, x_BxN0, sw, sb, depth=depth, width=width, activation=activation, weights=weights
    )
    over_seeds = jax.vmap(one, (0, None, None))
    over_b = jax.vmap(over_seeds, (None, None, 0))
    over_w = jax.vmap(over_b, (None, 0, None))
    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(first_seed + jnp.arange(n_seeds))
    return over_w(keys, jnp.asarray(sigma_ws), jnp.asarray(sigma_bs))


@partial(jax.jit, static_argnames=("depth", "width", "activation", "weights"))
def backprop_norms(
    key: Array,
    x_N0: Array,
    sigma_w: float | Array,
    sigma_b: float | Array,
    *,
    depth: int,
    width: int,
    activation: str = "tanh",
    weights: str = "gaussian",
) -> Array:
    """Per-layer squared norm of a gradient sent backwards: ``|δ^l|² / width`` for
    ``l = 1..depth``, shape ``(depth,)``, where ``δ^l = ∂(g · h^depth)/∂h^l`` for one input
    ``x_N0`` and a random ``g ~ N(0, I)`` (so ``|δ^depth|²/width ≈ 1``).

    The same net as :func:`propagate` (same key, same layers). Mean-field theory:
    ``E|δ^l|² = χ₁^(depth − l) E|δ^depth|²`` (:func:`jaxinit.blocks.theory.gradient_growth`) once the
    pre-activations sit at ``q*``; weight gradients are ``δ^l ⊗ φ(h^(l−1))``, so they grow alike.
    """
    act = activation_fn(activation)

    def forward(taps_LxN):
        h = _layer(jax.random.fold_in(key, 0), x_N0[None], sigma_w, sigma_b, width, weights)
        h = h + taps_LxN[0]

        def step(h, l):
            h = _layer(jax.random.fold_in(key, l), act(h), sigma_w, sigma_b, width, weights)
            return h + taps_LxN[l], None

        h, _ = jax.lax.scan(step, h, jnp.arange(1, depth))
        return h[0]

    g = jax.random.normal(jax.random.fold_in(key, depth), (width,))
    deltas = jax.grad(lambda t: jnp.vdot(g, forward(t)))(jnp.zeros((depth, width)))
    return jnp.sum(deltas**2, -1) / width


def split_gram(gram_xBxB: Array) -> tuple[Array, Array]:
    """``(q, c)`` from Gram matrices ``(..., B, B)``: variances ``q`` ``(..., B)`` and the
    correlation matrices ``c = G_ab / √(G_aa G_bb)`` ``(..., B, B)``."""
    q = jnp.diagonal(gram_xBxB, axis1=-2, axis2=-1)
    s = jnp.sqrt(q)
    return q, gram_xBxB / (s[..., :, None] * s[..., None, :])


@partial(jax.jit, static_argnames=("depths", "activation", "weights"))
def jacobians(
    key: Array,
    x0_N: Array,
    sigma_w: float | Array,
    sigma_b: float | Array,
    *,
    depths: Sequence[int],
    activation: str = "tanh",
    weights: str = "gaussian",
) -> Array:
    """Input-output Jacobians ``J^l = ∂φ(h^l)/∂x⁰`` of a square random net (width
    ``N = len(x0_N)``) at each depth in ``depths`` (increasing): shape ``(len(depths), N, N)``.

    ``J^l = J^{l−1} W^l diag φ'(h^l)`` (row-vector convention, float32), accumulated layer by
    layer; layer ``l`` uses ``fold_in(key, l)``, so a prefix of ``depths`` gives the same values.
    For the mean-field comparison (:func:`jaxinit.blocks.theory.jacobian_moments`) start at the fixed
    point: ``x0 = input_at_variance(k, (q* − σ_b²)/σ_w², N)``.
    """
    if list(depths) != sorted(set(depths)) or depths[0] < 1:
        raise ValueError(f"depths must be increasing and >= 1, got {depths}")
    act = activation_fn(activation)
    n = x0_N.shape[-1]
    dact = jax.vmap(jax.grad(act))

    def step(carry, l):
        x, jac = carry
        k_w, k_b = jax.random.split(jax.random.fold_in(key, l))
        w = sigma_w * unit_weight(k_w, (n, n), weights)
        h = x @ w + sigma_b * jax.random.normal(k_b, (n,))
        return (act(h), (jac @ w) * dact(h)[None, :]), None

    carry, out, done = (x0_N, jnp.eye(n, dtype=x0_N.dtype)), [], 0
    for d in depths:
        carry, _ = jax.lax.scan(step, carry, jnp.arange(done, d))
        done = d
        out.append(carry[1])
    return jnp.stack(out)


def squared_singular_values(jac_xNxN: Array) -> Array:
    """Squared singular values of ``J`` (the eigenvalues of ``J Jᵀ``, ascending), ``(..., N)``.

    ``eigvalsh`` of the Gram matrix is much cheaper than an SVD on CPU; values far below the
    largest one carry its absolute rounding error (``~1e-7 · λ_max`` in float32).
    """
    return jnp.clip(jnp.linalg.eigvalsh(jac_xNxN @ jnp.swapaxes(jac_xNxN, -1, -2)), 0.0)


def spectrum_moments(jac_xNxN: Array) -> tuple[Array, Array]:
    """Mean and variance of the squared singular values of ``J`` from traces (no
    decomposition): ``m₁ = tr(JJᵀ)/N``, ``m₂ = tr((JJᵀ)²)/N``, variance ``m₂ − m₁²``.
    Dynamical isometry means mean ≈ 1 and variance ≈ 0."""
    n = jac_xNxN.shape[-1]
    jjt = jac_xNxN @ jnp.swapaxes(jac_xNxN, -1, -2)
    m1 = jnp.trace(jjt, axis1=-2, axis2=-1) / n
    m2 = jnp.sum(jjt**2, (-2, -1)) / n
    return m1, m2 - m1**2


@partial(jax.jit, static_argnames=("n_seeds", "depths", "activation", "weights"))
def jacobian_moments_grid(
    root: Array,
    x0_N: Array,
    sigma_w: float | Array,
    sigma_b: float | Array,
    *,
    n_seeds: int,
    depths: Sequence[int],
    activation: str = "tanh",
    weights: str = "gaussian",
) -> tuple[Array, Array]:
    """:func:`spectrum_moments` of :func:`jacobians` for seeds ``fold_in(root, s)``: mean and
    variance of the squared singular values, each ``(n_seeds, len(depths))``. Seeds run one
    after another (``lax.map``), so memory stays at one net's Jacobians."""
    keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(n_seeds))
    one = lambda k: spectrum_moments(
        jacobians(k, x0_N, sigma_w, sigma_b, depths=depths, activation=activation, weights=weights)
    )
    return jax.lax.map(one, keys)


def input_at_variance(key: Array, q_in: float, width: int) -> Array:
    """A Gaussian input ``x0 ~ N(0, q_in)`` of shape ``(width,)``, rescaled so that
    ``|x0|²/width = q_in`` exactly (so layer 1's pre-activation variance is ``σ_w² q_in + σ_b²``
    up to the weight draw)."""
    x = jax.random.normal(key, (width,))
    return x * jnp.sqrt(q_in / jnp.mean(x**2))
