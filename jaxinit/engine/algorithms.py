"""Iterative algorithms from random starts, beside gradient training: k-means and EM.

An :class:`Algorithm` is a handful of pure functions for one run — ``init(key, x, settings)
-> state``, ``step(state, x, settings) -> state``, ``loss(state, x)`` — plus what analysis needs
to compare two solutions modulo relabelling (``components(state) -> (K, F)``, one row per
cluster, compared by optimal matching in :mod:`jaxinit.analysis.restarts`), and the settings it
declares (:class:`jaxinit.config.spec.Setting`: name, type, default, check), which
:func:`jaxinit.engine.validation.validate` reads and its functions receive as one NamedTuple
(:func:`settings`). Every algorithm declares ``k`` (clusters; 0: the task's classes) and ``tol``
(the change at which a step counts as converged), which the engine reads too. Gradient training of a model with optax
(:mod:`jaxinit.engine.train`) is the algorithm ``"gradient"``, the default of ``[algorithm] name``;
:data:`ALGORITHMS` holds the others, ``kmeans`` (:mod:`jaxinit.blocks.kmeans`) and ``gmm_em``
(:mod:`jaxinit.blocks.gmm`).

:func:`make_run` turns one into the engine's run function, ``run(values, data) -> outputs``, with
the same outputs as a training run, so that plans, the store, resume, identity and
:func:`jaxinit.load` treat both alike (the executor compiles it like training): the ``loss``
curve every ``train.log_every`` steps, and per run

- ``final_loss`` / ``test_loss``: the algorithm's loss on the training / test inputs;
- ``final_metric`` / ``test_metric``: adjusted Rand index of the clusters against the task's
  labels (1: the generating partition; NaN for a task without classes);
- ``converged_step``: the first step whose change (``Algorithm.changed``: points reassigned
  by k-means, the largest parameter change of EM) was at most ``algorithm.tol``; with ``tol =
  0``, k-means' exact fixed point. ``final_grad_norm`` holds the last step's change (a
  fixed-point residual: there is no gradient);
- ``diverged`` / ``diverged_step``: a non-finite loss (the run is frozen at its last finite
  logged state); ``success``: ``final_metric`` at or above the task's ``success_metric``;
- ``params0`` / ``params`` (with ``store.save_params``): the initial and final state.

The run's key is ``fold_in(key(spec.seed), seed)``, a training run's key (:func:`jaxinit.engine.program.
run_key`), so seed ``s`` is the same random start whatever else the sweep varies. A start draws
all its random numbers in one call (the random bit generator is most of a small program's
compile time).

>>> from jaxinit.config.spec import Spec
>>> from jaxinit.blocks.tasks import TASKS
>>> spec = Spec.from_dict({"algorithm": {"name": "kmeans", "init": "forgy"}})
>>> describe(spec, TASKS["blobs"](k=3))["params"]
{'centres': [[3, 2], 'float32']}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxinit.blocks import gmm, kmeans
from jaxinit.blocks.tasks import Task
from jaxinit.config.spec import AlgorithmSpec, Setting, Spec, settings_type
from jaxinit.engine.program import VMAP, Program, RunState, measured, run_for, run_key, start

GRADIENT = "gradient"
"""The name of gradient training (:mod:`jaxinit.engine.train`), the default algorithm."""


class Algorithm(NamedTuple):
    """An iterative algorithm for one run; every function is pure and traceable. ``settings``
    below is the NamedTuple of the algorithm's declared settings (:func:`settings`)."""

    name: str
    settings: tuple[Setting, ...]  # what it reads from [algorithm]: name, type, default, check
    init: Callable[..., Any]  # (key, x_NxD, settings) -> state
    step: Callable[..., Any]  # (state, x_NxD, settings) -> state
    changed: Callable[..., Array]  # (old, new, x_NxD) -> how much a step changed; 0: fixed point
    loss: Callable[[Any, Array], Array]  # (state, x_NxD) -> scalar, never increased by step
    predict: Callable[[Any, Array], Array]  # (state, x_NxD) -> cluster of each point (N,)
    components: Callable[[Any], Array]  # state -> (K, F): rows swap under relabelling
    from_labels: Callable[..., Any]  # (x_NxD, labels_N, settings) -> state of a partition


def _from_module(name: str, module: Any) -> Algorithm:
    """The :class:`Algorithm` a module defines with the functions' names (``SETTINGS``,
    ``init``, ``step``, ``changed``, ``loss``, ``predict``, ``components``, ``from_labels``)."""
    fields = Algorithm._fields[2:]
    return Algorithm(name, module.SETTINGS, *(getattr(module, f) for f in fields))


ALGORITHMS: dict[str, Algorithm] = {
    "kmeans": _from_module("kmeans", kmeans),
    "gmm_em": _from_module("gmm_em", gmm),
}
"""Registry ``name -> Algorithm`` of the algorithms other than ``"gradient"``."""


def is_algorithm(spec: Spec) -> bool:
    """Whether ``spec`` runs one of :data:`ALGORITHMS` rather than gradient training."""
    return spec.algorithm.name != GRADIENT


def declared(section: AlgorithmSpec) -> dict[str, Any]:
    """``name -> value`` of every setting ``section``'s algorithm declares: the spec's value,
    else the declared default (unchecked: :func:`jaxinit.engine.validation.validate` checks)."""
    alg = ALGORITHMS[section.name]
    return {s.name: section.params.get(s.name, s.default) for s in alg.settings}


def settings(spec: Spec, task: Task | None = None) -> Any:
    """The NamedTuple of the settings of ``spec``'s algorithm, as its functions receive them:
    defaults filled in, and with a ``task``, ``k`` resolved (:func:`n_clusters`)."""
    alg = ALGORITHMS[spec.algorithm.name]
    out = settings_type(alg.name, alg.settings)(**declared(spec.algorithm))
    return out if task is None else out._replace(k=out.k or task.out_dim)


def n_clusters(spec: Spec, task: Task) -> int:
    """``algorithm.k``, or the task's number of classes when it is 0."""
    return settings(spec, task).k


def has_labels(task: Task) -> bool:
    return task.loss == "ce"


def adjusted_rand(true_N: Array, pred_N: Array, k_true: int, k_pred: int) -> Array:
    """Adjusted Rand index (Hubert & Arabie 1985) from the ``(k_true, k_pred)`` contingency
    table: 1 for the same partition up to relabelling, about 0 for independent ones."""
    dtype = jnp.result_type(float)
    table = jax.nn.one_hot(true_N, k_true, dtype=dtype).T @ jax.nn.one_hot(
        pred_N, k_pred, dtype=dtype
    )

    def pairs(n):
        return jnp.sum(n * (n - 1) / 2)

    index, a, b = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = a * b / jnp.maximum(pairs(jnp.asarray(true_N.shape[0], dtype)), 1)
    top = (a + b) / 2 - expected
    return jnp.where(top > 0, (index - expected) / jnp.where(top > 0, top, 1), 1.0)


def make_init(spec: Spec, task: Task) -> Callable[[dict, Any], Any]:
    """``init(values, data) -> state0``: one run's start, ``algorithm.init`` from its key."""
    alg, s = ALGORITHMS[spec.algorithm.name], settings(spec, task)

    def init(values: dict[str, Array], data: Any) -> Any:
        return alg.init(run_key(spec.seed, values["seed"]), data.x_train, s)

    return init


def make_run(spec: Spec, task: Task) -> Callable[[dict, Any], dict]:
    """The program of one run of ``spec``'s algorithm: ``run(values, data) -> outputs``.

    ``values`` holds ``"seed"`` (and any traced field, unused here); ``data`` is a
    :class:`jaxinit.engine.train.Data` (``x_train``, ``y_train``, ``x_test``, ``y_test``).
    :func:`make_train` from :func:`make_init`'s start (the executor compiles them apart, so
    the inits of a sweep share one iteration program).
    """
    init, train = make_init(spec, task), make_train(spec, task)
    return lambda values, data: train(values, init(values, data), data)


def algorithm_program(spec: Spec, task: Task, values: dict[str, Array], data: Any) -> Program:
    """One run of ``spec``'s algorithm as a :class:`jaxinit.engine.program.Program`: the state is the
    algorithm's, its residual the last step's change; a step computes no loss, so divergence
    and the threshold are read from the logged losses; a converged run keeps iterating."""
    alg, s = ALGORITHMS[spec.algorithm.name], settings(spec, task)
    k, labelled = s.k, has_labels(task)
    x = data.x_train

    def step(state: RunState, t: Array) -> tuple[RunState, None, Array]:
        new = alg.step(state.params, x, s)
        change = alg.changed(state.params, new, x).astype(x.dtype)
        return state._replace(params=new, residual=change), None, change <= s.tol

    def finish(state: RunState, final_loss: Array) -> tuple[Array, dict, dict[str, Array]]:
        def metric(xs, ys):
            if not labelled:
                return jnp.full((), jnp.nan, x.dtype)
            return adjusted_rand(ys, alg.predict(state.params, xs), task.out_dim, k).astype(x.dtype)

        finals = measured(
            final_loss,
            metric(x, data.y_train),
            alg.loss(state.params, data.x_test),
            metric(data.x_test, data.y_test),
            state.residual,
        )
        return final_loss, {}, finals

    return Program(
        init=lambda state0: start(state0, (), residual=jnp.zeros((), x.dtype)),
        step=step,
        observe=lambda state, _: (alg.loss(state.params, x), {}),
        finish=finish,
        threshold=values.get("train.threshold", spec.train.threshold),
        success_metric=task.success_metric,
        step_loss=False,
        freeze_converged=False,
    )


def make_train(spec: Spec, task: Task) -> Callable[[dict, Any, Any], dict]:
    """``train(values, state0, data) -> outputs``: the iterations of one run from ``state0``
    (:func:`algorithm_program` run by :func:`jaxinit.engine.program.run`). Reads nothing of
    ``algorithm.init``."""

    def train(values: dict[str, Array], state0: Any, data: Any) -> dict[str, Any]:
        return run_for(spec, algorithm_program(spec, task, values, data), VMAP, state0)

    return train


def describe(spec: Spec, task: Task) -> dict[str, Any]:
    """What the identity records of an algorithm in place of a model: its name and the shapes
    and dtypes of its state (``{"name", "model_id": None, "params": {path: [shape, dtype]}}``)."""
    first = spec.first_run()
    alg, s = ALGORITHMS[first.algorithm.name], settings(first, task)
    x = jax.ShapeDtypeStruct(task.x_train.shape, np.dtype(first.train.dtype))
    shapes = jax.eval_shape(lambda key, x: alg.init(key, x, s), jax.random.key(0), x)
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    params = {
        jax.tree_util.keystr(p, simple=True, separator="/"): [list(s.shape), str(s.dtype)]
        for p, s in leaves
    }
    return {"name": first.algorithm.name, "model_id": None, "params": params}


def from_partition(spec: Spec, task: Task, labels_N: np.ndarray | None = None) -> tuple[Any, float]:
    """``(state, loss)`` after at most ``train.steps`` iterations started from a given partition
    of the training inputs (default: the task's labels, the generating partition), stopping
    once a step changes no more than ``algorithm.tol``: the reference optimum of a sweep. Run
    eagerly on the host (op by op: nothing to compile per cell), outside any sweep."""
    alg, s = ALGORITHMS[spec.algorithm.name], settings(spec, task)
    x = jnp.asarray(task.x_train, spec.train.dtype)
    labels = jnp.asarray(task.y_train if labels_N is None else labels_N, jnp.int32)
    state = alg.from_labels(x, labels, s)
    for _ in range(spec.train.steps):
        new = alg.step(state, x, s)
        done = float(alg.changed(state, new, x)) <= s.tol
        state = new
        if done:
            break
    return jax.device_get(state), float(alg.loss(state, x))
