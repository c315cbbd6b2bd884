"""Figures of a sweep's Dataset (matplotlib). Each figure is ``fn(ds) -> Figure``, by name in
:data:`FIGURES`; ``jaxinit report`` draws a spec's ``report`` list (or the defaults).

Importing this package is cheap and leaves matplotlib alone: the figure modules (and
``matplotlib.pyplot``) load on first use of anything but :data:`FIGURE_NAMES`,
:data:`DEFAULT_FIGURES` and :func:`figure` (the registry, :mod:`jaxinit.plots.names`), and no
backend is ever selected here, so a notebook keeps its inline backend. Conventions of the
figures: see :mod:`jaxinit.plots.core`.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxinit.plots.names import FAMILIES as _FAMILIES

# Public name -> the submodule that defines it (loaded on first access, see __getattr__).
_LAZY = {
    "FIGURES": "names",
    "TABLES": "names",
    "NothingToDraw": "core",
    "note_figure": "core",
    "sweep_dims": "core",
    "wilson": "core",
    "best_scale_bands": "init_figures",
    "diag_linear_beta": "init_figures",
    "time_to_threshold_table": "init_figures",
    "magic_numbers_table": "depth_figures",
    "phase_diagram_table": "depth_figures",
    "phase_table": "sharpness_figures",
    "sharpness_table": "sharpness_figures",
    "dimension_table": "sharpness_figures",
}
_REGISTRY = ("DEFAULT_FIGURES", "FIGURE_NAMES", "figure")  # read without the figure modules


def __getattr__(name: str) -> Any:
    """Import the figure modules on first use; every family registers itself in FIGURES."""
    if name in _REGISTRY:
        return getattr(importlib.import_module("jaxinit.plots.names"), name)
    if name not in _LAZY and name not in _FAMILIES:
        raise AttributeError(f"module 'jaxinit.plots' has no attribute {name!r}")
    for family in _FAMILIES:
        importlib.import_module(f"jaxinit.plots.{family}")
    module = importlib.import_module(f"jaxinit.plots.{_LAZY.get(name, name)}")
    value = module if name in _FAMILIES else getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The lazy names too (tab completion in a notebook)."""
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_FIGURES",
    "FIGURES",
    "FIGURE_NAMES",
    "NothingToDraw",
    "TABLES",
    "basin_figures",
    "best_scale_bands",
    "core",
    "depth_figures",
    "diag_linear_beta",
    "figure",
    "init_figures",
    "landscape_figures",
    "magic_numbers_table",
    "note_figure",
    "phase_diagram_table",
    "restart_figures",
    "sharpness_figures",
    "sharpness_table",
    "phase_table",
    "dimension_table",
    "sweep_dims",
    "time_to_threshold_table",
    "wilson",
]
