"""Several processes, one sweep: JAX's distributed runtime, one process = one shard.

A sweep needs no communication between its runs, so a multi-process sweep is a sharded one:
once JAX runs as several processes, :func:`jaxinit.run` (with an ``out`` directory) gives
process ``p`` of ``P`` the chunks ``k`` with ``k % P == p`` (within its ``--shard``, if given:
:func:`combine`), runs them on its own local devices and writes its own manifest
(``manifest.<p>-of-<P>.json``) into the shared sweep directory. Chunks have
one fixed compiled shape, so every run's numbers are bit-identical to a one-process sweep, and a
process is exactly ``--shard p/P``: a process that died is re-run as ``--shard p/P`` (no
coordinator needed), or with the whole job.

:func:`initialize` calls :func:`jax.distributed.initialize`, which finds the coordinator, the
process count and this process's id itself on SLURM (``srun``), Open MPI, Kubernetes and Cloud
TPU, or takes them explicitly (``JAX_COORDINATOR_ADDRESS`` is read by JAX). It must run before
anything touches a JAX backend. Afterwards JAX is a multi-controller job: ``jax.devices()``
lists every process's devices and the executor uses ``jax.local_devices()``.

JAX's runtime is fail-stop: when a process dies, the others are stopped once its heartbeat
is missed for ``heartbeat_timeout_s`` (finished chunks are kept, as after any crash), and a
process that finishes first waits at exit for the others (JAX's shutdown barrier, given a long
timeout here so that uneven shards do not trip it).

>>> initialize()  # doctest: +SKIP
(1, 4)
>>> jaxinit.run("symmetry", out="/shared/symmetry")  # doctest: +SKIP  (chunks k % 4 == 1)
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Iterator

import jax

__all__ = ["check_settings", "combine", "initialize", "process_shard", "shutdown"]

INIT_TIMEOUT_S = 300
"""How long :func:`initialize` waits for the coordinator and every process to join (JAX's own
default); JAX aborts the process when its wait runs out, so jaxinit exits first, with status
2 and a message naming the coordinator and this process."""

_GRACE_S = 30
"""JAX's own initialisation deadline is this much later than jaxinit's, which fires first."""

SHUTDOWN_TIMEOUT_S = 7 * 24 * 3600
"""How long a finished process waits at exit for the others (a dead one is noticed sooner, by
its missed heartbeats)."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int = 100,
    init_timeout_s: int = INIT_TIMEOUT_S,
    report_every_s: float = 10.0,
) -> tuple[int, int]:
    """Join (or start, as process 0) a multi-process JAX job; return this process's shard.

    While it waits for the others it says on stderr whom it waits for (every
    ``report_every_s``); if they have not all joined within ``init_timeout_s`` it prints why
    and ends the process with status 2 (JAX itself would abort it a little later, with a C++
    check failure: no exception can be caught there).

    Args:
      coordinator: ``host:port`` of process 0; None: JAX's environment detection
        (``JAX_COORDINATOR_ADDRESS``, SLURM, Open MPI, Kubernetes, Cloud TPU).
      num_processes, process_id: as :func:`jax.distributed.initialize`; None: detected.
      heartbeat_timeout_s: after this many seconds without a heartbeat JAX declares a process
        dead and stops the others.
      init_timeout_s: seconds to wait for the coordinator and every process to join.
      report_every_s: how often to say whom it is waiting for.

    Raises:
      ValueError: a setting is out of range (:func:`check_settings`), before anything starts.

    Returns:
      ``(process_index, process_count)``: the part :func:`jaxinit.run` will take (it asks JAX
      itself; do not pass this as its ``shard``, which is the job-array shard).
    """
    check_settings(coordinator, num_processes, process_id, heartbeat_timeout_s, init_timeout_s)
    kwargs = {}
    accepted = inspect.signature(jax.distributed.initialize).parameters
    if "initialization_timeout" in accepted:
        kwargs["initialization_timeout"] = init_timeout_s + _GRACE_S
    if "heartbeat_timeout_seconds" in accepted:  # JAX >= 0.5
        kwargs["heartbeat_timeout_seconds"] = heartbeat_timeout_s
    if "shutdown_timeout_seconds" in accepted:
        kwargs["shutdown_timeout_seconds"] = SHUTDOWN_TIMEOUT_S
    if not jax.distributed.is_initialized():
        who = _waited_for(coordinator, num_processes, process_id)
        with _watchdog(who, init_timeout_s, report_every_s):
            jax.distributed.initialize(coordinator, num_processes, process_id, **kwargs)
    return process_shard()


def check_settings(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    heartbeat_timeout_s: int = 100,
    init_timeout_s: int = INIT_TIMEOUT_S,
) -> None:
    """Raise ``ValueError`` naming the setting when one is out of range (JAX would abort the
    process with a C++ check failure on some, e.g. a negative heartbeat timeout)."""
    for name, value in (("--heartbeat-timeout", heartbeat_timeout_s),
                        ("--init-timeout", init_timeout_s)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number of seconds, got {value!r}")
    if num_processes is not None and (isinstance(num_processes, bool) or num_processes < 1):
        raise ValueError(f"--num-processes must be at least 1, got {num_processes!r}")
    if process_id is not None and process_id < 0:
        raise ValueError(f"--process-id must be 0 or more, got {process_id!r}")
    if None not in (num_processes, process_id) and process_id >= num_processes:
        raise ValueError(
            f"--process-id {process_id} is not one of the {num_processes} processes (0.."
            f"{num_processes - 1})"
        )
    if coordinator is not None:
        host, colon, port = coordinator.rpartition(":")
        if not colon or not host or not port.isascii() or not port.isdigit():
            raise ValueError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
        if not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator {coordinator!r}: port {port} is not 1..65535")


def _waited_for(coordinator: str | None, num_processes: int | None, process_id: int | None) -> str:
    """Who :func:`initialize` waits for, in words: the coordinator's address, this process."""
    where = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    where = f"the coordinator at {where}" if where else "the coordinator (found by JAX's detection)"
    me = "this process" if process_id is None else f"process {process_id}"
    of = "" if num_processes is None else f" of {num_processes}"
    if process_id == 0:
        return f"the other processes to join {where} ({me}{of}, which runs it)"
    return f"{where} and the other processes ({me}{of})"


@contextlib.contextmanager
def _watchdog(who: str, timeout_s: float, every_s: float) -> Iterator[None]:
    """Say on stderr whom the block waits for, every ``every_s``; after ``timeout_s`` print
    why and end the process with status 2 (the block is a C++ wait that cannot be interrupted)."""
    done = threading.Event()

    def watch() -> None:
        start = time.monotonic()
        print(f"jaxinit: waiting for {who} (up to {timeout_s:g} s)", file=sys.stderr, flush=True)
        while not done.wait(min(every_s, max(timeout_s - (time.monotonic() - start), 0))):
            waited = time.monotonic() - start
            if waited >= timeout_s:
                print(
                    f"jaxinit: error: --distributed: gave up after {waited:.0f} s waiting for "
                    f"{who}. Check the address and that every process was started (raise "
                    "--init-timeout if they start late).",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(2)
            print(f"jaxinit: still waiting for {who} ({waited:.0f} s)", file=sys.stderr, flush=True)

    thread = threading.Thread(target=watch, name="jaxinit-distributed-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def shutdown() -> None:
    """Leave the job once every process has reached here (JAX's shutdown barrier); a no-op in
    a single process."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def process_shard() -> tuple[int, int]:
    """``(jax.process_index(), jax.process_count())``: ``(0, 1)`` in a single process."""
    return jax.process_index(), jax.process_count()


def combine(shard: tuple[int, int], process: tuple[int, int]) -> tuple[int, int]:
    """The shard of process ``p`` of ``P`` within job-array shard ``i`` of ``n``:
    ``(i + n p, n P)``. Chunk ``k`` is in it iff ``k % n == i`` and ``k // n % P == p``, so the
    processes of one array task split exactly that task's chunks.

    >>> sorted(k for p in range(2) for k in range(12) if k % 6 == combine((1, 3), (p, 2))[0])
    [1, 4, 7, 10]
    """
    (i, n), (p, big_p) = shard, process
    return i + n * p, n * big_p
