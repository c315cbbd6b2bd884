"""From a spec to a plan: which axes are static (one compilation each) and which are traced.

The runs of a sweep are the Cartesian product of its axes, numbered in C order over the axes as
the spec lists them (``run_id``). Axes that change shapes or the program (widths, activation,
scheme, task, optimizer name, steps …) are **static**: each combination of their values is a
:class:`Group`, compiled once. ``seed`` and fields declared traced (scales, learning rates,
dropout …) are **traced**: within a group, runs are cut into chunks of a fixed size ``C`` (the
last one padded), and a chunk is one call of the compiled, vmapped program.

The plan is lazy: a chunk's run ids and traced values are computed from its index when asked,
so planning a sweep of 10⁹ runs costs no more memory than planning one of ten.

>>> from jaxinit.config.spec import Spec
>>> spec = Spec.from_dict({"axes": {"seed": 8, "init.scale": [0.5, 1.0], "init.scheme": ["zeros", "he_normal"]}})
>>> p = make_plan(spec, chunk_size=4)
>>> [a.traced for a in p.axes], p.n_groups, p.n_chunks
([True, True, False], 2, 8)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from jaxinit.config.spec import Spec, SpecError, is_traced

CHUNK_BYTES = 256 * 2**20
"""Default memory budget of one chunk. A constant, not the machine's memory, so that every
machine, shard and resume derives the same default chunk size."""


class Axis(NamedTuple):
    path: str  # "seed" or a dotted spec field
    values: Sequence  # a tuple, or range(n) for a seed count
    traced: bool
    dim: str  # dataset dimension name: the path with "." replaced by "_"


@dataclass(frozen=True)
class Plan:
    spec: Spec
    axes: tuple[Axis, ...]
    chunk_size: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(self.shape)

    @property
    def static_axes(self) -> tuple[int, ...]:
        return tuple(k for k, a in enumerate(self.axes) if not a.traced)

    @property
    def n_groups(self) -> int:
        return math.prod(self.shape[k] for k in self.static_axes)

    @property
    def runs_per_group(self) -> int:
        return self.n_runs // self.n_groups

    @property
    def chunks_per_group(self) -> int:
        return -(-self.runs_per_group // self.chunk_size)

    @property
    def n_chunks(self) -> int:
        return self.n_groups * self.chunks_per_group

    def group(self, index: int) -> Group:
        """Static group ``index`` (C order over the static axes)."""
        static = self.static_axes
        where = np.unravel_index(index, [self.shape[k] for k in static]) if static else ()
        key = tuple(int(i) for i in where)
        values = {self.axes[k].path: self.axes[k].values[i] for k, i in zip(static, key)}
        return Group(index, self.spec.replace(values), key, self)

    @property
    def groups(self) -> Groups:
        """Every static group, as a lazy sequence (``len``, indexing, iteration)."""
        return Groups(self)

    def chunks(self) -> Iterator[tuple[Group, int]]:
        """Every ``(group, chunk index)`` in order; chunk ids are ``f"{group:04d}-{chunk:06d}"``."""
        for group in self.groups:
            for c in range(self.chunks_per_group):
                yield group, c

    def chunk_of(self, cid: str) -> tuple[int, int] | None:
        """``(group, chunk)`` of a chunk id, or None if the id is not part of this plan."""
        g, _, c = cid.partition("-")
        if not (g.isdigit() and c.isdigit()):
            return None
        g, c = int(g), int(c)
        return (g, c) if g < self.n_groups and c < self.chunks_per_group else None


class Groups(Sequence):
    """The static groups of a plan, built when indexed."""

    def __init__(self, plan: Plan):
        self._plan = plan

    def __len__(self) -> int:
        return self._plan.n_groups

    def __getitem__(self, index: int) -> Group:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._plan.group(index % len(self))


@dataclass(frozen=True)
class Group:
    """The runs that share one static configuration (one compiled program)."""

    index: int
    spec: Spec  # the spec with this group's static axis values filled in
    static_key: tuple[int, ...]  # index of each static axis' value
    plan: Plan

    def run_ids_between(self, lo: int, hi: int) -> np.ndarray:
        """Run ids of the group's runs ``lo … hi-1`` (ascending: C order over traced axes)."""
        plan = self.plan
        traced = [k for k, a in enumerate(plan.axes) if a.traced]
        j = np.arange(lo, min(hi, plan.runs_per_group), dtype=np.int64)
        index = [None] * len(plan.axes)
        for k, i in zip(plan.static_axes, self.static_key):
            index[k] = np.full(len(j), i, np.int64)
        if traced:
            parts = np.unravel_index(j, [plan.shape[k] for k in traced])
            for k, part in zip(traced, parts):
                index[k] = part
        return np.ravel_multi_index(index, plan.shape) if index else j

    @property
    def run_ids(self) -> np.ndarray:
        """Every run id of the group, ascending ``(R_g,)``."""
        return self.run_ids_between(0, self.plan.runs_per_group)

    def chunk_run_ids(self, chunk: int) -> np.ndarray:
        size = self.plan.chunk_size
        return self.run_ids_between(chunk * size, (chunk + 1) * size)

    def values_of(self, run_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Traced path -> ``(R,)`` coordinate of each of ``run_ids``."""
        plan = self.plan
        where = np.unravel_index(np.asarray(run_ids, np.int64), plan.shape)
        return {a.path: _take(a.values, where[k]) for k, a in enumerate(plan.axes) if a.traced}

    @property
    def values(self) -> dict[str, np.ndarray]:
        return self.values_of(self.run_ids)


def _take(values: Sequence, index: np.ndarray) -> np.ndarray:
    if isinstance(values, range):
        return values.start + values.step * np.asarray(index, np.int64)
    return np.asarray(values)[index]


def chunk_id(group: Group, chunk: int) -> str:
    return f"{group.index:04d}-{chunk:06d}"


def make_plan(spec: Spec, chunk_size: int | None = None, bytes_per_run: int | None = None) -> Plan:
    """Split the spec's axes into static groups and traced coordinates; fix the chunk size."""
    axes = tuple(Axis(p, v, is_traced(spec, p, v), p.replace(".", "_")) for p, v in spec.axes)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // max(bytes_per_run or 4096, 1))
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise SpecError(f"chunk size must be a positive integer, got {chunk_size!r}")
    plan = Plan(spec, axes, chunk_size)
    return Plan(spec, axes, min(chunk_size, plan.runs_per_group))


def coordinates(plan: Plan) -> dict[str, list]:
    """Dataset coordinate values per dimension (tuples such as widths become ``"4-4"``)."""
    return {a.dim: [_coord(v) for v in a.values] for a in plan.axes}


def _coord(value: Any) -> Any:
    return "-".join(map(str, value)) if isinstance(value, tuple) else value
