"""Landscapes between minima: minimum energy paths, transition states, disconnectivity graphs.

:func:`basins.barrier_matrix <jaxinit.analysis.basins.barrier_matrix>` measures the loss along the
**straight line** between two aligned minima: an upper bound on the barrier, often a poor one
(Draxler et al., ICML 2018). Here the line is relaxed into a **minimum energy path** (MEP).

**Method: the climbing-image nudged elastic band** (CI-NEB; Henkelman, Uberuaga & Jónsson, J.
Chem. Phys. 113, 9901, 2000) with the improved tangent of Henkelman & Jónsson (J. Chem. Phys.
113, 9978, 2000). ``K`` images (both ends fixed) feel the loss's force perpendicular to the
path and a spring force along it. Once the band has settled for ``climb_start`` steps, every
image that is a local maximum of the loss along the band **climbs** (its force along the tangent
is inverted and it has no spring), so each converges onto a first-order saddle; every interior
local minimum **descends** (the full force, no spring) onto the intermediate minimum. NEB over
the string method: the climbing image gives the saddle itself, not an interpolation between
images, and a step is a pure function of the band (no reparametrisation by interpolation,
which moves images by a non-smooth rule), so the whole band is one fixed-shape array that
``vmap`` maps over paths. AutoNEB inserts images where the band needs them; here every path has
the same ``K`` images, and climbing and descending are per-image **masks** of fixed shape, so
the same role is played by a mask instead of a new array.

**Optimizer: FIRE** (Bitzek et al., Phys. Rev. Lett. 97, 170201, 2006), written in JAX: damped
dynamics that speed up while the force keeps pointing along the velocity and stop dead when it
turns against it. It needs no objective (the NEB force is not the gradient of anything) and
copes with stiff springs. ``optimizer="lbfgs"`` uses ``optax.lbfgs`` without a line search on
the same force, for comparison. Each step moves an image by at most ``max_step`` × the
straight-line image spacing. A path stops (its **converged** mask freezes it; the others go on
in the same vmapped program) once every image's NEB force is below ``force_tol``.

:func:`graph` builds the landscape of a sweep with saved parameters: nodes are the basin
representatives of :func:`jaxinit.analysis.basins.find_basins`, edges the relaxed paths chosen by a
minimum spanning tree over straight-line saddle heights plus each node's ``k`` nearest
neighbours (aligned parameter distance); interior minima of relaxed paths become new nodes;
the saddles' Hessians are checked in float64 (exactly one negative eigenvalue); merging the
nodes in order of saddle height gives the disconnectivity graph.

>>> import jax.numpy as jnp
>>> loss = lambda p: (p[0] ** 2 - 1) ** 2 + 2 * (p[1] - 0.5 * (1 - p[0] ** 2)) ** 2
>>> path = minimum_energy_path(loss, jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0]), images=9)
>>> round(float(path.saddle_loss), 3), round(float(path.linear_barrier), 3)
(1.0, 1.5)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jax import Array

from jaxinit.analysis import basins, curvature, symmetry
from jaxinit.blocks.models import Model

FIRE_N_MIN, FIRE_F_INC, FIRE_F_DEC, FIRE_ALPHA, FIRE_F_ALPHA = 5, 1.1, 0.5, 0.1, 0.99
"""FIRE's constants as in Bitzek et al. (2006): ``N_min``, ``f_inc``, ``f_dec``, ``α_start``,
``f_α``."""


class BandConfig(NamedTuple):
    """Static settings of a band relaxation (one compilation per distinct config)."""

    images: int = 16  # K points on a path, both fixed ends included
    steps: int = 3000  # most optimizer steps per path
    spring: float = 1.0  # spring constant along the tangent, loss / parameter²
    climbing: bool = True  # local maxima of the band climb onto the saddles
    descending: bool = True  # interior local minima of the band descend onto the minima
    climb_start: int = 200  # plain-NEB steps at least before images climb / descend
    climb_factor: float = 10.0  # … and until every force is below climb_factor × force_tol
    min_prominence: float = 0.02  # an extremum other than the top: × the band's loss range
    max_stretch: float = 2.0  # a band longer than this × the straight line stops (escaped)
    segment: int = 100  # paths in a pool run this many steps between refills (many paths)
    force_tol: float = 1e-3  # converged: every image's NEB force norm below this
    optimizer: str = "fire"  # "fire" or "lbfgs" (optax.lbfgs, no line search)
    dt: float = 0.05  # FIRE's first time step (lbfgs: its learning rate)
    dt_max: float = 0.1  # FIRE's largest time step
    max_step: float = 0.05  # most an image moves per step, × the straight-line image spacing
    n_points: int = 33  # points on the straight line for the linear barrier
    subdivide: int = 4  # the piecewise-linear path through the images is checked at this many
    # points per segment: its highest loss (path_max) bounds the barrier of a continuous path


class _Band(NamedTuple):
    """One path's optimizer state (``K`` images of ``D`` parameters)."""

    x: Array  # (K, D) images; rows 0 and K-1 are the fixed ends
    v: Array  # (K, D) FIRE velocity
    dt: Array  # () FIRE time step
    alpha: Array  # () FIRE mixing weight
    n_pos: Array  # () int32, steps since the force last turned against the velocity
    opt: Any  # optax.lbfgs state (FIRE: empty)
    step: Array  # () int32, steps taken
    converged: Array  # () bool: the path is frozen
    climbing: Array  # () bool: images climb / descend from now on (latched)
    escaped: Array  # () bool: the band outgrew max_stretch × the straight line; frozen before
    max_force: Array  # () largest image force norm at the last evaluation
    max_step: Array  # () most an image moves in one step
    length0: Array  # () length of the straight line


class TooFewMinima(ValueError):
    """A sweep (or group) with fewer than two basins: there is no landscape to draw."""


# -- the band's forces --------------------------------------------------------------------------


def tangents(x_KxD: Array, e_K: Array) -> Array:
    """``(K-2, D)`` unit tangents at the interior images: the improved tangent of Henkelman &
    Jónsson (2000). Towards the higher neighbour where the loss is monotone across an image;
    at an extremum a blend of both sides weighted by the loss differences, so that the
    tangent turns smoothly. Equal losses on both sides fall back to the bisector."""
    d_plus, d_minus = x_KxD[2:] - x_KxD[1:-1], x_KxD[1:-1] - x_KxD[:-2]
    de_plus, de_minus = e_K[2:] - e_K[1:-1], e_K[1:-1] - e_K[:-2]
    up = (de_plus > 0) & (de_minus > 0)
    down = (de_plus < 0) & (de_minus < 0)
    big = jnp.maximum(jnp.abs(de_plus), jnp.abs(de_minus))
    small = jnp.minimum(jnp.abs(de_plus), jnp.abs(de_minus))
    rising = e_K[2:] > e_K[:-2]
    w_plus = jnp.where(rising, big, small)[:, None]
    w_minus = jnp.where(rising, small, big)[:, None]
    blend = w_plus * d_plus + w_minus * d_minus
    t = jnp.where(up[:, None], d_plus, jnp.where(down[:, None], d_minus, blend))
    bisector = d_plus / _norm(d_plus) + d_minus / _norm(d_minus)
    t = jnp.where(jnp.linalg.norm(t, axis=-1, keepdims=True) > 0, t, bisector)
    return t / _norm(t)


def _norm(x: Array) -> Array:
    n = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jnp.where(n > 0, n, 1.0)


def prominence(e_K: Array) -> tuple[Array, Array]:
    """``(of_maxima_K, of_minima_K)``: the topographic prominence of every image along the band.

    A maximum's: how far the loss drops on the way to a higher point (or an end) on its lower
    side, i.e. ``e_i - max(lowest point to the left, lowest point to the right)``, each side
    walked until the loss first exceeds ``e_i``. A minimum's: how far it rises on the way to a
    lower point, the same with the signs turned. Zero at the ends."""
    k = e_K.shape[0]
    idx = jnp.arange(k)
    left = idx[None, :] <= idx[:, None]
    right = idx[None, :] >= idx[:, None]

    def segment(cum, fill):  # (K, K): cum's reduction of e over the images between i and j
        ahead = cum(jnp.where(right, e_K, fill), axis=1)
        behind = cum(jnp.where(left, e_K, fill), axis=1, reverse=True)
        return jnp.where(right, ahead, behind)

    seg_max = segment(jax.lax.cummax, -jnp.inf)
    seg_min = segment(jax.lax.cummin, jnp.inf)
    up = seg_max <= e_K[:, None]  # j reachable from i without passing a higher point
    down = seg_min >= e_K[:, None]
    low_l = jnp.min(jnp.where(up & left, e_K, jnp.inf), 1)
    low_r = jnp.min(jnp.where(up & ~left | (idx[None, :] == idx[:, None]), e_K, jnp.inf), 1)
    high_l = jnp.max(jnp.where(down & left, e_K, -jnp.inf), 1)
    high_r = jnp.max(jnp.where(down & ~left | (idx[None, :] == idx[:, None]), e_K, -jnp.inf), 1)
    inner = (idx > 0) & (idx < k - 1)
    return (
        jnp.where(inner, e_K - jnp.maximum(low_l, low_r), 0.0),
        jnp.where(inner, jnp.minimum(high_l, high_r) - e_K, 0.0),
    )


def extrema(e_K: Array, min_prominence: float = 0.0) -> tuple[Array, Array]:
    """``(maxima_K, minima_K)``: interior images above (below) both neighbours; of two equal
    neighbours the later one counts (so a symmetric band still has its climbing image). Other
    than the highest image, an extremum counts only with a prominence (:func:`prominence`) of
    at least ``min_prominence`` × the band's loss range: a kink of a band still settling is no
    saddle. A minimum next to an end is left out: it lies in that end's basin (a descending
    image there would only slide onto the end)."""
    inner_max = (e_K[1:-1] >= e_K[:-2]) & (e_K[1:-1] > e_K[2:])
    inner_min = (e_K[1:-1] <= e_K[:-2]) & (e_K[1:-1] < e_K[2:])
    inner_min = inner_min.at[jnp.array([0, -1])].set(False)
    pad = jnp.zeros(1, bool)
    is_max = jnp.concatenate([pad, inner_max, pad])
    is_min = jnp.concatenate([pad, inner_min, pad])
    p_max, p_min = prominence(e_K)
    floor = min_prominence * (jnp.max(e_K) - jnp.min(e_K))
    top = jnp.arange(e_K.shape[0]) == jnp.argmax(e_K)
    return is_max & ((p_max >= floor) | top), is_min & (p_min >= floor)


def neb_forces(
    x_KxD: Array, e_K: Array, g_KxD: Array, climb_K: Array, descend_K: Array, spring: float
) -> Array:
    """``(K, D)`` NEB forces (zero on the fixed ends).

    Ordinary images: ``-∇V⊥ + k (|x_{i+1} - x_i| - |x_i - x_{i-1}|) τ``; climbing images
    ``-∇V + 2 (∇V·τ) τ``; descending images ``-∇V``."""
    t = tangents(x_KxD, e_K)
    g = g_KxD[1:-1]
    g_par = jnp.sum(g * t, -1, keepdims=True) * t
    d_plus, d_minus = x_KxD[2:] - x_KxD[1:-1], x_KxD[1:-1] - x_KxD[:-2]
    stretch = jnp.linalg.norm(d_plus, axis=-1) - jnp.linalg.norm(d_minus, axis=-1)
    f = -(g - g_par) + spring * stretch[:, None] * t
    f = jnp.where(climb_K[1:-1, None], -g + 2 * g_par, f)
    f = jnp.where(descend_K[1:-1, None], -g, f)
    zero = jnp.zeros_like(x_KxD[:1])
    return jnp.concatenate([zero, f, zero])


# -- one path -----------------------------------------------------------------------------------
def _start(xa: Array, xb: Array, cfg: BandConfig) -> _Band:
    """The band on the straight line ``xa → xb`` (flat vectors), at rest."""
    ts = jnp.linspace(0.0, 1.0, cfg.images, dtype=xa.dtype)[:, None]
    x0 = (1 - ts) * xa + ts * xb
    spacing = jnp.linalg.norm(xb - xa) / (cfg.images - 1)
    zero = jnp.zeros((), xa.dtype)
    lbfgs = optax.lbfgs(learning_rate=cfg.dt, linesearch=None)
    return _Band(x0, jnp.zeros_like(x0), zero + cfg.dt, zero + FIRE_ALPHA,
                 jnp.zeros((), jnp.int32), lbfgs.init(x0) if cfg.optimizer == "lbfgs" else (),
                 jnp.zeros((), jnp.int32),
                 jnp.asarray(False), jnp.asarray(False), jnp.asarray(False), zero + jnp.inf,
                 cfg.max_step * jnp.where(spacing > 0, spacing, 1.0), _length(x0))  # fmt: skip


def _stopped(s: _Band, cfg: BandConfig) -> Array:
    return s.converged | s.escaped | (s.step >= cfg.steps)


def _advance(f: Callable[[Array], Array], s: _Band, cfg: BandConfig, n: int) -> _Band:
    """At most ``n`` more steps of the band (fewer once it stops); pure and jittable."""
    k = cfg.images
    inner = jnp.zeros(k, bool).at[1:-1].set(True)[:, None]
    value_and_grad = jax.vmap(jax.value_and_grad(f))
    lbfgs = optax.lbfgs(learning_rate=cfg.dt, linesearch=None)

    def forces(x, on):
        e, g = value_and_grad(x)
        is_max, is_min = extrema(e, cfg.min_prominence)
        climb = is_max & on & cfg.climbing
        descend = is_min & on & cfg.descending
        return neb_forces(x, e, g, climb, descend, cfg.spring)

    def clip(dx, max_step):
        n = jnp.linalg.norm(dx, axis=-1, keepdims=True)
        return jnp.where(inner, dx * jnp.minimum(1.0, max_step / jnp.where(n > 0, n, 1.0)), 0.0)

    def body(s: _Band) -> _Band:
        force = forces(s.x, s.climbing)
        max_force = jnp.max(jnp.linalg.norm(force, axis=-1))
        done = (max_force < cfg.force_tol) & (s.climbing | ~(cfg.climbing or cfg.descending))
        settled = (s.step >= cfg.climb_start) & (max_force < cfg.climb_factor * cfg.force_tol)
        if cfg.optimizer == "fire":
            p = jnp.sum(force * s.v)
            mixed = (1 - s.alpha) * s.v + s.alpha * jnp.linalg.norm(s.v) * force / jnp.maximum(
                jnp.linalg.norm(force), jnp.finfo(force.dtype).tiny
            )
            ok = p >= 0
            n_pos = jnp.where(ok, s.n_pos + 1, 0)
            grow = ok & (n_pos > FIRE_N_MIN)
            dt = jnp.where(grow, jnp.minimum(s.dt * FIRE_F_INC, cfg.dt_max), s.dt)
            dt = jnp.where(ok, dt, s.dt * FIRE_F_DEC)
            alpha = jnp.where(grow, s.alpha * FIRE_F_ALPHA, s.alpha)
            alpha = jnp.where(ok, alpha, FIRE_ALPHA)
            v = jnp.where(ok, mixed, 0.0) + dt * force
            new = s._replace(x=s.x + clip(dt * v, s.max_step), v=v, dt=dt, alpha=alpha, n_pos=n_pos)
        else:
            upd, opt = lbfgs.update(-force, s.opt, s.x)
            new = s._replace(x=s.x + clip(upd, s.max_step), opt=opt)
        new = new._replace(step=s.step + 1, max_force=max_force, climbing=s.climbing | settled)
        # the force field changes when images start to climb: FIRE starts again from rest
        switch = settled & ~s.climbing
        new = new._replace(v=jnp.where(switch, 0.0, new.v), n_pos=jnp.where(switch, 0, new.n_pos),
                           alpha=jnp.where(switch, FIRE_ALPHA, new.alpha))  # fmt: skip
        frozen = s._replace(converged=jnp.asarray(True), max_force=max_force)
        escaped = _length(new.x) > cfg.max_stretch * s.length0
        stopped = s._replace(escaped=jnp.asarray(True), max_force=max_force)
        new = jax.tree.map(lambda a, b: jnp.where(escaped, a, b), stopped, new)
        return jax.tree.map(lambda a, b: jnp.where(done, a, b), frozen, new)

    # the masks: a stopped band is left as it is (under vmap the others go on)
    s, _ = jax.lax.while_loop(
        lambda c: ~_stopped(c[0], cfg) & (c[1] < n), lambda c: (body(c[0]), c[1] + 1), (s, 0)
    )
    return s


def _result(f: Callable[[Array], Array], s: _Band, xa: Array, xb: Array, cfg: BandConfig) -> dict:
    """What a stopped band says: losses, saddles, minima, the straight line, the checked max."""
    e = jax.vmap(f)(s.x)
    climb, descend = extrema(e, cfg.min_prominence)
    lin = jnp.linspace(0.0, 1.0, cfg.n_points, dtype=xa.dtype)[:, None]
    sub = jnp.linspace(0.0, 1.0, cfg.subdivide + 2, dtype=xa.dtype)[1:-1, None, None]
    between = (1 - sub) * s.x[:-1] + sub * s.x[1:]  # (subdivide, K-1, D)
    path_max = jnp.maximum(jnp.max(e), jnp.max(jax.vmap(jax.vmap(f))(between)))
    return dict(x=s.x, losses=e, climbing=climb & cfg.climbing, descending=descend & cfg.descending,
                linear_losses=jax.vmap(f)((1 - lin) * xa + lin * xb), converged=s.converged,
                steps=s.step, max_force=s.max_force, path_max=path_max,
                escaped=s.escaped)  # fmt: skip


def _length(x_KxD: Array) -> Array:
    return jnp.sum(jnp.linalg.norm(jnp.diff(x_KxD, axis=0), axis=-1))


def _hashable(trainable: Any | None):
    if trainable is None:
        return None
    leaves, treedef = jax.tree.flatten(trainable)
    return treedef, tuple(bool(x) for x in leaves)


@functools.lru_cache(maxsize=64)
def _program(loss_fn: Callable, trainable_key, cfg: BandConfig, batched: bool) -> Callable:
    """The compiled relaxation of one path (whole), or the three compiled pieces of a pool of
    paths (vmapped: ``start``, ``advance`` by ``cfg.segment`` steps, ``result``); cached so that a
    second call with the same loss, mask and config does not recompile."""
    trainable = None if trainable_key is None else jax.tree.unflatten(*trainable_key)

    def parts(a, b):
        xa, to_params = curvature.embed(a, trainable)
        xb = curvature.embed(b, trainable)[0]
        return xa, xb, to_params, lambda x: loss_fn(to_params(x))

    def start(a, b):
        xa, xb, _, _ = parts(a, b)
        return _start(xa, xb, cfg)

    def advance(s, a, b, n):
        return _advance(parts(a, b)[3], s, cfg, n)

    def result(s, a, b):
        xa, xb, to_params, f = parts(a, b)
        out = _result(f, s, xa, xb, cfg)
        out["images"] = jax.vmap(to_params)(out.pop("x"))
        return out

    if not batched:
        return jax.jit(lambda a, b: result(advance(start(a, b), a, b, cfg.steps), a, b))
    return (
        jax.jit(jax.vmap(start)),
        jax.jit(jax.vmap(lambda s, a, b: advance(s, a, b, cfg.segment))),
        jax.jit(jax.vmap(result)),
    )


class Path(NamedTuple):
    """One relaxed path of ``K`` images (``images``: the params pytree, leaves ``(K, ...)``)."""

    images: Any
    losses: np.ndarray  # (K,) loss per image
    climbing: np.ndarray  # (K,) bool: a local maximum of the band (climbed onto a saddle)
    descending: np.ndarray  # (K,) bool: an interior local minimum (descended onto a minimum)
    linear_losses: np.ndarray  # (T,) loss along the straight line between the same ends
    converged: bool  # every image's NEB force fell below force_tol
    steps: int  # optimizer steps taken
    max_force: float  # largest image force norm at the end
    path_max: float  # highest loss on the piecewise-linear path through the images (checked)
    escaped: bool  # stopped when the band outgrew max_stretch × the straight line

    def image(self, i: int) -> Any:
        return jax.tree.map(lambda a: a[i], self.images)

    @property
    def saddle_loss(self) -> float:
        """The highest loss on the relaxed path (with climbing: at the highest saddle)."""
        return float(np.max(self.losses))

    @property
    def saddle(self) -> Any:
        return self.image(int(np.argmax(self.losses)))

    @property
    def transition_states(self) -> list[tuple[Any, float]]:
        """Every local maximum along the path, as ``(params, loss)``, in path order."""
        return [(self.image(i), float(self.losses[i])) for i in np.flatnonzero(self.climbing)]

    @property
    def minima(self) -> list[tuple[Any, float]]:
        """Every interior local minimum along the path, as ``(params, loss)``, in path order."""
        return [(self.image(i), float(self.losses[i])) for i in np.flatnonzero(self.descending)]

    @property
    def barrier(self) -> float:
        """Relaxed barrier: highest loss on the path - mean of the ends (as in basins)."""
        return float(basins.barrier_heights(self.losses[None])[0])

    @property
    def linear_barrier(self) -> float:
        """The same pair's straight-line barrier (``n_points`` points on the line)."""
        return float(basins.barrier_heights(self.linear_losses[None])[0])


def _check_ends(a: Any, b: Any, lead: int) -> None:
    """Both ends must be the same pytree with the same shapes (``lead`` leading pair axes)."""
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    if sa != sb:
        raise ValueError(f"the two ends are different pytrees: {sa} and {sb}")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if np.shape(x) != np.shape(y):
            raise ValueError(
                f"the two ends have leaves of different shapes: {np.shape(x)} and {np.shape(y)}"
            )
    if lead and len({np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(a)}) != 1:
        raise ValueError("every leaf of a_N and b_N needs the same leading pair axis")


def _config(config: BandConfig | None, overrides: dict) -> BandConfig:
    unknown = set(overrides) - set(BandConfig._fields)
    if unknown:
        raise ValueError(
            f"unknown band settings {sorted(unknown)}; allowed: {', '.join(BandConfig._fields)}"
        )
    cfg = (config or BandConfig())._replace(**overrides)
    if cfg.images < 3:
        raise ValueError(
            f"a band needs at least 3 images (both ends and one between), got {cfg.images}"
        )
    if cfg.optimizer not in ("fire", "lbfgs"):
        raise ValueError(f"optimizer must be 'fire' or 'lbfgs', got {cfg.optimizer!r}")
    return cfg


def minimum_energy_path(
    loss_fn: Callable[[Any], Array],
    a: Any,
    b: Any,
    *,
    trainable: Any | None = None,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Path:
    """Relax the straight line from ``a`` to ``b`` into a minimum energy path (CI-NEB, FIRE).

    ``loss_fn`` maps a parameter pytree (a plain array is one) to a scalar; ``a`` and ``b`` are
    two such pytrees, typically minima. ``trainable`` (a pytree of bools) holds frozen leaves at
    ``a``'s values. Settings: :class:`BandConfig`, or its fields as keywords
    (``images=``, ``steps=``, ``climbing=`` …). The path is computed in the dtype of ``a``.

    >>> import jax.numpy as jnp
    >>> p = minimum_energy_path(lambda x: (x[0] ** 2 - 1) ** 2 + x[1] ** 2,
    ...                         jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0]), images=5)
    >>> float(p.saddle_loss), [float(v) for v in p.saddle]
    (1.0, [0.0, 0.0])
    """
    cfg = _config(config, overrides)
    _check_ends(a, b, 0)
    out = _program(loss_fn, _hashable(trainable), cfg, False)(a, b)
    out = jax.tree.map(np.asarray, out)
    return Path(out["images"], out["losses"], out["climbing"], out["descending"],
                out["linear_losses"], bool(out["converged"]), int(out["steps"]),
                float(out["max_force"]), float(out["path_max"]), bool(out["escaped"]))  # fmt: skip


class Paths(NamedTuple):
    """``N`` relaxed paths (the fields of :class:`Path` with a leading path axis)."""

    images: Any  # pytree, leaves (N, K, ...)
    losses: np.ndarray  # (N, K)
    climbing: np.ndarray  # (N, K)
    descending: np.ndarray  # (N, K)
    linear_losses: np.ndarray  # (N, T)
    converged: np.ndarray  # (N,) bool: the convergence mask
    steps: np.ndarray  # (N,)
    max_force: np.ndarray  # (N,)
    path_max: np.ndarray  # (N,)
    escaped: np.ndarray  # (N,) bool

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.losses)

    def path(self, n: int) -> Path:
        images = jax.tree.map(lambda a: a[n], self.images)
        return Path(images, self.losses[n], self.climbing[n], self.descending[n],
                    self.linear_losses[n], bool(self.converged[n]), int(self.steps[n]),
                    float(self.max_force[n]), float(self.path_max[n]),
                    bool(self.escaped[n]))  # fmt: skip

    @property
    def saddle_loss(self) -> np.ndarray:
        return self.losses.max(1)

    @property
    def barrier(self) -> np.ndarray:
        return basins.barrier_heights(self.losses)

    @property
    def linear_barrier(self) -> np.ndarray:
        return basins.barrier_heights(self.linear_losses)


def minimum_energy_paths(
    loss_fn: Callable[[Any], Array],
    a_N: Any,
    b_N: Any,
    *,
    trainable: Any | None = None,
    chunk: int = 256,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Paths:
    """:func:`minimum_energy_path` for ``N`` pairs at once: ``a_N``, ``b_N`` are pytrees with a
    leading pair axis. A pool of ``chunk`` paths × ``K`` images runs in one compiled, vmapped
    program, ``segment`` steps at a time; a path that has stopped (converged, escaped or out of
    steps) is frozen by its mask while the others go on, and after the segment its slot takes
    the next waiting pair, so the pool does not idle until its slowest path is done. Each path
    takes the same steps as it would alone."""
    cfg = _config(config, overrides)
    _check_ends(a_N, b_N, 1)
    n = len(jax.tree.leaves(a_N)[0])
    if n == 0:
        raise ValueError("no pairs to relax")
    start, advance, result = _program(loss_fn, _hashable(trainable), cfg, True)
    size = min(chunk, n)
    slot = np.minimum(np.arange(size), n - 1)  # the pair in each slot of the pool
    queue = size  # the next pair waiting for a slot
    todo = np.ones(size, bool)  # the slot holds a pair not yet collected
    take = lambda t, idx: jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]), t)  # noqa: E731
    a, b = take(a_N, slot), take(b_N, slot)
    state = start(a, b)
    outs: list = [None] * n
    while todo.any():
        state = advance(state, a, b)
        stopped = np.asarray(state.converged | state.escaped | (state.step >= cfg.steps))
        done = stopped & todo
        if done.any():
            out = jax.tree.map(np.asarray, result(state, a, b))
            for i in np.flatnonzero(done):
                outs[slot[i]] = jax.tree.map(lambda x, i=i: x[i], out)
            todo &= ~done
        # refill the freed slots with waiting pairs: the pool never idles on finished paths
        free = np.flatnonzero(done)[: max(0, n - queue)]
        if len(free):
            slot[free] = np.arange(queue, queue + len(free))
            queue += len(free)
            todo[free] = True
            a, b = take(a_N, slot), take(b_N, slot)
            fresh = start(a, b)
            mask = jnp.asarray(np.isin(np.arange(size), free))
            state = jax.tree.map(
                lambda x, y, m=mask: jnp.where(m.reshape((-1,) + (1,) * (x.ndim - 1)), y, x),
                state,
                fresh,
            )
        while queue >= n and 0 < 2 * todo.sum() <= size and size >= 32:
            # no pair waits: halve the pool down to 16, keeping the unfinished paths (a compilation each)
            keep = np.flatnonzero(todo)
            keep = np.concatenate([keep, np.flatnonzero(~todo)[: size // 2 - len(keep)]])
            size //= 2
            slot, todo = slot[keep], todo[keep]
            a, b = take(a_N, slot), take(b_N, slot)
            state = jax.tree.map(lambda x, k=keep: x[jnp.asarray(k)], state)
    out = jax.tree.map(lambda *xs: np.stack(xs), *outs)
    return Paths(out["images"], out["losses"], out["climbing"], out["descending"],
                 out["linear_losses"], out["converged"], out["steps"], out["max_force"],
                 out["path_max"], out["escaped"])  # fmt: skip


# -- the landscape of a sweep -------------------------------------------------------------------
class Landscape(NamedTuple):
    """The minima of one static group of a sweep and the relaxed paths between them."""

    nodes: pd.DataFrame  # node, loss, source ("basin" / "path"), basin, run
    edges: pd.DataFrame  # one row per relaxed path (see graph)
    tree: pd.DataFrame  # the disconnectivity graph: one row per merge, lowest first
    paths: Paths  # the relaxed paths, in the order of edges
    node_params: Any  # pytree, leaves (N, ...): the nodes' parameters (aligned as relaxed)
    label: str  # the group's static axis values


def saddle_index(
    loss_fn: Callable, params_R: Any, trainable: Any | None = None, *, dtype: str = "float64",
    eig_tol: float = 1e-6, exact_max: int = 256,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(index_R, grad_norm_R)``: the number of negative Hessian eigenvalues at each point (a
    first-order saddle has exactly one) and the gradient norm, in ``dtype``. Negative means below
    ``-τ · max|λ|``, the threshold of the float64 classifier
    (:func:`jaxinit.analysis.curvature.saddle_tolerance`). Exact spectrum only: ``-1`` where the
    trainable parameters are more than ``exact_max``."""
    one = jax.tree.map(lambda a: a[0], params_R)
    n = int(curvature.restrict(loss_fn, one, trainable)[0].shape[0])
    with curvature.precision(dtype):
        safe = curvature.cast_floats(params_R, dtype)
        _, gnorm = curvature.loss_and_grad_norm(loss_fn, safe, trainable)
        if n > exact_max:
            return np.full(len(gnorm), -1), gnorm

        def spectrum(params):
            theta, f = curvature.restrict(loss_fn, params, trainable)
            return jnp.linalg.eigvalsh(jax.hessian(f)(theta))

        eig = np.asarray(jax.jit(jax.vmap(spectrum))(jax.tree.map(jnp.asarray, safe)))
    tol = curvature.saddle_tolerance(eig[:, 0], eig[:, -1], n, dtype, eig_tol)
    return (eig < -tol[:, None]).sum(1), gnorm


def _chosen_edges(height_NxN: np.ndarray, dist_NxN: np.ndarray, k: int) -> dict[tuple, str]:
    """Pairs ``(i < j)`` to relax: a minimum spanning tree over straight-line saddle heights
    (its N-1 edges bound every pair's minimax saddle) plus each node's ``k`` nearest neighbours
    by aligned parameter distance."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    n = len(height_NxN)
    # the MST ignores zero weights: shift the heights to be positive, keeping their order
    w = height_NxN - height_NxN[np.isfinite(height_NxN)].min() + 1.0
    w = np.where(np.isfinite(w), w, 1e300)
    np.fill_diagonal(w, 0.0)
    mst = minimum_spanning_tree(w).tocoo()
    out = {tuple(sorted((int(i), int(j)))): "mst" for i, j in zip(mst.row, mst.col)}
    d = dist_NxN + np.diag(np.full(n, np.inf))
    for i in range(n):
        for j in np.argsort(d[i])[: min(k, n - 1)]:
            key = tuple(sorted((i, int(j))))
            out[key] = "mst+knn" if out.get(key, "knn") != "knn" else "knn"
    return dict(sorted(out.items()))


def disconnectivity(loss_N: np.ndarray, links: list[tuple[int, int, float]]) -> pd.DataFrame:
    """Merge minima in order of the saddle between them (single linkage on saddle heights).

    ``links``: ``(i, j, saddle_loss)``. One row per merge, lowest first: ``level``, the two
    clusters joined (``left``, ``right``: a node id, or ``N + r`` for the cluster made by row
    ``r``), the new cluster's id and its ``members``."""
    parent = list(range(len(loss_N)))
    cluster = list(range(len(loss_N)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows = []
    for i, j, h in sorted(links, key=lambda t: t[2]):
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        new = len(loss_N) + len(rows)
        members = sorted(m for m in range(len(loss_N)) if find(m) in (ri, rj))
        rows.append(dict(level=float(h), left=cluster[ri], right=cluster[rj], cluster=new,
                         size=len(members), members=members))  # fmt: skip
        parent[rj] = ri
        cluster[ri] = new
    return pd.DataFrame(rows, columns=["level", "left", "right", "cluster", "size", "members"])


def graph(
    ds,
    model: Model | None = None,
    *,
    group: int = 0,
    k: int = 2,
    max_nodes: int | None = None,
    basin_config: basins.BasinConfig | None = None,
    chunk: int = 256,
    eig_tol: float = 1e-6,
    resolve_tol: float = 0.1,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Landscape:
    """The landscape of one static group of a sweep with saved parameters.

    Nodes: the lowest-loss run of every basin (:func:`jaxinit.analysis.basins.find_basins`, canonical
    form), at most ``max_nodes`` (lowest loss first). Every pair is measured on the straight line
    after weight matching (:func:`jaxinit.analysis.basins.aligned_pairs`); the pairs of a minimum spanning
    tree over those saddle heights plus each node's ``k`` nearest neighbours are relaxed
    (:func:`minimum_energy_paths`, :class:`BandConfig` fields as keywords). An interior minimum
    of a relaxed path that is not already a node (RMS output distance ≥ ``f_tol``) becomes one.

    ``edges`` per relaxed path: ends ``i``, ``j``, why chosen (``mst``, ``knn``), barriers
    (highest loss - mean of the ends) along the straight line (``linear_barrier``), along the
    relaxed path checked between its images (``relaxed_barrier``, from ``path_max``: a bound
    for a continuous path) and at its highest image (``saddle_barrier``), ``ratio`` = relaxed /
    linear, the saddle's loss, index (negative Hessian eigenvalues, float64,
    :func:`saddle_index`) and gradient norm, whether the path converged and is ``resolved``
    (no point between its images higher than its highest image by more than ``resolve_tol`` ×
    that image's rise above the lower end: chords of a curved path overshoot a little), its
    steps and interior minima.
    ``tree``: :func:`disconnectivity` over every segment between consecutive minima of every
    resolved path, each unresolved path as a whole (at ``path_max``), and the straight lines
    (a path too): the lowest known path between two minima decides where they merge.
    """
    b = basins.find_basins(ds, basin_config, model=model)
    g = next(x for x in b.groups if x.index == group)
    table = b.table[b.table.group == group].sort_values("mean_loss")
    if max_nodes:
        table = table.head(max_nodes)
    if len(table) < 2:
        raise TooFewMinima(f"group {group} has {len(table)} basin(s): a landscape needs two")
    where = {int(r): i for i, r in enumerate(g.run_ids)}
    local = [where[int(reps[0])] for reps in table["reps"]]
    n = len(local)
    pairs = [(local[i], local[j]) for i in range(n) for j in range(i + 1, n)]
    a_P, b_P = basins.aligned_pairs(g, pairs)
    lin = basins.path_losses(g.loss_fn(), a_P, b_P, (config or BandConfig()).n_points)
    height = np.full((n, n), np.inf)
    dist = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    height[iu] = lin.max(1)
    dist[iu] = np.linalg.norm(symmetry.flat_params(a_P) - symmetry.flat_params(b_P), axis=1)
    height = np.minimum(height, height.T)
    dist = dist + dist.T
    chosen = _chosen_edges(height, dist, k)
    pos = {p: m for m, p in enumerate(zip(*iu))}
    idx = np.array([pos[e] for e in chosen])
    pick = lambda t: jax.tree.map(lambda x: np.asarray(x)[idx], t)  # noqa: E731
    loss_fn, trainable = g.loss_fn(), g.trainable()
    paths = minimum_energy_paths(loss_fn, pick(a_P), pick(b_P), trainable=trainable, chunk=chunk,
                                 config=config, **overrides)  # fmt: skip
    return _assemble(ds, b, g, table, local, chosen, paths, eig_tol, resolve_tol)


def _assemble(ds, b, g, table, local, chosen, paths: Paths, eig_tol, resolve_tol) -> Landscape:
    loss_fn, trainable = g.loss_fn(), g.trainable()
    node_params = [jax.tree.map(lambda a, i=i: np.asarray(a)[i], g.params_R) for i in local]
    node_params = [symmetry.canonical_params(p, g.symmetry) for p in node_params]
    nodes = [dict(node=i, loss=float(r.min_loss), source="basin", basin=int(r.basin),
                  run=int(r.reps[0])) for i, r in enumerate(table.itertuples())]  # fmt: skip
    probe = basins.probe_inputs(g.task, b.config)
    stack = lambda ps: jax.tree.map(lambda *xs: np.stack(xs), *ps)  # noqa: E731
    out_of = lambda ps: basins.outputs(g._replace(params_R=stack(ps)), probe)  # noqa: E731
    node_out = list(out_of(node_params))
    # transition states: the highest climbing image of every path
    top = paths.losses.argmax(1)
    ts = jax.tree.map(lambda a: np.asarray(a)[np.arange(len(top)), top], paths.images)
    index, gnorm = saddle_index(loss_fn, ts, trainable, eig_tol=eig_tol)
    rows, links = [], []
    for e, (i, j) in enumerate(chosen):
        p = paths.path(e)
        seq = [(0, i)]
        # A path that did not converge, or whose images miss a higher point between them, is
        # still a path from i to j: it bounds their barrier, but its dips are no minima.
        rise = p.saddle_loss - min(p.losses[0], p.losses[-1])
        resolved = p.converged and p.path_max - p.saddle_loss <= resolve_tol * rise + 1e-7
        for m in np.flatnonzero(p.descending) if resolved else []:
            params = p.image(m)
            o = out_of([params])[0]
            d = [np.sqrt(np.mean((o - x) ** 2)) for x in node_out]
            hit = int(np.argmin(d)) if min(d) < b.config.f_tol else None
            if hit is None:
                hit = len(nodes)
                nodes.append(
                    dict(node=hit, loss=float(p.losses[m]), source="path", basin=-1, run=-1)
                )
                node_params.append(params)
                node_out.append(o)
            seq.append((int(m), hit))
        seq.append((len(p.losses) - 1, j))
        for (m0, u), (m1, v) in zip(seq, seq[1:]) if resolved else []:
            if u != v:
                links.append((u, v, float(p.losses[m0 : m1 + 1].max())))
        if not resolved:
            links.append((i, j, p.path_max))
        links.append((i, j, float(p.linear_losses.max())))  # the straight line is a path too
        linb = p.linear_barrier
        rel = p.path_max - (p.losses[0] + p.losses[-1]) / 2
        rows.append(dict(i=i, j=j, chosen_by=chosen[(i, j)], linear_barrier=linb,
                         relaxed_barrier=rel, saddle_barrier=p.barrier,
                         ratio=rel / linb if linb > 0 else np.nan, resolved=resolved,
                         linear_saddle=float(p.linear_losses.max()), saddle_loss=p.saddle_loss,
                         path_max=p.path_max,
                         ts_index=int(index[e]) if p.climbing.any() else -1,
                         ts_grad_norm=float(gnorm[e]), converged=p.converged,
                         escaped=p.escaped, steps=p.steps,
                         interior_minima=len(seq) - 2))  # fmt: skip
    node_df = pd.DataFrame(nodes)
    return Landscape(node_df, pd.DataFrame(rows), disconnectivity(node_df.loss.to_numpy(), links),
                     paths, stack(node_params), basins.group_label(ds, g))  # fmt: skip
