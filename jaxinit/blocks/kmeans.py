"""k-means by Lloyd's algorithm, written for one run and vmapped over runs by the engine.

The state is ``{"centres": (K, D)}``. One step assigns every point to its nearest centre and moves
each centre to the mean of its points (a centre left with no points stays where it is), so the
loss — the mean squared distance of a point to its nearest centre — never increases, and a run
stops moving exactly (bit for bit) once no assignment changes: a **fixed point**, which may be a
local optimum far from the global one. Starts (``algorithm.init``):

- ``forgy``: ``K`` distinct data points drawn uniformly (Forgy 1965);
- ``random_partition``: each point gets a uniform random cluster, centres are their means (all
  start near the data's mean);
- ``kmeans++``: the first centre a uniform data point, each next one a point drawn with
  probability proportional to its squared distance to the nearest centre so far (Arthur &
  Vassilvitskii 2007).

Shapes are fixed (``K`` and ``D`` static), so ``init`` and ``step`` run inside ``lax.scan`` under
``vmap``.

>>> import jax, jax.numpy as jnp
>>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
>>> s = step({"centres": jnp.array([[0.0, 0.5], [1.0, 0.5]])}, x)
>>> s["centres"].tolist()
[[0.0, 0.5], [10.0, 0.5]]
>>> init(jax.random.key(0), x, Settings(init="forgy", k=2))["centres"].shape
(2, 2)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from jaxinit.config.spec import Setting, at_least, one_of, settings_type

State = dict  # {"centres": (K, D)}

INITS = ("forgy", "random_partition", "kmeans++")

SETTINGS = (
    Setting("init", str, "kmeans++", one_of(*INITS), "how a run starts"),
    Setting("k", int, 0, at_least(0), "clusters; 0: the task's number of classes"),
    Setting("tol", float, 0.0, at_least(0.0),
            "converged at the first step that reassigns at most this many points"),
)  # fmt: skip
"""The settings of ``[algorithm] name = "kmeans"``; its functions receive them as one
NamedTuple (``settings.init`` …, ``k`` resolved to the number of clusters)."""

Settings = settings_type("kmeans", SETTINGS)


def sq_dists(x_NxD: Array, c_KxD: Array) -> Array:
    """Squared distances ``(N, K)``, from differences (no cancellation for far-away data)."""
    return jnp.sum((x_NxD[:, None, :] - c_KxD[None, :, :]) ** 2, axis=-1)


def assign(x_NxD: Array, c_KxD: Array) -> Array:
    """Index of each point's nearest centre ``(N,)`` (ties go to the lower index).

    Ranks ``|c|² - 2 x·c`` (``|x - c|²`` less the row's constant ``|x|²``), both relative to the
    data's mean to keep cancellation at the scale of the data's spread: one matrix product,
    about twice as fast as the differences under ``vmap`` on a CPU."""
    m = jnp.mean(x_NxD, axis=0)
    xc, cc = x_NxD - m, c_KxD - m
    return jnp.argmin(jnp.sum(cc * cc, axis=1)[None, :] - 2 * xc @ cc.T, axis=1)


def means(x_NxD: Array, labels_N: Array, k: int, fallback_KxD: Array) -> Array:
    """Mean of each cluster's points ``(K, D)``; ``fallback`` for a cluster with none."""
    onehot_NxK = jax.nn.one_hot(labels_N, k, dtype=x_NxD.dtype)
    counts_K = onehot_NxK.sum(0)
    sums_KxD = onehot_NxK.T @ x_NxD
    safe = jnp.maximum(counts_K, 1)[:, None]
    return jnp.where(counts_K[:, None] > 0, sums_KxD / safe, fallback_KxD)


def loss(state: State, x_NxD: Array) -> Array:
    """Mean squared distance of a point to its nearest centre (the k-means objective / N)."""
    return jnp.mean(jnp.min(sq_dists(x_NxD, state["centres"]), axis=1))


def step(state: State, x_NxD: Array, settings: Any = None) -> State:
    """One Lloyd iteration: assign, then move every non-empty cluster's centre to its mean
    (reads no setting)."""
    c = state["centres"]
    return {"centres": means(x_NxD, assign(x_NxD, c), c.shape[0], c)}


def changed(old: State, new: State, x_NxD: Array) -> Array:
    """How many points a step reassigned: 0 exactly at a fixed point (a test on centres
    would see float rounding, which differs between compiled copies of the same step)."""
    return jnp.sum(assign(x_NxD, new["centres"]) != assign(x_NxD, old["centres"]))


def _uniforms(key: Array, rows: int, n: int, dtype) -> Array:
    """Every random number a start needs, from one draw ``(rows, n)`` in ``(0, 1)``: the random
    bit generator is most of the compile time of a small program, so it is called once."""
    return jax.random.uniform(key, (rows, n), dtype, minval=jnp.finfo(dtype).tiny)


def _forgy(u_N: Array, x_NxD: Array, k: int) -> Array:
    return x_NxD[jax.lax.top_k(u_N, k)[1]]  # the k largest of N uniforms: a uniform k-subset


def forgy(key: Array, x_NxD: Array, k: int) -> Array:
    """``k`` distinct data points, uniformly."""
    return _forgy(_uniforms(key, 1, x_NxD.shape[0], x_NxD.dtype)[0], x_NxD, k)


def plus_plus(key: Array, x_NxD: Array, k: int) -> Array:
    """k-means++ seeding: the first centre a uniform data point, each next one drawn with
    probability ∝ ``D²`` (squared distance to the nearest centre so far), by the Gumbel-max
    trick with noise drawn up front; a ``lax.scan`` of ``k - 1`` picks. Points already chosen
    have ``D² = 0`` and are never drawn again."""
    u_KxN = _uniforms(key, k, x_NxD.shape[0], x_NxD.dtype)
    gumbel_KxN = -jnp.log(-jnp.log(u_KxN))
    first = x_NxD[jnp.argmax(gumbel_KxN[0])]
    d2 = jnp.sum((x_NxD - first) ** 2, axis=1)

    def pick(d2, g_N):
        new = x_NxD[jnp.argmax(jnp.log(d2) + g_N)]
        return jnp.minimum(d2, jnp.sum((x_NxD - new) ** 2, axis=1)), new

    rest = jax.lax.scan(pick, d2, gumbel_KxN[1:])[1]
    return jnp.concatenate([first[None], rest])


def init_centres(key: Array, x_NxD: Array, k: int, how: str) -> Array:
    """The starting centres ``(k, D)`` of one run, by ``how`` (one of :data:`INITS`)."""
    if how == "forgy":
        return forgy(key, x_NxD, k)
    if how == "kmeans++":
        return plus_plus(key, x_NxD, k)
    if how == "random_partition":  # an empty cluster (rare) starts at a random data point
        u_2xN = _uniforms(key, 2, x_NxD.shape[0], x_NxD.dtype)
        labels = jnp.minimum((u_2xN[0] * k).astype(jnp.int32), k - 1)
        return means(x_NxD, labels, k, _forgy(u_2xN[1], x_NxD, k))
    raise ValueError(f"unknown k-means init {how!r}; allowed: {', '.join(INITS)}")


def init(key: Array, x_NxD: Array, settings: Any) -> State:
    """The start of one run: ``settings.k`` centres by ``settings.init``."""
    return {"centres": init_centres(key, x_NxD, settings.k, settings.init)}


def from_labels(x_NxD: Array, labels_N: Array, settings: Any) -> State:
    """The state whose centres are the means of a given partition (e.g. the generating one)."""
    k = settings.k
    return {"centres": means(x_NxD, labels_N, k, jnp.zeros((k, x_NxD.shape[1]), x_NxD.dtype))}


def predict(state: State, x_NxD: Array) -> Array:
    return assign(x_NxD, state["centres"])


def components(state: State) -> Array:
    """What is compared between runs modulo relabelling: the centres ``(K, D)``."""
    return state["centres"]
