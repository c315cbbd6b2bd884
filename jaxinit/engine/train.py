"""One training run as a pure function, written once and vmapped over runs by the sweep.

``make_run(spec, task)`` returns ``run(values, data) -> outputs`` where ``values`` holds the run's
traced coordinates (``seed`` and any float field such as ``init.scale``) as scalars. The step loop
is a ``lax.scan`` nested in a scan over logging blocks, so nothing returns to the host until the
run ends. Randomness: the run's key is ``fold_in(key(spec.seed), seed)``, split by purpose
(init, data order, dropout) with ``fold_in``, and each step folds in its step number.

Training is a :class:`jaxinit.engine.program.Program` (:func:`gradient_program`: ``step``,
``observe``, ``finish``) run by the one loop, :func:`jaxinit.engine.program.run`, which keeps the books.
The program is written once for both layouts: a :class:`TrainLayout` supplies the primitives that
differ (:data:`VMAP_TRAIN` here, one run; :data:`jaxinit.engine.lanes.LANES_TRAIN`, a block of runs
with the run axis last), and :func:`context`, :func:`init_state`, :func:`step`, :func:`probe` and
:func:`finish` are written against them.
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
from jaxinit.blocks.ops import PER_RUN, Ops
from jaxinit.blocks.tasks import Task, loss_value, metric_value
from jaxinit.config.spec import OptimizerSpec, Spec, wants_lambda0
from jaxinit.engine.program import (
    KEY_DATA,
    KEY_DROPOUT,
    KEY_INIT,
    VMAP,
    Layout,
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


class TrainLayout(NamedTuple):
    """What gradient training needs of a layout: only the primitives that differ between one run
    (:data:`VMAP_TRAIN`, vmapped over runs by the executor) and a block of runs with the run axis
    last (:data:`jaxinit.engine.lanes.LANES_TRAIN`). :func:`gradient_program` and its pieces
    (:func:`context`, :func:`init_state`, :func:`step`, :func:`probe`, :func:`finish`) are
    written once against them; "every run's" below is one run's value in the vmap layout and a
    ``(C,)`` vector (or ``(..., C)`` leaves) on the lanes."""

    loop: Layout  # the run loop's primitives (jaxinit.engine.program.run)
    ops: Ops  # the model's and the diagnostics' primitives (jaxinit.blocks.ops; Probe.ops)
    keys: Callable[[int, Array, int], Array]  # (root seed, seed(s), fold_in tag) -> every run's key
    opt_init: Callable[[Context, Any], Any]  # (ctx, params0) -> every run's optimizer state
    order: Callable[[Context, Data], Any]  # RunState.order before step 0
    # (ctx, data, state, t) -> (state, x, y): step t's (mini)batch (the state may carry an order)
    batch: Callable[[Context, Data, RunState, Array], tuple[RunState, Array, Array]]
    noise: Callable[[Context, Array], Any]  # step t's dropout for `loss` (a key, a mask function)
    # (ctx, params, x, y, noise or None) -> every run's loss
    loss: Callable[[Context, Any, Array, Array, Any], Array]
    # (ctx, params, x, y, noise or None) -> (every run's loss, every run's own gradient)
    value_and_grad: Callable[[Context, Any, Array, Array, Any], tuple[Array, Any]]
    # (ctx, probe) -> (curves, memo) of ctx's diagnostics (jaxinit.blocks.metrics.observe)
    diagnostics: Callable[[Context, metrics.Probe], tuple[dict[str, Array], dict[str, Any]]]
    # (ctx, params, x, y) -> every run's loss and metric by Model.apply (the final evaluation)
    evaluate: Callable[[Context, Any, Array, Array], tuple[Array, Array]]


class Context(NamedTuple):
    """Everything the pieces of a gradient program share, in either layout: its configuration
    with the traced values filled in (``spec``), the built model and optimizer, its keys and its
    :class:`TrainLayout`. Built inside the compiled program from ``values`` (one run's scalars,
    or ``(C,)`` vectors on the lanes, which broadcast against the trailing run axis wherever
    they are used: learning rates, dropout, grad_tol …); static settings come from ``static``."""

    static: Spec  # the group's spec: shapes and program choices
    spec: Spec  # ``static`` with the traced values (possibly tracers)
    values: dict[str, Array]  # the traced coordinates, "seed" among them
    task: Task
    model: Model
    opt: optax.GradientTransformation
    layout: TrainLayout
    key_data: Array  # every run's data-order key
    key_drop: Array  # every run's dropout key
    threshold: Any  # loss level for time-to-threshold
    stochastic: bool  # minibatches or dropout: log a separate full-batch loss
    dropping: bool  # dropout is on (or its rate traced)
    check_grad: bool  # grad_tol is on (or traced): freeze converged runs every step
    lambda0: Array | None = None  # every run's λ₀ (train.lambda0, optimizer.lr_unit)

    def loss(self, params: Any, x: Array, y: Array, noise: Any = None) -> Array:
        """Every run's loss on ``(x, y)``; ``noise`` is a step's dropout (:attr:`TrainLayout.noise`),
        ``None`` for the dropout-free loss."""
        return self.layout.loss(self, params, x, y, noise)


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


def context(
    static: Spec,
    task: Task,
    model: Model | None,
    values: dict[str, Array],
    params0: Any,
    lambda0: Array | None = None,
    layout: TrainLayout | None = None,
) -> Context:
    """The :class:`Context` for training from ``params0`` in ``layout`` (default
    :data:`VMAP_TRAIN`), with every run's ``λ₀`` when the spec wants it (:func:`with_lr_unit`
    has then put its learning rate into ``values``). ``model`` None: the spec's, built with the
    traced values."""
    layout = VMAP_TRAIN if layout is None else layout
    s = static.replace({k: v for k, v in values.items() if k != "seed"})
    mdl = model if model is not None else from_spec(s.model, task.in_dim, task.out_dim)
    opt = build_optimizer(s.optimizer, mdl.trainable(params0) if mdl.trainable else None)
    dropping = static.model.dropout != 0 or "model.dropout" in values
    return Context(
        static,
        s,
        values,
        task,
        mdl,
        opt,
        layout,
        layout.keys(static.seed, values["seed"], KEY_DATA),
        layout.keys(static.seed, values["seed"], KEY_DROPOUT),
        task.threshold if s.train.threshold is None else s.train.threshold,
        static.train.batch_size > 0 or dropping,
        dropping,
        "train.grad_tol" in values or static.train.grad_tol > 0,
        lambda0,
    )


def diagnostic_probe(
    ctx: Context,
    data: Data,
    params: Any,
    params0: Any,
    grads: Any = None,
    memo: Any = (),
    logged: Array | None = None,
) -> metrics.Probe:
    """What the diagnostics look at (:class:`jaxinit.blocks.metrics.Probe`): the training set,
    the layout's primitives and its full-batch, dropout-free loss, at logged step ``logged``
    (None: the final state, or outside the run loop)."""
    x, y = data.x_train, data.y_train
    full_batch = lambda q: ctx.loss(q, x, y)  # noqa: E731
    return metrics.Probe(
        ctx.model, params, params0, grads, x, y, ctx.layout.ops, full_batch, ctx.static.train,
        memo or None, logged,
    )  # fmt: skip


def init_state(ctx: Context, params0: Any, data: Data | None = None) -> RunState:
    """Every run's state before step 0 (with ``data``: room for the minibatch order,
    :func:`step` draws it at the epoch's first step; with a diagnostic that carries a state,
    its first memo, :func:`jaxinit.blocks.metrics.warmup` at ``params0``)."""
    order = ctx.layout.order(ctx, data) if data is not None else ()
    memo = ()
    if data is not None and metrics.carries(ctx.static.train.diagnostics):
        memo = metrics.warmup(
            ctx.static.train.diagnostics, diagnostic_probe(ctx, data, params0, params0)
        )
    opt_state = ctx.layout.opt_init(ctx, params0)
    return start(params0, opt_state, jnp.shape(ctx.values["seed"]), order=order, memo=memo)


def step(
    ctx: Context, data: Data, state: RunState, t: Array
) -> tuple[RunState, Array, Array | None]:
    """One optimizer step of every run at step number ``t``
    (:attr:`jaxinit.engine.program.Program.step`): the new state, the loss it started from and
    whether the step converged (:func:`optimizer_step`)."""
    state, x, y = ctx.layout.batch(ctx, data, state, t)
    loss, grads = ctx.layout.value_and_grad(ctx, state.params, x, y, ctx.layout.noise(ctx, t))
    state, done = optimizer_step(ctx, state, loss, grads)
    return state, loss, done


def optimizer_step(
    ctx: Context,
    state: RunState,
    loss: Array,
    grads: Any,
    norm: Callable[[Any], Array] | None = None,
) -> tuple[RunState, Array | None]:
    """Apply one optimizer update. Returns the moved state and, with ``grad_tol`` on, whether the
    step converged: a finite loss and a gradient norm (``norm``, default the layout's per-run
    norm) under ``grad_tol`` (the run loop, :func:`jaxinit.engine.program.run`, then freezes
    the run and records the step)."""
    updates, opt_state = ctx.opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    done = None
    if ctx.check_grad:
        norm = ctx.layout.loop.norm if norm is None else norm
        done = jnp.isfinite(loss) & (norm(grads) < ctx.spec.train.grad_tol)
    return state._replace(params=params, opt_state=opt_state), done


def probe(
    ctx: Context,
    data: Data,
    params: Any,
    params0: Any,
    grads: bool,
    memo: Any = (),
    logged: Array | None = None,
) -> tuple[Array, dict[str, Array], Any, Any]:
    """Every run's full-batch, dropout-free loss, diagnostics, (with ``grads``) gradients, and
    the diagnostics' memo for the next logged step (``memo``: the last one's), at logged step
    ``logged`` (None: the final state)."""
    x, y = data.x_train, data.y_train
    if not grads:
        return ctx.loss(params, x, y), {}, None, ()
    loss, g = ctx.layout.value_and_grad(ctx, params, x, y, None)
    if not ctx.static.train.diagnostics:
        return loss, {}, g, ()
    curves, carried = ctx.layout.diagnostics(
        ctx, diagnostic_probe(ctx, data, params, params0, g, memo, logged)
    )
    return loss, curves, g, carried or ()


def finish(
    ctx: Context, data: Data, params: Any, params0: Any, memo: Any = ()
) -> tuple[Array, dict[str, Array], dict[str, Array]]:
    """The final curve point (full-batch loss and diagnostics) and every run's measured finals
    at the final ``params`` (:attr:`jaxinit.engine.program.Program.finish`); the metrics and
    the test loss come from ``Model.apply`` (:func:`evaluate`)."""
    final_loss, final_diag, grads, _ = probe(ctx, data, params, params0, True, memo)
    _, train_metric = ctx.layout.evaluate(ctx, params, data.x_train, data.y_train)
    test_loss, test_metric = ctx.layout.evaluate(ctx, params, data.x_test, data.y_test)
    finals = measured(final_loss, train_metric, test_loss, test_metric, ctx.layout.loop.norm(grads))
    return (
        final_loss,
        final_diag,
        finals if ctx.lambda0 is None else {**finals, "lambda0": ctx.lambda0},
    )


def gradient_program(ctx: Context, data: Data, params0: Any) -> Program:
    """Gradient training from ``params0`` as a :class:`jaxinit.engine.program.Program`, in the
    context's layout (run it in ``ctx.layout.loop``)."""
    tr = ctx.static.train
    carry = metrics.carries(tr.diagnostics)

    def observe(s: RunState, b: Array) -> tuple:
        if not (ctx.stochastic or tr.diagnostics):
            return None, {}
        loss, curves, _, memo = probe(
            ctx, data, s.params, params0, bool(tr.diagnostics), s.memo, logged=b
        )
        # Full batch, no dropout: the block's first step computes this very loss; log that one,
        # so a curve is the same with and without diagnostics (and XLA does not fuse a second
        # forward pass into the curve's in-place update, where the CPU runs it unvectorised:
        # ~0.7 ms per logged step on 4,096 lanes, more than the 10 steps between).
        loss = loss if ctx.stochastic else None
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


# -- the vmap layout: one run's primitives ---------------------------------------------------------
def run_loss(ctx: Context, params: Any, x: Array, y: Array, dkey: Array | None = None) -> Array:
    """One run's loss on ``(x, y)`` (the task's own objective where it has one); with a dropout
    key ``dkey``, the model in training mode."""
    if ctx.task.objective is not None:
        return ctx.task.objective(params)
    out = ctx.model.apply(params, x, key=dkey, train=dkey is not None)
    return loss_value(ctx.task.loss, out, y)


def evaluate(ctx: Context, params: Any, x: Array, y: Array) -> tuple[Array, Array]:
    """One run's loss and metric on ``(x, y)`` by ``Model.apply``, both in the prediction's dtype
    (accuracies are means of booleans, default float32: every float stays in ``train.dtype``)."""
    pred = ctx.model.apply(params, x)
    return loss_value(ctx.task.loss, pred, y), metric_value(ctx.task.loss, pred, y).astype(
        pred.dtype
    )


def _run_batch(
    ctx: Context, data: Data, state: RunState, t: Array
) -> tuple[RunState, Array, Array]:
    """Step ``t``'s minibatch of one run. One permutation per epoch, carried in
    ``state.order`` (the same numbers as drawing it every step, as :func:`batch` does, without
    a sort per step). The step counter is shared by every run, so under vmap the predicate is
    unbatched and this stays a branch, not a select."""
    batch_size = ctx.static.train.batch_size
    if not is_minibatch(data, batch_size):
        return state, data.x_train, data.y_train
    n = data.x_train.shape[0]
    per_epoch, pos = n // batch_size, t % (n // batch_size)
    order = jax.lax.cond(
        pos == 0, lambda: epoch_order(ctx.key_data, t // per_epoch, n), lambda: state.order
    )
    return state._replace(order=order), *take_batch(data, order, pos, batch_size)


def _run_value_and_grad(ctx: Context, params: Any, x: Array, y: Array, dkey: Any) -> tuple:
    return jax.value_and_grad(lambda p: run_loss(ctx, p, x, y, dkey))(params)


def _run_order(ctx: Context, data: Data) -> Any:
    minibatch = is_minibatch(data, ctx.static.train.batch_size)
    return jnp.zeros(data.x_train.shape[0], jnp.int32) if minibatch else ()


VMAP_TRAIN = TrainLayout(
    loop=VMAP,
    ops=PER_RUN,
    keys=lambda root, seed, tag: jax.random.fold_in(run_key(root, seed), tag),
    opt_init=lambda ctx, params0: ctx.opt.init(params0),
    order=_run_order,
    batch=_run_batch,
    noise=lambda ctx, t: jax.random.fold_in(ctx.key_drop, t),
    loss=run_loss,
    value_and_grad=_run_value_and_grad,
    diagnostics=lambda ctx, probe: metrics.observe(ctx.static.train.diagnostics, probe),
    evaluate=evaluate,
)
"""Gradient training of one run, vmapped over runs by the executor."""


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
