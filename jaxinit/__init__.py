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
from jaxinit.models import MODELS, Model, Symmetry, dense_stack, mlp
from jaxinit.plan import Plan, make_plan
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
from jaxinit.train import make_run
from jaxinit.validation import resolve_spec, validate

_LAZY = {"assemble", "load", "load_params", "tidy"}
"""Names of :mod:`jaxinit.results`, imported on first use: it brings in xarray and pandas
(~0.4 s), which ``jaxinit run`` needs only after training has started."""


def __getattr__(name: str):
    if name in _LAZY:
        from jaxinit import results

        return getattr(results, name)
    raise AttributeError(f"module 'jaxinit' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmSpec",
    "Executor",
    "Symmetry",
    "dense_stack",
    "prepare",
    "resolve_spec",
    "validate",
    "INITIALIZERS",
    "MODELS",
    "TASKS",
    "CorruptChunkError",
    "InitSpec",
    "Model",
    "ModelSpec",
    "OptimizerSpec",
    "Plan",
    "Spec",
    "SpecError",
    "Status",
    "StoreError",
    "Task",
    "TaskSpec",
    "TrainSpec",
    "assemble",
    "expected_std",
    "from_equinox",
    "from_flax",
    "reinit",
    "load",
    "load_params",
    "make_plan",
    "make_run",
    "mlp",
    "run",
    "status",
    "tidy",
    "use_cpu_cores",
]
