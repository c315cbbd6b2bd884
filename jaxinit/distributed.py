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

import inspect

import jax

__all__ = ["combine", "initialize", "process_shard", "shutdown"]

SHUTDOWN_TIMEOUT_S = 7 * 24 * 3600
"""How long a finished process waits at exit for the others (a dead one is noticed sooner, by
its missed heartbeats)."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int = 100,
) -> tuple[int, int]:
    """Join (or start, as process 0) a multi-process JAX job; return this process's shard.

    Args:
      coordinator: ``host:port`` of process 0; None: JAX's environment detection
        (``JAX_COORDINATOR_ADDRESS``, SLURM, Open MPI, Kubernetes, Cloud TPU).
      num_processes, process_id: as :func:`jax.distributed.initialize`; None: detected.
      heartbeat_timeout_s: after this many seconds without a heartbeat JAX declares a process
        dead and stops the others.

    Returns:
      ``(process_index, process_count)``: the part :func:`jaxinit.run` will take (it asks JAX
      itself; do not pass this as its ``shard``, which is the job-array shard).
    """
    kwargs = {}
    accepted = inspect.signature(jax.distributed.initialize).parameters
    if "heartbeat_timeout_seconds" in accepted:  # JAX >= 0.5
        kwargs["heartbeat_timeout_seconds"] = heartbeat_timeout_s
    if "shutdown_timeout_seconds" in accepted:
        kwargs["shutdown_timeout_seconds"] = SHUTDOWN_TIMEOUT_S
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(coordinator, num_processes, process_id, **kwargs)
    return process_shard()


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
