"""How far a sweep directory has got: runs done per shard (or process), runs/s, ETA, problems.

:func:`status` reads only what is on disk — ``spec.json``, the manifests, the chunk files (their
checksums, and their mtimes as the time each chunk was finished) and the writers' claims
(:mod:`jaxinit.claims`) — so it works on a sweep that is running, finished or was killed, from
any machine that sees the directory, and never takes a lock. A shard is a ``--shard i/n`` or a
process of a multi-process job (the same thing on disk).

A shard's rate is that of its current writer: runs in chunks finished since the writer started
(compiling included) over the time since; for a shard nobody writes now, that of its chunks
from the first to the last. The ETA is the time the slowest running writer needs for the rest
of its shard; None when no writer is running or one has not finished a chunk yet.

>>> import jaxinit
>>> print(jaxinit.status("results/symmetry"))  # doctest: +SKIP
sweep 'symmetry' in results/symmetry: 1,280/1,280 runs (100.0%), 1/1 chunks
shard  chunks  runs         runs/s  state
0/1    1/1     1,280/1,280       -  done
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from jaxinit import claims
from jaxinit.plan import Plan, make_plan
from jaxinit.store import (
    CorruptChunkError,
    StoreError,
    _gone,
    _leftovers,
    _sha256,
    _validate,
    expect_for,
    read_manifests,
    read_spec,
)

__all__ = ["ShardStatus", "Status", "status"]

_SHARD_FILE = re.compile(r"^(?:manifest|writer)\.(\d+)-of-(\d+)(?:\.json)?$")


@dataclass(frozen=True)
class ShardStatus:
    """One shard ``i/n`` of a sweep directory."""

    shard: tuple[int, int]  # (i, n)
    chunks_done: int  # chunks its manifest lists whose files verify
    chunks_total: int  # chunks k of the plan with k % n == i
    runs_done: int
    runs_total: int
    runs_per_s: float | None  # None: not measurable (fewer than two chunk times)
    state: str  # "done", "running", "stopped", "not started"
    writer: str | None = None  # the writer's claim: "host:pid, heartbeat … ago"


@dataclass(frozen=True)
class Status:
    """A sweep directory's progress; ``str()`` is the table ``jaxinit status`` prints."""

    path: Path
    name: str
    n_runs: int
    runs_done: int  # distinct runs in verified chunks, over every manifest
    n_chunks: int
    chunks_done: int
    shards: tuple[ShardStatus, ...]
    runs_per_s: float | None  # the running writers together
    eta_s: float | None  # until the running writers finish their shards
    problems: tuple[str, ...]  # corrupt or missing chunks, unreadable manifests, leftovers

    @property
    def complete(self) -> bool:
        return self.runs_done == self.n_runs

    def __str__(self) -> str:
        pct = 100 * self.runs_done / max(self.n_runs, 1)
        lines = [
            f"sweep {self.name!r} in {self.path}: {self.runs_done:,}/{self.n_runs:,} runs "
            f"({pct:.1f}%), {self.chunks_done:,}/{self.n_chunks:,} chunks"
        ]
        rows = [("shard", "chunks", "runs", "runs/s", "state")]
        for s in self.shards:
            rows.append((
                f"{s.shard[0]}/{s.shard[1]}",
                f"{s.chunks_done:,}/{s.chunks_total:,}",
                f"{s.runs_done:,}/{s.runs_total:,}",
                "-" if s.runs_per_s is None else f"{s.runs_per_s:,.1f}",
                s.state + (f" ({s.writer})" if s.writer else ""),
            ))  # fmt: skip
        w = [max(len(r[k]) for r in rows) for k in range(4)]
        for r in rows:
            lines.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}  {r[4]}")
        running = [s for s in self.shards if s.state == "running"]
        if running and not self.complete:
            rate = "-" if self.runs_per_s is None else f"{self.runs_per_s:,.1f}"
            eta = "-" if self.eta_s is None else _duration(self.eta_s)
            lines.append(f"{len(running)} writer(s) running: {rate} runs/s, ETA {eta}")
        stopped = [s for s in self.shards if s.state in ("stopped", "not started")]
        if stopped and not self.complete:
            names = ", ".join(f"{i}/{n}" for i, n in (s.shard for s in stopped))
            lines.append(f"not running and unfinished: shard(s) {names} (resume with --shard)")
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _chunk_runs(plan: Plan, k: int) -> int:
    """Runs in chunk ``k`` (in plan order): the chunk size, less for a group's last chunk."""
    c = k % plan.chunks_per_group
    return min(plan.chunk_size, plan.runs_per_group - c * plan.chunk_size)


def _chunk_index(plan: Plan, cid: str) -> int | None:
    where = plan.chunk_of(cid)
    return None if where is None else where[0] * plan.chunks_per_group + where[1]


def status(path: str | Path, *, verify: bool = True) -> Status:
    """Progress of the sweep directory ``path`` (see the module docstring).

    Args:
      path: a sweep directory (finished, running, or killed part-way).
      verify: check every listed chunk's SHA-256 and headers against the plan (reads every
        chunk file once); False only checks that the files exist.

    Raises:
      StoreError: ``path`` is not a readable sweep directory.
    """
    path = Path(path)
    spec, meta = read_spec(path)
    plan = make_plan(spec, meta["chunk_size"])
    expect = expect_for(plan)
    problems: list[str] = []
    listed: dict[tuple[int, int], dict[str, dict]] = {}
    seen: set[tuple[int, int]] = set()
    for f in sorted(path.iterdir()):
        m = _SHARD_FILE.match(f.name)
        if not m:
            continue
        shard = (int(m.group(1)), int(m.group(2)))
        if not 0 <= shard[0] < shard[1]:
            continue
        seen.add(shard)
        if f.name.startswith("manifest"):
            try:
                listed[shard] = read_manifests(path, only=f.name)
            except StoreError as e:
                problems.append(str(e))
    good: dict[str, float] = {}  # verified chunk id -> mtime
    for cid, entry in sorted({c: e for m in listed.values() for c, e in m.items()}.items()):
        file = path / entry["file"]
        try:
            k = _chunk_index(plan, cid)
            if k is None:
                raise CorruptChunkError(f"chunk {cid} ({file}) is listed but not in the plan")
            mtime = file.stat().st_mtime
            if verify:
                data = file.read_bytes()
                if _sha256(data) != entry["sha256"]:
                    raise CorruptChunkError(f"chunk {cid} ({file}) is corrupt: checksum mismatch")
                _validate(cid, file, data, expect(cid))
            good[cid] = mtime
        except OSError as e:
            problems.append(f"chunk {cid} ({file}) is missing or unreadable: {e.strerror or e}")
        except CorruptChunkError as e:
            problems.append(str(e))
    files = {p.stem for p in (path / "chunks").glob("*.npz")}
    unlisted = sorted(files - {c for m in listed.values() for c in m})
    if unlisted:
        problems.append(
            f"{len(unlisted)} chunk file(s) not (yet) listed in any manifest, e.g. {unlisted[0]} "
            "(a writer is about to list it, or stopped first: it will be recomputed)"
        )
    for tmp, pid, host in _leftovers(path):
        if _gone(tmp, pid, host):
            problems.append(f"interrupted write left {tmp} (removed by the next run)")
    now = time.time()
    shards = tuple(
        _shard_status(path, plan, shard, listed.get(shard, {}), good, now)
        for shard in sorted(
            seen | {(i, n) for _, n in seen for i in range(n)} or {(0, 1)},
            key=lambda s: (s[1], s[0]),
        )  # fmt: skip
    )
    runs_done = sum(_chunk_runs(plan, _chunk_index(plan, c)) for c in good)
    running = [s for s in shards if s.state == "running"]
    rates = [s.runs_per_s for s in running]
    rate = sum(rates) if running and None not in rates else None
    eta = None
    if runs_done == plan.n_runs:
        eta = 0.0
    elif running and rate is not None and all(r > 0 for r in rates):
        eta = max((s.runs_total - s.runs_done) / s.runs_per_s for s in running)
    return Status(path, spec.name, plan.n_runs, runs_done, plan.n_chunks, len(good), shards,
                  rate, eta, tuple(problems))  # fmt: skip


def _shard_status(
    path: Path,
    plan: Plan,
    shard: tuple[int, int],
    mine: dict[str, dict],
    good: dict[str, float],
    now: float,
) -> ShardStatus:
    i, n = shard
    ks = range(i, plan.n_chunks, n)
    runs_total = sum(_chunk_runs(plan, k) for k in ks)
    done = {c: good[c] for c in mine if c in good}
    runs = {c: _chunk_runs(plan, _chunk_index(plan, c)) for c in done}
    runs_done = sum(runs.values())
    claim = claims.read_claim(path / f"writer.{i}-of-{n}")
    live = claim is not None and not claim.stale
    rate = None
    if live:
        recent = [c for c, t in done.items() if t >= claim.since]
        if recent and now > claim.since:
            rate = sum(runs[c] for c in recent) / (now - claim.since)
    elif len(done) >= 2:
        order = sorted(done, key=done.get)
        span = done[order[-1]] - done[order[0]]
        rate = sum(runs[c] for c in order[1:]) / span if span > 0 else None
    if runs_done >= runs_total:
        state, writer = "done", None
    elif live:
        state, writer = "running", claim.describe()
    else:
        state = "stopped" if done or claim is not None else "not started"
        writer = f"writer {claim.host}:{claim.pid} gone" if claim is not None else None
    return ShardStatus(shard, len(done), len(ks), runs_done, runs_total, rate, state, writer)
