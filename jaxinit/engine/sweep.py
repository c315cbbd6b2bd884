"""Run a sweep: spec → plan → one compiled program per static group (an executor) → store.

:func:`run` validates the spec, checks the model against the task before anything compiles,
plans lazily, says how big the sweep is, refuses one that cannot be stored, opens (or resumes)
the sweep directory under the sweep's identity (:mod:`jaxinit.engine.identity`), and streams chunks
from the :class:`~jaxinit.engine.executors.Executor` into the store.

>>> import jaxinit
>>> ds = jaxinit.run({"task": {"name": "xor"}, "train": {"steps": 100}, "axes": {"seed": 4}},
...                  progress=False)
>>> ds.final_loss.dims
('seed',)
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxinit.blocks import user_data
from jaxinit.blocks.models import Model, from_spec
from jaxinit.blocks.tasks import Task
from jaxinit.config.spec import Spec, SpecError
from jaxinit.engine import distributed, probe_spec
from jaxinit.engine.executors import (
    Executor,
    build_task,
    choose_layout,
    default_chunk_runs,
    member_layout,
    program_spec,
)
from jaxinit.engine.identity import record
from jaxinit.engine.plan import CHUNK_BYTES, Plan, make_plan
from jaxinit.engine.store import StoreError, SweepDir, atomic_write, parse_shard
from jaxinit.engine.train import precision
from jaxinit.engine.validation import resolve_spec

__all__ = ["run", "prepare", "Prepared", "resolve_spec", "build_task", "parse_shard"]


class Prepared(NamedTuple):
    """A validated, planned sweep, checked against its model, before anything compiles."""

    spec: Spec
    plan: Plan
    model: Model | None
    record: dict[
        str, Any
    ]  # what spec.json records: spec, model, identity (jaxinit.engine.identity)
    members: dict[str, tuple]  # the first group's stored arrays: name -> (shape, dtype)
    bytes_per_run: int  # stored bytes of one run

    @property
    def stored_bytes(self) -> int:
        return self.plan.n_runs * self.bytes_per_run

    def describe(self) -> str:
        p = self.plan
        if self.spec.is_probe:
            return probe_spec.describe(self.spec)
        return (
            f"{p.n_runs:,} runs = {p.n_groups:,} static group(s){self._programs()} × "
            f"{p.runs_per_group:,} runs, in {p.n_chunks:,} chunks of {p.chunk_size:,}; "
            f"~{_human(self.stored_bytes)} of results"
        )

    def _programs(self) -> str:
        """`` (k training programs)`` when groups share them (they differ only in their init)."""
        if self.plan.n_groups > 4096:  # not worth listing
            return ""
        k = len({program_spec(g.spec).to_json() for g in self.plan.groups})
        return f" ({k:,} training program{'s' if k > 1 else ''})" if k < self.plan.n_groups else ""


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


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


def check_model(spec: Spec, task: Task, model: Model | None) -> None:
    """The model's output shape on the task's inputs, checked abstractly (``jax.eval_shape``)
    before compiling: a wrong shape would broadcast against the targets into a wrong loss."""
    mdl = model if model is not None else from_spec(spec.model, task.in_dim, task.out_dim)
    x = jax.ShapeDtypeStruct(task.x_train.shape, np.dtype(spec.train.dtype))
    what = "the model" if model is None else "the user model"
    try:
        params = jax.eval_shape(lambda k: mdl.init(k, spec.init), jax.random.key(0))
        out = jax.eval_shape(lambda p, x: mdl.apply(p, x), params, x)
    except Exception as e:
        raise SpecError(
            f"{what} fails on the task's inputs {x.shape}: {type(e).__name__}: {e}"
        ) from None
    want = (task.x_train.shape[0], task.out_dim)
    if getattr(out, "shape", None) != want:
        raise SpecError(
            f"{what}'s apply returns shape {getattr(out, 'shape', type(out).__name__)} for "
            f"inputs {x.shape}; task {spec.task.name!r} needs {want} (batch, outputs)"
        )


def prepare(
    spec: Spec | Mapping | str | os.PathLike,
    *,
    model: Model | None = None,
    chunk_size: int | None = None,
    data: Any = None,
    **overrides: Any,
) -> Prepared:
    """Validate, check the model, plan and size a sweep; nothing is compiled or written.

    ``data``: a user's arrays for task ``arrays`` (see :func:`run`)."""
    if data is not None:  # checked and hashed before the spec, whose task reads them by hash
        sha = user_data.register(data)
        spec = user_data.with_data(spec, sha)
    spec = resolve_spec(spec, {k.replace("__", "."): v for k, v in overrides.items()})
    if spec.is_probe:
        return _prepare_probe(spec, model, chunk_size, data)
    if model is not None and spec.algorithm.name != "gradient":
        raise SpecError(f"algorithm {spec.algorithm.name!r} uses no model: drop model=")
    with precision(spec.train.dtype):
        return _prepare(spec, model, chunk_size)


def _prepare(spec: Spec, model: Model | None, chunk_size: int | None) -> Prepared:
    spec = user_data.pin(spec)  # a user's data: every build of the task checks its hash
    first = make_plan(spec, 1).group(0)
    task = build_task(first.spec)
    check_model(first.spec, task, model)
    memory = _bytes_per_run(spec, build_task(spec), model)
    if chunk_size is None:
        layout = choose_layout(first.spec, task, model)[0]
        default = default_chunk_runs(first.spec, task, model, layout)
        chunk_size = None if default is None else min(default, max(1, CHUNK_BYTES // memory))
    plan = make_plan(spec, chunk_size, memory)
    sweep = record(spec, model, task)
    try:
        members = member_layout(plan.group(0), task, model)
    except (ValueError, KeyError, TypeError) as e:  # e.g. a diagnostic the model cannot give
        raise SpecError(f"the sweep's program cannot be built: {type(e).__name__}: {e}") from None
    per_run = 8 + sum(
        math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in members.values()
    )
    return Prepared(spec, plan, model, sweep, members, per_run)


def _prepare_probe(spec: Spec, model: Model | None, chunk_size: Any, data: Any) -> Prepared:
    """A probe sweep (random nets measured at init, :mod:`jaxinit.engine.probes`): its plan,
    record and stored arrays (:mod:`jaxinit.engine.probe_spec`); nothing to check against a
    model or data, and its chunks are fixed by its spec."""
    if model is not None or data is not None:
        what = "model=" if model is not None else "data="
        raise SpecError(f"{what} is for training sweeps; a probe measures random nets at init")
    if chunk_size is not None:
        raise SpecError(probe_spec.CHUNK_SIZE_REFUSED)
    members = probe_spec.probe_members(spec)
    per_run = 8 + sum(
        math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in members.values()
    )
    return Prepared(
        spec, probe_spec.probe_plan(spec), None, probe_spec.probe_record(spec), members, per_run
    )


def _refuse_unstorable(prep: Prepared, out: Path | None) -> None:
    """Refuse, before compiling, a sweep whose results cannot fit where they would go."""
    need = prep.stored_bytes
    if out is None:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        where = "half of this machine's memory (out=None keeps results in memory)"
    else:
        probe = out
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        have, where = shutil.disk_usage(probe).free, f"the free space under {probe}"
    if need > have:
        raise StoreError(
            f"this sweep ({prep.describe()}) needs ~{_human(need)}, more than {where} "
            f"({_human(have)}); shrink its axes, or store fewer curves (train.log_every)"
        )


def _progress(total: int, enabled: bool):
    """A bar over the runs, advanced per finished chunk (tqdm.auto: a widget in a notebook with
    ipywidgets, text in a terminal or a notebook without); None when off or nothing is left."""
    if not enabled or total == 0:
        return contextlib.nullcontext(None)
    with warnings.catch_warnings():
        # Without ipywidgets a notebook gets tqdm's text bar, which works there: no warning
        # (printed into the notebook's output, on its first import) asking to install them.
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    # 1.28k/1.28k, but 3/3 (not 3.00/3.00) for a small sweep
    return tqdm(total=total, unit="run", unit_scale=total >= 1000, smoothing=0.1, desc="runs")


def run(
    spec: Spec | Mapping | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    chunk_size: int | None = None,
    shard: str | tuple[int, int] | None = None,
    model: Model | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    data: Any = None,
    **overrides: Any,
):
    """Run (or resume) a sweep and return its results as an ``xarray.Dataset``.

    Args:
      spec: a :class:`Spec`, a dict in the TOML layout, a path to a TOML file, a bundled name,
        or a :class:`Prepared` sweep (:func:`prepare`).
      out: sweep directory; ``None`` keeps everything in memory. Re-running the same sweep into
        the same directory resumes; a sweep with another identity (training fields, model,
        JAX version …) is refused with the fields that differ.
      chunk_size: runs per compiled call (default: from a fixed memory budget).
      shard: ``"i/n"`` runs only chunks ``k`` with ``k % n == i`` (for several processes).
        In a multi-process JAX job (:mod:`jaxinit.engine.distributed`) each process takes its part of
        that (with ``out=None``, every process computes every run).
      model: a user ``Model(init, apply)`` replacing the spec's model (give it a ``model_id``).
      progress: a progress bar, and the sweep's size on stderr before compiling.
      executor: how runs are laid out on devices (default: all local devices).
      data: your own data set for a spec with ``[task] name = "arrays"`` and its ``loss``
        (``mse``, ``bce`` or ``ce``): a mapping or NamedTuple of arrays ``x_train`` (N, I),
        ``y_train`` (N,) or (N, O), and optionally ``x_test``, ``y_test``. Without test arrays
        the test set is the training set (or ``[task] test_fraction`` of the rows, held out by
        a split seeded with the data's hash). Checked before anything compiles; its content
        hash is part of the run identity, and ``out`` keeps a copy (``data.npz``) for reports.
      **overrides: ``field__path=value`` overrides, e.g. ``train__steps=200`` (``__`` for ``.``).
    """
    if isinstance(spec, Prepared) and data is not None:
        raise SpecError("pass data= to prepare(), which made this Prepared sweep")
    if isinstance(spec, Prepared) and not overrides and spec.model is model:
        prep = spec
    else:
        prep = prepare(spec, model=model, chunk_size=chunk_size, data=data, **overrides)
    with precision(prep.spec.train.dtype):
        return _run(prep, prep is not spec, out, chunk_size, shard, progress, executor)


def _run(
    prep: Prepared,
    new: bool,
    out: str | os.PathLike | None,
    chunk_size: int | None,
    shard: str | tuple[int, int] | None,
    progress: bool,
    executor: Executor | None,
) -> Any:
    """:func:`run` of a prepared sweep, inside its :func:`~jaxinit.engine.train.precision`."""
    out = None if out is None else Path(out)
    if progress and new:
        print(f"{prep.spec.name}: {prep.describe()}", file=sys.stderr)
    _refuse_unstorable(prep, out)
    i, n = parse_shard(shard, prep.plan.n_chunks)
    if out is not None and jax.process_count() > 1:  # a multi-process JAX job: take our part
        i, n = distributed.combine((i, n), distributed.process_shard())
    executor = executor or Executor()
    from jaxinit.engine.results import assemble, load

    if out is None:
        chunks = [a for _, a in _run_chunks(prep, list(prep.plan.chunks()), executor, progress)]
        if prep.spec.is_probe:
            return probe_spec.probe_dataset(prep.plan, chunks)
        return assemble(prep.plan, chunks, partial=False, attrs=_attrs(prep))
    with SweepDir(out, prep.record, prep.plan.chunk_size, (i, n)).open(
        chunk_size is not None
    ) as store:
        _keep_data(out, prep.spec)
        plan = prep.plan
        if store.chunk_size != plan.chunk_size:
            plan = probe_spec.plan_for(prep.spec, store.chunk_size)
            prep = prep._replace(plan=plan)
        todo, problems = store.todo(plan, prep.members)
        for msg in problems:
            warnings.warn(msg, stacklevel=_caller_level())
        for cid, arrays in _run_chunks(prep, todo, executor, progress):
            store.write_chunk(cid, arrays)
    return load(out)


def _keep_data(out: Path, spec: Spec) -> None:
    """A user's data (task ``arrays``) copied into the sweep directory as ``data.npz``, which
    its ``spec.json`` names (:func:`jaxinit.engine.identity.record`), unless the copy is there."""
    if spec.task.name != "arrays":
        return
    copy = out / user_data.DATA_FILE
    with contextlib.suppress(SpecError):  # missing or unreadable: written again
        if user_data.content_hash(user_data.read_file(copy)) == spec.task.params["data_sha256"]:
            return
    atomic_write(copy, user_data.npz_bytes(user_data.spec_arrays(spec)))


def _attrs(prep: Prepared) -> dict[str, Any]:
    import json

    return {"model": json.dumps(prep.record["model"])}


def _run_chunks(prep: Prepared, todo, executor: Executor, progress: bool) -> Iterator:
    plan = prep.plan
    total = sum(len(g.chunk_run_ids(c)) for g, c in todo)
    checked = prep.model is None  # only user models can ignore their key
    if prep.spec.is_probe:  # random nets measured at init (SciPy: imported only when used)
        from jaxinit.engine import probes

        source = probes.measure(plan, todo)
    else:
        source = executor.run(plan, todo, prep.model)
    with _progress(total, progress) as bar:
        for cid, arrays in source:
            if not checked:
                _warn_if_identical(arrays, plan)
                checked = True
            yield cid, arrays
            if bar is not None:
                bar.update(len(arrays["run_id"]))
    fallbacks = {why for layout, why in executor.layouts.values() if "cannot" in why}
    for why in sorted(fallbacks):
        print(f"note: vmap layout used: {why}", file=sys.stderr)


def _warn_if_identical(arrays: dict[str, np.ndarray], plan: Plan) -> None:
    """A user model whose init ignores its key (or draws with Python's ``random``, frozen when
    traced) gives every seed the same run: warn when a chunk's runs with different seeds have
    identical results. Runs that are all non-finite from step 0 are identical (NaN) for another
    reason, and are warned about as such."""
    diverged = arrays.get("final/diverged_step")
    if diverged is not None and len(diverged) and (diverged == 0).all():
        warnings.warn(  # identical too (all NaN), but not for the reason below
            "every run of the first chunk is non-finite from the start (its loss at step 0 is "
            "NaN or inf): the model's apply, or the loss of its output, is not finite at the "
            "initial parameters; check the model's apply and init.scale",
            stacklevel=_caller_level(),
        )
        return
    seeds = plan.group(0).values_of(arrays["run_id"]).get("seed")
    if seeds is None or len(np.unique(seeds)) < 2:
        return
    if all(np.array_equal(a, a[:1].repeat(len(a), 0), equal_nan=True) for k, a in arrays.items()
           if k != "run_id" and a.dtype.kind in "fc"):  # fmt: skip
        warnings.warn(
            "every run of the first chunk is identical although their seeds differ: does the "
            "model's init use its key? (Python's random is frozen when JAX traces it)",
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning raised by the calling function at the first
    frame outside jaxinit (the user's call), however deep in generators the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("jaxinit."):
        frame, level = frame.f_back, level + 1
    return level
