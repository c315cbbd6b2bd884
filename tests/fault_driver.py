"""Run ``jaxinit run`` in this process with one fault injected, for tests/test_faults.py.

    python tests/fault_driver.py FAULT N -- <jaxinit run arguments>

FAULT is one of the names in ``FAULTS``; the fault fires at the N-th matching event (1-based) of
this process. Kill faults end the process with SIGKILL (no cleanup, no atexit, no flush), the way
an OOM killer or a scheduler ends a job. ``enospc`` and ``eacces`` raise the OSError a full disk
or a read-only directory raises, at the N-th file write. ``none`` injects nothing. Nothing here
changes jaxinit's code: the store's and the sweep's functions are wrapped from outside.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    fault, n, rest = argv[0], int(argv[1]), argv[3:]
    import jaxinit.engine.executors as executors
    import jaxinit.engine.store as store
    from jaxinit import cli

    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == n

    real_write = store.atomic_write

    def half_write(path: Path, data: bytes) -> None:
        """Leave half of the temporary file behind, then die before the rename."""
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        die()

    def atomic_write(path: Path, data: bytes, **kw) -> bool:
        kind = "chunk" if path.parent.name == "chunks" else "other"
        kind = (
            "manifest" if "manifest" in path.name else "spec" if "spec.json" in path.name else kind
        )
        if fault == "write_spec" and kind == "spec" and hit():
            half_write(path, data)
        if fault == "write_chunk" and kind == "chunk" and hit():
            half_write(path, data)
        if fault == "write_manifest" and kind == "manifest" and hit():
            half_write(path, data)
        if fault == "before_manifest" and kind == "manifest" and hit():
            die()  # the chunk file is complete and renamed; the manifest does not list it yet
        if fault in ("enospc", "eacces") and hit():
            code = errno.ENOSPC if fault == "enospc" else errno.EACCES
            return _raise_via(real_write, path, data, code, kw)
        return real_write(path, data, **kw)

    store.atomic_write = atomic_write

    real_write_chunk = store.SweepDir.write_chunk

    def write_chunk(self, chunk_id, arrays):
        real_write_chunk(self, chunk_id, arrays)
        if fault == "between_chunks" and hit():
            die()  # chunk and manifest are complete; the next chunk has not started

    store.SweepDir.write_chunk = write_chunk

    real_compile = executors.Executor.compile

    def compile_group(*args, **kwargs):
        fn = real_compile(*args, **kwargs)

        def call(values, data):
            out = fn(values, data)  # dispatched asynchronously: the device is computing now
            if fault == "mid_compute" and hit():
                die()
            return out

        return call

    executors.Executor.compile = compile_group
    return cli.main(rest)


def _raise_via(real_write, path: Path, data: bytes, code: int, kw: dict) -> bool:
    """Make the real ``atomic_write`` meet an ``OSError(code)`` from ``write``, as a full disk
    (ENOSPC after some bytes) or a read-only directory (EACCES at open) would raise it."""
    import builtins

    real_open = builtins.open

    class Failing:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            self.f.write(b[: len(b) // 3])
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def failing_open(file, mode="r", *args, **kwargs):
        if code == errno.EACCES and "w" in mode:
            raise PermissionError(code, os.strerror(code), str(file))
        return Failing(real_open(file, mode, *args, **kwargs))

    builtins.open = failing_open
    try:
        return real_write(path, data, **kw)
    finally:
        builtins.open = real_open


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
