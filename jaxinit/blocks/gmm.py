"""EM for a Gaussian mixture with full covariances, written for one run and vmapped by the engine.

The state is ``{"means": (K, D), "covs": (K, D, D), "weights": (K,)}``. One step is an E-step
(responsibilities from the current parameters) followed by an M-step (weighted means,
covariances plus ``reg_covar · I``, and mixing weights); the loss is the mean negative
log-likelihood per point, which EM never increases. Like k-means, EM stops at stationary points
that depend on where it starts. Starts (``algorithm.init``):

- ``random_resp``: uniform random responsibilities, normalised per point, then an M-step (every
  component starts near the data's mean, like k-means' random partition);
- ``random_means``: ``K`` distinct random data points;
- ``kmeans++``: ``K`` points from k-means++ seeding (:func:`jaxinit.blocks.kmeans.plus_plus`);

the last two then assign every point to the nearest of those points and take that hard
partition's M-step (as sklearn's ``init_params="k-means++"`` does). A component that
loses all its points keeps a tiny weight (``10·eps``) and ``reg_covar · I``, so no value becomes
NaN. Shapes are fixed (``K``, ``D`` static).

>>> import jax, jax.numpy as jnp
>>> x = jax.random.normal(jax.random.key(0), (200, 2))
>>> settings = Settings(init="kmeans++", k=2)
>>> s = init(jax.random.key(1), x, settings)
>>> bool(loss(step(s, x, settings), x) <= loss(s, x))
True
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.blocks import kmeans
from jaxinit.config.spec import Setting, at_least, one_of, settings_type

State = dict  # {"means": (K, D), "covs": (K, D, D), "weights": (K,)}

INITS = ("random_resp", "random_means", "kmeans++")

SETTINGS = (
    Setting("init", str, "kmeans++", one_of(*INITS), "how a run starts"),
    Setting("k", int, 0, at_least(0), "mixture components; 0: the task's number of classes"),
    Setting("tol", float, 0.0, at_least(0.0),
            "converged at the first step that moves no mean, covariance entry or weight by "
            "more than this"),
    Setting("reg_covar", float, 1e-6, at_least(0.0, strict=True),
            "added to each covariance's diagonal (keeps it invertible)"),
)  # fmt: skip
"""The settings of ``[algorithm] name = "gmm_em"``; its functions receive them as one
NamedTuple (``settings.reg_covar`` …, ``k`` resolved to the number of components)."""

Settings = settings_type("gmm_em", SETTINGS)


def log_joint(state: State, x_NxD: Array) -> Array:
    """``log w_k + log N(x_n | μ_k, Σ_k)`` as ``(N, K)``, through the Cholesky factors of the
    precisions (``P_k = L_k⁻ᵀ``, ``|P_kᵀ(x - μ_k)|²`` the Mahalanobis distance), as sklearn does:
    one small ``(D, D)`` triangular solve per component, then matrix products."""
    d = x_NxD.shape[1]
    chol_KxDxD = jnp.linalg.cholesky(state["covs"])
    eye = jnp.broadcast_to(jnp.eye(d, dtype=x_NxD.dtype), chol_KxDxD.shape)
    prec_KxDxD = jnp.swapaxes(jax.scipy.linalg.solve_triangular(chol_KxDxD, eye, lower=True), 1, 2)
    y_NxKxD = jnp.einsum("nd,kde->nke", x_NxD, prec_KxDxD) - jnp.einsum(
        "kd,kde->ke", state["means"], prec_KxDxD
    )
    maha_NxK = jnp.sum(y_NxKxD**2, axis=-1)
    logdet_K = 2 * jnp.sum(jnp.log(jnp.diagonal(chol_KxDxD, axis1=1, axis2=2)), axis=1)
    logpdf_NxK = -0.5 * (d * math.log(2 * math.pi) + logdet_K[None, :] + maha_NxK)
    return jnp.log(state["weights"])[None, :] + logpdf_NxK


def loss(state: State, x_NxD: Array) -> Array:
    """Mean negative log-likelihood per point."""
    return -jnp.mean(jax.nn.logsumexp(log_joint(state, x_NxD), axis=1))


def m_step(x_NxD: Array, resp_NxK: Array, reg_covar: float) -> State:
    """Maximum-likelihood parameters for given responsibilities (sklearn's regularisation)."""
    n, d = x_NxD.shape
    nk_K = resp_NxK.sum(0) + 10 * jnp.finfo(x_NxD.dtype).eps
    means_KxD = (resp_NxK.T @ x_NxD) / nk_K[:, None]
    diff_KxNxD = x_NxD[None] - means_KxD[:, None, :]
    covs = jnp.einsum("nk,kni,knj->kij", resp_NxK / nk_K, diff_KxNxD, diff_KxNxD)
    covs = (covs + jnp.swapaxes(covs, 1, 2)) / 2 + reg_covar * jnp.eye(d, dtype=x_NxD.dtype)
    return {"means": means_KxD, "covs": covs, "weights": nk_K / nk_K.sum()}


def step(state: State, x_NxD: Array, settings: Any) -> State:
    """One EM iteration."""
    resp_NxK = jax.nn.softmax(log_joint(state, x_NxD), axis=1)
    return m_step(x_NxD, resp_NxK, settings.reg_covar)


def changed(old: State, new: State, x_NxD: Array) -> Array:
    """The largest change of any parameter in a step."""
    del x_NxD
    return jnp.max(jnp.stack([jnp.max(jnp.abs(new[k] - old[k])) for k in new]))


def _with_means(x_NxD: Array, means_KxD: Array, reg_covar: float) -> State:
    """The M-step of the hard partition "nearest of these means" (sklearn's k-means-style
    start): every component gets its points' mean, covariance and share."""
    k = means_KxD.shape[0]
    labels = kmeans.assign(x_NxD, means_KxD)
    return m_step(x_NxD, jax.nn.one_hot(labels, k, dtype=x_NxD.dtype), reg_covar)


def init(key: Array, x_NxD: Array, settings: Any) -> State:
    """The starting parameters of one run: ``settings.k`` components by ``settings.init``
    (one of :data:`INITS`)."""
    k, how, reg_covar = settings.k, settings.init, settings.reg_covar
    if how == "random_resp":
        r_NxK = jax.random.uniform(key, (x_NxD.shape[0], k), x_NxD.dtype, minval=0.01)
        return m_step(x_NxD, r_NxK / r_NxK.sum(1, keepdims=True), reg_covar)
    if how == "random_means":
        return _with_means(x_NxD, kmeans.forgy(key, x_NxD, k), reg_covar)
    if how == "kmeans++":
        return _with_means(x_NxD, kmeans.plus_plus(key, x_NxD, k), reg_covar)
    raise ValueError(f"unknown GMM init {how!r}; allowed: {', '.join(INITS)}")


def from_labels(x_NxD: Array, labels_N: Array, settings: Any) -> State:
    """The M-step of a hard partition (e.g. the generating one)."""
    one_hot = jax.nn.one_hot(labels_N, settings.k, dtype=x_NxD.dtype)
    return m_step(x_NxD, one_hot, settings.reg_covar)


def predict(state: State, x_NxD: Array) -> Array:
    """Most responsible component of each point ``(N,)``."""
    return jnp.argmax(log_joint(state, x_NxD), axis=1)


def components(state: State) -> Array:
    """What is compared between runs modulo relabelling: the means ``(K, D)``."""
    return state["means"]
