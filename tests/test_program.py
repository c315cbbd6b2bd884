"""The one run loop (jaxinit.engine.program.run) on toy programs: books, freezing, rollback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.config import outputs
from jaxinit.engine import lanes
from jaxinit.engine.program import VMAP, Layout, Program, measured, run, start


def _toy(factor, *, threshold=0.3, step_loss=True, tol=None, freeze=True, runs=()):
    """``x ← factor · x`` per step; loss = x. Converged (with ``tol``) when the step's loss is
    under ``tol``."""

    def step(s, t):
        new = s._replace(params=s.params * factor, residual=jnp.abs(s.params * (factor - 1)))
        done = None if tol is None else s.params < tol
        return new, (s.params if step_loss else None), done

    def finish(s, logged):
        x = s.params
        return x, {}, measured(x, -x, x, -x, s.residual)

    return Program(
        init=lambda p: start(p, (), runs, residual=jnp.zeros(runs)),
        step=step,
        observe=lambda s, _: (s.params, {}),
        finish=finish,
        threshold=threshold,
        success_metric=-0.5,
        step_loss=step_loss,
        freeze_converged=freeze,
    )


def test_record_has_every_declared_output():
    out = jax.jit(lambda: run(_toy(0.5), VMAP, jnp.float32(1.0), steps=4, log_every=2))()
    assert set(out["final"]) == {f.name for f in outputs.FINALS}
    np.testing.assert_allclose(out["curves"]["loss"], [1.0, 0.25, 0.0625])
    assert int(out["final"]["time_to_threshold"]) == 2  # loss 0.25 at step 2
    assert int(out["final"]["diverged_step"]) == -1 and bool(out["final"]["success"])


@pytest.mark.parametrize("step_loss", [True, False])
def test_divergence_rolls_back_to_the_last_finite_logged_state(step_loss):
    """x = 1e10 · 1e10^t overflows float32 at step 4 (loss of step 3's state 1e40 = inf)."""
    prog = _toy(jnp.float32(1e10), threshold=None if not step_loss else -1.0, step_loss=step_loss)
    out = jax.jit(lambda: run(prog, VMAP, jnp.float32(1.0), steps=8, log_every=2))()
    final = out["final"]
    assert bool(final["diverged"]) and not bool(final["success"])
    # per step: the first non-finite step loss is step 4's (x = 1e40); logged: step 4 is logged
    assert int(final["diverged_step"]) == 4
    # frozen at the last finite logged state: step 2's x = 1e20
    np.testing.assert_allclose(final["final_loss"], 1e20, rtol=1e-6)
    assert np.isfinite(out["curves"]["loss"][-1])
    if not step_loss:  # a frozen run moves no more: its residual is 0
        assert float(final["final_grad_norm"]) == 0.0


@pytest.mark.parametrize("freeze", [True, False])
def test_converged_runs_record_the_step_and_freeze_when_asked(freeze):
    prog = _toy(jnp.float32(0.5), tol=0.1, freeze=freeze)
    out = jax.jit(lambda: run(prog, VMAP, jnp.float32(1.0), steps=8, log_every=4))()
    # losses 1, .5, .25, .125, .0625: step 4 starts under 0.1
    assert int(out["final"]["converged_step"]) == 4
    want = 0.0625 if freeze else 0.5**8
    np.testing.assert_allclose(out["final"]["final_loss"], want)


def test_books_per_block_equal_books_per_step():
    """The lanes layout keeps the books once per block (first_step): the same steps as the
    per-step books of the vmap layout, for a batch of runs on the lanes."""
    factors = jnp.array([0.5, 0.9, 1e10, 1.0], jnp.float32)
    x0 = jnp.ones(4, jnp.float32)
    per_run = jax.vmap(
        lambda f, x: run(_toy(f, threshold=0.6, tol=0.2), VMAP, x, steps=12, log_every=3)
    )(factors, x0)
    block_books = Layout("toy", VMAP.where, jnp.abs, jnp.isfinite, lanes.first_step, lambda a: a)
    batched = run(
        _toy(factors, threshold=0.6, tol=0.2, runs=(4,)), block_books, x0, steps=12, log_every=3
    )
    for name in ("diverged_step", "converged_step", "time_to_threshold", "final_loss"):
        np.testing.assert_array_equal(batched["final"][name], per_run["final"][name], name)
