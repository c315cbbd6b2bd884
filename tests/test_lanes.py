"""The lanes layout (:mod:`jaxinit.engine.lanes`) against ``jax.vmap(make_run)``: the same outputs (tree,
shapes, dtypes) and numbers equal to rounding, for every activation and loss, the stochastic,
freezing and diverging paths, diagnostics, float64; runs independent of their chunk-mates;
every accepted optimizer acting run by run; what it refuses.

Compiling dominates this file's time (each configuration is two programs of ~2000 ops), so the
cases are few and small, and the comparison programs compile with :data:`FAST`.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxinit
from jaxinit.blocks.models import ACTIVATIONS, Model, from_spec, mlp
from jaxinit.blocks.tasks import TASKS, loss_value
from jaxinit.config.spec import Spec
from jaxinit.engine import lanes
from jaxinit.engine.executors import default_chunk_runs
from jaxinit.engine.train import Data, make_run

C = 8  # runs per chunk

FAST = {"xla_backend_optimization_level": 0}
"""XLA options of the comparison programs: they check numbers, not speed (the chunk-mates test
compiles with the default options, whose vectorized code it is about)."""


def _compiled(fn, *args, fast: bool = True):
    """``fn`` compiled for ``args`` (with :data:`FAST` unless ``fast=False``)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST if fast else None)


# name -> (spec dict, traced values cycled over the C runs)
CASES: dict[str, tuple[dict, dict]] = {
    "tanh": (  # sgd, diagnostics (lanes norms + a per-run hidden-unit one), per-run grad_tol
        {
            "model": {"widths": [3], "activation": "tanh"},
            "init": {"scheme": "he_normal", "bias_scheme": "normal", "bias_scale": 0.3},
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "train": {
                "steps": 40,
                "log_every": 5,
                "diagnostics": [
                    "grad_norm",
                    "layer_grad_norm",
                    "weight_norm",
                    "distance_from_init",
                    "distinct_units",
                ],
            },
            "store": {"save_params": True},
        },
        {"init.scale": [0.5, 1.0], "train.grad_tol": [0.0, 0.0, 0.05, 0.05]},
    ),
    "sigmoid": (  # adam, per-run learning rate and dropout, minibatches, frozen output layer
        {
            "task": {"name": "circles", "n_points": 24},
            "model": {"widths": [4], "activation": "sigmoid", "train_output": False},
            "optimizer": {"name": "adam", "learning_rate": 0.05},
            "train": {"steps": 40, "log_every": 10, "batch_size": 8, "diagnostics": []},
            "store": {"save_params": True},
        },
        {"optimizer.learning_rate": [0.01, 0.05], "model.dropout": [0.0, 0.3, 0.3, 0.0]},
    ),
    "linear": (  # least squares without bias: lr 50 blows up, grad_tol freezes the calm runs
        {
            "task": {"name": "linear_regression", "n_points": 16},
            "model": {"widths": [], "activation": "linear", "bias": False},
            "init": {"scheme": "normal"},
            "train": {"steps": 60, "log_every": 5, "threshold": 0.02, "grad_tol": 1e-2},
            "store": {"save_params": True},
        },
        {"optimizer.learning_rate": [0.3, 50.0]},
    ),
}


def _setup(name: str, dtype: str = "float32"):
    """``(spec, task, values, data)`` of a case: ``C`` runs, seeds ``0..C-1``."""
    spec_dict, traced = CASES[name]
    spec_dict = {**spec_dict, "train": {**spec_dict["train"], "dtype": dtype}}
    spec = Spec.from_dict(spec_dict)
    task = TASKS[spec.task.name](**spec.task.params)
    values = {"seed": jnp.arange(C, dtype=jnp.int32)}
    for path, vs in traced.items():
        values[path] = jnp.asarray(np.resize(np.asarray(vs, float), C), dtype)
    return spec, task, values, Data.from_task(task, dtype)


@functools.cache
def _outputs(name: str, dtype: str) -> tuple[dict, dict]:
    """Outputs of ``vmap(make_run)`` and of the lanes program on the same values."""
    spec, task, values, data = _setup(name, dtype)
    by_vmap = _compiled(jax.vmap(make_run(spec, task), in_axes=(0, None)), values, data)
    by_lanes = _compiled(lanes.make_batched_run(spec, task), values, data)
    return jax.device_get((by_vmap(values, data), by_lanes(values, data)))


def _max_error(a: dict, b: dict, rtol: float, atol: float) -> float:
    """Check two output trees leaf by leaf (tree, shapes, dtypes, NaNs; integers exactly) and
    return the largest ``|a - b| / (atol + rtol |a|)`` of the float leaves (≤ 1: close)."""
    flat_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    flat_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    assert tree_a == tree_b
    worst = 0.0
    for (path, x), (_, y) in zip(flat_a, flat_b):
        where = jax.tree_util.keystr(path)
        assert (x.shape, x.dtype) == (y.shape, y.dtype), where
        if x.dtype.kind != "f":
            np.testing.assert_array_equal(x, y, err_msg=where)
            continue
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=where)
        ok = ~np.isnan(x)
        err = np.abs(x[ok] - y[ok]) / (atol + rtol * np.abs(x[ok]))
        worst = max(worst, float(err.max(initial=0.0)))
    return worst


def _worst_error(name: str, dtype: str, rtol: float, atol: float) -> float:
    """:func:`_max_error` of the lanes outputs of a case against ``vmap(make_run)``'s."""
    return _max_error(*_outputs(name, dtype), rtol, atol)


# activation -> (loss, per-run minibatches?) of the one-step check; dropout everywhere
ONE_STEP = {
    "tanh": ("bce", True),
    "sigmoid": ("mse", False),
    "relu": ("ce", True),
    "gelu": ("bce", False),
    "linear": ("mse", True),
    "erf": ("ce", False),
}


def _one_step_both_ways(activation: str) -> tuple:
    """One step's losses ``(C,)`` and gradients of a 3-4-3-O MLP with dropout, in the lanes form
    and per run (``loss_value`` of ``mlp.apply``, ``jax.grad``, vmapped)."""
    kind, per_run = ONE_STEP[activation]
    n, i, rate, t = 6, 3, 0.3, 5
    k = jax.random.split(jax.random.key(2), 5)
    mdl = mlp((4, 3), in_dim=i, out_dim=3, activation=activation, dropout=rate)
    params = jax.vmap(mdl.init, in_axes=(0, None))(jax.random.split(k[0], C), Spec().init)
    shape = (C, n) if per_run else (n,)
    x = jax.random.normal(k[1], (*shape, i))
    y = (
        jax.random.randint(k[2], shape, 0, 3)
        if kind == "ce"
        else jax.random.uniform(k[2], (*shape, 3))
    )
    drop_keys = jax.random.split(k[3], C)

    def one(p, x, y, key):
        return loss_value(kind, mdl.apply(p, x, key=jax.random.fold_in(key, t), train=True), y)

    axis = 0 if per_run else None
    want = jax.vmap(jax.value_and_grad(one), in_axes=(0, axis, axis, 0))(params, x, y, drop_keys)
    drop = lanes.dropout(drop_keys, t, rate)
    lanes_x, lanes_y = lanes.to_lanes((x, y)) if per_run else (x, y)

    def total(p):
        out = mdl.forward(lanes.LANE_OPS, p, lanes_x, drop)
        losses = lanes.lanes_loss(kind, out, lanes_y)
        return jnp.sum(losses), losses

    grad, loss = jax.grad(total, has_aux=True)(lanes.to_lanes(params))
    return (loss, lanes.from_lanes(grad)), want


def test_every_activation_and_loss_step_matches_per_run():
    """The lanes forward pass, loss and gradient of one step equal the per-run ones, for every
    activation (each with one loss and data layout; one compiled program for all)."""
    assert set(ONE_STEP) == set(ACTIVATIONS)
    both = _compiled(lambda: {a: _one_step_both_ways(a) for a in ONE_STEP})()
    for activation, (got, want) in both.items():
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=activation)


@pytest.mark.parametrize("name", list(CASES))
def test_lanes_match_vmap(name):
    assert _worst_error(name, "float32", rtol=1e-5, atol=1e-6) <= 1.0


def test_the_cases_exercise_what_they_claim():
    a, _ = _outputs("tanh", "float32")
    assert (a["final"]["converged_step"][2:4] >= 0).any()  # grad_tol froze a run
    assert (a["curves"]["loss"][:, 0] - a["curves"]["loss"][:, -1]).mean() > 0.05  # they train
    a, _ = _outputs("linear", "float32")
    assert a["final"]["diverged"][1::2].all() and not a["final"]["diverged"][::2].any()
    assert (a["final"]["converged_step"][::2] > 0).any()
    a, _ = _outputs("sigmoid", "float32")
    assert (a["curves"]["loss"][:, 0] - a["curves"]["loss"][:, -1]).mean() > 0.01
    np.testing.assert_array_equal(a["params"]["layers"][-1]["w"], a["params0"]["layers"][-1]["w"])


def test_float64_in_a_subprocess():
    """x64 is process-wide, so the float64 comparison runs in a fresh interpreter."""
    code = (
        "import jax, runpy, sys; jax.config.update('jax_enable_x64', True); "
        "f = runpy.run_path(sys.argv[1])['_worst_error']; "
        "print(f('sigmoid', 'float64', 1e-12, 1e-14))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) <= 1.0


def test_a_run_ignores_its_chunk_mates():
    """Slots 0-3 give bit-identical outputs whatever runs (new seeds, diverging learning rates)
    fill the other slots of a chunk of the same shape. Compiled with the default (vectorizing)
    options, in blocks of 3 lanes (8 runs: 3 blocks, the last padded), which still match vmap."""
    spec, task, values, data = _setup("linear")
    other = {
        "seed": values["seed"].at[4:].set(jnp.arange(100, 104, dtype=jnp.int32)),
        "optimizer.learning_rate": values["optimizer.learning_rate"].at[4:].set(50.0),
    }
    program = lanes.make_batched_run(spec, task, per_block=3)
    fn = _compiled(program, values, data, fast=False)
    a, b = jax.device_get((fn(values, data), fn(other, data)))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x[:4], y[:4])
    assert _max_error(_outputs("linear", "float32")[0], a, rtol=1e-5, atol=1e-6) <= 1.0


def _optimizer_both_ways(name: str) -> tuple:
    """Parameters after 8 updates (radam switches branch after 5) of optax ``name``: on lanes
    leaves ``(..., C)`` with a ``(C,)`` learning rate and step count, and per run, vmapped."""
    keys = jax.random.split(jax.random.key(1), 2)
    lr = jnp.linspace(0.01, 0.1, C)
    params = {"w": jax.random.normal(keys[0], (C, 3, 2)), "b": jnp.zeros((C, 2))}
    grads = jax.tree.map(lambda p: jax.random.normal(keys[1], (8, *p.shape)), params)

    def train(opt, p, gs, init):
        def update(carry, g):
            p, state = carry
            u, state = opt.update(g, state, p)
            return (optax.apply_updates(p, u), state), None

        return jax.lax.scan(update, (p, init(p)), gs)[0][0]

    def per_run(lr, p, gs):
        opt = getattr(optax, name)(learning_rate=lr)
        return train(opt, p, gs, opt.init)

    opt = getattr(optax, name)(learning_rate=lr)
    init = jax.vmap(opt.init, in_axes=-1, out_axes=-1)
    steps_lanes = jax.tree.map(lambda g: jnp.moveaxis(g, 1, -1), grads)  # (8, ..., C)
    got = train(opt, lanes.to_lanes(params), steps_lanes, init)
    return lanes.from_lanes(got), jax.vmap(per_run, in_axes=(0, 0, 1))(lr, params, grads)


def test_elementwise_optimizers_act_run_by_run():
    """optax's update applied to lanes leaves is the per-run update, run by run, for every
    optimizer :func:`jaxinit.engine.lanes.supports` accepts (one compiled program for all)."""
    names = sorted(n for n in lanes.ELEMENTWISE_OPTIMIZERS if hasattr(optax, n))
    both = _compiled(lambda: {n: _optimizer_both_ways(n) for n in names})()
    for name, (got, want) in both.items():
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7, err_msg=name)


def test_supports_refuses_what_it_cannot_run():
    spec = Spec.from_dict({"task": {"name": "xor"}})
    xor = TASKS["xor"]()
    assert lanes.supports(spec, None, xor) is None
    user = from_spec(spec.model, 2, 1)
    assert "user model" in lanes.supports(spec, Model(user.init, user.apply), xor)
    for name in ("lamb", "lars", "fromage", "novograd"):
        coupled = Spec.from_dict({"task": {"name": "xor"}, "optimizer": {"name": name}})
        assert name in lanes.supports(coupled, None, xor)
        with pytest.raises(ValueError, match=name):
            lanes.make_batched_run(coupled, xor)
    other = Spec.from_dict({"task": {"name": "xor"}, "model": {"name": "relu_student"}})
    assert "relu_student" in lanes.supports(other, None, xor)
    population = TASKS["teacher_student"](in_dim=4, teacher_widths=[2], population=True)
    assert "objective" in lanes.supports(spec, None, population)


def test_prefer_lanes_for_tiny_nets_only():
    tiny = Spec.from_dict({"task": {"name": "xor"}, "model": {"widths": [2]}})
    assert lanes.prefer_lanes(tiny, TASKS["xor"]()) == (jax.default_backend() == "cpu")
    params = {"in_dim": 16, "teacher_widths": [32], "n_train": 1024}
    medium = Spec.from_dict(
        {
            "task": {"name": "teacher_student", **params},
            "model": {"widths": [64, 64]},
            "train": {"batch_size": 256},
        }
    )
    assert not lanes.prefer_lanes(medium, TASKS["teacher_student"](**params))


def test_lanes_programs_on_the_cpu_take_wide_vectors_and_deep_nets_region_copies():
    """The XLA options of a training program (measured, :data:`lanes.CPU_OPTIONS`): on the
    CPU a lanes program gets 512-bit vectors, and a net with a hidden-to-hidden layer also
    region-based copy insertion; vmap programs and k-means keep XLA's defaults."""
    from jaxinit.engine.executors import compiler_options

    one = Spec.from_dict({"task": {"name": "xor"}, "model": {"widths": [2]}})
    deep = Spec.from_dict({"task": {"name": "xor"}, "model": {"widths": [8, 8]}})
    kmeans = Spec.from_dict({"task": {"name": "blobs"}, "algorithm": {"name": "kmeans"}})
    cpu = jax.default_backend() == "cpu"
    assert compiler_options("lanes", one) == (lanes.CPU_OPTIONS if cpu else {})
    both = {**lanes.CPU_OPTIONS, **lanes.DEEP_CPU_OPTIONS}
    assert compiler_options("lanes", deep) == (both if cpu else {})
    assert compiler_options("vmap", deep) == {} and compiler_options("lanes", kmeans) == {}


def test_nets_with_a_hidden_to_hidden_layer_train_in_smaller_blocks():
    """The block rule (:func:`lanes.lanes_per_block`, measured): XOR 2-2-1 (step cost 24) in
    the small nets' budget, 2-16-1 (192) in the larger one, 2-32-32-1 (4,480) in half of it."""
    xor = TASKS["xor"]()

    def block(widths: list[int]) -> int:
        spec = Spec.from_dict({"task": {"name": "xor"}, "model": {"widths": widths}})
        return lanes.lanes_per_block(spec, xor)

    assert (block([2]), block([16]), block([32, 32])) == (4096, 2048, 64)


def test_a_run_does_not_depend_on_its_block_under_the_cpu_options():
    """A 2-4-4-1 run trains bit-identically in blocks of 8 and of 2 lanes, each program
    compiled with the options the engine gives it (:func:`lanes.compiler_options`)."""
    spec = Spec.from_dict(
        {"task": {"name": "xor"}, "model": {"widths": [4, 4]}, "train": {"steps": 30}}
    )
    task = TASKS["xor"]()
    values, data = {"seed": jnp.arange(8, dtype=jnp.int32)}, Data.from_task(task)
    options = lanes.compiler_options(spec)
    got = [
        jax.jit(lanes.make_batched_run(spec, task, per_block=b), compiler_options=options or None)(
            values, data
        )
        for b in (8, 2)
    ]
    for x, y in zip(*(jax.tree.leaves(jax.device_get(g)) for g in got)):
        np.testing.assert_array_equal(x, y)


def test_options_this_xla_does_not_know_are_left_out():
    """A JAX whose XLA lacks an option compiles lanes programs with none (not an error)."""
    assert not lanes._accepted((("xla_cpu_no_such_option", True),))
    if jax.default_backend() == "cpu":
        assert lanes._accepted(tuple(sorted(lanes.CPU_OPTIONS.items())))


def test_first_step_keeps_the_books_of_a_block_of_steps():
    """Per block, the first step whose flag is set, unless the run already has one."""
    hit = jnp.array([[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], bool)  # (T=3 steps, C=4 runs)
    steps = jnp.array([30, 31, 32], jnp.int32)
    before = jnp.array([-1, -1, 7, -1], jnp.int32)
    got = lanes.first_step(hit, steps, before)
    np.testing.assert_array_equal(got, [-1, 30, 7, 32])


def test_lanes_sweeps_come_in_chunks_of_one_block():
    """By default a lanes sweep is cut into chunks of one lane block (so that every CPU device
    gets chunks); the vmap layout's follow the work of a run (tests/test_executors.py)."""
    spec = {"task": {"name": "xor"}, "model": {"widths": [2]}, "axes": {"seed": 65536}}
    lanes_prep = jaxinit.prepare(spec)
    group = lanes_prep.plan.group(0)
    block = lanes.lanes_per_block(group.spec, TASKS["xor"]())
    assert lanes_prep.plan.chunk_size == max(block, lanes.CHUNK_RUNS) < 65536
    vmap = jaxinit.prepare(spec, train__layout="vmap")
    want = default_chunk_runs(vmap.plan.group(0).spec, TASKS["xor"](), None, "vmap")
    assert vmap.plan.chunk_size == want < 65536
    assert jaxinit.prepare(spec, chunk_size=65536).plan.chunk_size == 65536  # asked for


def test_the_readme_float32_bound_holds_where_it_is_tightest():
    """The docs (docs/speed.md) state how closely the layouts agree, as measured by
    ``benchmarks/layout_agreement.py`` over the bundled specs. Its tightest stable case,
    ``init_scale``'s tanh 8-8-8 net at init scale 10 (saturated units; 2 seeds, 100 steps),
    run in both layouts, is within the stated float32 bound, and beyond the ~1e-6 the README
    promised before (the amplified rounding is real, not a layout defect to hide)."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "speed.md").read_text()
    found = re.search(r"agree to within ([0-9.e+-]+) relative in float32", text)
    assert found, "docs/speed.md states no float32 bound for lanes vs vmap"
    bound = float(found.group(1))
    over = {"axes__model.activation": ["tanh"], "axes__model.widths": [[8, 8, 8]],
            "axes__init.scale": [10.0], "axes__seed": 2, "train__steps": 100,
            "train__log_every": 50, "train__diagnostics": []}  # fmt: skip
    over = {k.replace(".", "__"): v for k, v in over.items()}
    a, b = (
        jaxinit.run("init_scale", progress=False, train__layout=layout, **over).final_loss.values
        for layout in ("vmap", "lanes")
    )
    rel = np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))
    assert 1e-6 < rel.max() <= bound, (rel, bound)


def test_lanes_train_supplies_the_vmap_primitives_run_by_run():
    """One gradient program for both layouts (issue 20): :data:`lanes.LANES_TRAIN` supplies the
    primitives of :data:`jaxinit.engine.train.VMAP_TRAIN` for a block of runs with the run axis
    last. Run by run: the same keys, optimizer states and minibatches (bit for bit), and the
    same losses, gradients and evaluations to rounding."""
    from jaxinit.engine import train
    from jaxinit.engine.executors import build_task

    spec = Spec.from_dict({"task": {"name": "circles", "n_points": 24}, "model": {"widths": [3]}})
    spec = spec.with_overrides({"optimizer.name": "adam", "train.batch_size": 8})
    task = build_task(spec)
    data = Data.from_task(task)
    values = {
        "seed": jnp.arange(4, dtype=jnp.int32),
        "optimizer.learning_rate": jnp.array([0.01, 0.05, 0.1, 0.2], jnp.float32),
    }
    params0 = jax.vmap(train.make_init(spec, task), in_axes=(0, None))(values, data)
    t = jnp.int32(3)  # the first step of epoch 1 (3 minibatches an epoch)

    def lanes_side(values, params0):
        p0 = lanes.to_lanes(params0)
        model = from_spec(spec.model, task.in_dim, task.out_dim)
        ctx = train.context(spec, task, model, values, p0, None, lanes.LANES_TRAIN)
        ops = ctx.layout
        _, x, _ = ops.batch(ctx, data, None, t)
        loss, grads = ops.value_and_grad(ctx, p0, data.x_train, data.y_train, None)
        test = ops.evaluate(ctx, p0, data.x_test, data.y_test)
        keys = jax.random.key_data(ctx.key_data)
        return keys, lanes.from_lanes((ops.opt_init(ctx, p0), x, grads, test)), loss

    def vmap_side(v, p0):
        ctx = train.context(spec, task, None, v, p0)
        ops = ctx.layout
        _, x, _ = ops.batch(ctx, data, train.init_state(ctx, p0, data), t)
        loss, grads = ops.value_and_grad(ctx, p0, data.x_train, data.y_train, None)
        test = ops.evaluate(ctx, p0, data.x_test, data.y_test)
        keys = jax.random.key_data(ctx.key_data)
        return keys, (ops.opt_init(ctx, p0), x, grads, test), loss

    assert train.context(spec, task, None, {"seed": jnp.int32(0)}, params0).layout is (
        train.VMAP_TRAIN
    )
    got = jax.jit(lanes_side)(values, params0)
    want = jax.jit(jax.vmap(vmap_side))(values, params0)
    np.testing.assert_array_equal(got[0], want[0])  # the data-order keys
    opt_l, x_l, grads_l, test_l = got[1]
    opt_v, x_v, grads_v, test_v = want[1]
    for a, b in zip(jax.tree.leaves(opt_l), jax.tree.leaves(opt_v)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x_l, x_v)  # epoch 1's first minibatch of every run
    assert not np.array_equal(x_v[0], x_v[1])  # runs draw their own minibatches
    np.testing.assert_allclose(got[2], want[2], rtol=1e-6)
    for a, b in zip(jax.tree.leaves((grads_l, test_l)), jax.tree.leaves((grads_v, test_v))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
