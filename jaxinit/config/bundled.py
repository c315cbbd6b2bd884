"""The bundled sweep specs: find one by name, list them with their descriptions.

The specs are package data (``jaxinit/sweeps/*.toml``, shipped in the wheel) and are found with
:mod:`importlib.resources`, so a regular install finds them as an editable one does. The
repository's top-level ``sweeps/`` is a symbolic link to that folder: one copy, two places to
browse it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from jaxinit.config import toml_io
from jaxinit.config.spec import SpecError


def sweeps_dir() -> Path:
    """The folder holding the bundled ``*.toml`` specs (inside the installed package)."""
    # An installed or checked-out package is a folder on disk, so the traversable is a Path.
    return Path(str(resources.files("jaxinit") / "sweeps"))


def find_spec(name: str | os.PathLike) -> Path:
    """A spec path as given if it exists, else the bundled ``<name>.toml``."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = sweeps_dir() / f"{path.stem}.toml"
    if path.suffix in ("", ".toml") and bundled.is_file():
        return bundled
    names = ", ".join(sorted(bundled_specs())) or "(none found)"
    raise SpecError(f"no spec file {str(name)!r}; bundled specs: {names}")


def bundled_specs() -> dict[str, str]:
    """``name -> one-line description`` of every bundled spec."""
    out = {}
    for f in sorted(sweeps_dir().glob("*.toml")):
        try:
            desc = toml_io.loads(f.read_bytes().decode("utf-8")).get("description", "")
        except (toml_io.TOMLDecodeError, UnicodeDecodeError):
            desc = "(unparsable)"
        out[f.stem] = desc.strip().splitlines()[0] if desc.strip() else ""
    return out
