"""TOML reading: the standard library's ``tomllib`` (3.11+) or its backport ``tomli`` (3.10)."""

try:
    from tomllib import TOMLDecodeError, loads
except ImportError:  # Python 3.10
    from tomli import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]
