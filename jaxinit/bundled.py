"""The bundled sweep specs in ``sweeps/``: find one by name, list them with their descriptions."""

from __future__ import annotations

import os
from pathlib import Path

from jaxinit import _toml
from jaxinit.spec import SpecError

SWEEPS_DIR = Path(__file__).resolve().parent.parent / "sweeps"


def find_spec(name: str | os.PathLike) -> Path:
    """A spec path as given if it exists, else ``sweeps/<name>.toml``."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = SWEEPS_DIR / f"{path.stem}.toml"
    if path.suffix in ("", ".toml") and bundled.is_file():
        return bundled
    names = ", ".join(sorted(bundled_specs())) or "(none found)"
    raise SpecError(f"no spec file {str(name)!r}; bundled specs: {names}")


def bundled_specs() -> dict[str, str]:
    """``name -> one-line description`` of every spec in ``sweeps/``."""
    out = {}
    for f in sorted(SWEEPS_DIR.glob("*.toml")):
        try:
            desc = _toml.loads(f.read_bytes().decode("utf-8")).get("description", "")
        except (_toml.TOMLDecodeError, UnicodeDecodeError):
            desc = "(unparsable)"
        out[f.stem] = desc.strip().splitlines()[0] if desc.strip() else ""
    return out
