"""How far a sweep directory has got: runs done per shard (or process), runs/s, ETA, problems.

:func:`status` reads only what is on disk — ``spec.json``, the manifests (with the time each chunk was
written, as its writer recorded it: copying a directory keeps it, unlike the files' mtimes), the
chunk files (their checksums) and the writers' claims (:mod:`jaxinit.engine.claims`) — so it works on a
sweep that is running, finished or was killed, from any machine that sees the directory, and
never takes a lock. A shard is a ``--shard i/n`` or a process of a multi-process job (the same
thing on disk); its chunks count as done whichever writer finished them, so shard counts may be
mixed (``0/2``, then ``1/3`` and ``2/3``). Manifests and chunks of another sweep are reported and
not counted.

A shard's rate is that of its current writer: runs in chunks finished since the writer started
(compiling included) over the time since; for a shard nobody writes now, that of its chunks
from the first to the last (none for chunks of older versions, which recorded no times). The ETA is the time the slowest running writer needs for the rest
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

from jaxinit.engine import claims
from jaxinit.engine.plan import Plan
from jaxinit.engine.probe_spec import plan_for
from jaxinit.engine.store import (
    CHUNK_FILE,
    CorruptChunkError,
    ForeignFileError,
    StoreError,
    expect_for,
    read_manifests,
    read_spec,
    sha256_hex,
    stamp_of,
    temp_leftovers,
    validate_chunk,
    writer_gone,
)

__all__ = ["ShardStatus", "Status", "status"]

_SHARD_FILE = re.compile(r"^(?:manifest|writer)\.([0-9]+)-of-([0-9]+)(?:\.json)?$")


@dataclass(frozen=True)
class ShardStatus:
    """One shard ``i/n`` of a sweep directory."""

    shard: tuple[int, int]  # (i, n)
    chunks_done: int  # chunks k of the plan with k % n == i that any writer finished (verified)
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
    idle_more: tuple[tuple[int, int], ...] = ()  # (n, count): unfinished shards without a row
    advice: str | None = None  # what to run for the chunks nobody is computing

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
        for n, more in self.idle_more:
            lines.append(f"… and {more:,} more shard(s) of {n} not started")
        if self.advice and not self.complete:
            lines.append(self.advice)
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

    Its cost is linear in the chunks and the files in ``path``, whatever the shard counts:
    a shard is a row when it has files there, or when it owns unfinished chunks (at most
    :data:`MAX_IDLE_ROWS` such rows per shard count; ``idle_more`` counts the rest).
    """
    path = Path(path)
    spec, meta = read_spec(path)
    plan = plan_for(spec, meta["chunk_size"])  # a training or a probe sweep
    stamp = stamp_of(meta)
    expect = expect_for(plan, stamp=stamp)
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
                listed[shard] = read_manifests(path, only=f.name, stamp=stamp)
            except ForeignFileError as e:
                problems.append(f"{e}; its chunks are not counted")
            except StoreError as e:
                problems.append(str(e))
    good: dict[str, float | None] = {}  # verified chunk id -> when its writer wrote it
    for cid, entry in sorted({c: e for m in listed.values() for c, e in m.items()}.items()):
        file = path / entry["file"]
        try:
            k = _chunk_index(plan, cid)
            if k is None:
                raise CorruptChunkError(f"chunk {cid} ({file}) is listed but not in the plan")
            file.stat()
            if verify:
                data = file.read_bytes()
                if sha256_hex(data) != entry["sha256"]:
                    raise CorruptChunkError(f"chunk {cid} ({file}) is corrupt: checksum mismatch")
                validate_chunk(cid, file, data, expect(cid))
            # as the writer recorded it: a file's mtime is when it was copied, not computed
            written = entry.get("written")
            ok = isinstance(written, (int, float)) and not isinstance(written, bool)
            good[cid] = float(written) if ok else None  # None: an older version's chunk
        except OSError as e:
            problems.append(f"chunk {cid} ({file}) is missing or unreadable: {e.strerror or e}")
        except CorruptChunkError as e:
            problems.append(str(e))
    files = {p.name[:-4] for p in (path / "chunks").glob("*.npz") if CHUNK_FILE.match(p.name)}
    unlisted = sorted(files - {c for m in listed.values() for c in m})
    if unlisted:
        problems.append(
            f"{len(unlisted)} chunk file(s) not (yet) listed in any manifest, e.g. {unlisted[0]} "
            "(a writer is about to list it, or stopped first: it will be recomputed)"
        )
    for tmp, pid, host in temp_leftovers(path):
        if writer_gone(tmp, pid, host):
            problems.append(f"interrupted write left {tmp} (removed by the next run)")
    now = time.time()
    done_k = {_chunk_index(plan, c) for c in good}
    missing = [k for k in range(plan.n_chunks) if k not in done_k]
    rows, idle_more = _shards_to_show(seen, missing)
    shards = tuple(
        _shard_status(path, plan, shard, listed.get(shard, {}), good, done_k, now) for shard in rows
    )
    runs_done = sum(_chunk_runs(plan, k) for k in done_k)
    running = [s for s in shards if s.state == "running"]
    rates = [s.runs_per_s for s in running]
    rate = sum(rates) if running and None not in rates else None
    eta = None
    if runs_done == plan.n_runs:
        eta = 0.0
    elif running and rate is not None and all(r > 0 for r in rates):
        eta = max((s.runs_total - s.runs_done) / s.runs_per_s for s in running)
    advice = _resume_advice(seen, missing, [s.shard for s in running])
    return Status(path, spec.name, plan.n_runs, runs_done, plan.n_chunks, len(good), shards,
                  rate, eta, tuple(problems), idle_more, advice)  # fmt: skip


MAX_IDLE_ROWS = 16
"""At most this many rows of shards that have no files but own unfinished chunks, per count."""


def _shards_to_show(
    seen: set[tuple[int, int]], missing: list[int]
) -> tuple[list[tuple[int, int]], tuple[tuple[int, int], ...]]:
    """The shards that get a row, and ``(n, how many more)`` per shard count left out: every
    shard with files, and those without files that own a missing chunk (O(files + chunks))."""
    counts = {n for _, n in seen} or {1}
    rows = set(seen) | ({(0, 1)} if not seen else set())
    more = []
    for n in sorted(counts):
        idle = sorted({k % n for k in missing} - {i for i, m in seen if m == n})
        rows |= {(i, n) for i in idle[:MAX_IDLE_ROWS]}
        if len(idle) > MAX_IDLE_ROWS:
            more.append((n, len(idle) - MAX_IDLE_ROWS))
    return sorted(rows, key=lambda s: (s[1], s[0])), tuple(more)


def _resume_advice(
    seen: set[tuple[int, int]], missing: list[int], running: list[tuple[int, int]]
) -> str | None:
    """What to run for the chunks nobody finished and no running writer will: the shard count
    among those used here that needs the fewest commands (no ``--shard`` when unsharded)."""
    left = [k for k in missing if not any(k % n == i for i, n in running)]
    if not left:
        return None
    counts = sorted({n for _, n in seen} or {1})
    need = {n: sorted({k % n for k in left}) for n in counts}
    n = min(counts, key=lambda c: (len(need[c]), -c))
    if n == 1:
        return (f"{len(left):,} chunk(s) unfinished and not being computed: run the same "
                "jaxinit run command again (without --shard) to resume")  # fmt: skip
    names = ", ".join(f"{i}/{n}" for i in need[n][:MAX_IDLE_ROWS])
    names += f" … ({len(need[n]) - MAX_IDLE_ROWS:,} more)" if len(need[n]) > MAX_IDLE_ROWS else ""
    return (f"not running and unfinished: shard(s) {names} (resume with --shard i/n for each; "
            f"{len(left):,} chunk(s) left)")  # fmt: skip


def _shard_status(
    path: Path,
    plan: Plan,
    shard: tuple[int, int],
    mine: dict[str, dict],
    good: dict[str, float | None],
    done_k: set[int | None],
    now: float,
) -> ShardStatus:
    """Shard ``i/n``: its chunks (``k % n == i``) finished by any writer, its state, and the
    rate of its own writer (from the chunks its manifest lists)."""
    i, n = shard
    ks = range(i, plan.n_chunks, n)
    runs_total = sum(_chunk_runs(plan, k) for k in ks)
    finished = [k for k in ks if k in done_k]
    runs_done = sum(_chunk_runs(plan, k) for k in finished)
    own = {c: good[c] for c in mine if good.get(c) is not None}  # its own writer's, timed
    runs = {c: _chunk_runs(plan, _chunk_index(plan, c)) for c in own}
    claim = claims.read_claim(path / f"writer.{i}-of-{n}")
    live = claim is not None and not claim.stale
    rate = None
    if live:
        recent = [c for c, t in own.items() if t >= claim.since]
        if recent and now > claim.since:
            rate = sum(runs[c] for c in recent) / (now - claim.since)
    elif len(own) >= 2:
        order = sorted(own, key=own.get)
        span = own[order[-1]] - own[order[0]]
        rate = sum(runs[c] for c in order[1:]) / span if span > 0 else None
    if runs_done >= runs_total:
        state, writer = "done", None
    elif live:
        state, writer = "running", claim.describe()
    else:
        state = "stopped" if mine or claim is not None else "not started"  # (mine: its manifest)
        writer = f"writer {claim.host}:{claim.pid} gone" if claim is not None else None
    return ShardStatus(shard, len(finished), len(ks), runs_done, runs_total, rate, state, writer)
