"""One XLA CPU device per core, so that a sweep's chunks train side by side on a CPU.

XLA gives a CPU process one device unless told otherwise, runs one program at a time on it and
splits each kernel of that program over the cores itself. For the small nets of most sweeps
those kernels are too short to split well: the lanes layout's step kernels (:mod:`jaxinit.engine.lanes`)
spend much of their second core's time waiting. With one device per core the executor trains
one chunk per device at once, each on its own core, and the numbers stay the same bit for bit
(each device runs the same ``C``-run program). Measured on a 2-core CPU through
:func:`jaxinit.run` (XOR, 2000 steps, 16,384 runs in chunks of one lane block; wall / CPU s):
2-8-1 2.83 / 5.48 with one device, 1.96 / 3.87 with two; 2-16-1 5.99 / 11.45 and 3.19 / 6.24
(benchmarks/README.md has the side-by-side tables). A group with fewer chunks than devices runs
on one device (:meth:`jaxinit.engine.executors.Executor.width`).

The device count is process-wide and fixed when JAX starts its backends, so it is set at the
edge: ``jaxinit run`` calls :func:`use_cpu_cores` before anything touches JAX, and a notebook can
call it first thing. It never overrides a count the user chose (``XLA_FLAGS=
--xla_force_host_platform_device_count=N`` or ``jax_num_cpu_devices``); ``JAXINIT_CPU_DEVICES=N``
sets the count, ``JAXINIT_CPU_DEVICES=1`` keeps XLA's single device. ``jaxinit run
--distributed`` leaves the count to JAX (several processes may share a machine's cores).

>>> import jaxinit.engine.devices
>>> jaxinit.engine.devices.use_cpu_cores()  # doctest: +SKIP  (before any JAX computation)
2
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV", "MAX_DEFAULT", "cores", "default_count", "use_cpu_cores"]

ENV = "JAXINIT_CPU_DEVICES"
_XLA_FLAG = "xla_force_host_platform_device_count"
MAX_DEFAULT = 8
"""Most CPU devices asked for by default: each device holds a chunk in memory at once (up to
``plan.CHUNK_BYTES`` = 256 MiB each), and only 2 cores were measured. Set ``JAXINIT_CPU_DEVICES``
for more."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_count() -> int:
    """The CPU devices :func:`use_cpu_cores` asks for when not told: ``$JAXINIT_CPU_DEVICES``,
    else one per core, at most :data:`MAX_DEFAULT`."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return min(cores(), MAX_DEFAULT)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a positive integer") from None


def use_cpu_cores(n: int | None = None) -> int:
    """Ask JAX for ``n`` CPU devices (default: ``$JAXINIT_CPU_DEVICES``, else one per core, at
    most :data:`MAX_DEFAULT`) and
    return the CPU device count this process will have.

    Does nothing, and returns the count already in force, when the user chose one (the XLA flag
    or ``jax_num_cpu_devices``) or JAX's backends have started (the count is fixed then).
    """
    n = default_count() if n is None else n
    if n < 1:
        raise ValueError(f"CPU devices must be a positive number, got {n}")
    if jax.config.jax_num_cpu_devices > 0:
        return jax.config.jax_num_cpu_devices
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.lstrip("-").startswith(_XLA_FLAG + "="):
            return int(flag.split("=", 1)[1])
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backends already started: the count is fixed now
        return len(jax.devices("cpu"))
    return n
