"""Spec validation: every name and value checked against the registries before anything compiles.

:func:`validate` checks the first run's configuration (every axis at its first value), then each
value of each axis on its own, so an error names the field that is wrong: a value on an axis is
reported as ``axes.<path> value <v>: …``, anything else by its field. :func:`resolve_spec` is the
one entry point from user input (a name, a path, a dict, overrides) to a validated :class:`Spec`.

>>> resolve_spec({"task": {"name": "xor"}, "axes": {"seed": 2}}).n_runs
2
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optax

from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.initializers import INITIALIZERS
from jaxinit.blocks.metrics import DIAGNOSTICS
from jaxinit.blocks.models import MODELS
from jaxinit.blocks.tasks import TASKS
from jaxinit.config.spec import (
    MAX_SEED,
    Spec,
    SpecError,
    coerce,
    field_names,
    is_traced,
    lr_unit_problem,
)
from jaxinit.engine.algorithms import ALGORITHMS, GRADIENT, declared

__all__ = ["validate", "resolve_spec", "model_settings", "OPTIMIZERS", "DTYPES", "LAYOUTS"]

DTYPES = ("float32", "float64")
LAYOUTS = ("auto", "vmap", "lanes")
OPTIMIZERS = tuple(
    n
    for n in (
        "sgd",
        "adam",
        "adamw",
        "adamax",
        "amsgrad",
        "nadam",
        "radam",
        "rmsprop",
        "adagrad",
        "adabelief",
        "lamb",
        "lars",
        "lion",
        "novograd",
        "yogi",
        "fromage",
        "sign_sgd",
    )  # fmt: skip
    if hasattr(optax, n)
)
TASK_INT_MAX = 100_000  # cap on integer task arguments (sizes), so a typo cannot exhaust memory
_TASK_INT_LIMITS = {"n": 20, "seed": MAX_SEED}  # parity(n) has 2**n points
_TASK_INT_OFF = {"teacher_rotation_seed"}  # -1 means "off"
_NOT_AXES = {
    "train.dtype": "a sweep has one precision (jax_enable_x64, jaxinit.engine.train.precision)"
}


def resolve_spec(
    spec: Spec | Mapping | str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> Spec:
    """A validated :class:`Spec` from a Spec, a dict, a TOML path or a bundled spec name,
    with ``--set``-style overrides applied first."""
    if isinstance(spec, (str, os.PathLike)):
        from jaxinit.config.bundled import find_spec

        spec = Spec.from_toml(find_spec(spec))
    elif not isinstance(spec, Spec):
        spec = Spec.from_dict(spec)
    spec = spec.with_overrides(overrides) if overrides else spec
    validate(spec)
    return spec


def validate(spec: Spec) -> None:
    """Raise :class:`SpecError` naming the field if any field, or any axis value, is invalid."""
    _seed("seed", spec.seed)
    if spec.is_probe:
        _validate_probe(spec)
        return
    for path, values in spec.axes:
        _check_axis(spec, path, values)
    first = spec.first_run()
    _validate_one(first)
    try:  # so only a swept field's base value can fail here: the plan and sizing read it too
        _validate_one(spec)
    except SpecError as e:
        raise SpecError(
            f"{e} (its base value, outside [axes]: swept fields need a valid one too)"
        ) from None
    _check_algorithm_axes(spec)
    for path, values in spec.axes:
        if path == "seed" or len(values) < 2:
            continue
        for v in values[1:]:
            try:
                _validate_one(first.replace({path: _coerce_axis(spec, path, v)}))
            except SpecError as e:
                raise SpecError(f"axes.{path} value {v!r}: {e}") from None
    for d in spec.train.diagnostics:
        _one_of("train.diagnostics", d, tuple(DIAGNOSTICS))
    if spec.report:
        from jaxinit.plots.names import figure_names

        for name in spec.report:
            _one_of("report", name, figure_names())


def _validate_probe(spec: Spec) -> None:
    """A probe spec (:mod:`jaxinit.engine.probes`): the nets' shape, the inputs, the ``σ``
    values, known activations and weight laws, and its figures."""
    from jaxinit.blocks.signal import WEIGHTS
    from jaxinit.plots.names import figure_names

    p = spec.probe
    for k in ("depth", "width", "in_dim"):
        lo = 1 if k == "depth" else 2
        if getattr(p, k) < lo:
            raise SpecError(f"probe.{k} must be >= {lo}, got {getattr(p, k)}")
    depths = list(p.depths)
    if not depths or depths[0] < 1 or depths != sorted(set(depths)):
        raise SpecError(f"probe.depths must be increasing depths >= 1, got {depths}")
    if not -1.0 < p.correlation < 1.0:
        raise SpecError(f"probe.correlation must be in (-1, 1), got {p.correlation}")
    if isinstance(p.sigma_w, str) and p.sigma_w != "critical":
        raise SpecError(f'probe.sigma_w must be > 0 or "critical", got {p.sigma_w!r}')
    if not isinstance(p.sigma_w, str) and p.sigma_w <= 0:
        raise SpecError(f'probe.sigma_w must be > 0 or "critical", got {p.sigma_w}')
    if p.sigma_b < 0:
        raise SpecError(f"probe.sigma_b must be >= 0, got {p.sigma_b}")
    for name, values in spec.axes:
        if name in ("activation", "weights"):
            known = tuple(ACTIVATIONS) if name == "activation" else tuple(WEIGHTS)
            for v in values:
                if v not in known:
                    raise SpecError(f"axes.{name} value {v!r}: allowed: {', '.join(known)}")
        elif name != "seed" and (min(values) < 0 or (name == "sigma_w" and min(values) <= 0)):
            raise SpecError(
                f"axes.{name} values must be {'> 0' if name == 'sigma_w' else '>= 0'}: "
                f"{list(values)}"
            )
    for name in spec.report:
        _one_of("report", name, figure_names())


def _check_axis(spec: Spec, path: str, values: Sequence) -> None:
    """The axis exists, may be swept, and each value has the field's type."""
    if path == "seed":
        if not isinstance(values, range):  # a count is in range by construction
            for v in values:
                _seed("axes.seed: each value", v)
        return
    section, name = path.partition(".")[::2]
    sec = getattr(spec, section, None)
    if sec is None:
        spec.get(path)  # raises the "does not exist" SpecError
    if path in _NOT_AXES or section in ("store", "basins", "landscape") or name == "params":
        raise SpecError(
            f"axis {path!r} is not allowed: {_NOT_AXES.get(path, 'not a sweepable field')}; "
            "run separate sweeps instead"
        )
    if name not in field_names(type(sec)) and not hasattr(sec, "params"):
        raise SpecError(
            f"axis {path!r}: [{section}] has no field {name!r}; allowed: "
            + ", ".join(field_names(type(sec)))
        )
    for v in values:
        _coerce_axis(spec, path, v)
    is_traced(spec, path, values)


def _coerce_axis(spec: Spec, path: str, value: Any) -> Any:
    section, name = path.split(".", 1)
    cls = type(getattr(spec, section))
    if name in field_names(cls) and name != "params":
        return coerce(f"axes.{path}", cls, name, list(value) if isinstance(value, tuple) else value)
    return value


# -- field checks ---------------------------------------------------------------------------------
def _one_of(where: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SpecError(f"{where} = {value!r} is not known; allowed: {', '.join(allowed)}")


def _finite(where: str, value: Any, *, positive=False, nonneg=False, below=None) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(f"{where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise SpecError(f"{where} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise SpecError(f"{where} must be >= 0, got {value!r}")
    if below is not None and value >= below:
        raise SpecError(f"{where} must be < {below}, got {value!r}")


def _seed(where: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise SpecError(f"{where} must be an integer in 0..{MAX_SEED}, got {value!r}")


def _signature_params(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _check_task(name: str, params: Mapping[str, Any]) -> None:
    """Task arguments: known names, the type of each default, sizes in range, and a task that
    builds with a non-empty, finite training set."""
    sig = _signature_params(TASKS[name])
    for k, v in params.items():
        if k not in sig:
            allowed = ", ".join(sig) or "(none: this task takes no parameters)"
            raise SpecError(f"task {name!r} has no parameter {k!r}; allowed: {allowed}")
        lo = -1 if k in _TASK_INT_OFF else 0
        _check_argument(f"task.{k}", sig[k].default, v, lo, _TASK_INT_LIMITS.get(k, TASK_INT_MAX))
    check_task_data(name, params)
    _build_task(name, json.dumps(dict(params), sort_keys=True))


def check_task_data(name: str, params: Mapping[str, Any]) -> None:
    """A user's data (task ``arrays``, :mod:`jaxinit.blocks.user_data`): read and checked, with each
    problem (a missing file or column, a shape, dtype, NaN or label) its own error, as it is."""
    if name == "arrays":
        TASKS[name](**params)


def _check_argument(where: str, default: Any, v: Any, lo: int = 0, hi: int = TASK_INT_MAX) -> None:
    """A factory's keyword argument has the type of its default: integers in ``lo..hi``, finite
    floats, strings, lists of positive integers (sizes)."""
    if isinstance(default, bool):
        _typed_bool(where, v)
    elif isinstance(default, int):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise SpecError(f"{where} must be an integer in {lo}..{hi}, got {v!r}")
    elif isinstance(default, float):
        _finite(where, v)
    elif isinstance(default, str):
        if not isinstance(v, str):
            raise SpecError(f"{where} must be str, got {v!r}")
    elif isinstance(default, tuple):
        items = v if isinstance(v, (list, tuple)) else [None]
        if not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= TASK_INT_MAX for w in items
        ):
            raise SpecError(f"{where} must be a list of integers in 1..{TASK_INT_MAX}, got {v!r}")


def model_settings(name: str) -> dict[str, inspect.Parameter]:
    """A built-in model's own settings (``model.params``): the keyword-only arguments of its
    factory in :data:`jaxinit.blocks.models.MODELS`, each typed by its default."""
    sig = _signature_params(MODELS[name])
    return {k: p for k, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_model(m) -> None:
    """``[model]``: a known name, the shared fields, and the model's own settings (declared by
    its factory: known names, the type of each default)."""
    _one_of("model.name", m.name, tuple(MODELS))
    for k, w in enumerate(m.widths):
        if not isinstance(w, int) or w < 1:
            raise SpecError(f"model.widths[{k}] must be a positive integer, got {w!r}")
    _one_of("model.activation", m.activation, tuple(ACTIVATIONS))
    _finite("model.dropout", m.dropout, nonneg=True, below=1.0)
    own = model_settings(m.name)
    for k, v in m.params.items():
        if k not in own:
            allowed = [f for f in field_names(type(m)) if f != "params"] + list(own)
            raise SpecError(
                f"[model] has no field {k!r} (model.{k}) for model {m.name!r}; allowed: "
                + ", ".join(allowed)
            )
        if isinstance(own[k].default, tuple) and isinstance(v, list):
            v = tuple(v)
        _check_argument(f"model.{k}", own[k].default, v)


def _typed_bool(where: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise SpecError(f"{where} must be bool, got {v!r}")


@functools.lru_cache(maxsize=64)
def _build_task(name: str, params_json: str) -> Any:
    params = json.loads(params_json)
    try:
        task = TASKS[name](**params)
    except Exception as e:  # a factory's own complaint about its arguments
        raise SpecError(f"task {name!r} with {params}: {type(e).__name__}: {e}") from None
    arrays = task[:4]
    if any(np.asarray(a).size == 0 for a in arrays) or not all(
        np.isfinite(np.asarray(a, float)).all() for a in arrays
    ):
        raise SpecError(f"task {name!r} with {params} gives an empty or non-finite data set")
    return task


def _check_model_fits(spec: Spec) -> None:
    """The built-in model can be built for the task's input and output widths (e.g. ``cnn``
    needs square images, ``relu_student`` one output)."""
    m, t = spec.model, spec.task
    task = _build_task(t.name, json.dumps(dict(t.params), sort_keys=True))
    try:
        MODELS[m.name](m, task.in_dim, task.out_dim, **m.params)
    except ValueError as e:  # the model's own check of its settings, or of the task's shape
        raise SpecError(f"model.name = {m.name!r} does not fit task {t.name!r}: {e}") from None


def _check_optimizer(o) -> None:
    """Extra optimizer arguments: known names, plain finite values matching the defaults' types."""
    fn = getattr(optax, o.name)
    sig = _signature_params(fn)
    allowed = ", ".join(a for a in sig if a != "learning_rate")
    for k, v in o.params.items():
        if k not in sig or k == "learning_rate":
            raise SpecError(f"optimizer {o.name!r} has no parameter {k!r}; allowed: {allowed}")
        default, where = sig[k].default, f"optimizer.{k}"
        if isinstance(default, bool) or isinstance(v, bool):
            if not (isinstance(default, bool) and isinstance(v, bool)):
                raise SpecError(f"{where} must be {type(default).__name__}, got {v!r}")
        elif isinstance(default, (int, float)) or isinstance(v, (int, float)):
            _finite(where, v)
        elif not isinstance(v, str) or (default is not None and not isinstance(default, str)):
            raise SpecError(f"{where} must be a number, true/false or a string, got {v!r}")
    try:
        fn(learning_rate=o.learning_rate, **o.params)
    except Exception as e:
        raise SpecError(f"optimizer {o.name!r} rejects {dict(o.params)}: {e}") from None


def _check_steps(tr) -> None:
    if not 1 <= tr.steps <= 10_000_000:
        raise SpecError(f"train.steps must be in 1..10000000, got {tr.steps}")
    if not 1 <= tr.log_every <= tr.steps or tr.steps % tr.log_every:
        near = [d for d in range(1, tr.steps + 1) if tr.steps % d == 0]
        best = min(near, key=lambda d: (abs(d - tr.log_every), d))
        raise SpecError(
            f"train.log_every ({tr.log_every}) must divide train.steps ({tr.steps}): "
            f"set train.log_every to a divisor of {tr.steps}, e.g. --set train.log_every={best}"
        )


def _validate_one(spec: Spec) -> None:
    """One run's configuration (no axes): every field's name and range."""
    t, m, i, o, tr = spec.task, spec.model, spec.init, spec.optimizer, spec.train
    _one_of("task.name", t.name, tuple(TASKS))
    _check_task(t.name, t.params)
    _check_model(m)
    _one_of("init.scheme", i.scheme, tuple(INITIALIZERS))
    _one_of("init.bias_scheme", i.bias_scheme, tuple(INITIALIZERS))
    _finite("init.scale", i.scale, nonneg=True)
    _finite("init.bias_scale", i.bias_scale, nonneg=True)
    _finite("init.value", i.value)
    _finite("init.perturbation", i.perturbation, nonneg=True)
    if i.plane_seed != -1:
        _seed("init.plane_seed (or -1: off)", i.plane_seed)
    for name in ("plane_seed_a", "plane_seed_b"):
        value = getattr(i, name)
        if value != -1:
            _seed(f"init.{name} (or -1: a random direction)", value)
            if i.plane_seed < 0:
                raise SpecError(f"init.{name} needs init.plane_seed >= 0 (the plane's origin)")
    _finite("init.plane_a", i.plane_a)
    _finite("init.plane_b", i.plane_b)
    _one_of("optimizer.name", o.name, OPTIMIZERS)
    _finite("optimizer.learning_rate", o.learning_rate, positive=True)
    _check_optimizer(o)
    if lr_unit_problem(spec):
        raise SpecError(lr_unit_problem(spec))
    _check_steps(tr)
    if tr.batch_size < 0:
        raise SpecError(f"train.batch_size must be >= 0 (0: full batch), got {tr.batch_size}")
    _finite("train.grad_tol", tr.grad_tol, nonneg=True)
    if tr.threshold is not None:
        _finite("train.threshold", tr.threshold)
    _one_of("train.dtype", tr.dtype, DTYPES)
    _one_of("train.layout", tr.layout, LAYOUTS)
    for name in ("sharpness_iters", "sharpness_every"):
        value = getattr(tr, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"train.{name} must be an integer >= 1, got {value!r}")
    _finite("train.sharpness_tol", tr.sharpness_tol, nonneg=True)
    _check_fits_dtype(spec)
    b = spec.basins
    _finite("basins.f_tol", b.f_tol, positive=True)
    _finite("basins.p_tol", b.p_tol, nonneg=True)
    _finite("basins.loss_tol", b.loss_tol, nonneg=True)
    _finite("basins.grad_tol", b.grad_tol, nonneg=True)
    _one_of("basins.probe", b.probe, ("data", "box"))
    if b.n_probe < 1:
        raise SpecError(f"basins.n_probe must be >= 1, got {b.n_probe}")
    _check_landscape(spec.landscape)
    _check_algorithm(spec)
    if spec.algorithm.name == GRADIENT:
        _check_model_fits(spec)


def _check_landscape(ls) -> None:
    """``[landscape]``: the settings of :func:`jaxinit.analysis.landscape.graph`."""
    for name, low in (("k", 0), ("max_nodes", 0), ("images", 3), ("steps", 1), ("subdivide", 0),
                      ("chunk", 1)):  # fmt: skip
        v = getattr(ls, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise SpecError(f"landscape.{name} must be an integer >= {low}, got {v!r}")
    for name in ("spring", "dt", "dt_max", "max_step", "force_tol", "max_stretch"):
        _finite(f"landscape.{name}", getattr(ls, name), positive=True)
    if ls.dt > ls.dt_max:
        raise SpecError(f"landscape.dt ({ls.dt}) must be <= landscape.dt_max ({ls.dt_max})")
    if ls.max_stretch <= 1:
        raise SpecError(
            f"landscape.max_stretch must be > 1 (× the straight line's length), got {ls.max_stretch}"
        )
    _one_of("landscape.optimizer", ls.optimizer, ("fire", "lbfgs"))


_IN_DTYPE = ("model", "init", "optimizer", "train", "algorithm")
"""The sections whose numbers the compiled program holds in ``train.dtype``."""


def _check_fits_dtype(spec: Spec) -> None:
    """Every number the program computes with (the fields of :data:`_IN_DTYPE`, the optimizer's
    arguments and the task's data) fits in ``train.dtype``: ``init.scale = 1e308`` is finite in
    Python but ``inf`` in float32, which would make every run non-finite."""
    dtype = spec.train.dtype
    big = float(np.finfo(dtype).max)

    def check(where: str, v: Any) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > big:
            raise SpecError(
                f"{where} = {v!r} does not fit in train.dtype = {dtype!r} (largest {big:.4g}): "
                f"it would be inf and every run non-finite; use a smaller value"
                + ("" if dtype == "float64" else ' or train.dtype = "float64"')
            )

    for section in _IN_DTYPE:
        sec = getattr(spec, section)
        for name in field_names(type(sec)):
            check(f"{section}.{name}", getattr(sec, name))
    for section in ("model", "optimizer", "algorithm"):
        for k, v in getattr(spec, section).params.items():
            check(f"{section}.{k}", v)
    t = spec.task
    task = _build_task(t.name, json.dumps(dict(t.params), sort_keys=True))
    largest = max(float(np.abs(np.asarray(a, float)).max()) for a in task[:4])
    if largest > big:
        raise SpecError(
            f"task {t.name!r} with {dict(t.params)} has data of size {largest:.4g}, which does "
            f"not fit in train.dtype = {dtype!r} (largest {big:.4g})"
        )


def _check_algorithm(spec: Spec) -> None:
    """``[algorithm]``: a known name, the settings the algorithm declares (known names, each
    value of its declared type and passing its declared check), and a k the task can hold."""
    a = spec.algorithm
    _one_of("algorithm.name", a.name, (GRADIENT, *ALGORITHMS))
    by_name = {s.name: s for s in (ALGORITHMS[a.name].settings if a.name != GRADIENT else ())}
    for k, v in a.params.items():
        if k not in by_name:
            allowed = ", ".join(by_name) or "(none: it takes no settings)"
            raise SpecError(
                f"algorithm {a.name!r} has no setting {k!r} (algorithm.{k}); allowed: {allowed}"
            )
        setting, where = by_name[k], f"algorithm.{k} (for {a.name})"
        v = setting.coerce(where, v)
        if setting.type is float:
            _finite(where, v)
        problem = setting.check(v) if setting.check else None
        if problem:
            raise SpecError(f"{where} {problem}")
    if a.name == GRADIENT:
        return
    task = TASKS[spec.task.name](**spec.task.params)
    k = declared(a)["k"]
    if k == 0 and task.loss != "ce":
        raise SpecError(
            f"algorithm.k = 0 takes k from the task's classes, but task {spec.task.name!r} has "
            "none: set algorithm.k"
        )
    k, n = k or task.out_dim, task.x_train.shape[0]
    if not 1 <= k <= n:
        raise SpecError(f"algorithm.k must be in 1..{n} (the task's training points), got {k}")


def _check_algorithm_axes(spec: Spec) -> None:
    """k-means and EM ignore the model, its init and the optimizer: sweeping them is an error."""
    names = {spec.algorithm.name} | {v for p, vs in spec.axes if p == "algorithm.name" for v in vs}
    if names == {GRADIENT}:
        return
    for path, _ in spec.axes:
        if path.split(".")[0] in ("model", "init", "optimizer"):
            raise SpecError(
                f"axis {path!r} does nothing for algorithm {sorted(names - {GRADIENT})[0]!r} "
                "(it ignores [model], [init] and [optimizer]); sweep algorithm.* or task.* instead"
            )
