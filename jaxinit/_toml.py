"""Kept only for :mod:`jaxinit.probes`, which still imports it: use :mod:`jaxinit.toml_io`.

Delete this file once probes.py imports ``jaxinit.toml_io`` (tests/test_layers.py allow-lists it).
"""

from jaxinit.toml_io import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]
