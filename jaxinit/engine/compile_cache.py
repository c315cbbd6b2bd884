"""JAX's persistent compilation cache, on by default for jaxinit's programs.

Small sweeps spend most of their wall time compiling (a 2-seed, 40-step symmetry sweep: ~25 s
cold). XLA can store compiled executables on disk, keyed on the program, the compile options,
the backend and the jax/jaxlib versions, so a second process running the same static
configuration loads instead of compiling. The cache is transparent: a hit returns the very
executable a compile would build.

Where it goes, in order:
  * ``JAXINIT_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``): off, nothing is changed;
  * JAX's own ``jax_compilation_cache_dir`` (``JAX_COMPILATION_CACHE_DIR``) if the user set it:
    respected as it is;
  * ``JAXINIT_CACHE_DIR`` if set;
  * else ``$XDG_CACHE_HOME/jaxinit/xla`` (``~/.cache/jaxinit/xla``).

It is process-wide JAX configuration (as ``jax_enable_x64`` is), set once at the edge, when an
executor is made, and only if the user has not configured a cache themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["cache_dir", "enable"]

OFF = frozenset({"0", "off", "false", "no"})
MIN_COMPILE_SECONDS = 0.2
"""Programs that compile faster than this are not written (JAX's default is 1 s: most of a
small sweep's programs, e.g. its data transfer and result slicing, would be missed)."""


def cache_dir() -> Path | None:
    """The directory jaxinit would use, or ``None`` when switched off by the environment."""
    if os.environ.get("JAXINIT_COMPILATION_CACHE", "").strip().lower() in OFF:
        return None
    if os.environ.get("JAXINIT_CACHE_DIR"):
        return Path(os.environ["JAXINIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxinit" / "xla"


def enable() -> str | None:
    """Turn the persistent cache on unless the user configured or disabled it; return the
    directory in use (``None`` if off). Safe to call many times."""
    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's own setting, or ours from an earlier call
        return current
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without a cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return str(path)
