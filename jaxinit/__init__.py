"""jaxinit: what happens to a network from different starting weights, measured at scale.

>>> import jaxinit
>>> ds = jaxinit.run("symmetry", out="results/symmetry")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.adapters import (  # flax/equinox: only when called
    from_equinox,
    from_flax,
    reinit,
)
from jaxinit.blocks.initializers import INITIALIZERS, expected_std
from jaxinit.blocks.models import MODELS, Model, Symmetry, mlp
from jaxinit.blocks.tasks import TASKS, Task
from jaxinit.config.spec import (
    AlgorithmSpec,
    InitSpec,
    ModelSpec,
    OptimizerSpec,
    Spec,
    SpecError,
    TaskSpec,
    TrainSpec,
)
from jaxinit.engine.algorithms import ALGORITHMS, Algorithm
from jaxinit.engine.devices import use_cpu_cores
from jaxinit.engine.progress import Status, status
from jaxinit.engine.store import CorruptChunkError, StoreError
from jaxinit.engine.sweep import prepare, run
from jaxinit.engine.validation import resolve_spec, validate

_LAZY = {
    "Executor": "jaxinit.engine.executors",
    "assemble": "jaxinit.engine.results",
    "load": "jaxinit.engine.results",
    "load_params": "jaxinit.engine.results",
    "tidy": "jaxinit.engine.results",
    "report": "jaxinit.reports",
}
"""Verbs imported on first use: :mod:`jaxinit.engine.results` brings in xarray and pandas
(~0.4 s), which ``jaxinit run`` needs only after training has started; ``report``
(:func:`jaxinit.reports.report`) brings in matplotlib. ``Executor``
(:class:`jaxinit.engine.executors.Executor`, the devices a sweep runs on: ``jaxinit.run(...,
executor=jaxinit.Executor(devices))``) is an engine internal, reachable here for that call but
not in ``__all__``."""

_SUBMODULES = {
    "basins": "jaxinit.analysis.basins",
    "curvature": "jaxinit.analysis.curvature",
    "landscape": "jaxinit.analysis.landscape",
    "restarts": "jaxinit.analysis.restarts",
    "stats": "jaxinit.analysis.stats",
    "symmetry": "jaxinit.analysis.symmetry",
    "theory": "jaxinit.blocks.theory",
    "signal": "jaxinit.blocks.signal",
    "probes": "jaxinit.engine.probes",
    "results": "jaxinit.engine.results",
    "rebuild": "jaxinit.engine.rebuild",
    "plots": "jaxinit.plots",
    "reports": "jaxinit.reports",
    # the layers, as folders (jaxinit.engine is imported by jaxinit itself)
    "config": "jaxinit.config",
    "blocks": "jaxinit.blocks",
    "analysis": "jaxinit.analysis",
}
"""Analysis, figure and report modules, reachable as ``jaxinit.basins`` etc. right after
``import jaxinit`` and imported on first use (they bring in SciPy, xarray or matplotlib)."""


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'jaxinit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    # verbs
    "run",
    "prepare",
    "load",
    "load_params",
    "tidy",
    "report",
    "status",
    "validate",
    "resolve_spec",
    # types and errors
    "Spec",
    "AlgorithmSpec",
    "InitSpec",
    "ModelSpec",
    "OptimizerSpec",
    "TaskSpec",
    "TrainSpec",
    "Model",
    "Symmetry",
    "Task",
    "Algorithm",
    "Status",
    "SpecError",
    "StoreError",
    "CorruptChunkError",
    # building blocks and registries
    "mlp",
    "expected_std",
    "ACTIVATIONS",
    "ALGORITHMS",
    "INITIALIZERS",
    "MODELS",
    "TASKS",
    # models you already have, and the machine
    "from_equinox",
    "from_flax",
    "reinit",
    "use_cpu_cores",
]
"""What users call. Engine internals are imported from their modules
(``jaxinit.engine.train.make_run``, ``jaxinit.engine.plan.make_plan``,
``jaxinit.engine.executors.Executor``; ``jaxinit.Executor`` still works, lazily)."""
