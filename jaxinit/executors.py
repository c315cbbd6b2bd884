"""Executors: how the runs of a chunk are laid out on the hardware. The one place that decides.

A training run is a pure function of its traced values (:func:`jaxinit.train.make_run`). An
executor turns it into a compiled program over a ``(devices, C)`` batch of runs — the run-axis
**layout** (``vmap``: ``jit(vmap(vmap(run)))``, run axis first; ``lanes``: the run axis on the
SIMD lanes, :mod:`jaxinit.lanes`), the **device mesh** (the first axis is split over devices, so
each device sees shape ``C``) — and hands back run-major NumPy arrays, ``name -> (n, ...)``, so
the store, results and analysis never know which layout ran.

Chunks have one fixed shape ``C`` (the last is padded with copies of its last real run, whose
results are dropped), so a run's numbers do not depend on which chunk, shard, device or resume
computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxinit import compile_cache
from jaxinit.models import Model
from jaxinit.plan import Group, Plan, chunk_id
from jaxinit.spec import Spec
from jaxinit.tasks import TASKS, Task
from jaxinit.train import Data, make_run

__all__ = ["Executor", "build_task", "choose_layout"]

Batched = Callable[[dict, Data], dict]


def build_task(spec: Spec) -> Task:
    return TASKS[spec.task.name](**spec.task.params)


def choose_layout(spec: Spec, task: Task, model: Model | None) -> tuple[str, str]:
    """``(layout, why)`` for one static group: ``train.layout`` if it can run, else ``vmap``;
    ``auto`` takes lanes where :func:`jaxinit.lanes.prefer_lanes` expects them to be faster."""
    from jaxinit import lanes

    if spec.algorithm.name != "gradient":  # k-means, EM (jaxinit.algorithms): vmap only
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


def _batched(layout: str, spec: Spec, task: Task, model: Model | None) -> Batched:
    """One chunk's program, ``values: {path: (C,)} -> outputs (C, ...)``, in ``layout``."""
    if spec.algorithm.name != "gradient":
        from jaxinit import algorithms

        return jax.vmap(algorithms.make_run(spec, task), in_axes=(0, None))
    if layout == "lanes":
        from jaxinit import lanes

        return lanes.make_batched_run(spec, task)
    return jax.vmap(make_run(spec, task, model), in_axes=(0, None))


class Executor:
    """Compiles each static group once (cached per process) and streams chunk results.

    ``devices`` defaults to ``jax.local_devices()`` (this process's, in a multi-process job);
    ``D`` chunks run at once as a ``(D, C)`` batch split over them. Compiled programs are
    cached on everything they depend on (the group's spec, the model, the layout, the mesh and
    the task's non-array fields; the data is an argument), so re-running a static
    configuration, e.g. a notebook cell, reuses them.
    """

    _cache: dict[tuple, Any] = {}  # shared by executors of one process, oldest first
    _cache_max = 8

    def __init__(self, devices: list | None = None):
        compile_cache.enable()
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.mesh = Mesh(np.array(self.devices), ("devices",))
        self.layouts: dict[int, tuple[str, str]] = {}  # group index -> (layout, why)

    def compile(self, group: Group, task: Task, model: Model | None) -> Batched:
        layout, why = choose_layout(group.spec, task, model)
        self.layouts[group.index] = (layout, why)
        key = (group.spec.to_json(), model, layout, self.mesh, *task[4:], task.in_dim)
        try:
            fn = self._cache.pop(key, None)
        except TypeError:  # an unhashable user model: no caching
            key, fn = None, None
        if fn is None:
            batched = jax.vmap(_batched(layout, group.spec, task, model), in_axes=(0, None))
            runs = NamedSharding(self.mesh, PartitionSpec("devices"))
            fn = jax.jit(batched, in_shardings=(runs, NamedSharding(self.mesh, PartitionSpec())))
        if key is not None:
            self._cache[key] = fn
            while len(self._cache) > self._cache_max:
                self._cache.pop(next(iter(self._cache)))
        return fn

    def data(self, task: Task, dtype: str) -> Data:
        return jax.device_put(
            Data.from_task(task, dtype), NamedSharding(self.mesh, PartitionSpec())
        )

    def run(
        self, plan: Plan, todo: list[tuple[Group, int]], model: Model | None
    ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """Yield ``(chunk id, arrays)`` for every chunk in ``todo``, ``D`` chunks per call.

        The next call is dispatched before the previous one's results are fetched, so the
        host's writing overlaps the devices' training.
        """
        dtype, n_dev = plan.spec.train.dtype, len(self.devices)
        by_group: dict[int, list[int]] = {}
        groups: dict[int, Group] = {}
        for g, c in todo:
            by_group.setdefault(g.index, []).append(c)
            groups[g.index] = g
        pending = None
        for gi, mine in by_group.items():
            group = groups[gi]
            task = build_task(group.spec)
            data, fn = self.data(task, dtype), self.compile(group, task, model)
            for start in range(0, len(mine), n_dev):
                batch = mine[start : start + n_dev]
                slots = [chunk_values(group, c, dtype) for c in batch]
                slots += [slots[-1]] * (n_dev - len(slots))  # idle devices repeat the last chunk
                values = {p: np.stack([s[0][p] for s in slots]) for p in slots[0][0]}
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
        yield chunk_id(group, c), chunk_arrays(out, k, slots[k][1])


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        prefix + jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
        for p, x in leaves
    }


def chunk_arrays(out: dict[str, Any], k: int, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Slot ``k`` of a ``(D, C, ...)`` output, its padding dropped, as flat ``name -> array``."""
    n = len(ids)
    arrays = {"run_id": ids}
    for section, tree in out.items():
        arrays.update(_flatten(jax.tree.map(lambda x: x[k, :n], tree), section + "/"))
    return arrays


def member_layout(group: Group, task: Task, model: Model | None) -> dict[str, tuple]:
    """``name -> (trailing shape, dtype name)`` of every array a chunk of ``group`` stores, from
    the abstract output of its program (traced, not computed)."""
    layout, _ = choose_layout(group.spec, task, model)
    values, _ = chunk_values(group, 0, group.spec.train.dtype)
    shaped = {p: jax.ShapeDtypeStruct(v.shape, v.dtype) for p, v in values.items()}
    data = Data.from_task(task, group.spec.train.dtype)
    out = jax.eval_shape(_batched(layout, group.spec, task, model), shaped, data)
    flat = {}
    for section, tree in out.items():
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = section + "/" + jax.tree_util.keystr(p, simple=True, separator="/")
            flat[name] = (tuple(x.shape[1:]), np.dtype(x.dtype).name)
    return flat
