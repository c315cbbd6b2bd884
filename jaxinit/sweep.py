"""Run a sweep: plan → one compiled, vmapped program per static group → chunks → store.

Chunks have one fixed shape ``C`` (the last is padded with copies of a real run, whose results
are dropped), so a run's numbers do not depend on which chunk, shard, device or resume computed
it. With ``D`` devices, ``D`` chunks run at once as a ``(D, C)`` batch split over the devices,
so each device still sees shape ``C``.

>>> import jaxinit
>>> ds = jaxinit.run({"task": {"name": "xor"}, "train": {"steps": 100}, "axes": {"seed": 4}},
...                  progress=False)
>>> ds.final_loss.dims
('seed',)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxinit.models import Model, from_spec
from jaxinit.plan import Group, Plan, chunk_id, make_plan
from jaxinit.spec import Spec, SpecError
from jaxinit.store import SweepDir
from jaxinit.tasks import TASKS, Task
from jaxinit.train import Data, make_run

__all__ = ["run", "resolve_spec", "build_task", "compile_group", "parse_shard"]


def resolve_spec(
    spec: Spec | Mapping | str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> Spec:
    """A validated :class:`Spec` from a Spec, a dict, a TOML path or a bundled spec name."""
    if isinstance(spec, (str, os.PathLike)):
        from jaxinit.bundled import find_spec

        spec = Spec.from_toml(find_spec(spec))
    elif not isinstance(spec, Spec):
        spec = Spec.from_dict(spec)
    return spec.with_overrides(overrides) if overrides else spec


def build_task(spec: Spec) -> Task:
    return TASKS[spec.task.name](**spec.task.params)


def _bytes_per_run(spec: Spec, task: Task, model: Model | None) -> int:
    """Rough memory of one run in a chunk: parameters (×6 for optimizer state, gradients and saved
    copies), activations on the training set, and the logged curves."""
    mdl = model or from_spec(spec.model, task.in_dim, task.out_dim)
    shapes = jax.eval_shape(lambda k: mdl.init(k, spec.init), jax.random.key(0))
    n_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    batch = spec.train.batch_size or len(task.x_train)
    acts = batch * (sum(spec.model.widths) + task.in_dim + task.out_dim) * 4
    curves = (spec.train.steps // spec.train.log_every + 1) * (2 + 4 * len(spec.train.diagnostics))
    return 4 * (6 * n_params + acts + curves) + 256


_COMPILED: dict[tuple, Any] = {}  # compile_group's cache, oldest first
_COMPILED_MAX = 8


def compile_group(group: Group, task: Task, model: Model | None, mesh: Mesh):
    """``jit(vmap(vmap(run)))`` over a ``(devices, C)`` batch of runs, sharded on the first axis.

    Cached per process on everything the program depends on (the group's spec, the model, the
    mesh and the task's non-array fields; the data is an argument), so running the same static
    configuration again, e.g. a notebook cell re-run, reuses the compiled program.
    """
    key = (group.spec.fingerprint(), model, mesh, *task[4:], task.in_dim, task.out_dim)
    try:
        fn = _COMPILED.pop(key, None)
    except TypeError:  # an unhashable user model: no caching
        key, fn = None, None
    if fn is None:
        one = make_run(group.spec, task, model)
        batched = jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(0, None))
        runs = NamedSharding(mesh, PartitionSpec("devices"))
        fn = jax.jit(batched, in_shardings=(runs, NamedSharding(mesh, PartitionSpec())))
    if key is not None:
        _COMPILED[key] = fn
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
    return fn


def _chunk_values(
    group: Group, chunk: int, size: int, dtype: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Traced inputs of one chunk, padded to ``size`` runs, and the run ids it really holds."""
    lo = chunk * size
    ids = group.run_ids[lo : lo + size]
    pad = np.concatenate(
        [np.arange(lo, lo + len(ids)), np.full(size - len(ids), lo + len(ids) - 1)]
    )
    values = {}
    for path, v in group.values.items():
        v = v[pad]
        values[path] = v.astype(np.int32) if path == "seed" else v.astype(dtype)
    return values, ids


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        prefix + jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
        for p, x in leaves
    }


def _chunk_arrays(out: dict[str, Any], k: int, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Slot ``k`` of a ``(D, C, ...)`` output, its padding dropped, as flat ``name -> array``."""
    n = len(ids)
    arrays = {"run_id": ids}
    for section, tree in out.items():
        arrays.update(_flatten(jax.tree.map(lambda x: x[k, :n], tree), section + "/"))
    return arrays


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; ``None`` -> ``(0, 1)``."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise SpecError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise SpecError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def _dispatch(
    plan: Plan, todo: list[tuple[Group, int]], model: Model | None, dtype: str
) -> Iterator:
    """Yield ``(chunk id, arrays)`` for every chunk in ``todo``, ``D`` chunks per device call.

    The next call is dispatched before the previous one's results are fetched, so the host's
    writing overlaps the devices' training.
    """
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("devices",))
    n_dev = len(devices)
    pending = None
    for group in plan.groups:
        mine = [c for g, c in todo if g.index == group.index]
        if not mine:
            continue
        task = build_task(group.spec)
        data = jax.device_put(Data.from_task(task, dtype), NamedSharding(mesh, PartitionSpec()))
        fn = compile_group(group, task, model, mesh)
        for start in range(0, len(mine), n_dev):
            batch = mine[start : start + n_dev]
            slots = [_chunk_values(group, c, plan.chunk_size, dtype) for c in batch]
            slots += [slots[-1]] * (n_dev - len(slots))  # idle devices repeat the last chunk
            values = {p: np.stack([s[0][p] for s in slots]) for p in slots[0][0]}
            out = fn(values, data)
            if pending is not None:
                yield from _fetch(*pending)
            pending = (out, group, batch, slots)
    if pending is not None:
        yield from _fetch(*pending)


def _fetch(out, group: Group, batch: list[int], slots) -> Iterator:
    out = jax.device_get(out)
    for k, c in enumerate(batch):
        yield chunk_id(group, c), _chunk_arrays(out, k, slots[k][1])


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", unit_scale=True, smoothing=0.1, desc="runs")


def run(
    spec: Spec | Mapping | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    chunk_size: int | None = None,
    shard: str | tuple[int, int] | None = None,
    model: Model | None = None,
    progress: bool = True,
    **overrides: Any,
):
    """Run (or resume) a sweep and return its results as an ``xarray.Dataset``.

    Args:
      spec: a :class:`Spec`, a dict in the TOML layout, a path to a TOML file or a bundled name.
      out: sweep directory; ``None`` keeps everything in memory. Re-running the same spec into the
        same directory resumes; a different spec is refused.
      chunk_size: runs per compiled call (default: from a fixed memory budget).
      shard: ``"i/n"`` runs only chunks ``k`` with ``k % n == i`` (for several processes).
      model: a user ``Model(init, apply)`` replacing the spec's model.
      **overrides: ``field__path=value`` overrides, e.g. ``train__steps=200`` (``__`` for ``.``).
    """
    spec = resolve_spec(spec, {k.replace("__", "."): v for k, v in overrides.items()})
    _set_precision(spec.train.dtype)
    task0 = build_task(spec)
    plan = make_plan(spec, chunk_size, _bytes_per_run(spec, task0, model))
    i, n = shard if isinstance(shard, tuple) else parse_shard(shard)
    if out is None:
        chunks = {}
        for cid, arrays in _run_chunks(plan, plan.chunks(), model, progress):
            chunks[cid] = arrays
        from jaxinit.results import assemble

        return assemble(plan, list(chunks.values()), partial=False)
    with SweepDir(out, spec, plan.chunk_size, (i, n)).open(chunk_size is not None) as store:
        if store.chunk_size != plan.chunk_size:
            plan = plan._replace(chunk_size=store.chunk_size)
        done, problems = store.verified_done()
        for msg in problems:
            warnings.warn(msg, stacklevel=2)
        todo = [
            (g, c)
            for k, (g, c) in enumerate(plan.chunks())
            if k % n == i and chunk_id(g, c) not in done
        ]
        for cid, arrays in _run_chunks(plan, todo, model, progress):
            store.write_chunk(cid, arrays)
    from jaxinit.results import load

    return load(out)


def _run_chunks(plan: Plan, todo, model: Model | None, progress: bool) -> Iterator:
    total = sum(min(plan.chunk_size, len(g.run_ids) - c * plan.chunk_size) for g, c in todo)
    with _progress(total, progress) as bar:
        for cid, arrays in _dispatch(plan, todo, model, plan.spec.train.dtype):
            yield cid, arrays
            if bar is not None:
                bar.update(len(arrays["run_id"]))


def _set_precision(dtype: str) -> None:
    """float64 needs JAX's x64 mode, switched on at the edge before anything is traced."""
    if dtype == "float64" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
