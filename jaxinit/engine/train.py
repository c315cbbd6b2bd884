"""One training run as a pure function, written once and vmapped over runs by the sweep.

``make_run(spec, task)`` returns ``run(values, data) -> outputs`` where ``values`` holds the run's
traced coordinates (``seed`` and any float field such as ``init.scale``) as scalars. The step loop
is a ``lax.scan`` nested in a scan over logging blocks, so nothing returns to the host until the
run ends. Randomness: the run's key is ``fold_in(key(spec.seed), seed)``, split by purpose
(init, data order, dropout) with ``fold_in``, and each step folds in its step number.

Training is a :class:`jaxinit.engine.program.Program` (:func:`gradient_program`: ``step``,
``observe``, ``finish``) run by the one loop, :func:`jaxinit.engine.program.run`, which keeps the books.
A run whose loss becomes non-finite (or whose parameters do) is recorded in ``diverged_step`` (the
first step with a non-finite loss) and frozen at its last finite state: the latest logged state
(a multiple of ``log_every``) whose loss was finite. Checking per logging block rather than per
step keeps per-parameter masking out of the hot loop; results of other runs are unaffected. With
``train.grad_tol > 0`` a run is frozen (and ``converged_step`` recorded) at the first step whose
training gradient norm (the minibatch's, when minibatching) falls below the tolerance.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxinit.blocks import metrics
from jaxinit.blocks.initializers import standard_normal
from jaxinit.blocks.models import Model, from_spec
from jaxinit.blocks.tasks import Task, loss_value, metric_value
from jaxinit.config.spec import OptimizerSpec, Spec, wants_lambda0
from jaxinit.engine.program import (
    KEY_DATA,
    KEY_DROPOUT,
    KEY_INIT,
    VMAP,
    Program,
    RunState,
    measured,
    run_for,
    run_key,
    start,
)


class Data(NamedTuple):
    """A task's arrays on device, passed to the compiled program as arguments (not constants)."""

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array

    @classmethod
    def from_task(cls, task: Task, dtype: str = "float32") -> Data:
        def cast(a):
            return jnp.asarray(a, dtype if a.dtype.kind == "f" else a.dtype)

        return cls(*(cast(a) for a in task[:4]))


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """The context in which a sweep of ``train.dtype = dtype`` is built and run: JAX's x64 mode
    on for ``float64`` and off for ``float32``, for this thread and only inside the ``with``.

    Scoped, not switched for the process: a float64 sweep leaves the sweeps before and after it
    (a notebook) exactly as they were, and a float32 sweep computes the same bits whatever the
    process's own ``jax_enable_x64`` is. JAX keys its compiled programs on this mode.
    """
    return jax.enable_x64(dtype == "float64")


def plane_init(model: Model, root_seed: int, init: Any) -> Any:
    """``θ_base + a·d1 + b·d2``: a point on a 2-D slice of init space (see ``InitSpec.plane_*``).

    ``θ_base`` is the init of seed ``init.plane_seed``. By default ``d1``, ``d2`` are Gaussian
    directions, each leaf rescaled to the norm of ``θ_base``'s leaf (filter normalization, Li et
    al. 2018), so ``a = 1`` moves every layer by its own size (a zero leaf gets a unit-norm
    direction). With ``plane_seed_a`` / ``plane_seed_b`` >= 0 the direction is instead
    ``θ(seed) − θ_base``: the plane through three given inits, which sit at (0,0), (1,0), (0,1).
    """

    def init_of(seed: int) -> Any:
        return model.init(jax.random.fold_in(run_key(root_seed, seed), KEY_INIT), init)

    base = init_of(init.plane_seed)
    leaves, treedef = jax.tree.flatten(base)
    keys = jax.random.split(jax.random.fold_in(run_key(root_seed, init.plane_seed), 7), 2)

    def direction(key: Array, through: int) -> list[Array]:
        if through >= 0:
            return jax.tree.leaves(jax.tree.map(jnp.subtract, init_of(through), base))
        out = []
        for k, leaf in zip(jax.random.split(key, len(leaves)), leaves):
            d = standard_normal(k, leaf.shape, leaf.dtype)
            size = jnp.linalg.norm(leaf)
            out.append(d / jnp.linalg.norm(d) * jnp.where(size > 0, size, 1.0))
        return out

    d1 = direction(keys[0], init.plane_seed_a)
    d2 = direction(keys[1], init.plane_seed_b)
    out = [x + init.plane_a * u + init.plane_b * v for x, u, v in zip(leaves, d1, d2)]
    return jax.tree.unflatten(treedef, out)


def build_optimizer(
    spec: OptimizerSpec, trainable: Any | None = None
) -> optax.GradientTransformation:
    """``optax.<name>(learning_rate, **params)``; parameters masked False by ``trainable`` stay put."""
    opt = getattr(optax, spec.name)(learning_rate=spec.learning_rate, **spec.params)
    if trainable is None:
        return opt
    labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable)
    return optax.multi_transform({"train": opt, "freeze": optax.set_to_zero()}, labels)


def is_minibatch(data: Data, batch_size: int) -> bool:
    return 0 < batch_size < data.x_train.shape[0]


def epoch_order(key: Array, epoch: Array, n: int) -> Array:
    """Epoch ``epoch``'s order of the ``n`` training points: a permutation drawn from
    ``fold_in(key, epoch)``, so it depends on the run and the epoch only."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def take_batch(data: Data, order: Array, pos: Array, batch_size: int) -> tuple[Array, Array]:
    """The ``pos``-th minibatch of ``batch_size`` points in ``order``."""
    idx = jax.lax.dynamic_slice_in_dim(order, pos * batch_size, batch_size)
    return data.x_train[idx], data.y_train[idx]


def batch(data: Data, key: Array, step: Array, batch_size: int) -> tuple[Array, Array]:
    """Step ``step``'s minibatch: epoch ``e`` visits :func:`epoch_order` ``(key, e)``, drawn
    here at every step (the lanes layout; :func:`step` carries it through the epoch instead)."""
    if not is_minibatch(data, batch_size):
        return data.x_train, data.y_train
    per_epoch = data.x_train.shape[0] // batch_size
    order = epoch_order(key, step // per_epoch, data.x_train.shape[0])
    return take_batch(data, order, step % per_epoch, batch_size)


class Context(NamedTuple):
    """Everything one run's pieces share: its configuration with the traced values filled in
    (``spec``), the built model and optimizer, its keys and loss. Built inside the compiled
    program from the run's ``values``; static settings come from ``static``."""

    static: Spec  # the group's spec: shapes and program choices
    spec: Spec  # ``static`` with this run's traced values (possibly tracers)
    task: Task
    model: Model
    opt: optax.GradientTransformation
    key_data: Array
    key_drop: Array
    threshold: Any  # loss level for time-to-threshold
    stochastic: bool  # minibatches or dropout: log a separate full-batch loss
    check_grad: bool  # grad_tol is on (or traced): freeze converged runs every step
    lambda0: Array | None = None  # shape=(): the run's λ₀ (train.lambda0, optimizer.lr_unit)

    def loss(self, params: Any, x: Array, y: Array, dkey: Array | None = None) -> Array:
        if self.task.objective is not None:
            return self.task.objective(params)
        out = self.model.apply(params, x, key=dkey, train=dkey is not None)
        return loss_value(self.task.loss, out, y)


def init_params(spec: Spec, task: Task, model: Model | None, values: dict[str, Array]) -> Any:
    """The run's initial parameters ``params0``, drawn from its own init key (``values`` as in
    :func:`make_run`). Only this reads ``spec.init``: the training program takes ``params0`` as
    an input, so sweeps over init schemes share one compiled training program."""
    s = spec.replace({k: v for k, v in values.items() if k != "seed"})
    mdl = model if model is not None else from_spec(s.model, task.in_dim, task.out_dim)
    if s.init.plane_seed >= 0:
        params0 = plane_init(mdl, spec.seed, s.init)
    else:
        params0 = mdl.init(jax.random.fold_in(run_key(spec.seed, values["seed"]), KEY_INIT), s.init)
    return jax.tree.map(lambda p: p.astype(spec.train.dtype), params0)


def context(
    static: Spec,
    task: Task,
    model: Model | None,
    values: dict[str, Array],
    params0: Any,
    lambda0: Array | None = None,
) -> Context:
    """The run's :class:`Context`, for training from ``params0`` (with its ``λ₀``, when the
    spec wants it: :func:`with_lr_unit` has then put its learning rate into ``values``)."""
    s = static.replace({k: v for k, v in values.items() if k != "seed"})
    mdl = model if model is not None else from_spec(s.model, task.in_dim, task.out_dim)
    key = run_key(static.seed, values["seed"])
    k_data, k_drop = (jax.random.fold_in(key, t) for t in (KEY_DATA, KEY_DROPOUT))
    opt = build_optimizer(s.optimizer, mdl.trainable(params0) if mdl.trainable else None)
    stochastic = (
        static.train.batch_size > 0 or static.model.dropout != 0 or "model.dropout" in values
    )
    return Context(
        static,
        s,
        task,
        mdl,
        opt,
        k_data,
        k_drop,
        task.threshold if s.train.threshold is None else s.train.threshold,
        stochastic,
        "train.grad_tol" in values or static.train.grad_tol > 0,
        lambda0,
    )


def initial_curvature(spec: Spec, task: Task, model: Model | None, data: Data, params0: Any):
    """One run's ``λ₀`` at ``params0`` (:func:`jaxinit.blocks.metrics.lambda0`): the top
    eigenvalue of the Gauss–Newton matrix for the MSE loss of the sampled data, of the
    full-batch training-loss Hessian otherwise (another loss, a task's own objective)."""
    mdl = model if model is not None else from_spec(spec.model, task.in_dim, task.out_dim)
    x, y = data.x_train, data.y_train

    def loss(params: Any) -> Array:
        if task.objective is not None:
            return task.objective(params)
        return loss_value(task.loss, mdl.apply(params, x), y)

    probe = metrics.Probe(mdl, params0, params0, None, x, y, loss=loss, train=spec.train)
    return metrics.lambda0(probe, task.loss == "mse" and task.objective is None)


def with_lr_unit(spec: Spec, values: dict[str, Array], lambda0: Array) -> dict[str, Array]:
    """``values`` with each run's absolute learning rate, ``learning_rate × 2/λ₀`` under
    ``optimizer.lr_unit = "2/lambda0"`` (NaN where ``λ₀`` is not positive: such a run diverges
    at its first step); ``values`` itself without a unit. Elementwise: one run's scalars or
    ``(C,)`` vectors of a batch of runs alike."""
    if spec.optimizer.lr_unit == "":
        return values
    path = "optimizer.learning_rate"
    base = values.get(path, spec.optimizer.learning_rate)
    lr = jnp.where(lambda0 > 0, base * 2.0 / jnp.where(lambda0 > 0, lambda0, 1.0), jnp.nan)
    return {**values, path: lr.astype(lambda0.dtype)}


def init_state(ctx: Context, params0: Any, data: Data | None = None) -> RunState:
    """The state before step 0 (with ``data`` and minibatches, room for the epoch's order:
    :func:`step` draws it at the epoch's first step; with a diagnostic that carries a state,
    its first memo, :func:`jaxinit.blocks.metrics.warmup` at ``params0``)."""
    minibatch = data is not None and is_minibatch(data, ctx.static.train.batch_size)
    order = jnp.zeros(data.x_train.shape[0], jnp.int32) if minibatch else ()
    memo = ()
    if data is not None and metrics.carries(ctx.static.train.diagnostics):
        memo = metrics.warmup(ctx.static.train.diagnostics, _probe(ctx, data, params0, params0))
    return start(params0, ctx.opt.init(params0), order=order, memo=memo)


def step(
    ctx: Context, data: Data, state: RunState, t: Array
) -> tuple[RunState, Array, Array | None]:
    """One optimizer step at step number ``t`` (:attr:`jaxinit.engine.program.Program.step`): the new
    state, the loss it started from and whether the step converged (:func:`optimizer_step`)."""
    batch_size = ctx.static.train.batch_size
    if is_minibatch(data, batch_size):
        # One permutation per epoch, carried (the same numbers as drawing it every step, as
        # batch does, without a sort per step). The step counter is shared by every run, so
        # under vmap the predicate is unbatched and this stays a branch, not a select.
        n = data.x_train.shape[0]
        per_epoch, pos = n // batch_size, t % (n // batch_size)
        order = jax.lax.cond(
            pos == 0, lambda: epoch_order(ctx.key_data, t // per_epoch, n), lambda: state.order
        )
        state = state._replace(order=order)
        x, y = take_batch(data, order, pos, batch_size)
    else:
        x, y = data.x_train, data.y_train
    loss, grads = jax.value_and_grad(ctx.loss)(
        state.params, x, y, jax.random.fold_in(ctx.key_drop, t)
    )
    state, done = optimizer_step(ctx, state, loss, grads, VMAP.norm)
    return state, loss, done


def optimizer_step(
    ctx: Any, state: RunState, loss: Array, grads: Any, norm: Callable[[Any], Array]
) -> tuple[RunState, Array | None]:
    """Apply one optimizer update, for both layouts (``ctx`` is a :class:`Context` or its lanes
    twin; ``norm`` acts per run in that layout). Returns the moved state and, with ``grad_tol``
    on, whether the step converged: a finite loss and a gradient norm under ``grad_tol`` (the
    run loop, :func:`jaxinit.engine.program.run`, then freezes the run and records the step)."""
    updates, opt_state = ctx.opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    done = None
    if ctx.check_grad:
        done = jnp.isfinite(loss) & (norm(grads) < ctx.spec.train.grad_tol)
    return state._replace(params=params, opt_state=opt_state), done


def _probe(
    ctx: Context, data: Data, params: Any, params0: Any, grads: Any = None, memo: Any = ()
) -> metrics.Probe:
    x, y = data.x_train, data.y_train
    full_batch = lambda q: ctx.loss(q, x, y)  # noqa: E731
    return metrics.Probe(
        ctx.model,
        params,
        params0,
        grads,
        x,
        y,
        loss=full_batch,
        train=ctx.static.train,
        memo=memo or None,
    )


def probe(
    ctx: Context, data: Data, params: Any, params0: Any, memo: Any = ()
) -> tuple[Array, dict[str, Array], Any]:
    """Full-batch, dropout-free loss, diagnostics and their memo at ``params`` (``memo``: what
    they carried from the previous logged step)."""
    x, y = data.x_train, data.y_train
    names = ctx.static.train.diagnostics
    if not names:
        return ctx.loss(params, x, y), {}, ()
    loss, grads = jax.value_and_grad(ctx.loss)(params, x, y)
    curves, memo = metrics.observe(names, _probe(ctx, data, params, params0, grads, memo))
    return loss, curves, memo or ()


def finish(
    ctx: Context, data: Data, params: Any, params0: Any, memo: Any = ()
) -> tuple[Array, dict[str, Array], dict[str, Array]]:
    """The final curve point (full-batch loss and diagnostics) and the measured finals at the
    final ``params`` (:attr:`jaxinit.engine.program.Program.finish`)."""
    task = ctx.task
    final_loss, final_diag, _ = probe(ctx, data, params, params0, memo)

    def evaluate(x, y):
        pred = ctx.model.apply(params, x)
        # accuracies are means of booleans (default float32): keep every float in tr.dtype
        return loss_value(task.loss, pred, y), metric_value(task.loss, pred, y).astype(pred.dtype)

    train_loss, train_metric = evaluate(data.x_train, data.y_train)
    test_loss, test_metric = evaluate(data.x_test, data.y_test)
    grad = jax.grad(ctx.loss)(params, data.x_train, data.y_train)
    finals = measured(
        final_loss if task.objective is not None else train_loss,
        train_metric,
        test_loss,
        test_metric,
        optax.tree.norm(grad),
    )
    return final_loss, final_diag, with_lambda0(ctx, finals)


def with_lambda0(ctx: Any, finals: dict[str, Array]) -> dict[str, Array]:
    """``finals`` with the run's ``lambda0`` when it has one (either layout's context)."""
    return finals if ctx.lambda0 is None else {**finals, "lambda0": ctx.lambda0}


def gradient_program(ctx: Context, data: Data, params0: Any) -> Program:
    """Gradient training of one run as a :class:`jaxinit.engine.program.Program` (vmap layout)."""
    tr = ctx.static.train
    need_probe = ctx.stochastic or tr.diagnostics
    carry = metrics.carries(tr.diagnostics)

    def observe(s: RunState) -> tuple:
        if not need_probe:
            return None, {}
        loss, curves, memo = probe(ctx, data, s.params, params0, s.memo)
        return (loss, curves, memo) if carry else (loss, curves)

    return Program(
        init=lambda p: init_state(ctx, p, data),
        step=functools.partial(step, ctx, data),
        observe=observe,
        finish=lambda s, _: finish(ctx, data, s.params, params0, s.memo),
        threshold=ctx.threshold,
        success_metric=ctx.task.success_metric,
        step_loss=True,
        freeze_converged=True,
        observe_memo=carry,
    )


def make_init(spec: Spec, task: Task, model: Model | None = None) -> Callable[[dict, Data], Any]:
    """``init(values, data) -> params0`` of one run (:func:`init_params`; ``data`` unused)."""

    def init(values: dict[str, Array], data: Data) -> Any:
        return init_params(spec, task, model, values)

    return init


def make_train(
    spec: Spec, task: Task, model: Model | None = None
) -> Callable[[dict, Any, Data], dict]:
    """``train(values, params0, data) -> outputs``: one run trained from ``params0``.

    Reads nothing of ``spec.init``, so one compiled program serves every init scheme.
    """

    def train(values: dict[str, Array], params0: Any, data: Data) -> dict[str, Any]:
        lam0 = None
        if wants_lambda0(spec):
            lam0 = initial_curvature(spec, task, model, data, params0)
            values = with_lr_unit(spec, values, lam0)
        ctx = context(spec, task, model, values, params0, lam0)
        return run_for(spec, gradient_program(ctx, data, params0), VMAP, params0)

    return train


def make_run(spec: Spec, task: Task, model: Model | None = None) -> Callable[[dict, Data], dict]:
    """The training program for one run of a static configuration ``spec``.

    Returns ``run(values, data) -> outputs``: ``values`` maps ``"seed"`` and traced field paths to
    scalars; ``outputs`` is ``{"curves": {name: (T+1, ...)}, "final": {name: ()}, "params0",
    "params"}`` with ``T = steps // log_every`` (params only when ``store.save_params``).
    It is :func:`make_train` from :func:`make_init`'s parameters; the executor compiles the two
    apart (:mod:`jaxinit.engine.executors`). How runs are batched (vmap, lanes, devices) is the
    executor's business, never this function's.
    """
    init, train = make_init(spec, task, model), make_train(spec, task, model)
    return lambda values, data: train(values, init(values, data), data)
