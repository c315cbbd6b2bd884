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
from jaxinit.config.spec import LandscapeSpec, field_names
from jaxinit.engine import lanes
from jaxinit.engine.lanes import lane_max, lane_sum
from jaxinit.engine.program import tree_where

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
    subdivide: int = 4  # a path (and the straight line) is evaluated at this many points
    # between consecutive images too: its highest loss there (path_max) is its barrier
    check_every: int = 50  # every this many steps (and at step 0: the straight line) a band is
    # checked at those points; the lowest so far is kept (a band that runs off may rise)

    @property
    def points(self) -> int:
        """Points at which a path and its straight line are evaluated: ``(K - 1)(subdivide + 1) + 1``."""
        return (self.images - 1) * (self.subdivide + 1) + 1


SOURCES = ("relaxed", "lowest band", "straight line")
"""What a returned path is (``Path.source``): the relaxed band where it is no higher than the
straight line (and, for a path that did not converge, than the lowest band seen), else the
band of lowest highest image seen on the way (checked at the same points), else the straight
line itself."""


class _Band(NamedTuple):
    """``N`` paths' optimizer state, the path axis **last** (``K`` images of ``D`` parameters)."""

    x: Array  # (D, K, N) images; images 0 and K-1 are the fixed ends
    v: Array  # (D, K, N) FIRE velocity
    dt: Array  # (N,) FIRE time step
    alpha: Array  # (N,) FIRE mixing weight
    n_pos: Array  # (N,) int32, steps since the force last turned against the velocity
    opt: Any  # optax.lbfgs state per path, leaves (..., N) (FIRE: empty)
    step: Array  # (N,) int32, steps taken
    converged: Array  # (N,) bool: the path is frozen
    climbing: Array  # (N,) bool: images climb / descend from now on (latched)
    escaped: Array  # (N,) bool: the band outgrew max_stretch × the straight line; frozen before
    max_force: Array  # (N,) largest image force norm at the last evaluation
    max_step: Array  # (N,) most an image moves in one step
    length0: Array  # (N,) length of the straight line
    best: Array  # (D, K, N) the lowest band checked so far (step 0: the straight line)
    best_top: Array  # (N,) its path_max (at BandConfig.points points)
    e_ends: Array  # (2, N) the loss at both ends (fixed: evaluated once)
    frozen: Any  # list of the frozen (not trainable) leaves, each (..., N): held at a's values


class TooFewMinima(ValueError):
    """A sweep (or group) with fewer than two basins: there is no landscape to draw."""


# -- the band's forces, for N paths at once (path axis last) ------------------------------------
# Every array carries the path axis last and sums over the parameter and image axes are
# halving adds (jaxinit.engine.lanes.lane_sum): each op is elementwise over the paths, which is
# what lets XLA vectorize a pool of hundreds of tiny paths on a CPU.


def _vnorm(x: Array) -> Array:
    """Euclidean norm over the leading (parameter) axis: ``(D, ...) -> (...)``."""
    return jnp.sqrt(lane_sum(x * x, 0))


def _unit(x: Array) -> Array:
    n = _vnorm(x)
    return x / jnp.where(n > 0, n, 1.0)


def _amin(x: Array, axis: int) -> Array:
    return -lane_max(-x, axis)


def tangents(x_DxKxN: Array, e_KxN: Array) -> Array:
    """``(D, K-2, N)`` unit tangents at the interior images: the improved tangent of Henkelman &
    Jónsson (2000). Towards the higher neighbour where the loss is monotone across an image;
    at an extremum a blend of both sides weighted by the loss differences, so that the
    tangent turns smoothly. Equal losses on both sides fall back to the bisector."""
    x, e = x_DxKxN, e_KxN
    d_plus, d_minus = x[:, 2:] - x[:, 1:-1], x[:, 1:-1] - x[:, :-2]
    de_plus, de_minus = e[2:] - e[1:-1], e[1:-1] - e[:-2]
    up = (de_plus > 0) & (de_minus > 0)
    down = (de_plus < 0) & (de_minus < 0)
    big = jnp.maximum(jnp.abs(de_plus), jnp.abs(de_minus))
    small = jnp.minimum(jnp.abs(de_plus), jnp.abs(de_minus))
    rising = e[2:] > e[:-2]
    blend = jnp.where(rising, big, small) * d_plus + jnp.where(rising, small, big) * d_minus
    t = jnp.where(up, d_plus, jnp.where(down, d_minus, blend))
    t = jnp.where(_vnorm(t) > 0, t, _unit(d_plus) + _unit(d_minus))
    return _unit(t)


def prominence(e_KxN: Array) -> tuple[Array, Array]:
    """``(of_maxima_KxN, of_minima_KxN)``: the topographic prominence of every image along each band.

    A maximum's: how far the loss drops on the way to a higher point (or an end) on its lower
    side, i.e. ``e_i - max(lowest point to the left, lowest point to the right)``, each side
    walked until the loss first exceeds ``e_i``. A minimum's: how far it rises on the way to a
    lower point, the same with the signs turned. Zero at the ends."""
    e = e_KxN
    k = e.shape[0]
    idx = jnp.arange(k)
    left = (idx[None, :] <= idx[:, None])[:, :, None]  # (K, K, 1): j at or left of i
    right = (idx[None, :] >= idx[:, None])[:, :, None]
    here = (idx[None, :] == idx[:, None])[:, :, None]
    row = jnp.broadcast_to(e[None], (k, *e.shape))  # (K, K, N): e_j

    def segment(cum, fill):  # (K, K, N): cum's reduction of e over the images between i and j
        ahead = cum(jnp.where(right, row, fill), axis=1)
        behind = cum(jnp.where(left, row, fill), axis=1, reverse=True)
        return jnp.where(right, ahead, behind)

    up = segment(jax.lax.cummax, -jnp.inf) <= e[:, None]  # j reachable without passing higher
    down = segment(jax.lax.cummin, jnp.inf) >= e[:, None]
    low_l = _amin(jnp.where(up & left, row, jnp.inf), 1)
    low_r = _amin(jnp.where(up & (~left | here), row, jnp.inf), 1)
    high_l = lane_max(jnp.where(down & left, row, -jnp.inf), 1)
    high_r = lane_max(jnp.where(down & (~left | here), row, -jnp.inf), 1)
    inner = ((idx > 0) & (idx < k - 1))[:, None]
    return (
        jnp.where(inner, e - jnp.maximum(low_l, low_r), 0.0),
        jnp.where(inner, jnp.minimum(high_l, high_r) - e, 0.0),
    )


def extrema(e_KxN: Array, min_prominence: float = 0.0) -> tuple[Array, Array]:
    """``(maxima_KxN, minima_KxN)``: interior images above (below) both neighbours; of two equal
    neighbours the later one counts (so a symmetric band still has its climbing image). Other
    than the highest image, an extremum counts only with a prominence (:func:`prominence`) of
    at least ``min_prominence`` × the band's loss range: a kink of a band still settling is no
    saddle. A minimum next to an end is left out: it lies in that end's basin (a descending
    image there would only slide onto the end)."""
    e = e_KxN
    inner_max = (e[1:-1] >= e[:-2]) & (e[1:-1] > e[2:])
    inner_min = (e[1:-1] <= e[:-2]) & (e[1:-1] < e[2:])
    inner_min = inner_min.at[jnp.array([0, -1])].set(False)
    pad = jnp.zeros((1, *e.shape[1:]), bool)
    is_max = jnp.concatenate([pad, inner_max, pad])
    is_min = jnp.concatenate([pad, inner_min, pad])
    p_max, p_min = prominence(e)
    floor = min_prominence * (lane_max(e, 0) - _amin(e, 0))
    top = jnp.arange(e.shape[0])[:, None] == jnp.argmax(e, axis=0)
    return is_max & ((p_max >= floor) | top), is_min & (p_min >= floor)


def neb_forces(
    x_DxKxN: Array, e_KxN: Array, g_DxKxN: Array, climb_KxN: Array, descend_KxN: Array,
    spring: float,
) -> Array:  # fmt: skip
    """``(D, K, N)`` NEB forces (zero on the fixed ends).

    Ordinary images: ``-∇V⊥ + k (|x_{i+1} - x_i| - |x_i - x_{i-1}|) τ``; climbing images
    ``-∇V + 2 (∇V·τ) τ``; descending images ``-∇V``."""
    x = x_DxKxN
    t = tangents(x, e_KxN)
    g = g_DxKxN[:, 1:-1]
    g_par = lane_sum(g * t, 0) * t
    stretch = _vnorm(x[:, 2:] - x[:, 1:-1]) - _vnorm(x[:, 1:-1] - x[:, :-2])
    f = -(g - g_par) + spring * stretch * t
    f = jnp.where(climb_KxN[1:-1], -g + 2 * g_par, f)
    f = jnp.where(descend_KxN[1:-1], -g, f)
    zero = jnp.zeros_like(x[:, :1])
    return jnp.concatenate([zero, f, zero], 1)


# -- the loss of many points at once ------------------------------------------------------------
class _Layout(NamedTuple):
    """How one point's parameter pytree maps to a flat vector of its trainable leaves."""

    treedef: Any
    shapes: tuple  # every leaf's shape (one point)
    trainable: tuple  # every leaf: trainable?

    @staticmethod
    def of(tree_N: Any, trainable: Any | None) -> _Layout:
        """From a pytree whose leaves carry a leading point axis, and a pytree of bools (or
        ``None``: every leaf trainable)."""
        leaves, treedef = jax.tree.flatten(tree_N)
        mask = [True] * len(leaves) if trainable is None else jax.tree.leaves(trainable)
        return _Layout(
            treedef, tuple(np.shape(a)[1:] for a in leaves), tuple(bool(m) for m in mask)
        )

    def flat(self, tree_N: Any) -> Array:
        """``(D, N)``: the trainable leaves (leading point axis) as columns."""
        leaves = jax.tree.leaves(tree_N)
        cols = [jnp.reshape(a, (a.shape[0], -1)).T for a, m in zip(leaves, self.trainable) if m]
        return jnp.concatenate(cols, 0)

    def frozen(self, tree_N: Any) -> list:
        """The frozen leaves, point axis moved last."""
        leaves = jax.tree.leaves(tree_N)
        return [jnp.moveaxis(a, 0, -1) for a, m in zip(leaves, self.trainable) if not m]

    def params(self, theta: Array, frozen: list) -> Any:
        """The pytree of ``theta`` ``(D, *C)`` (points last; no trailing axis: one point) with the
        frozen leaves ``(..., *C)``."""
        rest = theta.shape[1:]
        it, fr, out, off = iter(self.shapes), iter(frozen), [], 0
        for shape, m in zip(it, self.trainable):
            if m:
                size = int(np.prod(shape, dtype=int))
                out.append(theta[off : off + size].reshape(*shape, *rest))
                off += size
            else:
                out.append(next(fr))
        return jax.tree.unflatten(self.treedef, out)


def _per_lane(frozen_xN: list, k: int) -> list:
    """Frozen leaves of N paths ``(..., N)`` for each of their ``k`` points ``(..., k·N)``."""
    return [
        jnp.broadcast_to(a[..., None, :], (*a.shape[:-1], k, a.shape[-1])).reshape(
            *a.shape[:-1], -1
        )
        for a in frozen_xN
    ]


def _evaluators(loss_fn: Callable, lanes_loss: Callable | None, layout: _Layout):
    """``(value, value_and_grad)`` of ``C`` points at once: ``theta (D, C), frozen -> (C,)`` and
    ``-> ((C,), (D, C))``. Vmapped over the trailing point axis, or, given ``lanes_loss`` (the
    same loss written for every point at once, point axis last, as
    :mod:`jaxinit.engine.lanes` trains), one call whose summed loss's gradient is every
    point's own."""
    if lanes_loss is None:
        one = lambda th, fr: loss_fn(layout.params(th, fr))  # noqa: E731
        value = jax.vmap(one, in_axes=(-1, -1))
        value_and_grad = jax.vmap(jax.value_and_grad(one), in_axes=(-1, -1), out_axes=(0, -1))
        return value, value_and_grad

    def value(th, fr):
        return lanes_loss(layout.params(th, fr))

    def total(th, fr):
        per = value(th, fr)
        return jnp.sum(per), per

    def value_and_grad(th, fr):
        (_, per), g = jax.value_and_grad(total, has_aux=True)(th, fr)
        return per, g

    return value, value_and_grad


def lanes_loss_of(model: Model, task: Any, dtype: str = "float32") -> Callable | None:
    """The full-batch training loss of a built-in model on a task, written for every point at
    once with the point axis last (:data:`jaxinit.engine.lanes.LANE_OPS`): what
    :func:`minimum_energy_paths` takes as ``lanes_loss``. ``None`` where the model or task has no
    such form (a user model, a task's own objective)."""
    if model.forward is None or task.objective is not None or task.loss not in ("mse", "bce", "ce"):
        return None
    x = jnp.asarray(task.x_train, dtype)
    y = jnp.asarray(task.y_train, dtype if task.loss != "ce" else task.y_train.dtype)
    return lambda params: lanes.lanes_loss(
        task.loss, model.forward(lanes.LANE_OPS, params, x, None), y
    )


# -- the relaxation -----------------------------------------------------------------------------
def _length(x_DxKxN: Array) -> Array:
    return lane_sum(_vnorm(x_DxKxN[:, 1:] - x_DxKxN[:, :-1]), 0)


def _line(xa_DxN: Array, xb_DxN: Array, n: int) -> Array:
    """``(D, n, N)``: ``n`` evenly spaced points of the straight lines."""
    ts = jnp.linspace(0.0, 1.0, n, dtype=xa_DxN.dtype)[None, :, None]
    return (1 - ts) * xa_DxN[:, None] + ts * xb_DxN[:, None]


def _lbfgs(cfg: BandConfig):
    opt = optax.lbfgs(learning_rate=cfg.dt, linesearch=None)
    # one optimizer per path: vmapped over the trailing path axis
    return (jax.vmap(opt.init, in_axes=-1, out_axes=-1),
            jax.vmap(opt.update, in_axes=-1, out_axes=-1))  # fmt: skip


def _start(value: Callable, xa_DxN: Array, xb_DxN: Array, frozen: list, cfg: BandConfig) -> _Band:
    """The bands on the straight lines ``xa → xb``, at rest."""
    x0 = _line(xa_DxN, xb_DxN, cfg.images)
    n = xa_DxN.shape[1]
    e_ends = value(jnp.concatenate([xa_DxN, xb_DxN], 1), _per_lane(frozen, 2)).reshape(2, n)
    spacing = _vnorm(xb_DxN - xa_DxN) / (cfg.images - 1)
    zero = jnp.zeros(n, xa_DxN.dtype)
    false = jnp.zeros(n, bool)
    opt = _lbfgs(cfg)[0](x0) if cfg.optimizer == "lbfgs" else ()
    return _Band(x0, jnp.zeros_like(x0), zero + cfg.dt, zero + FIRE_ALPHA,
                 jnp.zeros(n, jnp.int32), opt, jnp.zeros(n, jnp.int32), false, false, false,
                 zero + jnp.inf, cfg.max_step * jnp.where(spacing > 0, spacing, 1.0),
                 _length(x0), x0, zero + jnp.inf, e_ends, frozen)  # fmt: skip


def _stopped(s: _Band, cfg: BandConfig) -> Array:
    return s.converged | s.escaped | (s.step >= cfg.steps)


def _path_max(value: Callable, x_DxKxN: Array, frozen: list, cfg: BandConfig) -> Array:
    """``(N,)``: each band's highest loss at ``cfg.points`` points (:func:`_refine`)."""
    pts = _refine(x_DxKxN, cfg.subdivide)
    d, m, n = pts.shape
    return lane_max(value(pts.reshape(d, -1), _per_lane(frozen, m)).reshape(m, n), 0)


def _advance(value: Callable, value_and_grad: Callable, s: _Band, cfg: BandConfig, n: int) -> _Band:
    """At most ``n`` more steps of every band (fewer once all have stopped); pure, jittable. A
    stopped band is left as it is by its mask while the others go on. Every ``check_every``
    steps of a band (step 0 included) its ``path_max`` is measured and the lowest band so far
    kept."""
    k = cfg.images
    inner = (jnp.arange(k) > 0) & (jnp.arange(k) < k - 1)
    d = s.x.shape[0]
    lbfgs_update = _lbfgs(cfg)[1]
    tiny = jnp.finfo(s.x.dtype).tiny

    def forces(s):  # the interior images only: the ends are fixed
        e, g = value_and_grad(s.x[:, 1:-1].reshape(d, -1), _per_lane(s.frozen, k - 2))
        e = jnp.concatenate([s.e_ends[:1], e.reshape(k - 2, -1), s.e_ends[1:]])
        zero = jnp.zeros_like(s.x[:, :1])
        g = jnp.concatenate([zero, g.reshape(d, k - 2, -1), zero], 1)
        is_max, is_min = extrema(e, cfg.min_prominence)
        climb = is_max & s.climbing & cfg.climbing
        descend = is_min & s.climbing & cfg.descending
        return e, neb_forces(s.x, e, g, climb, descend, cfg.spring)

    def clip(dx, max_step):  # each image moves at most max_step; the ends stay
        n = _vnorm(dx)
        return jnp.where(
            inner[:, None], dx * jnp.minimum(1.0, max_step / jnp.where(n > 0, n, 1.0)), 0.0
        )

    def check(s: _Band) -> _Band:
        top = _path_max(value, s.x, s.frozen, cfg)
        due = (s.step % cfg.check_every == 0) & ~_stopped(s, cfg)
        lower = due & (top < s.best_top)
        return s._replace(
            best=jnp.where(lower, s.x, s.best), best_top=jnp.where(lower, top, s.best_top)
        )

    def body(s: _Band) -> _Band:
        # the paths of a pool start at segment boundaries: their checks fall on the same turns
        due = jnp.any((s.step % cfg.check_every == 0) & ~_stopped(s, cfg))
        s = jax.lax.cond(due, check, lambda s: s, s)
        e, force = forces(s)
        max_force = lane_max(_vnorm(force), 0)
        # converged: small forces once the images climb (a plain band converges on its own)
        plain = not (cfg.climbing or cfg.descending)
        done = (max_force < cfg.force_tol) & (s.climbing | plain)
        settled = (s.step >= cfg.climb_start) & (max_force < cfg.climb_factor * cfg.force_tol)
        if cfg.optimizer == "fire":
            total = lambda a: lane_sum(lane_sum(a, 0), 0)  # noqa: E731
            p = total(force * s.v)
            v_norm, f_norm = jnp.sqrt(total(s.v * s.v)), jnp.sqrt(total(force * force))
            mixed = (1 - s.alpha) * s.v + s.alpha * v_norm * force / jnp.maximum(f_norm, tiny)
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
            upd, opt = lbfgs_update(-force, s.opt, s.x)
            new = s._replace(x=s.x + clip(upd, s.max_step), opt=opt)
        new = new._replace(step=s.step + 1, max_force=max_force, climbing=s.climbing | settled)
        # the force field changes when images start to climb: FIRE starts again from rest
        switch = settled & ~s.climbing
        new = new._replace(v=jnp.where(switch, 0.0, new.v), n_pos=jnp.where(switch, 0, new.n_pos),
                           alpha=jnp.where(switch, FIRE_ALPHA, new.alpha))  # fmt: skip
        frozen = s._replace(converged=s.converged | done, max_force=max_force)
        escaped = _length(new.x) > cfg.max_stretch * s.length0
        stopped = s._replace(escaped=s.escaped | escaped, max_force=max_force)
        new = tree_where(escaped, stopped, new)
        new = tree_where(done, frozen, new)
        return tree_where(_stopped(s, cfg), s, new)

    s, _ = jax.lax.while_loop(
        lambda c: jnp.any(~_stopped(c[0], cfg)) & (c[1] < n),
        lambda c: (body(c[0]), c[1] + 1),
        (s, 0),
    )
    return s


def _refine(x_DxKxN: Array, subdivide: int) -> Array:
    """``(D, P, N)``: the piecewise-linear path through the images at ``subdivide`` more points
    per segment (``P = (K - 1)(subdivide + 1) + 1``; for a straight band: ``P`` even steps)."""
    d, k, n = x_DxKxN.shape
    w = jnp.linspace(0.0, 1.0, subdivide + 2, dtype=x_DxKxN.dtype)[:-1][None, None, :, None]
    seg = (1 - w) * x_DxKxN[:, :-1, None] + w * x_DxKxN[:, 1:, None]  # (D, K-1, s+1, N)
    return jnp.concatenate([seg.reshape(d, -1, n), x_DxKxN[:, -1:]], 1)


def _result(value: Callable, s: _Band, layout: _Layout, cfg: BandConfig) -> dict:
    """What stopped bands say. Three candidate paths per pair, each evaluated at the same
    ``cfg.points`` points: the final band, the lowest band seen and the straight line (see
    :data:`SOURCES`); the returned path is never higher than the straight line."""
    d, k, n = s.x.shape
    line = _line(s.x[:, 0], s.x[:, -1], k)
    cands = jnp.stack([s.x, s.best, line])  # (3, D, K, N)
    pts = jax.vmap(lambda x: _refine(x, cfg.subdivide))(cands)  # (3, D, P, N)
    m = pts.shape[2]
    theta = jnp.moveaxis(pts, 0, 1).reshape(d, -1)  # (D, 3·P·N)
    fr = [jnp.broadcast_to(a, (*a.shape[:-1], 3 * m, n)).reshape(*a.shape[:-1], -1)
          for a in (x[..., None, :] for x in s.frozen)]  # fmt: skip
    losses = value(theta, fr).reshape(3, m, n)
    top = jnp.max(losses, 1)  # (3, N): path_max of each candidate
    use_final = (top[0] <= top[2]) & (s.converged | (top[0] <= top[1]))
    which = jnp.where(use_final, 0, jnp.where(top[1] <= top[2], 1, 2))
    pick = jnp.arange(3)[:, None] == which  # (3, N)
    x = jnp.sum(jnp.where(pick[:, None, None], cands, 0.0), 0)
    e = jnp.sum(jnp.where(pick[:, None], losses, 0.0), 0)  # (P, N)
    e_img = e[:: cfg.subdivide + 1]
    climb, descend = extrema(e_img, cfg.min_prominence)
    flat = jnp.swapaxes(x, 1, 2).reshape(d, n * k)  # point n·K + k: path n's image k
    fr_img = [jnp.repeat(a, k, axis=-1) for a in s.frozen]
    tree = layout.params(flat, fr_img)  # leaves (..., N·K)
    tree = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0).reshape(n, k, *a.shape[:-1]), tree)
    return dict(images=tree, losses=e_img.T, climbing=(climb & cfg.climbing).T,
                descending=(descend & cfg.descending).T, linear_losses=losses[2].T,
                converged=s.converged & (which == 0), steps=s.step, max_force=s.max_force,
                path_max=jnp.max(e, 0), escaped=s.escaped, source=which)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _program(
    loss_fn: Callable, lanes_loss: Callable | None, layout: _Layout, cfg: BandConfig
) -> tuple[Callable, Callable, Callable, Callable]:
    """The compiled pieces of a pool of paths, ends given with a leading pair axis: ``start``,
    ``advance`` by ``cfg.segment`` steps, ``result``, and ``whole`` (all three, run to the end in
    one program); cached so that a second call with the same loss, layout and config does not
    recompile (each distinct number of paths compiles once)."""
    value, value_and_grad = _evaluators(loss_fn, lanes_loss, layout)

    def start(a_N, b_N):
        return _start(value, layout.flat(a_N), layout.flat(b_N), layout.frozen(a_N), cfg)

    def advance(s, n):
        return _advance(value, value_and_grad, s, cfg, n)

    def result(s):
        return _result(value, s, layout, cfg)

    def whole(a_N, b_N):
        return result(advance(start(a_N, b_N), cfg.steps))

    return (jax.jit(start), jax.jit(functools.partial(advance, n=cfg.segment)), jax.jit(result),
            jax.jit(whole))  # fmt: skip


class Path(NamedTuple):
    """One relaxed path of ``K`` images (``images``: the params pytree, leaves ``(K, ...)``)."""

    images: Any
    losses: np.ndarray  # (K,) loss per image
    climbing: np.ndarray  # (K,) bool: a local maximum of the band (climbed onto a saddle)
    descending: np.ndarray  # (K,) bool: an interior local minimum (descended onto a minimum)
    linear_losses: np.ndarray  # (P,) loss along the straight line, at the points of path_max
    converged: bool  # every image's NEB force fell below force_tol (and this band is returned)
    steps: int  # optimizer steps taken
    max_force: float  # largest image force norm at the end
    path_max: float  # highest loss on the path, checked at BandConfig.points points
    escaped: bool  # stopped when the band outgrew max_stretch × the straight line
    source: int  # what the path is: an index into SOURCES (0: the relaxed band)

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
        """Relaxed barrier: highest loss on the path (``path_max``) - mean of the ends, as in
        basins; never above :attr:`linear_barrier`, which is checked at the same points."""
        return float(self.path_max - (self.losses[0] + self.losses[-1]) / 2)

    @property
    def linear_barrier(self) -> float:
        """The same pair's straight-line barrier, at the same number of points."""
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
    if cfg.check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {cfg.check_every}")
    if cfg.optimizer not in ("fire", "lbfgs"):
        raise ValueError(f"optimizer must be 'fire' or 'lbfgs', got {cfg.optimizer!r}")
    return cfg


def minimum_energy_path(
    loss_fn: Callable[[Any], Array],
    a: Any,
    b: Any,
    *,
    trainable: Any | None = None,
    lanes_loss: Callable | None = None,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Path:
    """Relax the straight line from ``a`` to ``b`` into a minimum energy path (CI-NEB, FIRE).

    ``loss_fn`` maps a parameter pytree (a plain array is one) to a scalar; ``a`` and ``b`` are
    two such pytrees, typically minima. ``trainable`` (a pytree of bools) holds frozen leaves at
    ``a``'s values. ``lanes_loss`` (optional, :func:`lanes_loss_of`): the same loss of many
    points at once, point axis last. Settings: :class:`BandConfig`, or its fields as keywords
    (``images=``, ``steps=``, ``climbing=`` …). The path is computed in the dtype of ``a``, by
    the same compiled program as :func:`minimum_energy_paths` for one pair.

    >>> import jax.numpy as jnp
    >>> p = minimum_energy_path(lambda x: (x[0] ** 2 - 1) ** 2 + x[1] ** 2,
    ...                         jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0]), images=5)
    >>> float(p.saddle_loss), [float(v) for v in p.saddle]
    (1.0, [0.0, 0.0])
    """
    cfg = _config(config, overrides)
    _check_ends(a, b, 0)
    a1, b1 = (jax.tree.map(lambda x: jnp.asarray(x)[None], t) for t in (a, b))
    whole = _program(loss_fn, lanes_loss, _Layout.of(a1, trainable), cfg)[3]
    return Paths(**jax.tree.map(np.asarray, whole(a1, b1))).path(0)


class Paths(NamedTuple):
    """``N`` relaxed paths (the fields of :class:`Path` with a leading path axis)."""

    images: Any  # pytree, leaves (N, K, ...)
    losses: np.ndarray  # (N, K)
    climbing: np.ndarray  # (N, K)
    descending: np.ndarray  # (N, K)
    linear_losses: np.ndarray  # (N, P)
    converged: np.ndarray  # (N,) bool: the convergence mask
    steps: np.ndarray  # (N,)
    max_force: np.ndarray  # (N,)
    path_max: np.ndarray  # (N,)
    escaped: np.ndarray  # (N,) bool
    source: np.ndarray  # (N,) index into SOURCES

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.losses)

    def path(self, n: int) -> Path:
        images = jax.tree.map(lambda a: a[n], self.images)
        return Path(images, self.losses[n], self.climbing[n], self.descending[n],
                    self.linear_losses[n], bool(self.converged[n]), int(self.steps[n]),
                    float(self.max_force[n]), float(self.path_max[n]), bool(self.escaped[n]),
                    int(self.source[n]))  # fmt: skip

    @property
    def saddle_loss(self) -> np.ndarray:
        return self.losses.max(1)

    @property
    def barrier(self) -> np.ndarray:
        return self.path_max - (self.losses[:, 0] + self.losses[:, -1]) / 2

    @property
    def linear_barrier(self) -> np.ndarray:
        return basins.barrier_heights(self.linear_losses)


def minimum_energy_paths(
    loss_fn: Callable[[Any], Array],
    a_N: Any,
    b_N: Any,
    *,
    trainable: Any | None = None,
    lanes_loss: Callable | None = None,
    chunk: int = 64,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Paths:
    """:func:`minimum_energy_path` for ``N`` pairs at once: ``a_N``, ``b_N`` are pytrees with a
    leading pair axis. A pool of ``chunk`` paths × ``K`` images runs in one compiled program
    (the path axis last, every op elementwise over the paths), ``segment`` steps at a time; a
    path that has stopped (converged, escaped or out of steps) is frozen by its mask while the
    others go on, and after the segment its slot takes the next waiting pair, so the pool does
    not idle until its slowest path is done. Once no pair waits, the pool shrinks to a quarter
    (never below 8 paths; a compilation each) whenever three quarters of it have stopped. Each path
    takes the same steps as it would alone (in float64; in float32 programs of different widths
    may round differently)."""
    cfg = _config(config, overrides)
    _check_ends(a_N, b_N, 1)
    n = len(jax.tree.leaves(a_N)[0])
    if n == 0:
        raise ValueError("no pairs to relax")
    start, advance, result, _ = _program(loss_fn, lanes_loss, _Layout.of(a_N, trainable), cfg)
    size = size0 = min(chunk, n)
    slot = np.minimum(np.arange(size), n - 1)  # the pair in each slot of the pool
    queue = size  # the next pair waiting for a slot
    todo = np.ones(size, bool)  # the slot holds a pair not yet collected
    take = lambda t, idx: jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]), t)  # noqa: E731
    state = start(take(a_N, slot), take(b_N, slot))
    final: list = [None] * n  # each pair's stopped state (host copy)
    while todo.any():
        state = advance(state)
        done = np.asarray(_stopped(state, cfg)) & todo
        if done.any():
            host = jax.tree.map(np.asarray, state)
            for i in np.flatnonzero(done):
                final[slot[i]] = jax.tree.map(lambda x, i=i: x[..., i], host)
            todo &= ~done
        # refill the freed slots with waiting pairs: the pool never idles on finished paths
        free = np.flatnonzero(done)[: max(0, n - queue)]
        if len(free):
            slot[free] = np.arange(queue, queue + len(free))
            queue += len(free)
            todo[free] = True
            fresh = start(take(a_N, slot), take(b_N, slot))
            state = tree_where(jnp.asarray(np.isin(np.arange(size), free)), fresh, state)
        while queue >= n and 0 < 4 * todo.sum() <= size and size >= 32:
            # no pair waits: quarter the pool, keeping the unfinished paths (a compilation each)
            keep = np.flatnonzero(todo)
            keep = np.concatenate([keep, np.flatnonzero(~todo)[: size // 4 - len(keep)]])
            size //= 4
            slot, todo = slot[keep], todo[keep]
            state = jax.tree.map(lambda x, k=keep: x[..., jnp.asarray(k)], state)
    # what the stopped bands say, in pools of the first size (one more compilation)
    stacked = jax.tree.map(lambda *xs: np.stack(xs, -1), *final)
    parts = []
    for c in range(0, n, size0):
        idx = np.minimum(np.arange(c, c + size0), n - 1)
        out = result(jax.tree.map(lambda x, i=idx: jnp.asarray(x[..., i]), stacked))
        m = min(size0, n - c)
        parts.append(jax.tree.map(lambda x, m=m: np.asarray(x)[:m], out))
    return Paths(**jax.tree.map(lambda *xs: np.concatenate(xs), *parts))


# -- the landscape of a sweep -------------------------------------------------------------------
class Landscape(NamedTuple):
    """The minima of one static group of a sweep and the relaxed paths between them."""

    nodes: pd.DataFrame  # node, loss, source ("basin" / "path"), basin, run
    edges: pd.DataFrame  # one row per relaxed path (see graph)
    tree: pd.DataFrame  # the disconnectivity graph: one row per merge, lowest first
    paths: Paths  # the relaxed paths, in the order of edges
    node_params: Any  # pytree, leaves (N, ...): the nodes' parameters (aligned as relaxed)
    label: str  # the group's static axis values


def band_config(ls: LandscapeSpec) -> BandConfig:
    """The :class:`BandConfig` of a spec's ``[landscape]`` section."""
    names = set(BandConfig._fields) & set(field_names(LandscapeSpec))
    return BandConfig(**{name: getattr(ls, name) for name in sorted(names)})


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


def chosen_edges(height_NxN: np.ndarray, dist_NxN: np.ndarray, k: int) -> dict[tuple, str]:
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
    k: int | None = None,
    max_nodes: int | None = None,
    basin_config: basins.BasinConfig | None = None,
    chunk: int | None = None,
    eig_tol: float = 1e-6,
    resolve_tol: float = 0.1,
    config: BandConfig | None = None,
    **overrides: Any,
) -> Landscape:
    """The landscape of one static group of a sweep with saved parameters.

    Settings not given here (``k``, ``max_nodes``, ``chunk``, ``config``) come from the sweep
    spec's ``[landscape]`` section (:class:`jaxinit.config.spec.LandscapeSpec`, :func:`band_config`).
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
    linear (never above 1: both at the same ``BandConfig.points`` points), what the returned
    path is (``source``, :data:`SOURCES`), the saddle's loss, index (negative Hessian eigenvalues, float64,
    :func:`saddle_index`) and gradient norm, whether the path converged and is ``resolved``
    (no point between its images higher than its highest image by more than ``resolve_tol`` ×
    that image's rise above the lower end: chords of a curved path overshoot a little), its
    steps and interior minima.
    ``tree``: :func:`disconnectivity` over every segment between consecutive minima of every
    resolved path, each unresolved path as a whole (at ``path_max``), and the straight lines
    (a path too): the lowest known path between two minima decides where they merge.
    """
    ls = basins.selected_spec(ds).landscape
    k = ls.k if k is None else k
    max_nodes = (ls.max_nodes or None) if max_nodes is None else max_nodes
    chunk = ls.chunk if chunk is None else chunk
    cfg = _config(config or band_config(ls), overrides)
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
    lin = basins.path_losses(g.loss_fn(), a_P, b_P, cfg.points)
    height = np.full((n, n), np.inf)
    dist = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    height[iu] = lin.max(1)
    dist[iu] = np.linalg.norm(symmetry.flat_params(a_P) - symmetry.flat_params(b_P), axis=1)
    height = np.minimum(height, height.T)
    dist = dist + dist.T
    chosen = chosen_edges(height, dist, k)
    pos = {p: m for m, p in enumerate(zip(*iu))}
    idx = np.array([pos[e] for e in chosen])
    pick = lambda t: jax.tree.map(lambda x: np.asarray(x)[idx], t)  # noqa: E731
    loss_fn, trainable = g.loss_fn(), g.trainable()
    fast = lanes_loss_of(g.model, g.task, g.spec.train.dtype)
    paths = minimum_energy_paths(loss_fn, pick(a_P), pick(b_P), trainable=trainable,
                                 lanes_loss=fast, chunk=chunk, config=cfg)  # fmt: skip
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
        rel = p.barrier  # path_max - the mean of the ends
        rows.append(dict(i=i, j=j, chosen_by=chosen[(i, j)], linear_barrier=linb,
                         relaxed_barrier=rel,
                         saddle_barrier=p.saddle_loss - (p.losses[0] + p.losses[-1]) / 2,
                         ratio=rel / linb if linb > 0 else np.nan, resolved=resolved,
                         linear_saddle=float(p.linear_losses.max()), saddle_loss=p.saddle_loss,
                         path_max=p.path_max,
                         ts_index=int(index[e]) if p.climbing.any() and p.source == 0 else -1,
                         ts_grad_norm=float(gnorm[e]), converged=p.converged,
                         escaped=p.escaped, source=SOURCES[p.source], steps=p.steps,
                         interior_minima=len(seq) - 2))  # fmt: skip
    node_df = pd.DataFrame(nodes)
    return Landscape(node_df, pd.DataFrame(rows), disconnectivity(node_df.loss.to_numpy(), links),
                     paths, stack(node_params), basins.group_label(ds, g))  # fmt: skip
