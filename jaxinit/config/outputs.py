"""The per-run outputs every run program returns, declared once.

:data:`FINALS` is the one table of a run's final values: name, kind (``float``, ``bool`` or
``step``: a step count of an event that may never happen, ``-1`` in the engine, NaN in a
Dataset), long name, units and description. The run engine builds them with
:func:`final_record`; the results layer (:data:`jaxinit.engine.results.FINAL_VARIABLES`,
:data:`jaxinit.engine.results.VARIABLE_ATTRS`), the store and the docs read this table.

>>> [f.name for f in FINALS][:3]
['final_loss', 'final_metric', 'test_loss']
>>> kinds()["diverged_step"]
'step'
"""

from __future__ import annotations

from typing import Any, NamedTuple

from jax import Array

__all__ = ["FINALS", "OPTIONAL_FINALS", "Output", "NEVER", "attrs", "final_record", "kinds"]

NEVER = "NaN if it never happened (or the run is not done)"


class Output(NamedTuple):
    """One per-run output: what it is called, its kind and its CF-style attributes."""

    name: str
    kind: str  # "float" | "bool" | "step"
    long_name: str
    units: str  # "" when it has none (a boolean)
    description: str


FINALS: tuple[Output, ...] = (
    Output("final_loss", "float", "final training loss", "1",
           "training objective after the last update"),
    Output("final_metric", "float", "final training metric", "1",
           "accuracy (classification) or R² (regression) on the training set"),
    Output("test_loss", "float", "test loss", "1", "loss on the test set after the last update"),
    Output("test_metric", "float", "test metric", "1",
           "accuracy or R² on the test set after the last update"),
    Output("final_grad_norm", "float", "final gradient norm", "1",
           "full-batch training gradient norm at the final parameters "
           "(k-means / EM: the size of the last step's change)"),
    Output("diverged", "bool", "diverged", "", "the loss or the parameters became non-finite"),
    Output("diverged_step", "step", "divergence step", "steps",
           f"first step with a non-finite loss; {NEVER}"),
    Output("converged_step", "step", "convergence step", "steps",
           f"step the gradient norm fell below train.grad_tol; {NEVER}"),
    Output("time_to_threshold", "step", "time to threshold", "steps",
           f"first step with training loss below train.threshold; {NEVER}"),
    Output("success", "bool", "solved the task", "",
           "training metric reached the task's success level without diverging"),
)  # fmt: skip
"""Every per-run final, in the order a run's ``final`` record holds them."""

OPTIONAL_FINALS: tuple[Output, ...] = (
    Output("lambda0", "float", "λ₀: top curvature at init", "1",
           "top eigenvalue at the initial parameters (over the trainable ones) of the "
           "Gauss–Newton matrix JᵀJ/N for the MSE loss 1/(2N)·Σ‖f(x)−y‖² (the top eigenvalue of "
           "the empirical NTK over N), of the training-loss Hessian for other losses; plain "
           "gradient descent is stable near the init while η·λ₀ < 2 (Lanczos, "
           "jaxinit.blocks.sharpness.lambda0); only with train.lambda0 or optimizer.lr_unit"),
)  # fmt: skip
"""Per-run finals that a run records only when its spec asks for them (after the
:data:`FINALS`); a Dataset has them only then."""


def kinds() -> dict[str, str]:
    """``name -> kind`` of every final."""
    return {f.name: f.kind for f in FINALS}


def attrs(output: Output) -> dict[str, str]:
    """The xarray attributes of ``output``: ``long_name``, ``units`` (if any), ``description``."""
    out = {"long_name": output.long_name}
    if output.units:
        out["units"] = output.units
    out["description"] = output.description
    return out


def final_record(
    *,
    final_loss: Array,
    final_metric: Array,
    test_loss: Array,
    test_metric: Array,
    final_grad_norm: Array,
    diverged_step: Array,
    converged_step: Array,
    time_to_threshold: Array,
    success_metric: Any,
    **optional: Array,
) -> dict[str, Array]:
    """A run's ``final`` record, one entry per :data:`FINALS` (scalars, or ``(C,)`` for a
    batch of runs): the measured values, the three step books (``-1``: never) and what follows
    from them (``diverged``; ``success``: the training metric at or above ``success_metric``
    without diverging), then the ``optional`` ones (:data:`OPTIONAL_FINALS`) given."""
    diverged = diverged_step >= 0
    record = {
        "final_loss": final_loss,
        "final_metric": final_metric,
        "test_loss": test_loss,
        "test_metric": test_metric,
        "final_grad_norm": final_grad_norm,
        "diverged": diverged,
        "diverged_step": diverged_step,
        "converged_step": converged_step,
        "time_to_threshold": time_to_threshold,
        "success": (final_metric >= success_metric) & ~diverged,
    }
    assert list(record) == [f.name for f in FINALS]
    unknown = set(optional) - {f.name for f in OPTIONAL_FINALS}
    if unknown:
        raise ValueError(f"undeclared finals {sorted(unknown)}: declare them in OPTIONAL_FINALS")
    record.update((f.name, optional[f.name]) for f in OPTIONAL_FINALS if f.name in optional)
    return record
