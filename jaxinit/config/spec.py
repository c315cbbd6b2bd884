"""Sweep specifications: the schema. Frozen dataclasses read from TOML, with overrides.

A spec names the task, model, init, optimizer and training settings, and the **axes** to sweep:
``seed`` (a count or a list) and any spec field by its dotted path (``init.scale``,
``optimizer.learning_rate``, ``model.widths``, ``task.n_points`` …). This module checks structure
and types only (unknown fields, a string where a number belongs); what the names and values mean
(known schemes, tasks, ranges) is checked by :func:`jaxinit.engine.validation.validate`, one layer up,
before anything compiles. Every problem is a :class:`SpecError` naming the field.

Which fields may vary *within* one compiled program (traced, vmapped) is declared in each field's
metadata (:func:`traced`); every other field is static (one compilation per value).

>>> spec = Spec.from_dict({"task": {"name": "xor"}, "axes": {"seed": 4, "init.scale": [0.5, 1.0]}})
>>> spec.axes
(('seed', range(0, 4)), ('init.scale', (0.5, 1.0)))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxinit.config import toml_io

FORMAT_VERSION = 2
"""Bumped whenever a saved sweep directory changes layout or meaning (2: run identity)."""

SECTIONS = ("task", "model", "init", "optimizer", "train", "store", "basins", "algorithm")
MAX_SEED = 2**31 - 1  # seeds are folded into keys as int32
_TOP_LEVEL = ("name", "description", "seed", "axes", "report", *SECTIONS)
DESCRIPTIVE = ("name", "description", "report", "basins")
"""Top-level fields and sections that never change a run's numbers (not part of its identity)."""


class SpecError(ValueError):
    """A spec, axis or override is invalid; the message names the field and what is allowed."""


def traced(default: Any) -> Any:
    """A field that may differ between the runs of one compiled program: it is passed to the
    program as a vmapped value instead of being baked into it (scales, learning rates …)."""
    return field(default=default, metadata={"traced": True})


@dataclass(frozen=True)
class TaskSpec:
    name: str = "xor"
    params: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments of the factory


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model (:data:`jaxinit.blocks.models.MODELS`) and its settings. The fields are the
    settings every built-in model shares; ``params`` holds the model's own, which each model
    declares with its registration: the keyword-only arguments of its factory, typed by their
    defaults (``def factory(spec, in_dim, out_dim, *, kernel_size: int = 3)``), checked by
    :func:`jaxinit.engine.validation.validate` and passed to the factory. In TOML both sit directly in
    ``[model]``; a setting left out takes the factory's default (and is not part of the sweep's
    identity)."""

    name: str = "mlp"
    # hidden widths (cnn: conv channels); the input and output widths come from the task
    widths: tuple[int, ...] = (2,)
    activation: str = "tanh"
    bias: bool = True
    dropout: float = traced(0.0)  # probability of dropping a hidden unit while training
    train_output: bool = True  # False freezes the last layer at its init
    params: Mapping[str, Any] = field(default_factory=dict)  # the model's own settings


@dataclass(frozen=True)
class InitSpec:
    """How a model's parameters are drawn. Traced fields may be vmapped values.

    Weight ``W ~ scheme(fan_in, fan_out) · scale + perturbation · N(0, 1)``; biases use
    ``bias_scheme`` and ``bias_scale``. ``value`` is the weight of the ``constant`` scheme.
    """

    scheme: str = "lecun_normal"
    scale: float = traced(1.0)
    value: float = traced(1.0)
    perturbation: float = traced(0.0)
    bias_scheme: str = "zeros"
    bias_scale: float = traced(1.0)
    # A 2-D slice of init space: with plane_seed >= 0 every run starts at
    # θ = θ_base + plane_a·d1 + plane_b·d2, where θ_base is the init of seed plane_seed and d1, d2
    # are Gaussian directions scaled per layer to the norm of θ_base's layer ("filter-normalized").
    plane_seed: int = -1
    plane_a: float = traced(0.0)
    plane_b: float = traced(0.0)
    # >= 0: the direction d1 (d2) is θ(plane_seed_a) − θ_base, a plane through three given inits
    plane_seed_a: int = -1
    plane_seed_b: int = -1


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "sgd"
    learning_rate: float = traced(0.1)
    # the unit of ``learning_rate``: "" (absolute) or "2/lambda0": each run steps at
    # ``learning_rate × 2/λ₀`` with λ₀ its own curvature at init (jaxinit.blocks.sharpness,
    # the ``lambda0`` final), so a sweep scans η·λ₀/2; in the run identity only when set
    lr_unit: str = ""
    # other keyword arguments of optax.<name>; numeric ones are traced when they are an axis
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 1000
    log_every: int = 10  # record curves every this many steps; must divide ``steps``
    batch_size: int = 0  # 0: full batch
    grad_tol: float = traced(0.0)  # > 0: stop a run (freeze it) once its gradient norm is below
    threshold: float | None = traced(None)  # loss level for time-to-threshold; None: the task's
    dtype: str = "float32"
    diagnostics: tuple[str, ...] = ("grad_norm",)
    layout: str = "auto"  # how runs are laid out on the hardware: "auto", "vmap" or "lanes"
    # the ``sharpness`` diagnostic (jaxinit.blocks.sharpness): at most this many Hessian-vector
    # products per logged step, stopping early at this relative residual ‖Hv − λv‖ / ‖λv‖; in
    # the run identity only when ``sharpness`` is in ``diagnostics``
    sharpness_iters: int = 20
    sharpness_tol: float = 1e-4
    # record each run's λ₀ (the ``lambda0`` final: the top eigenvalue of the Gauss–Newton
    # matrix at init for MSE, of the Hessian otherwise); on by itself with optimizer.lr_unit;
    # in the run identity only when true
    lambda0: bool = False


@dataclass(frozen=True)
class AlgorithmSpec:
    """What iterates from each random start. ``"gradient"`` (the default) trains ``[model]``
    with ``[optimizer]``; the others (:data:`jaxinit.engine.algorithms.ALGORITHMS`: ``"kmeans"``,
    Lloyd's algorithm, and ``"gmm_em"``, EM for a Gaussian mixture) run ``train.steps``
    iterations on the task's training inputs and ignore ``[model]``, ``[init]`` and
    ``[optimizer]``."""

    name: str = "gradient"
    init: str = "kmeans++"  # how a run starts (per algorithm, e.g. forgy, random_partition)
    k: int = 0  # clusters (mixture components); 0: the task's number of classes
    tol: float = 0.0  # converged at the first step that moves no state entry by more than this
    reg_covar: float = 1e-6  # gmm_em: added to each covariance's diagonal (keeps it invertible)


@dataclass(frozen=True)
class StoreSpec:
    save_params: bool = False  # keep initial and final parameters of every run


@dataclass(frozen=True)
class BasinSpec:
    """Tolerances of the basin analysis (:mod:`jaxinit.analysis.basins`); they do not change training."""

    f_tol: float = 0.05  # same basin: RMS output distance on the probe set below this
    p_tol: float = 0.0  # > 0: also canonical parameter distance / norm below this
    loss_tol: float = 1e-2  # global basin: mean loss within this of the lowest basin's
    probe: str = "data"  # "data": train + test inputs; "box": random points in their bounding box
    n_probe: int = 256
    converged_only: bool = True  # count basins over converged runs; others are reported apart
    grad_tol: float = 1e-3  # a run is converged when its final gradient norm is below this


Axes = tuple[tuple[str, Sequence], ...]


@dataclass(frozen=True)
class Spec:
    """A whole sweep. ``axes`` is a tuple of ``(path, values)`` in the order of the dataset dims;
    a seed count ``n`` is kept as ``range(n)``, so a large count costs no memory."""

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
    algorithm: AlgorithmSpec = field(default_factory=AlgorithmSpec)
    axes: Axes = (("seed", range(1)),)
    report: tuple[str, ...] = ()  # figure names for ``jaxinit report``; empty: the defaults

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        """Read a TOML spec file (structure and types checked; see :mod:`jaxinit.engine.validation`).
        A relative ``[task] path`` (a data file) is relative to the spec file's folder."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as e:
            raise SpecError(f"cannot read spec {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise SpecError(f"spec {path} is not a UTF-8 TOML file") from None
        spec = cls.from_toml_string(text, source=str(path))
        data = spec.task.params.get("path")  # a data file (task arrays): beside the spec file
        if isinstance(data, str) and data and not Path(data).is_absolute():
            spec = spec.replace({"task.path": str(path.parent / data)})
        return spec

    @classmethod
    def from_toml_string(cls, text: str, source: str = "<string>") -> Spec:
        try:
            data = toml_io.loads(text)
        except toml_io.TOMLDecodeError as e:
            raise SpecError(f"{source}: TOML syntax error: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """Build a spec from nested dicts (the TOML layout), checking structure and types."""
        if isinstance(data, Spec):
            return data
        if isinstance(data, Mapping) and "kind" in data:
            raise SpecError(
                f"spec {data.get('name', '')!r} is a probe of random nets (kind = "
                f"{data['kind']!r}), not a training sweep: run it with `jaxinit run` or "
                "jaxinit.run (jaxinit.engine.probes)"
            )
        _check_keys("spec", data, _TOP_LEVEL)
        sections = {name: _section(name, data.get(name, {})) for name in SECTIONS}
        return cls(
            name=_typed("name", data.get("name", "sweep"), str),
            description=_typed("description", data.get("description", ""), str),
            seed=_typed("seed", data.get("seed", 0), int),
            axes=_parse_axes(data.get("axes", {})),
            report=tuple(_typed("report", data.get("report", []), list)),
            **sections,
        )

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """A spec stored by jaxinit (``spec.json``, ``Dataset.attrs["spec"]``), parsed once per
        distinct text and not re-validated: stored results stay loadable when rules tighten."""
        return _from_json(text)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain JSON-able dicts (the layout :meth:`from_dict` reads)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out["seed"] = self.seed
        for name in SECTIONS:
            sec = dataclasses.asdict(getattr(self, name))
            extra = sec.pop("params", None) or {}
            out[name] = {**sec, **extra}
        out["axes"] = {path: _axis_json(values) for path, values in self.axes}
        out["report"] = list(self.report)
        return json.loads(json.dumps(out, default=list))

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`. Keys keep their order: the axes' order numbers the
        runs and names the dims, so it is part of what a spec means."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

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
            own = {k: v for k, v in updates.items() if k in field_names(type(sec))}
            rest = {k: v for k, v in updates.items() if k not in own}
            if rest:
                own["params"] = {**sec.params, **rest}
            spec = dataclasses.replace(spec, **{section: dataclasses.replace(sec, **own)})
        return spec

    def with_overrides(self, overrides: Mapping[str, Any]) -> Spec:
        """Apply ``--set``-style overrides (``"init.scale": 0.5``, ``"axes.seed": 16``)."""
        return Spec.from_dict(apply_overrides(self.to_dict(), overrides, SECTIONS))

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(len(v) for _, v in self.axes)

    def first_run(self) -> Spec:
        """The spec with every axis at its first value: the first run's configuration."""
        return self.replace({p: v[0] for p, v in self.axes})


LR_UNITS = ("", "2/lambda0")
"""Units of ``optimizer.learning_rate`` (``optimizer.lr_unit``): absolute, or ``2/λ₀`` per run."""


LR_UNIT_OPTIMIZERS = ("sgd",)
"""Optimizers that ``optimizer.lr_unit = "2/lambda0"`` may scale: ``2/λ₀`` is the stability
edge of plain gradient descent (with heavy-ball momentum ``β`` the edge is ``2(1+β)/λ₀``, still
in these units). Adaptive optimizers (adam, rmsprop, …) rescale each step by their own
statistics, so their edge is set by a preconditioned curvature, not by ``λ₀``."""


def lr_unit_problem(spec: Spec) -> str | None:
    """Why ``spec.optimizer.lr_unit`` cannot be used (a message naming the field), or None."""
    o = spec.optimizer
    if o.lr_unit not in LR_UNITS:
        return f"optimizer.lr_unit = {o.lr_unit!r} is not known; allowed: {LR_UNITS}"
    if o.lr_unit and o.name not in LR_UNIT_OPTIMIZERS:
        return (
            f"optimizer.lr_unit = {o.lr_unit!r} scales gradient descent's step by its stability "
            f"edge 2/λ₀; optimizer {o.name!r} is adaptive (its edge is not 2/λ₀): use one of "
            f'{LR_UNIT_OPTIMIZERS} or lr_unit = ""'
        )
    return None


def wants_lambda0(spec: Spec) -> bool:
    """Whether the runs compute their ``λ₀`` at init: asked for (``train.lambda0``) or needed by
    the learning rate's unit (``optimizer.lr_unit``)."""
    return bool(spec.train.lambda0) or spec.optimizer.lr_unit != ""


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, Any], sections: Sequence[str]
) -> dict[str, Any]:
    """``data`` (a spec's ``to_dict()``, changed in place) with ``--set``-style overrides:
    ``name``, ``description``, ``seed``, ``report``, ``axes.<path>`` and ``<section>.<field>``
    for each of ``sections`` (a training spec's or a probe spec's, :mod:`jaxinit.engine.probes`)."""
    for path, value in overrides.items():
        head, _, rest = path.partition(".")
        if head in ("name", "description", "seed", "report") and not rest:
            data[head] = value
        elif (head == "axes" or head in sections) and rest:
            data[head][rest] = value
        else:
            raise SpecError(
                f"cannot set {path!r}: use section.field with a section in {tuple(sections)}, "
                "axes.<path>, or one of name, description, seed, report"
            )
    return data


def is_traced(spec: Spec, path: str, values: Sequence) -> bool:
    """Whether an axis varies inside one compiled program: ``seed``, fields declared
    :func:`traced`, and numeric extra optimizer arguments; everything else is static."""
    if path == "seed":
        return True
    section, name = _split(path)
    if section in ("task", "store", "basins"):
        return False
    cls = type(getattr(spec, section))
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}
    if name in meta:
        return bool(meta[name].get("traced")) and None not in values
    return section == "optimizer" and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


@functools.lru_cache(maxsize=32)
def _from_json(text: str) -> Spec:
    try:
        return Spec.from_dict(json.loads(text))
    except (ValueError, TypeError) as e:
        raise SpecError(f"stored spec is unreadable: {e}") from None


def _axis_json(values: Sequence) -> Any:
    """A seed count ``range(n)`` is stored as ``n``; other axes as their list of values."""
    if isinstance(values, range) and values.start == 0 and values.step == 1:
        return len(values)
    return list(values)


# -- parsing helpers ------------------------------------------------------------------------------
@functools.cache
def field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


SECTION_TYPES = {
    "task": TaskSpec,
    "model": ModelSpec,
    "init": InitSpec,
    "optimizer": OptimizerSpec,
    "train": TrainSpec,
    "store": StoreSpec,
    "basins": BasinSpec,
    "algorithm": AlgorithmSpec,
}


def _split(path: str) -> tuple[str, str]:
    section, dot, name = path.partition(".")
    if not dot or section not in SECTION_TYPES or not name:
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
        have = ", ".join(allowed) or "(none)"
        raise SpecError(f"unknown field {where}.{unknown[0]}; allowed: {have}")


def _typed(where: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise SpecError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _section(name: str, data: Any) -> Any:
    cls = SECTION_TYPES[name]
    own = [f for f in field_names(cls) if f != "params"]
    if not isinstance(data, Mapping):
        raise SpecError(f"[{name}] must be a table, got {type(data).__name__}")
    if "params" not in field_names(cls):
        _check_keys(name, data, own)
    kwargs = {k: coerce(f"{name}.{k}", cls, k, v) for k, v in data.items() if k in own}
    rest = {k: v for k, v in data.items() if k not in own}
    if rest:
        kwargs["params"] = rest
    return cls(**kwargs)


def coerce(where: str, cls: type, name: str, value: Any) -> Any:
    """Check a section field's value against its declared type; lists become tuples."""
    kind = _field_types(cls)[name]
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_typed(where, v, item) for v in _typed(where, value, list))
    if kind == (float | None):
        return None if value is None else _typed(where, value, float)
    return _typed(where, value, kind)


def _flatten_axes(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten_axes(value, path + "."))
        else:
            out.append((path, value))
    return out


def _seed_count(values: int) -> range:
    """``axes.seed = n``: seeds ``0 … n-1``, checked before anything is allocated."""
    if not 1 <= values <= MAX_SEED + 1:
        raise SpecError(
            f"axes.seed must be a positive count (1..{MAX_SEED + 1}) or a list, got {values}"
        )
    return range(values)


def _parse_axes(data: Any) -> Axes:
    if not isinstance(data, Mapping):
        raise SpecError(f"[axes] must be a table, got {type(data).__name__}")
    axes: list[tuple[str, Sequence]] = []
    for path, values in _flatten_axes(data):
        if path == "seed" and isinstance(values, int) and not isinstance(values, bool):
            axes.append((path, _seed_count(values)))
            continue
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
        axes.append(("seed", range(1)))
    return tuple(axes)
