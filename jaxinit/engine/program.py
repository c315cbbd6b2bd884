"""The one run loop: a :class:`Program` of pure per-run functions, run in a :class:`Layout`.

Everything a run does between its start and its final record goes through :func:`run`:
gradient training in either layout (:mod:`jaxinit.engine.train`, :mod:`jaxinit.engine.lanes`) and the
iterative algorithms (:mod:`jaxinit.engine.algorithms`: k-means, EM). A program says *what* one step
does; :func:`run` owns what every program shares, written once:

- the logging blocks: a ``lax.scan`` over ``steps // log_every`` blocks of a ``lax.scan`` over
  steps, the curves logged at every block start (:attr:`Program.observe`) and once more after
  the last step;
- the books of :class:`RunState`: ``diverged_step`` (first non-finite loss), ``hit_step`` (first
  loss under the threshold: ``time_to_threshold``) and ``converged_step`` (first step the
  program calls converged, e.g. ``‖∇L‖ < grad_tol``; with :attr:`Program.freeze_converged` the
  run stops moving there);
- divergence rollback: a run whose loss or parameters become non-finite goes back to its last
  finite logged state and stays there;
- the final curve point and the final record (:func:`jaxinit.config.outputs.final_record`).

Where the step reports its loss (:attr:`Program.step_loss`: gradient training) divergence and
the threshold are read at every step; where it does not (an algorithm computes no loss in its
step) they are read from the logged losses, and a diverged run's steps are frozen.

A :class:`Layout` supplies only what differs between layouts: a per-run ``where``, a per-run
norm and finiteness test, whether the step books are kept per step or once per block
(``first_step``), and moving the run axis first. :data:`VMAP` is the per-run layout (the
program is written for one run and vmapped); :data:`jaxinit.engine.lanes.LANES` puts the run axis last.

>>> import jax.numpy as jnp
>>> prog = Program(
...     init=lambda p: start(p, ()),
...     step=lambda s, t: (s._replace(params=s.params / 2), None, s.params < 0.2),
...     observe=lambda s: (s.params, {}),
...     finish=lambda s, _: (s.params, {}, measured(s.params, s.params, s.params, s.params, s.params)),
...     threshold=0.3, success_metric=1.0, step_loss=False, freeze_converged=False,
... )
>>> out = run(prog, VMAP, jnp.float32(1.0), steps=4, log_every=2)
>>> out["curves"]["loss"].tolist(), int(out["final"]["time_to_threshold"])
([1.0, 0.25, 0.0625], 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxinit.config import outputs
from jaxinit.config.spec import Spec

__all__ = [
    "KEY_INIT",
    "KEY_DATA",
    "KEY_DROPOUT",
    "Layout",
    "Program",
    "RunState",
    "VMAP",
    "measured",
    "run",
    "run_for",
    "run_key",
    "start",
    "tree_where",
]

KEY_INIT, KEY_DATA, KEY_DROPOUT = 0, 1, 2
"""``fold_in`` tags of a run's key (:func:`run_key`), one random stream per purpose."""


def run_key(root_seed: int, seed: Array) -> Array:
    """The key of the run with seed coordinate ``seed``: ``fold_in(key(root_seed), seed)``,
    independent of every other axis of a sweep."""
    return jax.random.fold_in(jax.random.key(root_seed), seed)


def tree_where(pred: Array, new: Any, old: Any) -> Any:
    """``new`` where ``pred`` else ``old``, leaf by leaf (``pred`` broadcasts against each)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


class RunState(NamedTuple):
    """A run's state between steps: what the program moves and the loop's books."""

    params: Any  # what the run moves: a model's parameters, an algorithm's state
    opt_state: Any  # the optimizer's state; () for an algorithm
    diverged_step: Array  # shape=(), int32; first step with a non-finite value, -1 if none
    converged_step: Array  # shape=(), int32; step the run was found converged, -1 if not
    hit_step: Array  # shape=(), int32; first step whose training loss was below threshold, or -1
    # shape=(n_train,), int32: the current epoch's order of the training points (minibatch SGD;
    # drawn once per epoch, at its first step); () for full-batch training and the lanes layout.
    # Neither rolled back nor frozen.
    order: Any = ()
    residual: Any = ()  # shape=(), the last step's fixed-point residual (algorithms); () if none
    # what observe carries from one logged step to the next (the sharpness diagnostic's
    # eigenvector: a warm start, Program.observe_memo); () if nothing. Neither rolled back nor frozen.
    memo: Any = ()


def start(
    params: Any,
    opt_state: Any,
    runs: tuple[int, ...] = (),
    order: Any = (),
    residual: Any = (),
    memo: Any = (),
) -> RunState:
    """The state before step 0, every book ``-1``: one per run, ``runs = (C,)`` for a batch of
    ``C`` runs on the lanes, ``()`` for one run."""
    never = jnp.full(runs, -1, jnp.int32)
    return RunState(params, opt_state, never, never, never, order, residual, memo)


class Program(NamedTuple):
    """What one run does, as pure functions of its state (the run's data, keys and settings are
    closed over; each is written once, for one run or a batch on the lanes)."""

    init: Callable[[Any], RunState]  # params0 -> the state before step 0
    # (state, t) -> (state after step t, the loss at the state it started from (None: the step
    # computes none), whether step t converged (None: not checked))
    step: Callable[[RunState, Array], tuple[RunState, Array | None, Array | None]]
    # (state, b) -> (its full-batch loss, or None to log the block's first step loss;
    # diagnostics) at logged step ``b`` (int32, the same for every run: a diagnostic may skip
    # work at some logged steps with ``lax.cond`` on it; ``steps // log_every``: after the end)
    observe: Callable[[RunState, Array], tuple[Array | None, dict[str, Array]]]
    # (final state, its logged loss or None) -> (its loss: the curve's last point, the
    # threshold's last test; its diagnostics; the measured finals, :func:`measured`). The
    # logged loss is given where the step reports none (the loop has just computed it).
    finish: Callable[[RunState, Array | None], tuple[Array, dict[str, Array], dict[str, Array]]]
    threshold: Any  # loss level for time_to_threshold; None: not tracked
    success_metric: Any  # final_metric at or above this (without diverging) is a success
    step_loss: bool  # step reports losses: divergence and the threshold are read every step
    freeze_converged: bool  # a converged run stops moving (params and opt_state)
    # observe returns (loss, diagnostics, memo): the loop keeps memo in RunState.memo for the
    # next logged step (a warm start: the sharpness diagnostic's eigenvector)
    observe_memo: bool = False


def measured(
    final_loss: Array,
    final_metric: Array,
    test_loss: Array,
    test_metric: Array,
    final_grad_norm: Array,
) -> dict[str, Array]:
    """The finals a program measures itself (:attr:`Program.finish`); :func:`run` adds the books."""
    return {
        "final_loss": final_loss,
        "final_metric": final_metric,
        "test_loss": test_loss,
        "test_metric": test_metric,
        "final_grad_norm": final_grad_norm,
    }


def _is_finite_tree(tree: Any) -> Array:
    return jnp.isfinite(optax.tree.norm(tree))


class Layout(NamedTuple):
    """What differs between layouts of runs; :func:`run` is written against these."""

    name: str
    where: Callable[[Array, Any, Any], Any]  # per-run choice between two states
    norm: Callable[[Any], Array]  # per-run global norm of a tree
    finite: Callable[[Any], Array]  # per-run: every leaf of the tree finite
    # (hit_TxR, steps_T, before_R) -> first step of each run with a hit (before_R if set): the
    # books kept once per block; None: kept at every step (fewer kernels on the lanes)
    first_step: Callable[[Array, Array, Array], Array] | None
    runs_first: Callable[[Any], Any]  # the outputs with the run axis first


VMAP = Layout("vmap", tree_where, optax.tree.norm, _is_finite_tree, None, lambda tree: tree)
"""The per-run layout: the program is one run's, vmapped over runs by the executor."""


def _mark(book: Array, hit: Array, t: Array) -> Array:
    """``t`` where the event ``hit`` happens and ``book`` is not set yet."""
    return jnp.where((book < 0) & hit, t, book)


def run(
    program: Program,
    layout: Layout,
    params0: Any,
    *,
    steps: int,
    log_every: int,
    save_params: bool = False,
) -> dict[str, Any]:
    """Run ``program`` from ``params0`` for ``steps`` steps, logging every ``log_every``.

    Returns ``{"curves": {name: (T+1, ...)}, "final": {name: ()}}`` (``T = steps //
    log_every``; run axis first in every layout) and, with ``save_params``, ``"params0"`` and
    ``"params"``.
    """
    n_blocks = steps // log_every
    thr = program.threshold

    def observe(state: RunState, b: Array) -> tuple[Array | None, dict[str, Array], RunState]:
        if not program.observe_memo:
            return (*program.observe(state, b), state)
        loss, diag, memo = program.observe(state, b)
        return loss, diag, state._replace(memo=memo)

    def one_step(state: RunState, t: Array, frozen: Array | None = None):
        new, loss, done = program.step(state, t)
        conv = state.converged_step
        if done is not None:
            done = (conv < 0) & done if frozen is None else (conv < 0) & done & ~frozen
            if program.freeze_converged:
                move = (conv < 0) & ~done
                params, opt_state = layout.where(
                    move, (new.params, new.opt_state), (state.params, state.opt_state)
                )
                new = new._replace(params=params, opt_state=opt_state)
            new = new._replace(converged_step=jnp.where(done, t, conv))
        if frozen is not None:  # a diverged run does not move (its residual is 0)
            new = new._replace(
                params=layout.where(frozen, state.params, new.params),
                residual=jax.tree.map(lambda r: jnp.where(frozen, 0, r), new.residual),
            )
        if loss is not None and layout.first_step is None:
            new = new._replace(
                diverged_step=_mark(new.diverged_step, ~jnp.isfinite(loss), t),
                hit_step=_mark(new.hit_step, loss < thr, t),
            )
        return new, loss

    def step_block(carry: tuple, b: Array) -> tuple[tuple, dict[str, Array]]:
        """``log_every`` steps, then the divergence check: a run whose loss was non-finite at
        some step, or whose parameters are non-finite now, goes back to ``good``, the latest
        block start whose loss was finite, and stays there."""
        state, good = carry
        loss, diag, state = observe(state, b)
        steps_T = b * log_every + jnp.arange(log_every, dtype=jnp.int32)  # int32 under x64 too
        new, losses = jax.lax.scan(one_step, state, steps_T)
        if layout.first_step is not None:
            new = new._replace(
                diverged_step=layout.first_step(~jnp.isfinite(losses), steps_T, new.diverged_step),
                hit_step=layout.first_step(losses < thr, steps_T, new.hit_step),
            )
        good = layout.where(jnp.isfinite(losses[0]), (state.params, state.opt_state), good)
        blown = ~layout.finite(new.params)
        # Non-finite parameters after the block's last update: the next step is the first whose
        # loss would be non-finite, the same convention as for the per-step check.
        diverged = jnp.where((new.diverged_step < 0) & blown, steps_T[-1] + 1, new.diverged_step)
        params, opt_state = layout.where(diverged >= 0, good, (new.params, new.opt_state))
        state = new._replace(params=params, opt_state=opt_state, diverged_step=diverged)
        return (state, good), {"loss": losses[0] if loss is None else loss, **diag}

    def rollback(state: RunState, good: tuple, t: Array, loss: Array) -> tuple[RunState, Array]:
        """A logged non-finite ``loss`` at step ``t``: back to ``good`` (state, loss)."""
        div = _mark(state.diverged_step, ~jnp.isfinite(loss), t)
        params, loss = layout.where(div >= 0, good, (state.params, loss))
        return state._replace(params=params, diverged_step=div), loss

    def logged_block(carry: tuple, b: Array) -> tuple[tuple, dict[str, Array]]:
        """The logged loss checked first (a non-finite one: back to the last logged state, and
        frozen there), then ``log_every`` steps."""
        state, good = carry
        loss, diag, state = observe(state, b)
        state, loss = rollback(state, good, b * log_every, loss)
        if thr is not None:
            state = state._replace(hit_step=_mark(state.hit_step, loss < thr, b * log_every))
        steps_T = b * log_every + jnp.arange(log_every, dtype=jnp.int32)
        frozen = state.diverged_step >= 0
        new, _ = jax.lax.scan(lambda s, t: one_step(s, t, frozen), state, steps_T)
        return (new, (state.params, loss)), {"loss": loss, **diag}

    state = program.init(params0)
    if program.step_loss:
        good = (state.params, state.opt_state)
        block = step_block
    else:
        good = (state.params, program.observe(state, jnp.int32(0))[0])
        block = logged_block
    (state, good), curves = jax.lax.scan(
        block, (state, good), jnp.arange(n_blocks, dtype=jnp.int32)
    )
    logged = None
    if not program.step_loss:
        end = jnp.int32(n_blocks)
        state, logged = rollback(state, good, jnp.int32(steps), program.observe(state, end)[0])
    final_loss, final_diag, finals = program.finish(state, logged)
    hit = state.hit_step
    if thr is not None:
        # The loss after the last update is step `steps`'s loss: it can be the first one below.
        hit = _mark(hit, final_loss < thr, jnp.int32(steps))
    curves = jax.tree.map(
        lambda c, f: layout.runs_first(jnp.concatenate([c, f[None]])),
        curves,
        {"loss": final_loss, **final_diag},
    )
    final = outputs.final_record(
        **finals,
        diverged_step=state.diverged_step,
        converged_step=state.converged_step,
        time_to_threshold=hit,
        success_metric=program.success_metric,
    )
    out = {"curves": curves, "final": final}
    if save_params:
        out["params0"], out["params"] = layout.runs_first(params0), layout.runs_first(state.params)
    return out


def run_for(spec: Spec, program: Program, layout: Layout, params0: Any) -> dict[str, Any]:
    """:func:`run` for ``spec.train.steps`` steps, logging every ``spec.train.log_every``, with
    the parameters in the outputs when ``spec.store.save_params``."""
    tr = spec.train
    return run(
        program,
        layout,
        params0,
        steps=tr.steps,
        log_every=tr.log_every,
        save_params=spec.store.save_params,
    )
