"""From a spec to a plan: which axes are static (one compilation each) and which are traced.

The runs of a sweep are the Cartesian product of its axes, numbered in C order over the axes as
the spec lists them (``run_id``). Axes that change shapes or the program (widths, activation,
scheme, task, optimizer name, steps …) are **static**: each combination of their values is a
:class:`Group`, compiled once. ``seed`` and float fields (scales, learning rates, dropout …) are
**traced**: within a group, runs are cut into chunks of a fixed size ``C`` (the last one padded),
and a chunk is one call of the compiled, vmapped program.

>>> from jaxinit.spec import Spec
>>> spec = Spec.from_dict({"axes": {"seed": 8, "init.scale": [0.5, 1.0], "init.scheme": ["zeros", "he_normal"]}})
>>> p = make_plan(spec, chunk_size=4)
>>> [a.traced for a in p.axes], len(p.groups), p.n_chunks
([True, True, False], 2, 8)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from jaxinit.spec import Spec, SpecError

CHUNK_BYTES = 256 * 2**20
"""Default memory budget of one chunk. A constant, not the machine's memory, so that every
machine, shard and resume derives the same default chunk size."""


class Axis(NamedTuple):
    path: str  # "seed" or a dotted spec field
    values: tuple
    traced: bool
    dim: str  # dataset dimension name: the path with "." replaced by "_"


class Group(NamedTuple):
    """The runs that share one static configuration (one compiled program)."""

    index: int
    spec: Spec  # the spec with this group's static axis values filled in
    run_ids: np.ndarray  # (R_g,) int64, ascending
    values: dict[str, np.ndarray]  # traced path -> (R_g,) coordinate of each run


class Plan(NamedTuple):
    spec: Spec
    axes: tuple[Axis, ...]
    groups: tuple[Group, ...]
    chunk_size: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(self.shape)

    def chunks(self) -> list[tuple[Group, int]]:
        """Every ``(group, chunk index)`` in order; chunk ids are ``f"{group:04d}-{chunk:06d}"``."""
        return [(g, c) for g in self.groups for c in range(-(-len(g.run_ids) // self.chunk_size))]

    @property
    def n_chunks(self) -> int:
        return len(self.chunks())


def chunk_id(group: Group, chunk: int) -> str:
    return f"{group.index:04d}-{chunk:06d}"


def is_traced(spec: Spec, path: str, values: tuple) -> bool:
    """Seeds and float-valued fields outside ``task`` are traced; everything else is static."""
    if path == "seed":
        return True
    section, _, name = path.partition(".")
    if section in ("task", "store", "basins"):
        return False
    sec = getattr(spec, section)
    declared = {f.name: f.type for f in dataclasses.fields(sec)}.get(name)
    if declared is not None:
        return declared in ("float", "float | None") and None not in values
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _coord(value: Any) -> Any:
    return "-".join(map(str, value)) if isinstance(value, tuple) else value


def make_plan(spec: Spec, chunk_size: int | None = None, bytes_per_run: int | None = None) -> Plan:
    """Split the spec's axes into static groups and traced coordinates; fix the chunk size."""
    axes = tuple(Axis(p, v, is_traced(spec, p, v), p.replace(".", "_")) for p, v in spec.axes)
    shape = tuple(len(a.values) for a in axes)
    coords = np.indices(shape).reshape(len(shape), -1)  # (n_axes, n_runs), C order = run_id
    static = [k for k, a in enumerate(axes) if not a.traced]
    keys = coords[static].T if static else np.zeros((coords.shape[1], 0), int)
    uniq, group_of = np.unique(keys, axis=0, return_inverse=True)
    groups = []
    for g, key in enumerate(uniq):
        ids = np.flatnonzero(group_of.ravel() == g)
        gspec = spec.replace({axes[k].path: axes[k].values[i] for k, i in zip(static, key)})
        values = {
            a.path: np.asarray([a.values[i] for i in coords[k, ids]])
            for k, a in enumerate(axes)
            if a.traced
        }
        groups.append(Group(g, gspec, ids, values))
    largest = max(len(g.run_ids) for g in groups)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // max(bytes_per_run or 4096, 1))
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise SpecError(f"chunk size must be a positive integer, got {chunk_size!r}")
    return Plan(spec, axes, tuple(groups), min(chunk_size, largest))


def coordinates(plan: Plan) -> dict[str, list]:
    """Dataset coordinate values per dimension (tuples such as widths become ``"4-4"``)."""
    return {a.dim: [_coord(v) for v in a.values] for a in plan.axes}
