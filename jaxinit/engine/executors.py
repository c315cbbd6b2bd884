"""Executors: how the runs of a chunk are laid out on the hardware. The one place that decides.

A training run is a pure function of its traced values (:func:`jaxinit.engine.train.make_run`): an
init, ``params0 = init(values)``, then training from ``params0``. An executor compiles the two
apart (a sweep over init schemes then compiles one training program) into programs over a
``(D·C)`` batch of runs — the run-axis **layout** of training (``vmap``: ``vmap(train)``, run
axis first; ``lanes``: the run axis on the SIMD lanes, :mod:`jaxinit.engine.lanes`), the **device
mesh** (``shard_map``: each of the ``D`` devices runs the ``C``-run program on its own chunk) —
and hands back run-major NumPy arrays, ``name -> (n, ...)``, so the store, results and
analysis never know which layout ran.

Chunks have one fixed shape ``C`` (the last is padded with copies of its last real run, whose
results are dropped), so a run's numbers do not depend on which chunk, shard, device or resume
computed it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxinit.blocks.models import Model
from jaxinit.blocks.tasks import TASKS, Task
from jaxinit.config.spec import InitSpec, Spec
from jaxinit.engine import compile_cache
from jaxinit.engine.plan import Group, Plan, chunk_id
from jaxinit.engine.train import Data, make_init, make_train

__all__ = [
    "Executor",
    "build_task",
    "choose_layout",
    "chunk_init",
    "chunk_train",
    "compiler_options",
    "default_chunk_runs",
    "program_spec",
]

Batched = Callable[[dict, Data], dict]


def build_task(spec: Spec) -> Task:
    return TASKS[spec.task.name](**spec.task.params)


def choose_layout(spec: Spec, task: Task, model: Model | None) -> tuple[str, str]:
    """``(layout, why)`` for one static group: ``train.layout`` if it can run, else ``vmap``;
    ``auto`` takes lanes where :func:`jaxinit.engine.lanes.prefer_lanes` expects them to be faster."""
    from jaxinit.engine import lanes

    if spec.algorithm.name != "gradient":  # k-means, EM (jaxinit.engine.algorithms): vmap only
        return "vmap", f"algorithm {spec.algorithm.name} runs vmapped"
    wanted = spec.train.layout
    if wanted == "vmap":
        return "vmap", f"train.layout = {wanted}"
    reason = lanes.supports(spec, model, task)
    if reason is not None:
        return "vmap", f"lanes cannot run this configuration ({reason})"
    if wanted == "lanes":
        return "lanes", "train.layout = lanes"
    if lanes.prefer_lanes(spec, task):
        return "lanes", f"auto: lanes are faster for a step cost of {lanes.step_cost(spec, task)}"
    return "vmap", "auto: the vmap layout is faster for these widths"


VMAP_CHUNK_WORK = 2**27
"""Multiply-adds of the forward passes of a default ``vmap`` chunk's training, ``runs · steps
· step_cost``: at least this much, so that the per-chunk work of the executor and the store
stays small beside the training (see :func:`default_chunk_runs`)."""

VMAP_CHUNK_MIN = 32
"""Fewest runs in a default ``vmap`` chunk of a built-in MLP on a CPU."""


def default_chunk_runs(spec: Spec, task: Task, model: Model | None, layout: str) -> int | None:
    """Default runs per chunk of a group trained in ``layout``, or ``None``: as many as fit in
    ``plan.CHUNK_BYTES``.

    ``lanes``: one lane block (:func:`jaxinit.engine.lanes.chunk_runs`). ``vmap``, a built-in
    MLP on a CPU: the smallest power of two of at least :data:`VMAP_CHUNK_MIN` runs whose
    training is :data:`VMAP_CHUNK_WORK` forward multiply-adds
    (:func:`jaxinit.engine.lanes.step_cost` × steps). A medium net's sweep is then several
    chunks, which the executor trains side by side, one per CPU device
    (:mod:`jaxinit.engine.devices`): one chunk of 256 medium runs trained on one core, since
    XLA splits no batched matmul of that size over cores. Smaller chunks also keep a chunk's
    activations in cache (benchmarks/README.md, issue 21). Like the lanes rule it depends only on
    the spec and the task, never on the machine, so every machine, shard and resume plans the
    same chunk shape (the numbers depend on it at the last bit: benchmarks/layout_agreement.py).
    Elsewhere (a user's model, k-means and EM, another backend) it leaves the size to memory.
    """
    from jaxinit.engine import lanes

    if layout == "lanes":
        return lanes.chunk_runs(spec, task)
    if model is not None or spec.algorithm.name != "gradient" or spec.model.name != "mlp":
        return None
    if jax.default_backend() != "cpu":
        return None
    work = max(1, lanes.step_cost(spec, task) * spec.train.steps)
    runs = max(VMAP_CHUNK_MIN, -(-VMAP_CHUNK_WORK // work))
    return 1 << (runs - 1).bit_length()


def program_spec(spec: Spec, *, init: bool = False) -> Spec:
    """The part of a group's ``spec`` its programs read; the rest reset to defaults, so that
    the programs' caches see through it.

    Programs never read a sweep's name, description, axes (the traced paths arrive as the keys
    of ``values``), figures, basin or landscape settings. With ``init=False``, the training program's key,
    the fields only the initialization reads are reset too: a sweep over init schemes (or
    k-means inits) compiles one training program and one small init program per scheme.
    """
    default = Spec()
    spec = dataclasses.replace(
        spec, name=default.name, description="", axes=default.axes, report=(), basins=default.basins,
        landscape=default.landscape,
    )  # fmt: skip
    if init:
        return spec
    if spec.algorithm.name != "gradient":
        own = {k: v for k, v in spec.algorithm.params.items() if k != "init"}
        reset = dataclasses.replace(spec.algorithm, params=own)
        return dataclasses.replace(spec, algorithm=reset)
    return dataclasses.replace(spec, init=InitSpec())


_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
"""Compiled programs of this process, least recently used first (see :func:`_cached`)."""
_PROGRAMS_MAX = 128


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    """``build()``, kept under ``key`` so that a static configuration seen again (a notebook
    cell re-run, another group with the same training program) reuses its traced and compiled
    program. An unhashable key (a user model that is not hashable) is never cached."""
    try:
        fn = _PROGRAMS.pop(key, None)
    except TypeError:
        return build()
    fn = build() if fn is None else fn
    _PROGRAMS[key] = fn
    while len(_PROGRAMS) > _PROGRAMS_MAX:
        _PROGRAMS.popitem(last=False)
    return fn


def _task_key(task: Task) -> tuple:
    """The task's non-array fields (its arrays are arguments) and JAX's x64 mode, under which
    the program is built (:func:`jaxinit.engine.train.precision`): one built in the other mode is
    never reused."""
    return (*task[4:], task.in_dim, bool(jax.config.jax_enable_x64))


def chunk_init(spec: Spec, task: Task, model: Model | None) -> Callable[[dict, Data], Any]:
    """``init(values, data) -> params0``: the initial state of ``C`` runs, run axis first, the
    same for every layout (so both layouts start from bit-identical parameters)."""

    def build():
        if spec.algorithm.name != "gradient":
            from jaxinit.engine import algorithms

            return jax.jit(jax.vmap(algorithms.make_init(spec, task), in_axes=(0, None)))
        return jax.jit(jax.vmap(make_init(spec, task, model), in_axes=(0, None)))

    return _cached(("init", program_spec(spec, init=True).to_json(), model, _task_key(task)), build)


def chunk_train(
    layout: str, spec: Spec, task: Task, model: Model | None, *, nested: bool = False
) -> Callable[[dict, Any, Data], dict]:
    """``train(values, params0, data) -> outputs (C, ...)``: ``C`` runs in ``layout``, compiled
    with the layout's XLA options (:func:`compiler_options`). ``nested=True``: the same
    program without them, to be called inside another program (:meth:`Executor._on_devices`),
    which takes the options itself (JAX accepts them only on the outermost ``jit``)."""

    def build():
        if spec.algorithm.name != "gradient":
            from jaxinit.engine import algorithms

            return jax.jit(jax.vmap(algorithms.make_train(spec, task), in_axes=(0, 0, None)))
        if layout == "lanes":
            from jaxinit.engine import lanes

            return jax.jit(lanes.make_batched_train(spec, task))
        return jax.jit(jax.vmap(make_train(spec, task, model), in_axes=(0, 0, None)))

    key = ("train", program_spec(spec).to_json(), model, layout, _task_key(task))
    body = _cached(key, build)
    options = compiler_options(layout, spec)
    if nested or not options:
        return body
    return _cached(("top", body), lambda: jax.jit(body, compiler_options=options))


def compiler_options(layout: str, spec: Spec) -> dict[str, Any]:
    """The XLA options a training program of ``layout`` is compiled with: the lanes layout's
    (:func:`jaxinit.engine.lanes.compiler_options`) for built-in gradient training, none
    otherwise. They change rounding, so they are part of ``software.layout_rule``."""
    if layout != "lanes" or spec.algorithm.name != "gradient":
        return {}
    from jaxinit.engine import lanes

    return lanes.compiler_options(spec)


class Executor:
    """Compiles each static group once (cached per process) and streams chunk results.

    ``devices`` defaults to ``jax.local_devices()`` (this process's, in a multi-process job);
    ``D`` chunks run at once as one ``(D·C)`` batch, each device running the ``C``-run program
    on its own chunk (``shard_map``), so a run's numbers do not depend on ``D``; a group with
    fewer chunks than devices runs them one by one on the first device (:meth:`width`; on a CPU,
    :mod:`jaxinit.engine.devices` gives one device per core). A chunk is two
    calls: the init program (:func:`chunk_init`, one per group) and the training program
    (:func:`chunk_train`), which groups that differ only in their init share. Programs are
    cached on everything they depend on (the spec, the model, the layout, the mesh and the
    task's non-array fields; the data is an argument), so re-running a static configuration,
    e.g. a notebook cell, reuses them.
    """

    def __init__(self, devices: list | None = None):
        compile_cache.enable()
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.layouts: dict[int, tuple[str, str]] = {}  # group index -> (layout, why)

    def _on_devices(
        self, fn: Callable, n_args: int, width: int, options: dict[str, Any] | None = None
    ) -> Callable:
        """``fn`` over ``(C, ...)`` runs as a program over ``(D·C, ...)``, one chunk on each of
        the first ``D = width`` devices, compiled with the XLA ``options``; its last argument
        (the data) is replicated. Each device runs the same ``C``-run program, so a run's
        numbers do not depend on ``D``. Cached with ``fn`` (itself cached by
        :func:`chunk_init` / :func:`chunk_train`)."""
        runs, every = PartitionSpec("devices"), PartitionSpec()
        mesh = self._mesh(width)

        def build():
            specs = (runs,) * (n_args - 1) + (every,)
            mapped = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=runs, check_vma=False)
            return jax.jit(mapped, compiler_options=options or None)

        return _cached(("on devices", fn, mesh), build)

    def width(self, chunks: int) -> int:
        """How many devices train a group that has ``chunks`` chunks to do: all of them, or one
        when there are fewer chunks than devices (the others would only repeat its chunks)."""
        return len(self.devices) if chunks >= len(self.devices) else 1

    def compile(self, group: Group, task: Task, model: Model | None, width: int = 1) -> Batched:
        """The program of ``width`` chunks of ``group``: ``values {path: (width·C,)}, data ->
        outputs``, one chunk per device."""
        layout, why = choose_layout(group.spec, task, model)
        self.layouts[group.index] = (layout, why)
        if width == 1:  # the chunk programs themselves: their traces are prepare()'s too
            init = chunk_init(group.spec, task, model)
            train = chunk_train(layout, group.spec, task, model)
        else:
            init = self._on_devices(chunk_init(group.spec, task, model), 2, width)
            body = chunk_train(layout, group.spec, task, model, nested=True)
            options = compiler_options(layout, group.spec)
            train = self._on_devices(body, 3, width, options)
        return lambda values, data: train(values, init(values, data), data)

    def data(self, task: Task, dtype: str, width: int = 1) -> Data:
        """The task's arrays on the first ``width`` devices (on one: placed plainly, the way
        :func:`member_layout` traces them, so the executor reuses that trace)."""
        if width == 1:
            return jax.device_put(Data.from_task(task, dtype), self.devices[0])
        sharding = NamedSharding(self._mesh(width), PartitionSpec())
        return jax.device_put(Data.from_task(task, dtype), sharding)

    def _mesh(self, width: int) -> Mesh:
        """The first ``width`` devices as a one-axis mesh."""
        return Mesh(np.array(self.devices[:width]), ("devices",))

    def run(
        self, plan: Plan, todo: list[tuple[Group, int]], model: Model | None
    ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """Yield ``(chunk id, arrays)`` for every chunk in ``todo``, ``D`` chunks per call.

        The next call is dispatched before the previous one's results are fetched, so the
        host's writing overlaps the devices' training.
        """
        dtype = plan.spec.train.dtype
        by_group: dict[int, list[int]] = {}
        groups: dict[int, Group] = {}
        for g, c in todo:
            by_group.setdefault(g.index, []).append(c)
            groups[g.index] = g
        pending = None
        for gi, mine in by_group.items():
            group = groups[gi]
            task = build_task(group.spec)
            width = self.width(len(mine))
            data, fn = self.data(task, dtype, width), self.compile(group, task, model, width)
            for start in range(0, len(mine), width):
                batch = mine[start : start + width]
                slots = [chunk_values(group, c, dtype) for c in batch]
                slots += [slots[-1]] * (width - len(slots))  # idle devices repeat the last chunk
                values = {p: np.concatenate([s[0][p] for s in slots]) for p in slots[0][0]}
                out = fn(values, data)
                if pending is not None:
                    yield from _fetch(*pending)
                pending = (out, group, batch, slots)
        if pending is not None:
            yield from _fetch(*pending)


def chunk_values(group: Group, chunk: int, dtype: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Traced inputs of one chunk, padded to the plan's chunk size, and the run ids it holds."""
    size = group.plan.chunk_size
    ids = group.chunk_run_ids(chunk)
    padded = np.concatenate([ids, np.full(size - len(ids), ids[-1])])
    values = {}
    for path, v in group.values_of(padded).items():
        values[path] = v.astype(np.int32) if path == "seed" else v.astype(dtype)
    return values, ids


def _fetch(out, group: Group, batch: list[int], slots) -> Iterator:
    out = jax.device_get(out)
    for k, c in enumerate(batch):
        yield chunk_id(group, c), chunk_arrays(out, k, slots[k][1], group.plan.chunk_size)


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        prefix + jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
        for p, x in leaves
    }


def chunk_arrays(out: dict[str, Any], k: int, ids: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Chunk ``k`` of a ``(D·C, ...)`` output (``C = size``), its padding dropped, as flat
    ``name -> array``."""
    lo = k * size
    arrays = {"run_id": ids}
    for section, tree in out.items():
        arrays.update(_flatten(jax.tree.map(lambda x: x[lo : lo + len(ids)], tree), section + "/"))
    return arrays


def member_layout(group: Group, task: Task, model: Model | None) -> dict[str, tuple]:
    """``name -> (trailing shape, dtype name)`` of every array a chunk of ``group`` stores, from
    the abstract output of its programs (traced, not computed; the executor reuses the traces)."""
    layout, _ = choose_layout(group.spec, task, model)
    values, _ = chunk_values(group, 0, group.spec.train.dtype)
    shaped = {p: jax.ShapeDtypeStruct(v.shape, v.dtype) for p, v in values.items()}
    data = Data.from_task(task, group.spec.train.dtype)
    params0 = jax.eval_shape(chunk_init(group.spec, task, model), shaped, data)
    out = jax.eval_shape(chunk_train(layout, group.spec, task, model), shaped, params0, data)
    flat = {}
    for section, tree in out.items():
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = section + "/" + jax.tree_util.keystr(p, simple=True, separator="/")
            flat[name] = (tuple(x.shape[1:]), np.dtype(x.dtype).name)
    return flat
