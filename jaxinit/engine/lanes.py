"""Runs on the SIMD lanes: the built-in MLP trained with the run axis *last*.

``jax.vmap(make_run)`` puts the run axis first, so a 2-2-1 net becomes thousands of batched 2×2
dots, and on CPU XLA compiles those (and the reductions over the tiny data and unit axes) into
scalar loops. Here every parameter is an array whose **trailing** axis is the run (``w_IxOxC``
for ``C`` runs), every op of the hot step loop is elementwise over that axis, and the loss is
**summed** over runs, so one ``jax.grad`` gives each run its own gradient (runs never interact).
On the tiny benchmark (XOR 2-2-1, 65,536 runs × 2000 steps, 2-core CPU) this is ~5.6× the
hand-written ``jit(vmap(scan))`` loop; :func:`prefer_lanes` says where it stops paying.

Three rules keep the step loop fast:

* no XLA ``reduce`` over a non-run axis: sums over data points, inputs and units are written
  as pairwise (halving) adds of slices, :func:`lane_sum`, each an elementwise op over the runs
  (on CPU an XLA reduce over the leading axis of a ``(4, 65536)`` array was ~20× slower);
* no implicit broadcast of a differentiated value: its transpose would be such a reduce.
  :func:`spread` broadcasts with a :func:`lane_sum` transpose, and :func:`lane_sum` transposes
  to a plain broadcast;
* runs train in blocks of :func:`lanes_per_block` lanes, one block after the other, so that a
  step's arrays stay in cache.

The training program is :func:`jaxinit.engine.train.gradient_program`, the vmap layout's, run
with :data:`LANES_TRAIN`: this module supplies only the primitives that differ (the loss and its
gradient over :data:`LANE_OPS`, every run's keys and optimizer state, minibatches and dropout
masks). The initialization, the optimizer's initial state (each run its own step count), the
random streams (minibatch order, dropout masks), the one-run diagnostics and the final
evaluation reuse the per-run code of :mod:`jaxinit.engine.train` and
:mod:`jaxinit.blocks.models`, vmapped over the trailing axis, so the semantics are those of
:func:`jaxinit.engine.train.make_run`. The numbers agree with ``jax.vmap(make_run(spec, task), in_axes=(0,
None))`` to rounding (summation order), not bit for bit: over the bundled specs (100 steps,
``benchmarks/layout_agreement.py``) stable runs agree to within 5e-5 relative in float32 (most
~3e-7; saturated tanh nets and a 32-layer linear net amplify their rounding) and 1e-12 in
float64, and runs made chaotic by a learning rate past the stability edge do not agree at all. A
run's numbers depend only on its own inputs and its slot in the chunk.

>>> from jaxinit.config.spec import Spec, wants_lambda0
>>> from jaxinit.blocks.tasks import TASKS
>>> spec = Spec.from_dict({"task": {"name": "xor"}, "train": {"steps": 20}})
>>> supports(spec, None, TASKS["xor"]()) is None
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax

from jaxinit.blocks import metrics
from jaxinit.blocks.models import Model, from_spec
from jaxinit.blocks.ops import Ops
from jaxinit.blocks.tasks import Task, loss_value
from jaxinit.config.spec import Spec, wants_lambda0
from jaxinit.engine.program import (
    Layout,
    run_for,
    run_key,
    tree_where,
)
from jaxinit.engine.train import (
    Context,
    Data,
    TrainLayout,
    batch,
    build_optimizer,
    context,
    evaluate,
    gradient_program,
    initial_curvature,
    make_init,
    run_loss,
    with_lr_unit,
)

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "supports",
    "prefer_lanes",
    "compiler_options",
    "step_cost",
    "lanes_per_block",
    "chunk_runs",
    "make_batched_run",
    "make_batched_train",
    "lane_sum",
    "spread",
    "to_lanes",
    "from_lanes",
    "LANES",
    "LANES_TRAIN",
]

Lanes = Any
"""A pytree whose every leaf has the run axis last (``(..., C)``)."""

ELEMENTWISE_OPTIMIZERS = frozenset(
    {
        "sgd",
        "adam",
        "adamw",
        "adamax",
        "amsgrad",
        "nadam",
        "radam",
        "rmsprop",
        "adagrad",
        "adabelief",
        "lion",
        "yogi",
        "sign_sgd",
    }
)
"""optax optimizers whose update of a parameter depends only on that parameter's own gradient,
state and hyperparameters, so they act on ``(..., C)`` leaves (and on per-run ``(C,)`` learning
rates and step counts) run by run. Each is checked against the per-run update in
``tests/test_lanes.py``. The others (lamb, lars, fromage, novograd: per-layer or global norms)
would mix runs."""


# -- sums and broadcasts that stay on the lanes -------------------------------------------------
def _halving(x: Array, axis: int, op: Callable[[Array, Array], Array]) -> Array:
    """Reduce ``axis`` of ``x`` by pairwise ``op`` of its two halves until one slice is left.

    Every step is elementwise over the other axes (the run axis among them), so XLA vectorizes
    it; the order of the adds depends only on the shape, never on the other runs' values.
    """
    n = x.shape[axis]
    while n > 1:
        h = n // 2
        y = op(lax.slice_in_dim(x, 0, h, axis=axis), lax.slice_in_dim(x, h, 2 * h, axis=axis))
        if n % 2:
            y = lax.concatenate([y, lax.slice_in_dim(x, 2 * h, n, axis=axis)], axis)
        x, n = y, y.shape[axis]
    return lax.squeeze(x, (axis,))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def lane_sum(x: Array, axis: int) -> Array:
    """``x.sum(axis)`` for a non-run axis, as halving adds; its transpose is a broadcast."""
    return _halving(x, axis, jnp.add)


def _lane_sum_fwd(x: Array, axis: int) -> tuple[Array, tuple[int, ...]]:
    return lane_sum(x, axis), x.shape


def _lane_sum_bwd(axis: int, shape: tuple[int, ...], g: Array) -> tuple[Array]:
    return (jnp.broadcast_to(jnp.expand_dims(g, axis), shape),)


lane_sum.defvjp(_lane_sum_fwd, _lane_sum_bwd)


def lane_max(x: Array, axis: int) -> Array:
    """``x.max(axis)`` for a non-run axis, as halving maxima (no gradient: used as a shift)."""
    return _halving(lax.stop_gradient(x), axis, jnp.maximum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def spread(x: Array, shape: tuple[int, ...]) -> Array:
    """``broadcast_to(x, shape)`` (``x`` has size-1 axes where it spreads) with a
    :func:`lane_sum` transpose, for differentiated values."""
    return jnp.broadcast_to(x, shape)


def _spread_fwd(x: Array, shape: tuple[int, ...]) -> tuple[Array, tuple[int, ...]]:
    return spread(x, shape), x.shape


def _spread_bwd(shape: tuple[int, ...], x_shape: tuple[int, ...], g: Array) -> tuple[Array]:
    for axis, (a, b) in enumerate(zip(x_shape, shape)):
        if a == 1 and b != 1:
            g = jnp.expand_dims(lane_sum(g, axis), axis)
    return (g,)


spread.defvjp(_spread_fwd, _spread_bwd)


def lanes_sq_norm(tree: Lanes) -> Array:
    """``‖θ_r‖²`` of every run, ``(C,)``: squares summed over all but the trailing axis."""
    total = 0.0
    for leaf in jax.tree.leaves(tree):
        sq = (leaf * leaf).reshape(-1, leaf.shape[-1])
        total = total + lane_sum(sq, 0)
    return total


def lanes_norm(tree: Lanes) -> Array:
    """``optax.tree.norm`` of every run, ``(C,)``."""
    return jnp.sqrt(lanes_sq_norm(tree))


def to_lanes(tree: Any) -> Lanes:
    """Run axis first (vmap layout) → run axis last."""
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)


def from_lanes(tree: Lanes) -> Any:
    """Run axis last → run axis first (vmap layout)."""
    return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), tree)


# -- the layout primitives on the lanes ---------------------------------------------------------
def dense(a: Array, w_IxOxC: Array, b_OxC: Array | None, total=lane_sum, widen=spread) -> Array:
    """``z_NxOxC = Σ_i a[n, i] · w[i, o] (+ b[o])`` for every run at once.

    ``a`` is the shared data ``x_NxI`` or per-run activations ``a_NxIxC``. The product
    ``(N, I, O, C)`` is elementwise over runs and summed over ``I`` with :func:`lane_sum`
    (XLA fuses the product into the first halving step).
    """
    n = a.shape[0]
    i, o, c = w_IxOxC.shape
    full = (n, i, o, c)
    w = widen(w_IxOxC[None], full)
    a = a[:, :, None, None] if a.ndim == 2 else widen(a[:, :, None, :], full)
    z = total(a * w, 1)
    return z if b_OxC is None else z + widen(b_OxC[None], (n, o, c))


def _log_softmax(out_NxOxC: Array, total=lane_sum, widen=spread) -> Array:
    shifted = out_NxOxC - lane_max(out_NxOxC, 1)[:, None, :]
    lse = jnp.log(total(jnp.exp(shifted), 1))
    return shifted - widen(lse[:, None, :], out_NxOxC.shape)


def _pick(logp_NxOxC: Array, y: Array, total=lane_sum) -> Array:
    """Each point's log-probability of its label, ``(N, C)``; labels shared ``(N,)`` or per run
    ``(N, C)``."""
    o = logp_NxOxC.shape[1]
    labels = y[:, None, None] if y.ndim == 1 else y[:, None, :]
    onehot = labels.astype(jnp.int32) == jnp.arange(o, dtype=jnp.int32)[None, :, None]
    return total(jnp.where(onehot, logp_NxOxC, 0.0), 1)


LANE_OPS = Ops(
    dense=dense,
    sum_last=lambda a: lane_sum(a, 1),
    mean_points=lambda a: lane_sum(a, 0) / a.shape[0],
    targets=lambda y: y[:, :, None] if y.ndim == 2 else y,
    log_softmax=_log_softmax,
    pick=_pick,
    norm=lanes_norm,
)
"""The primitives of :mod:`jaxinit.blocks.ops` with the run axis last (``(N, O, C)`` outputs, ``(C,)``
losses and norms): no XLA reduce over a small axis, broadcasts of differentiated values by
:func:`spread`. A model's ``forward`` and :func:`jaxinit.blocks.tasks.loss_value` run on them as
written."""

_plain_sum = functools.partial(_halving, op=jnp.add)
PLAIN_OPS = LANE_OPS._replace(
    dense=functools.partial(dense, total=_plain_sum, widen=jnp.broadcast_to),
    sum_last=lambda a: _plain_sum(a, 1),
    mean_points=lambda a: _plain_sum(a, 0) / a.shape[0],
    log_softmax=functools.partial(_log_softmax, total=_plain_sum, widen=jnp.broadcast_to),
    pick=functools.partial(_pick, total=_plain_sum),
)
""":data:`LANE_OPS` with plain JAX sums and broadcasts (no ``custom_vjp``; the same values):
differentiable twice and forward-mode, for Hessian-vector products (the ``sharpness``
diagnostic: 10 products of 4,096 XOR nets 1.3 ms CPU, against 4.5 ms through the custom rules)."""


def lanes_loss(kind: str, out_NxOxC: Array, y: Array) -> Array:
    """:func:`jaxinit.blocks.tasks.loss_value` of every run, ``(C,)``.

    ``y`` is shared (``(N, O)``, or ``(N,)`` labels for ``ce``) or per run (``(N, O, C)``,
    ``(N, C)``).
    """
    return loss_value(kind, out_NxOxC, y, LANE_OPS)


# -- static checks ------------------------------------------------------------------------------
def supports(spec: Spec, model: Model | None, task: Task) -> str | None:
    """``None`` if :func:`make_batched_run` can run this static configuration, else a one-line
    reason why not (the caller then uses the vmapped :func:`jaxinit.engine.train.make_run`)."""
    if model is not None:
        return "a user model: the lanes layout runs the built-in models only"
    if from_spec(spec.model, task.in_dim, task.out_dim).forward is None:
        return (
            f"model.name = {spec.model.name!r} has no lanes form (it declares no forward pass "
            "over the layout primitives, Model.forward)"
        )
    if task.objective is not None:
        return "the task's objective(params) replaces the sampled loss: per-run code only"
    if task.loss not in ("mse", "bce", "ce"):
        return f"loss {task.loss!r} has no lanes form"
    if spec.optimizer.name not in ELEMENTWISE_OPTIMIZERS:
        return (
            f"optimizer {spec.optimizer.name!r} is not elementwise (norms over layers or the "
            "whole tree would couple the runs sharing an array)"
        )
    unknown = [d for d in spec.train.diagnostics if d not in metrics.DIAGNOSTICS]
    if unknown:
        return f"unknown diagnostic {unknown[0]!r}"
    return None


LANES_BUDGET = 5000
"""Largest :func:`step_cost` at which :func:`prefer_lanes` picks the lanes layout.

Measured with ``python benchmarks/bench_engine.py --crossover`` (2-core shared CPU; throughput
of ``lanes.make_batched_run`` over the hand-written ``jit(vmap(scan))`` loop, CPU seconds, full
table in benchmarks/README.md): step_cost 24 (2-2-1 on XOR) 5.4×, 48 (2-4-1) 4.5×, 96 (2-8-1)
2.5×, 192 (2-16-1) 3.0×, 4480 (2-32-32-1) 1.5-2.0×; 17152 (2-64-64-1) 0.28×, 17408 (16-32-1,
minibatch 32) 0.66×, 82944 (16-64-64-1, minibatch 16) 0.22×, 1.3M (minibatch 256) 0.04×. The
crossover lies between 4480 and 17152."""


def step_cost(spec: Spec, task: Task) -> int:
    """Multiply-adds of one forward pass of one run on one (mini)batch: ``B · Σ_l I_l · O_l``."""
    n = len(task.x_train)
    b = spec.train.batch_size if 0 < spec.train.batch_size < n else n
    dims = (task.in_dim, *spec.model.widths, task.out_dim)
    return b * sum(i * o for i, o in zip(dims[:-1], dims[1:]))


def prefer_lanes(spec: Spec, task: Task) -> bool:
    """Whether the lanes layout is expected to be faster than ``vmap(make_run)``.

    On CPU: when it can run the configuration and :func:`step_cost` is at most
    :data:`LANES_BUDGET` (measured; see there and benchmarks/README.md). Never on other
    backends, where it has not been measured.
    """
    if supports(spec, None, task) is not None:
        return False
    if jax.default_backend() != "cpu":
        return False
    return step_cost(spec, task) <= LANES_BUDGET


CPU_OPTIONS = MappingProxyType({"xla_cpu_prefer_vector_width": 512})
"""XLA options of every lanes program on the CPU: 512-bit vectors where the CPU has them (XLA's
default is 256; on a CPU without AVX-512 the option changes nothing). The lanes layout is
elementwise work over the run axis, so wider vectors do more runs per instruction. Measured
(``benchmarks/README.md``, session 13, jax 0.10.2, 2-core AVX-512 CPU, CPU time of
``jaxinit.run``, interleaved in one process): 2-2-1 XOR 1.01×, 2-16-1 1.11×, 2-8-8-1 1.10×,
2-32-32-1 1.11× faster. It may change how XLA rounds (``software.layout_rule`` 4; of the
bundled specs only ``dropout``'s test loss moved, by ≤ 1.4e-6)."""

DEEP_CPU_OPTIONS = MappingProxyType({"xla_cpu_copy_insertion_use_region_analysis": True})
"""Added for nets with a hidden-to-hidden layer: XLA's region-based copy insertion. Without it
XLA copies each hidden-to-hidden weight matrix at every training step (the backward pass reads
the old weights while the update writes the loop's buffer), ~10% of a 2-32-32-1 step. It only
decides where buffers are copied, so results are the same. Measured as above, on top of
:data:`CPU_OPTIONS`: 2-8-8-1 1.10×, 2-16-16-16-1 1.07×, 2-32-32-1 1.12× faster; one hidden
layer 2-16-1 0.92× (slower), so one-hidden-layer nets go without."""


def deep(spec: Spec) -> bool:
    """Whether ``spec``'s net has a hidden-to-hidden layer (two or more hidden layers): the
    nets that take :data:`DEEP_CPU_OPTIONS` and the third of :data:`BLOCK_BYTES`."""
    return len(spec.model.widths) >= 2


@functools.cache
def _accepted(options: tuple[tuple[str, Any], ...]) -> bool:
    """Whether this JAX's XLA compiles a program with ``options`` (a JAX without one of them
    compiles lanes programs without any)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
    except Exception:  # noqa: BLE001 - an unknown option or an older jax.jit signature
        return False
    return True


def compiler_options(spec: Spec) -> dict[str, Any]:
    """XLA compile options of ``spec``'s lanes training program: :data:`CPU_OPTIONS` (and
    :data:`DEEP_CPU_OPTIONS` with two or more hidden layers) on the CPU, none elsewhere."""
    if jax.default_backend() != "cpu":
        return {}
    options = dict(CPU_OPTIONS)
    if deep(spec):
        options.update(DEEP_CPU_OPTIONS)
    return options if _accepted(tuple(sorted(options.items()))) else {}


# -- the lanes layout's primitives of gradient training ------------------------------------------
def _traced(values: dict[str, Array]) -> dict[str, Array]:
    return {k: v for k, v in values.items() if k != "seed"}


def _run_keys(root_seed: int, seeds_C: Array, tag: int) -> Array:
    """The ``tag`` stream key of every run, ``(C,)`` (as in :func:`jaxinit.engine.train.make_run`)."""
    return jax.vmap(lambda s: jax.random.fold_in(run_key(root_seed, s), tag))(seeds_C)


def _init_opt_state(ctx: Context, params0: Lanes) -> Lanes:
    """Every run's initial optimizer state (its own step count too), run axis last."""
    trainable = ctx.model.trainable(params0) if ctx.model.trainable else None

    def one(v: dict[str, Array], p: Any) -> Any:
        return build_optimizer(ctx.static.replace(v).optimizer, trainable).init(p)

    return jax.vmap(one, in_axes=(0, -1), out_axes=-1)(_traced(ctx.values), params0)


def _lanes_batch(data: Data, keys_C: Array, t: Array, batch_size: int) -> tuple[Array, Array]:
    """Step ``t``'s minibatch of every run, ``x_BxIxC`` and ``y`` with the run axis last; the
    shared full training set when not minibatching."""
    if batch_size <= 0 or batch_size >= data.x_train.shape[0]:
        return data.x_train, data.y_train
    x, y = jax.vmap(lambda k: batch(data, k, t, batch_size))(keys_C)
    return jnp.moveaxis(x, 0, -1), jnp.moveaxis(y, 0, -1)


def dropout(keys_C: Array, t: Array, rate: Array | float) -> Callable[[int, Array], Array]:
    """``drop(l, a_BxHxC)``: every run's inverted dropout of step ``t`` on hidden layer ``l``
    (``Model.forward``'s ``drop``), with the masks ``mlp.apply`` draws from
    ``fold_in(fold_in(k_drop, t), l)``; ``rate`` a scalar or ``(C,)``."""
    keep = 1.0 - rate
    keys_C = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_C)  # once for every layer

    def drop(l: int, a: Array) -> Array:
        shape = a.shape[:-1]

        def one(key: Array, r: Array | float) -> Array:
            return jax.random.bernoulli(jax.random.fold_in(key, l), 1.0 - r, shape)

        if isinstance(rate, (int, float)):
            mask = jax.vmap(lambda k: one(k, rate))(keys_C)
        else:
            mask = jax.vmap(one)(keys_C, rate)
        return jnp.where(jnp.moveaxis(mask, 0, -1), a / keep, 0.0)

    return drop


def _losses(
    ctx: Context, params: Lanes, x: Array, y: Array, drop: Any = None, ops: Ops = LANE_OPS
) -> Array:
    """Every run's loss ``(C,)`` by the model's forward pass over ``ops``."""
    return loss_value(ctx.task.loss, ctx.model.forward(ops, params, x, drop), y, ops)


def _plain_losses(ctx: Context, params: Lanes, x: Array, y: Array, drop: Any = None) -> Array:
    """:func:`_losses` over :data:`PLAIN_OPS`: the same values, and differentiable twice, so the
    diagnostics' Hessian-vector products (``sharpness``) are plain forward over reverse."""
    return _losses(ctx, params, x, y, drop, PLAIN_OPS)


def _value_and_grad(ctx: Context, params: Lanes, x: Array, y: Array, drop: Any) -> tuple:
    """``(L_C, ∇)``: the gradient of ``Σ_r L_r``, which is every run's own (runs never interact)."""

    def total(p: Lanes) -> tuple[Array, Array]:
        per_run = _losses(ctx, p, x, y, drop)
        return jnp.sum(per_run), per_run

    grads, loss = jax.grad(total, has_aux=True)(params)
    return loss, grads


def _diagnostics(ctx: Context, probe: metrics.Probe) -> tuple[dict[str, Array], dict[str, Any]]:
    """:func:`jaxinit.blocks.metrics.observe` of every run, each value with the run axis last:
    ``(curves, memo)``. The diagnostics written against the layout primitives take ``probe``
    as it is; the others are one run's code, vmapped over the trailing axis."""
    out: dict[str, Array] = {}
    carried: dict[str, Any] = {}
    x, y = probe.x, probe.y
    loss = lambda q: run_loss(ctx, q, x, y)  # noqa: E731  one run's
    for name in ctx.static.train.diagnostics:
        if name in metrics.ANY_LAYOUT:
            curves, more = metrics.observe((name,), probe)
            out.update(curves)
            carried.update(more)
            continue
        fn = metrics.DIAGNOSTICS[name]
        one = lambda p, p0, g, fn=fn: fn(  # noqa: E731
            metrics.Probe(ctx.model, p, p0, g, x, y, loss=loss, train=probe.train)
        )
        out.update(jax.vmap(one, in_axes=-1, out_axes=-1)(probe.params, probe.params0, probe.grads))
    return out, carried


def first_step(hit_TxC: Array, steps_T: Array, before_C: Array) -> Array:
    """``before_C`` where it is set (``>= 0``), else the first of ``steps_T`` whose row of
    ``hit_TxC`` is true (``-1`` if none): the books :func:`jaxinit.engine.program.run` keeps step by
    step in the vmap layout, kept once per block of steps (two fewer kernels in the step loop)."""
    never = jnp.iinfo(jnp.int32).max
    first = _halving(jnp.where(hit_TxC, steps_T[:, None], never), 0, jnp.minimum)
    return jnp.where((before_C < 0) & (first < never), first, before_C)


LANES = Layout(
    "lanes",
    tree_where,
    lanes_norm,
    lambda tree: jnp.isfinite(lanes_sq_norm(tree)),
    first_step,
    from_lanes,
)
"""The run axis last: a per-run ``where`` broadcasts a ``(C,)`` predicate against it, norms
sum with :func:`lane_sum`, the step books are kept once per block (:func:`first_step`)."""


LANES_TRAIN = TrainLayout(
    loop=LANES,
    ops=LANE_OPS,
    keys=_run_keys,
    opt_init=_init_opt_state,
    order=lambda ctx, data: (),
    batch=lambda ctx, data, state, t: (
        state,
        *_lanes_batch(data, ctx.key_data, t, ctx.static.train.batch_size),
    ),
    noise=lambda ctx, t: dropout(ctx.key_drop, t, ctx.spec.model.dropout) if ctx.dropping else None,
    loss=_plain_losses,  # logging and the diagnostics; training differentiates _losses
    value_and_grad=_value_and_grad,
    diagnostics=_diagnostics,
    evaluate=lambda ctx, params, x, y: jax.vmap(
        lambda p: evaluate(ctx, p, x, y), in_axes=-1, out_axes=-1
    )(params),
)
"""Gradient training of a block of runs with the run axis last
(:class:`jaxinit.engine.train.TrainLayout`): the loss and its gradient over :data:`LANE_OPS`,
every run's optimizer state, keys, minibatches, dropout masks, the one-run diagnostics and the
final evaluation by the per-run code vmapped over the trailing axis."""


def _train_block(
    spec: Spec, task: Task, values: dict[str, Array], params0: Any, data: Data
) -> dict[str, Any]:
    """The whole training of one lane block of runs from ``params0`` (run axis first),
    ``values: {path: (S,)}``."""
    lam0 = None
    if wants_lambda0(spec):  # per-run code, once per run, before the runs go to the lanes
        lam0 = jax.vmap(lambda p: initial_curvature(spec, task, None, data, p))(params0)
        values = with_lr_unit(spec, values, lam0)
    params0 = to_lanes(params0)
    model = from_spec(spec.model, task.in_dim, task.out_dim)
    ctx = context(spec, task, model, values, params0, lam0, LANES_TRAIN)
    return run_for(spec, gradient_program(ctx, data, params0), LANES, params0)


BLOCK_BYTES = (2**19, 2**21, 2**20)
"""Target bytes per block of :func:`step_cost` products (see :func:`lanes_per_block`): the
first for the smallest nets (step cost up to :data:`SMALL_COST`), the second above, the third
above for nets with a hidden-to-hidden layer, whose blocks also hold those weights and their
updates in cache."""
SMALL_COST = 64


def lanes_per_block(spec: Spec, task: Task) -> int:
    """How many runs train together as one block of lanes.

    A chunk of ``C`` runs is cut into blocks of at most this many, trained one after the other
    (``lax.map``), so that a step's arrays stay in cache: the ``(B, I, O, S)`` products of
    :func:`dense` over all layers, :func:`step_cost` numbers per run, come to about
    :data:`BLOCK_BYTES`. A power of two in 8..4096 (8: one AVX2 register of float32).

    Measured on the 2-core CPU (``make_batched_train``, XOR, 500 steps, wall / CPU seconds):
    the smallest nets are fastest in blocks small enough for XLA to run them on one thread
    (2-2-1, 65,536 runs: 4096 lanes 1.0 / 1.0 s, 8192 lanes 1.2 / 1.8 s; 2-4-1, 16,384 runs:
    2048 lanes 0.36 / 0.36 s, 4096 lanes 0.47 / 0.7 s), wider ones in larger blocks that it
    spreads over the cores (2-8-1: 1024 lanes 0.8 / 1.3 s, 4096 lanes 0.5 / 1.0 s; 2-16-1: 512
    lanes 1.3 / 2.2 s, 2048 lanes 1.0 / 1.9 s; 2-32-32-1: 32 lanes 24 / 45 s, 128 lanes 22 /
    41 s). Hence two budgets, split at :data:`SMALL_COST`. With :data:`CPU_OPTIONS`, nets with a
    hidden-to-hidden layer train faster in half the larger budget (``jaxinit.run``, 16,384
    runs, CPU time, interleaved in one process: 2-4-4-1 1.22×, 2-8-8-1 1.13×, 2-16-16-1 1.41×,
    2-16-16-16-1 1.15×, 2-32-32-1 1.13×), and one-hidden-layer nets do not (2-8-1 0.88×,
    2-16-1 0.94×, 2-64-1 1.03×): the third budget. A run's numbers do not depend on its block.
    """
    itemsize = 8 if spec.train.dtype == "float64" else 4
    cost = step_cost(spec, task)
    if cost <= SMALL_COST:
        budget = BLOCK_BYTES[0]
    else:
        budget = BLOCK_BYTES[2] if deep(spec) else BLOCK_BYTES[1]
    ideal = budget / (cost * itemsize)
    return int(min(4096, max(8, 2 ** round(math.log2(ideal)))))


CHUNK_RUNS = 1024
"""Fewest runs in a default lanes chunk (see :func:`chunk_runs`)."""


def chunk_runs(spec: Spec, task: Task) -> int:
    """Default runs per chunk in the lanes layout: one lane block (:func:`lanes_per_block`), or
    :data:`CHUNK_RUNS` runs of smaller blocks.

    A chunk is the unit the executor hands to a device, so a big sweep in small chunks keeps
    every CPU device busy (:mod:`jaxinit.engine.devices`), while each chunk still trains its blocks at
    full speed: with two CPU devices, 16,384 2-8-1 runs took 1.96 s wall in chunks of 4,096 and
    2.48 s in chunks of 8,192 (one device: 2.83 s in one chunk). It depends only on the spec and
    the task, never on the machine, so every machine, shard and resume plans the same chunks.
    """
    return max(lanes_per_block(spec, task), CHUNK_RUNS)


def _blocks(n_runs: int, per_block: int) -> tuple[int, int]:
    """``(blocks, runs per block)`` covering ``n_runs`` with blocks as even as possible; sizes
    are rounded up to whole vector registers (8 runs) when ``per_block`` is a multiple of 8."""
    n = -(-n_runs // per_block)
    size = -(-n_runs // n)
    if n > 1 and per_block % 8 == 0:
        size = -(-size // 8) * 8
    return n, size


def make_batched_train(
    spec: Spec, task: Task, *, per_block: int | None = None
) -> Callable[[dict, Any, Data], dict]:
    """The training program of ``C`` runs of a static configuration, in the lanes layout.

    Same contract as ``jax.vmap(train.make_train(spec, task), in_axes=(0, 0, None))``:
    ``values`` maps ``"seed"`` to ``(C,)`` int32 and every other traced path to ``(C,)``
    floats, ``params0`` is every run's initial parameters (run axis first, from
    :func:`jaxinit.engine.train.make_init`); the outputs have the same pytree, shapes (run axis first)
    and dtypes, with equal numbers up to rounding. Runs train in blocks of ``per_block`` lanes
    (default :func:`lanes_per_block`); the last block is padded with copies of the last run.
    Raises ``ValueError`` where :func:`supports` gives a reason.
    """
    reason = supports(spec, None, task)
    if reason is not None:
        raise ValueError(f"the lanes layout cannot run this spec: {reason}")
    per_block = per_block or lanes_per_block(spec, task)

    def train(values: dict[str, Array], params0: Any, data: Data) -> dict[str, Any]:
        c = values["seed"].shape[0]
        n, size = _blocks(c, per_block)
        if n == 1:
            return _train_block(spec, task, values, params0, data)
        pad = n * size - c

        def cut(v: Array) -> Array:
            v = jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)])
            return v.reshape(n, size, *v.shape[1:])

        out = lax.map(
            lambda vp: _train_block(spec, task, *vp, data), jax.tree.map(cut, (values, params0))
        )
        return jax.tree.map(lambda a: a.reshape(n * size, *a.shape[2:])[:c], out)

    return train


def make_batched_run(
    spec: Spec, task: Task, *, per_block: int | None = None
) -> Callable[[dict, Data], dict]:
    """:func:`make_batched_train` from every run's :func:`jaxinit.engine.train.make_init` parameters:
    the contract of ``jax.vmap(make_run(spec, task), in_axes=(0, None))``."""
    train = make_batched_train(spec, task, per_block=per_block)
    init = jax.vmap(make_init(spec, task), in_axes=(0, None))
    return lambda values, data: train(values, init(values, data), data)
