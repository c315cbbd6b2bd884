"""jaxinit: what happens to a network from different starting weights, measured at scale.

>>> import jaxinit
>>> ds = jaxinit.run("symmetry", out="results/symmetry")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from jaxinit.activations import ACTIVATIONS
from jaxinit.adapters import from_equinox, from_flax, reinit  # flax/equinox: only when called
from jaxinit.algorithms import ALGORITHMS, Algorithm
from jaxinit.devices import use_cpu_cores
from jaxinit.executors import Executor
from jaxinit.initializers import INITIALIZERS, expected_std
from jaxinit.models import MODELS, Model, Symmetry, mlp
from jaxinit.progress import Status, status
from jaxinit.spec import (
    AlgorithmSpec,
    InitSpec,
    ModelSpec,
    OptimizerSpec,
    Spec,
    SpecError,
    TaskSpec,
    TrainSpec,
)
from jaxinit.store import CorruptChunkError, StoreError
from jaxinit.sweep import prepare, run
from jaxinit.tasks import TASKS, Task
from jaxinit.validation import resolve_spec, validate

_LAZY = {"assemble", "load", "load_params", "tidy"}
"""Names of :mod:`jaxinit.results`, imported on first use: it brings in xarray and pandas
(~0.4 s), which ``jaxinit run`` needs only after training has started."""

_SUBMODULES = {
    "basins",
    "curvature",
    "plots",
    "probes",
    "report",
    "restarts",
    "results",
    "signal",
    "stats",
    "symmetry",
    "theory",
}
"""Analysis and figure modules, reachable as ``jaxinit.basins`` etc. right after ``import jaxinit``
and imported on first use (they bring in SciPy, xarray or matplotlib)."""


def __getattr__(name: str):
    if name in _LAZY:
        from jaxinit import results

        return getattr(results, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"jaxinit.{name}")
    raise AttributeError(f"module 'jaxinit' has no attribute {name!r}")


__all__ = [
    # verbs
    "run",
    "prepare",
    "load",
    "load_params",
    "tidy",
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
    "Executor",
]
"""What users call (``Executor`` picks the devices a sweep runs on). Engine internals are imported
from their modules (``jaxinit.train.make_run``, ``jaxinit.plan.make_plan``)."""
