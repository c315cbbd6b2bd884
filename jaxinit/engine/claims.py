"""Writer claims: which process writes a shard of a sweep directory, without trusting ``flock``.

``flock`` is the store's first line: the OS releases it when a writer dies. But on a shared
filesystem it may not be honoured — NFS without a lock manager, Lustre mounted without
``flock``, some FUSE filesystems — where it either fails (``ENOLCK``) or only excludes writers on
the same machine. So every writer also holds a **claim**: a small file ``writer.<i>-of-<n>``
created with ``O_CREAT | O_EXCL`` (atomic on NFSv3+ and every local filesystem), so that of two
writers starting the same shard on different machines exactly one wins, and the other is
refused as it would be by ``flock``.

A claim records who holds it (host, pid, a random token, since when) and is kept fresh by a
heartbeat: its mtime is touched every :data:`HEARTBEAT_S` seconds by a daemon thread and after
every chunk. A claim is **stale** — its writer is gone — when its mtime is older than
:data:`STALE_S`, or at once when it was made on this machine (same hostname, boot and pid
namespace: :func:`host_id`) by a process that no longer exists (a SIGKILL leaves the file
behind; the next run takes it over without waiting). Taking over deletes the stale claim, after
reading it again to be sure it is the same one, and creates a new one with ``O_EXCL``; a writer
checks before every manifest write that the claim still holds its token
(:meth:`Claim.check`), so even if two writers ever raced through a takeover, only one of them
goes on writing. Nothing here can make a result wrong: chunk files are byte-identical whoever
computes them and are renamed into place atomically; a claim only keeps work from being done
twice and one shard's manifest from being overwritten by another writer of the same shard.

Temporary files carry :func:`host_id` too (``.<file>.tmp<pid>-<host id>``), so that two machines
whose writers happen to have the same pid never write the same temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["HEARTBEAT_S", "STALE_S", "Claim", "ClaimError", "Holder", "alive", "host_id"]

HEARTBEAT_S = 30.0
"""How often a writer touches its claim (seconds)."""
STALE_S = 300.0
"""A claim not touched for this long belongs to a writer that is gone (seconds). Ten heartbeats:
room for a loaded machine and for NFS attribute caching (at most 60 s by default)."""


class ClaimError(RuntimeError):
    """The shard is claimed by a live writer (or was taken over from this one)."""


@cache
def host_id() -> str:
    """12 hex digits naming this machine, boot and pid namespace: where a pid means a process."""
    parts = [socket.gethostname()]
    for f in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(Path(f).read_text().strip() if "boot" in f else os.readlink(f))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any pid
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


class Claim(NamedTuple):
    """What a claim file says, and how old it is."""

    path: Path
    host: str  # hostname, for messages
    host_id: str  # :func:`host_id` of the writer's machine
    pid: int
    token: str  # random, unique per writer
    since: float  # unix time the writer started
    age_s: float  # seconds since the last heartbeat (now - mtime)

    @property
    def stale(self) -> bool:
        """The writer is gone: no heartbeat for :data:`STALE_S`, or a dead pid on this host."""
        if self.age_s > STALE_S or (not self.token and self.age_s > 10):  # 10 s: never filled
            return True
        return self.host_id == host_id() and not alive(self.pid)

    def describe(self) -> str:
        return f"{self.host}:{self.pid}, heartbeat {self.age_s:.0f} s ago"


def read_claim(path: Path) -> Claim | None:
    """The claim in ``path``; None if there is none. A file that does not parse (a writer killed
    between creating and filling it) is a claim by nobody, as old as the file."""
    try:
        mtime = path.stat().st_mtime
        raw = path.read_text()
    except OSError:
        return None
    age = max(0.0, time.time() - mtime)
    try:
        d: Any = json.loads(raw)
        return Claim(path, str(d["host"]), str(d["host_id"]), int(d["pid"]), str(d["token"]),
                     float(d["since"]), age)  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return Claim(path, "?", "?", 0, "", mtime, age)


class Holder:
    """A claim this process holds: created by :meth:`acquire`, kept fresh, released by
    :meth:`release`. One per open :class:`~jaxinit.engine.store.SweepDir`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Create the claim, taking over a stale one; raise :class:`ClaimError` if a live writer
        holds it."""
        for _ in range(3):
            if self._create():
                name = f"jaxinit-heartbeat-{self.path.name}"
                self._thread = threading.Thread(target=self._beat, daemon=True, name=name)
                self._thread.start()
                return
            other = read_claim(self.path)
            if other is None:  # released meanwhile: try again
                continue
            if not other.stale:
                raise ClaimError(f"held by {other.describe()} ({self.path})")
            again = read_claim(self.path)  # the same stale claim, not a new one: remove it
            if again is not None and again.token == other.token:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        raise ClaimError(f"other writers keep claiming it ({self.path})")

    def _create(self) -> bool:
        blob = {"host": socket.gethostname(), "host_id": host_id(), "pid": os.getpid(),
                "token": self.token, "since": time.time()}  # fmt: skip
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(blob).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def holds(self) -> bool:
        found = read_claim(self.path)
        return found is not None and found.token == self.token

    def check(self) -> None:
        """Raise :class:`ClaimError` unless the claim still holds this writer's token."""
        if self.holds():
            return
        other = read_claim(self.path)
        who = other.describe() if other is not None else "nobody (the claim file was removed)"
        raise ClaimError(
            f"this writer's claim {self.path} is now held by {who}: another process judged it "
            f"stale (no heartbeat for {STALE_S:.0f} s) and took the shard over"
        )

    def touch(self) -> None:
        """Heartbeat: refresh the claim's mtime (if it is still ours)."""
        if self.holds():
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.touch()

    def release(self) -> None:
        """Stop the heartbeat and delete the claim if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.holds():
            with contextlib.suppress(OSError):
                self.path.unlink()
