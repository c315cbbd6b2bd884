"""Sweep specifications: frozen dataclasses read from TOML and validated before anything compiles.

A spec names the task, model, init, optimizer and training settings, and the **axes** to sweep:
``seed`` (a count or a list) and any spec field by its dotted path (``init.scale``,
``optimizer.learning_rate``, ``model.widths``, ``task.n_points`` …). Every problem is reported as a
:class:`SpecError` naming the field and the allowed values, so bad input never reaches JAX.

>>> spec = Spec.from_dict({"task": {"name": "xor"}, "axes": {"seed": 4, "init.scale": [0.5, 1.0]}})
>>> spec.axes
(('seed', (0, 1, 2, 3)), ('init.scale', (0.5, 1.0)))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optax
import tomllib

from jaxinit.initializers import INITIALIZERS
from jaxinit.tasks import TASKS

FORMAT_VERSION = 1
"""Bumped whenever a saved sweep directory changes layout or meaning."""

ACTIVATIONS = ("tanh", "sigmoid", "relu", "gelu", "linear", "erf")
DTYPES = ("float32", "float64")
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
SECTIONS = ("task", "model", "init", "optimizer", "train", "store", "basins")
MAX_SEED = 2**31 - 1  # seeds are folded into keys as int32
TASK_INT_MAX = 100_000  # cap on integer task arguments (sizes), so a typo cannot exhaust memory
_TASK_INT_LIMITS = {"n": 20, "seed": MAX_SEED}  # parity(n) has 2**n points
_TOP_LEVEL = ("name", "description", "seed", "axes", "report", *SECTIONS)


class SpecError(ValueError):
    """A spec, axis or override is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class TaskSpec:
    name: str = "xor"
    params: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments of the factory


@dataclass(frozen=True)
class ModelSpec:
    name: str = "mlp"
    widths: tuple[int, ...] = (2,)  # hidden widths; the input and output widths come from the task
    activation: str = "tanh"
    bias: bool = True
    dropout: float = 0.0  # probability of dropping a hidden unit while training
    train_output: bool = True  # False freezes the last layer at its init


@dataclass(frozen=True)
class InitSpec:
    """How a model's parameters are drawn. Float fields may be traced (vmapped) values.

    Weight ``W ~ scheme(fan_in, fan_out) · scale + perturbation · N(0, 1)``; biases use
    ``bias_scheme`` and ``bias_scale``. ``value`` is the weight of the ``constant`` scheme.
    """

    scheme: str = "lecun_normal"
    scale: float = 1.0
    value: float = 1.0
    perturbation: float = 0.0
    bias_scheme: str = "zeros"
    bias_scale: float = 1.0
    # A 2-D slice of init space: with plane_seed >= 0 every run starts at
    # θ = θ_base + plane_a·d1 + plane_b·d2, where θ_base is the init of seed plane_seed and d1, d2
    # are Gaussian directions scaled per layer to the norm of θ_base's layer ("filter-normalized").
    plane_seed: int = -1
    plane_a: float = 0.0
    plane_b: float = 0.0
    # >= 0: the direction d1 (d2) is θ(plane_seed_a) − θ_base, a plane through three given inits
    plane_seed_a: int = -1
    plane_seed_b: int = -1


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "sgd"
    learning_rate: float = 0.1
    params: Mapping[str, Any] = field(
        default_factory=dict
    )  # other keyword arguments of optax.<name>


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 1000
    log_every: int = 10  # record curves every this many steps; must divide ``steps``
    batch_size: int = 0  # 0: full batch
    grad_tol: float = 0.0  # > 0: stop a run (freeze it) once its gradient norm falls below this
    threshold: float | None = None  # loss level for time-to-threshold; None: the task's default
    dtype: str = "float32"
    diagnostics: tuple[str, ...] = ("grad_norm",)


@dataclass(frozen=True)
class StoreSpec:
    save_params: bool = False  # keep initial and final parameters of every run


@dataclass(frozen=True)
class BasinSpec:
    """Tolerances of the basin analysis (:mod:`jaxinit.basins`); they do not change training."""

    f_tol: float = 0.05  # same basin: RMS output distance on the probe set below this
    p_tol: float = 0.0  # > 0: also canonical parameter distance / norm below this
    loss_tol: float = 1e-2  # global basin: mean loss within this of the lowest basin's
    probe: str = "data"  # "data": train + test inputs; "box": random points in their bounding box
    n_probe: int = 256


@dataclass(frozen=True)
class Spec:
    """A whole sweep. ``axes`` is a tuple of ``(path, values)`` in the order of the dataset dims."""

    name: str = "sweep"
    description: str = ""
    seed: int = 0  # root seed; run r's key is fold_in(key(seed), seed coordinate of r)
    task: TaskSpec = field(default_factory=TaskSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    init: InitSpec = field(default_factory=InitSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    store: StoreSpec = field(default_factory=StoreSpec)
    basins: BasinSpec = field(default_factory=BasinSpec)
    axes: tuple[tuple[str, tuple], ...] = (("seed", (0,)),)
    report: tuple[str, ...] = ()  # figure names for ``jaxinit report``; empty: the defaults

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        """Read and validate a TOML spec file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise SpecError(f"cannot read spec {path}: {e.strerror or e}") from None
        return cls.from_toml_string(text, source=str(path))

    @classmethod
    def from_toml_string(cls, text: str, source: str = "<string>") -> Spec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{source}: TOML syntax error: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """Build a spec from nested dicts (the TOML layout) and validate it."""
        if isinstance(data, Spec):
            return data
        _check_keys("spec", data, _TOP_LEVEL)
        sections = {}
        for name in SECTIONS:
            sections[name] = _section(name, data.get(name, {}))
        axes = _parse_axes(data.get("axes", {}))
        spec = cls(
            name=_typed("name", data.get("name", "sweep"), str),
            description=_typed("description", data.get("description", ""), str),
            seed=_typed("seed", data.get("seed", 0), int),
            axes=axes,
            report=tuple(_typed("report", data.get("report", []), list)),
            **sections,
        )
        validate(spec)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain JSON-able dicts (the layout :meth:`from_dict` reads)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out["seed"] = self.seed
        for name in SECTIONS:
            sec = dataclasses.asdict(getattr(self, name))
            extra = sec.pop("params", None) or {}
            out[name] = {**sec, **extra}
        out["axes"] = {path: list(values) for path, values in self.axes}
        out["report"] = list(self.report)
        return json.loads(json.dumps(out, default=list))

    def fingerprint(self) -> str:
        """SHA-256 of the resolved spec: two specs with equal fingerprints run the same sweep."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- fields by dotted path ------------------------------------------------------------------
    def get(self, path: str) -> Any:
        section, name = _split(path)
        sec = getattr(self, section)
        if hasattr(sec, "params") and name in sec.params:
            return sec.params[name]
        return getattr(sec, name)

    def replace(self, values: Mapping[str, Any]) -> Spec:
        """A copy with fields set by dotted path. Values may be JAX tracers (no validation here)."""
        by_section: dict[str, dict[str, Any]] = {}
        for path, value in values.items():
            if path == "seed":
                continue
            section, name = _split(path)
            by_section.setdefault(section, {})[name] = value
        spec = self
        for section, updates in by_section.items():
            sec = getattr(spec, section)
            own = {k: v for k, v in updates.items() if k in _field_names(type(sec))}
            rest = {k: v for k, v in updates.items() if k not in own}
            if rest:
                own["params"] = {**sec.params, **rest}
            spec = dataclasses.replace(spec, **{section: dataclasses.replace(sec, **own)})
        return spec

    def with_overrides(self, overrides: Mapping[str, Any]) -> Spec:
        """Apply ``--set``-style overrides (``"init.scale": 0.5``, ``"axes.seed": 16``) and re-validate."""
        data = self.to_dict()
        for path, value in overrides.items():
            head, _, rest = path.partition(".")
            if head in ("name", "description", "seed", "report") and not rest:
                data[head] = value
            elif head == "axes" and rest:
                data["axes"][rest] = value
            elif head in SECTIONS and rest:
                data[head][rest] = value
            else:
                raise SpecError(
                    f"cannot set {path!r}: use section.field with a section in {SECTIONS}, "
                    "axes.<path>, or one of name, description, seed, report"
                )
        return Spec.from_dict(data)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(len(v) for _, v in self.axes)


# -- parsing helpers ------------------------------------------------------------------------------
@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


_SECTION_TYPES = {
    "task": TaskSpec,
    "model": ModelSpec,
    "init": InitSpec,
    "optimizer": OptimizerSpec,
    "train": TrainSpec,
    "store": StoreSpec,
    "basins": BasinSpec,
}


def _split(path: str) -> tuple[str, str]:
    section, dot, name = path.partition(".")
    if not dot or section not in _SECTION_TYPES or not name:
        raise SpecError(
            f"axis or field {path!r} does not exist: expected 'seed' or section.field with a "
            f"section in {SECTIONS}"
        )
    return section, name


def _check_keys(where: str, data: Any, allowed: Sequence[str]) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where} must be a table, got {type(data).__name__}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise SpecError(f"unknown field {where}.{unknown[0]}; allowed: {', '.join(allowed)}")


def _typed(where: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise SpecError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _section(name: str, data: Any) -> Any:
    cls = _SECTION_TYPES[name]
    own = [f for f in _field_names(cls) if f != "params"]
    if not isinstance(data, Mapping):
        raise SpecError(f"[{name}] must be a table, got {type(data).__name__}")
    if "params" not in _field_names(cls):
        _check_keys(name, data, own)
    kwargs = {k: _coerce(f"{name}.{k}", cls, k, v) for k, v in data.items() if k in own}
    rest = {k: v for k, v in data.items() if k not in own}
    if rest:
        kwargs["params"] = rest
    return cls(**kwargs)


def _coerce(where: str, cls: type, name: str, value: Any) -> Any:
    """Check a section field's type against the dataclass annotation; lists become tuples."""
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if kind.startswith("tuple"):
        value = _typed(where, value, list)
        item = int if "int" in kind else str
        return tuple(_typed(where, v, item) for v in value)
    if kind == "float | None":
        return None if value is None else _typed(where, value, float)
    return _typed(where, value, {"str": str, "int": int, "float": float, "bool": bool}[kind])


def _flatten_axes(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten_axes(value, path + "."))
        else:
            out.append((path, value))
    return out


def _parse_axes(data: Any) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(data, Mapping):
        raise SpecError(f"[axes] must be a table, got {type(data).__name__}")
    axes = []
    for path, values in _flatten_axes(data):
        if path == "seed" and isinstance(values, int) and not isinstance(values, bool):
            if values < 1:
                raise SpecError(f"axes.seed must be a positive count or a list, got {values}")
            values = list(range(values))
        if not isinstance(values, list):
            raise SpecError(f"axes.{path} must be a list of values, got {values!r}")
        if not values:
            raise SpecError(f"axes.{path} is empty: give at least one value")
        values = tuple(tuple(v) if isinstance(v, list) else v for v in values)
        if len(set(map(repr, values))) != len(values):
            raise SpecError(f"axes.{path} repeats a value: {list(values)}")
        if path in [p for p, _ in axes]:
            raise SpecError(f"axes.{path} is given twice")
        axes.append((path, values))
    if "seed" not in [p for p, _ in axes]:
        axes.append(("seed", (0,)))
    return tuple(axes)


# -- validation -----------------------------------------------------------------------------------
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


def _signature_params(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def validate(spec: Spec) -> None:
    """Raise :class:`SpecError` if any field, or any axis value, is invalid."""
    from jaxinit.metrics import DIAGNOSTICS
    from jaxinit.models import MODELS

    _seed("seed", spec.seed)
    for path, values in spec.axes:
        if path == "seed":
            for v in values:
                _seed("axes.seed: each value", v)
            continue
        section, name = _split(path)
        sec = getattr(spec, section)
        if path in _NOT_AXES or section in ("store", "basins") or name == "params":
            raise SpecError(
                f"axis {path!r} is not allowed: {_NOT_AXES.get(path, 'not a sweepable field')}; "
                "run separate sweeps instead"
            )
        if name not in _field_names(type(sec)) and not hasattr(sec, "params"):
            raise SpecError(
                f"axis {path!r}: [{section}] has no field {name!r}; allowed: "
                + ", ".join(_field_names(type(sec)))
            )
        for v in values:
            try:
                _validate_one(spec.replace({path: _coerce_axis(spec, path, v)}))
            except SpecError as e:
                raise SpecError(f"axes.{path} value {v!r}: {e}") from None
    _validate_one(spec)
    _one_of("model.name", spec.model.name, tuple(MODELS))
    for d in spec.train.diagnostics:
        _one_of("train.diagnostics", d, tuple(DIAGNOSTICS))
    for name in spec.report:
        from jaxinit.plots import FIGURES

        _one_of("report", name, tuple(FIGURES))


_NOT_AXES = {"train.dtype": "precision is process-wide (jax_enable_x64)"}


def _seed(where: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise SpecError(f"{where} must be an integer in 0..{MAX_SEED}, got {value!r}")


def _check_task(name: str, params: Mapping[str, Any]) -> None:
    """Task arguments: known names, the type of each default, sizes in range, and a task that
    builds with a non-empty, finite training set."""
    sig = _signature_params(TASKS[name])
    for k, v in params.items():
        if k not in sig:
            raise SpecError(f"task {name!r} has no parameter {k!r}; allowed: {', '.join(sig)}")
        default, where = sig[k].default, f"task.{k}"
        if isinstance(default, bool):
            _typed(where, v, bool)
        elif isinstance(default, int):
            hi = _TASK_INT_LIMITS.get(k, TASK_INT_MAX)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
                raise SpecError(f"{where} must be an integer in 0..{hi}, got {v!r}")
        elif isinstance(default, float):
            _finite(where, v)
        elif isinstance(default, str):
            _typed(where, v, str)
        elif isinstance(default, tuple):
            items = v if isinstance(v, (list, tuple)) else [None]
            if not all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= TASK_INT_MAX
                for w in items
            ):
                raise SpecError(
                    f"{where} must be a list of integers in 1..{TASK_INT_MAX}, got {v!r}"
                )
    _build_task(name, json.dumps(dict(params), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _build_task(name: str, params_json: str) -> None:
    params = json.loads(params_json)
    try:
        task = TASKS[name](**params)
    except Exception as e:  # a factory's own complaint about its arguments
        raise SpecError(f"task {name!r} with {params}: {type(e).__name__}: {e}") from None
    import numpy as np

    arrays = task[:4]
    if any(np.asarray(a).size == 0 for a in arrays) or not all(
        np.isfinite(np.asarray(a, float)).all() for a in arrays
    ):
        raise SpecError(f"task {name!r} with {params} gives an empty or non-finite data set")


def _check_optimizer(o: OptimizerSpec) -> None:
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


def _coerce_axis(spec: Spec, path: str, value: Any) -> Any:
    section, name = _split(path)
    cls = type(getattr(spec, section))
    if name in _field_names(cls) and name != "params":
        return _coerce(
            f"axes.{path}", cls, name, list(value) if isinstance(value, tuple) else value
        )
    return value


def _validate_one(spec: Spec) -> None:
    t, m, i, o, tr = spec.task, spec.model, spec.init, spec.optimizer, spec.train
    _one_of("task.name", t.name, tuple(TASKS))
    _check_task(t.name, t.params)
    for k, w in enumerate(m.widths):
        if not isinstance(w, int) or w < 1:
            raise SpecError(f"model.widths[{k}] must be a positive integer, got {w!r}")
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _finite("model.dropout", m.dropout, nonneg=True, below=1.0)
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
    if not 1 <= tr.steps <= 10_000_000:
        raise SpecError(f"train.steps must be in 1..10000000, got {tr.steps}")
    if not 1 <= tr.log_every <= tr.steps or tr.steps % tr.log_every:
        raise SpecError(
            f"train.log_every must divide train.steps ({tr.steps}) and be >= 1, got {tr.log_every}"
        )
    if tr.batch_size < 0:
        raise SpecError(f"train.batch_size must be >= 0 (0: full batch), got {tr.batch_size}")
    _finite("train.grad_tol", tr.grad_tol, nonneg=True)
    if tr.threshold is not None:
        _finite("train.threshold", tr.threshold)
    _one_of("train.dtype", tr.dtype, DTYPES)
    b = spec.basins
    _finite("basins.f_tol", b.f_tol, positive=True)
    _finite("basins.p_tol", b.p_tol, nonneg=True)
    _finite("basins.loss_tol", b.loss_tol, nonneg=True)
    _one_of("basins.probe", b.probe, ("data", "box"))
    if b.n_probe < 1:
        raise SpecError(f"basins.n_probe must be >= 1, got {b.n_probe}")
