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

import collections
import dataclasses
import functools
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from jaxinit.config import toml_io

FORMAT_VERSION = 2
"""Bumped whenever a saved sweep directory changes layout or meaning (2: run identity)."""

SECTIONS = (
    "task", "model", "init", "optimizer", "train", "store", "basins", "algorithm", "landscape",
)  # fmt: skip
MAX_SEED = 2**31 - 1  # seeds are folded into keys as int32
_TOP_LEVEL = ("name", "description", "seed", "axes", "report", *SECTIONS)
DESCRIPTIVE = ("name", "description", "report", "basins", "landscape")
OPTIONAL_SECTIONS = ("landscape",)
"""Sections added later, written to a spec's dict / JSON only where they differ from their
defaults: the stored spec of a sweep that does not set them is unchanged."""
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
    # measure it at every this-many-th logged step (the first and the final one always; NaN at
    # the others, which cost nothing): its cost falls by about this factor. Like locuslab's
    # ``eig_freq`` (Cohen et al. 2021) apart from ``log_every``; in the identity only when > 1
    sharpness_every: int = 1
    # record each run's λ₀ (the ``lambda0`` final: the top eigenvalue of the Gauss–Newton
    # matrix at init for MSE, of the Hessian otherwise); on by itself with optimizer.lr_unit;
    # in the run identity only when true
    lambda0: bool = False


class Setting(NamedTuple):
    """One setting a registered piece declares (an algorithm's ``[algorithm] <name>``): its
    type and default, and its own check of a value. Validation reads the declaration
    (:func:`jaxinit.engine.validation.validate`); the piece receives every declared setting,
    defaults filled in, as one NamedTuple (:func:`settings_type`)."""

    name: str
    type: type  # str, int, float or bool; an int is accepted where a float is declared
    default: Any
    check: Callable[[Any], str | None] | None = None  # value -> what is wrong, or None
    doc: str = ""

    def coerce(self, where: str, value: Any) -> Any:
        """``value`` of this setting's type (an int where a float is declared becomes one), or a
        :class:`SpecError` naming ``where``."""
        return _typed(where, value, self.type)


def one_of(*allowed: str) -> Callable[[Any], str | None]:
    """A :attr:`Setting.check`: the value is one of ``allowed``."""
    return lambda v: (
        None if v in allowed else f"= {v!r} is not known; allowed: {', '.join(allowed)}"
    )


def at_least(lo: float, *, strict: bool = False) -> Callable[[Any], str | None]:
    """A :attr:`Setting.check`: the value is ``>= lo`` (``> lo`` with ``strict``)."""
    op = ">" if strict else ">="
    return lambda v: None if (v > lo if strict else v >= lo) else f"must be {op} {lo}, got {v!r}"


@functools.cache
def settings_type(owner: str, settings: tuple[Setting, ...]) -> type:
    """The NamedTuple of ``settings`` (fields in declaration order, their defaults), named
    after their ``owner``: what a piece's functions receive."""
    return collections.namedtuple(
        f"{owner.title().replace('_', '')}Settings",
        [s.name for s in settings],
        defaults=[s.default for s in settings],
    )


RECORDED_ALGORITHM_SETTINGS: dict[str, Any] = {
    "init": "kmeans++",
    "k": 0,
    "tol": 0.0,
    "reg_covar": 1e-6,
}
"""The settings ``[algorithm]`` had as fields before each algorithm declared its own. They are
always written (:meth:`Spec.to_dict`, these defaults where a spec leaves them out) and typed
when read, so that specs and sweep directories from before keep their run identity. An
algorithm that declares one of these names declares it with this type and default (a test
checks every registered algorithm), so a value equal to it is the same as leaving it out."""


@dataclass(frozen=True)
class AlgorithmSpec:
    """What iterates from each random start. ``"gradient"`` (the default) trains ``[model]``
    with ``[optimizer]``; the others (:data:`jaxinit.engine.algorithms.ALGORITHMS`: ``"kmeans"``,
    Lloyd's algorithm, and ``"gmm_em"``, EM for a Gaussian mixture) run ``train.steps``
    iterations on the task's training inputs and ignore ``[model]``, ``[init]`` and
    ``[optimizer]``. ``params`` holds the algorithm's own settings, which each algorithm
    declares (:class:`Setting`; e.g. ``init``, ``k``, ``tol``, ``reg_covar``); in TOML they
    sit directly in ``[algorithm]``, checked by :func:`jaxinit.engine.validation.validate`."""

    name: str = "gradient"
    params: Mapping[str, Any] = field(default_factory=dict)  # the algorithm's own settings


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


TRAIN = "train"
"""The kind of a spec that runs from each random start (gradient training or an algorithm)."""

PROBE_KINDS = ("signal_propagation", "jacobian_spectrum")
"""The kinds of a probe spec: random nets measured at init, nothing trained
(:mod:`jaxinit.engine.probes`); its ``[probe]`` section and axes replace the training sections."""

PROBE_AXES = {
    "signal_propagation": ("activation", "weights", "sigma_w", "sigma_b", "seed"),
    "jacobian_spectrum": ("activation", "weights", "seed"),
}
"""The axes of each probe kind, in the Dataset's order (every one is always there)."""

_PROBE_AXIS_DEFAULTS = {"activation": ["tanh"], "weights": ["gaussian"], "sigma_w": [1.0],
                        "sigma_b": [0.0], "seed": 1}  # fmt: skip
_PROBE_TOP = ("name", "description", "kind", "seed", "report", "probe", "axes")

PROBE_REPORT = {"signal_propagation": ("signal_propagation", "signal_phase"),
                "jacobian_spectrum": ("jacobian_spectrum",)}  # fmt: skip
"""The figures of a probe spec without ``report`` (the training sweeps' defaults need a loss)."""


@dataclass(frozen=True)
class ProbeSettings:
    """The ``[probe]`` section of a probe spec: the shape of the random nets and what is sent
    through them (ranges checked by :func:`jaxinit.engine.validation.validate`)."""

    depth: int = 50  # signal_propagation: layers
    width: int = 256  # units per layer (jacobian_spectrum: also the input dimension)
    in_dim: int = 64  # signal_propagation: input dimension
    correlation: float = 0.6  # signal_propagation: cosine of the two inputs
    gradients: bool = True  # signal_propagation: also send a gradient backwards
    depths: tuple[int, ...] = (4, 8, 16, 32, 64)  # jacobian_spectrum: depths measured
    sigma_w: float | str = "critical"  # jacobian_spectrum: σ_w, or "critical" per activation
    sigma_b: float = 0.0  # jacobian_spectrum: bias std


@dataclass(frozen=True)
class LandscapeSpec:
    """Settings of the landscape analysis (:func:`jaxinit.analysis.landscape.graph`, the
    ``disconnectivity`` figure); they do not change training. The band fields are those of
    :class:`jaxinit.analysis.landscape.BandConfig`."""

    k: int = 2  # relax each minimum's k nearest neighbours (besides the spanning tree)
    max_nodes: int = 0  # the lowest-loss basins kept as nodes; 0: all
    images: int = 16  # points on a path, both ends included
    steps: int = 3000  # most optimizer steps per path
    climbing: bool = True  # climbing images refine the saddles
    optimizer: str = "fire"  # "fire" or "lbfgs"
    spring: float = 1.0  # spring constant along the path
    dt: float = 0.05  # FIRE's first time step (lbfgs: its learning rate)
    dt_max: float = 0.1  # FIRE's largest time step
    max_step: float = 0.05  # most an image moves per step, × the straight-line image spacing
    force_tol: float = 1e-3  # converged: every image's force norm below this
    max_stretch: float = 2.0  # a band longer than this × the straight line stops
    subdivide: int = 4  # points checked between consecutive images (and on the straight line)
    chunk: int = 64  # paths relaxed together in one compiled pool (its arrays stay in cache)


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
    landscape: LandscapeSpec = field(default_factory=LandscapeSpec)
    axes: Axes = (("seed", range(1)),)
    report: tuple[str, ...] = ()  # figure names for ``jaxinit report``; empty: the defaults
    # TRAIN, or one of PROBE_KINDS: random nets measured at init, described by ``probe`` and
    # the kind's axes (PROBE_AXES) instead of the training sections, which it leaves at defaults
    kind: str = TRAIN
    probe: ProbeSettings = field(default_factory=ProbeSettings)

    @property
    def is_probe(self) -> bool:
        """Whether this is a probe spec (random nets measured at init, nothing trained)."""
        return self.kind != TRAIN

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
        if isinstance(data, Mapping) and data.get("kind", TRAIN) != TRAIN:
            return _probe_from_dict(data)
        if isinstance(data, Mapping) and "kind" in data:
            data = {k: v for k, v in data.items() if k != "kind"}
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
        """The resolved spec as plain JSON-able dicts (the layout :meth:`from_dict` reads). A
        training spec has no ``kind`` and a probe spec no training sections."""
        if self.is_probe:
            return _probe_to_dict(self)
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out["seed"] = self.seed
        for name in SECTIONS:
            if name in OPTIONAL_SECTIONS and getattr(self, name) == SECTION_TYPES[name]():
                continue  # not set: the stored JSON is what it was before the section existed
            sec = dataclasses.asdict(getattr(self, name))
            extra = sec.pop("params", None) or {}
            if name == "algorithm":
                sec = {**sec, **RECORDED_ALGORITHM_SETTINGS}
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
        sections = ("probe",) if self.is_probe else SECTIONS
        return Spec.from_dict(apply_overrides(self.to_dict(), overrides, sections))

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(len(v) for _, v in self.axes)

    def first_run(self) -> Spec:
        """The spec with every axis at its first value: the first run's configuration (a
        probe spec's axes are not fields: itself)."""
        if self.is_probe:
            return self
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
            data.setdefault(head, {})[rest] = value
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
    if section in ("task", "store", "basins", "landscape"):
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
    "landscape": LandscapeSpec,
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
    if cls is AlgorithmSpec:
        rest = _algorithm_settings(rest)
    if rest:
        kwargs["params"] = rest
    return cls(**kwargs)


def _algorithm_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """An algorithm's settings as read: the recorded ones (:data:`RECORDED_ALGORITHM_SETTINGS`)
    typed as they always were, and left out where they equal their recorded default."""
    out = {}
    for k, v in data.items():
        if k in RECORDED_ALGORITHM_SETTINGS:
            default = RECORDED_ALGORITHM_SETTINGS[k]
            v = _typed(f"algorithm.{k}", v, type(default))
            if v == default and type(v) is type(default):
                continue
        out[k] = v
    return out


def coerce(where: str, cls: type, name: str, value: Any) -> Any:
    """Check a section field's value against its declared type; lists become tuples."""
    kind = _field_types(cls)[name]
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_typed(where, v, item) for v in _typed(where, value, list))
    if kind == (float | None):
        return None if value is None else _typed(where, value, float)
    if kind == (float | str):
        return value if isinstance(value, str) else _typed(where, value, float)
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


# -- probe specs ----------------------------------------------------------------------------------
def _probe_from_dict(data: Mapping[str, Any]) -> Spec:
    """A probe spec (``kind`` one of :data:`PROBE_KINDS`): structure and types; what the values
    mean (ranges, known activations) is checked by :func:`jaxinit.engine.validation.validate`."""
    _check_keys("spec", data, _PROBE_TOP)
    kind = data["kind"]
    if kind not in PROBE_KINDS:
        raise SpecError(f"kind must be one of {', '.join((TRAIN, *PROBE_KINDS))}; got {kind!r}")
    section = data.get("probe", {})
    _check_keys("probe", section, field_names(ProbeSettings))
    probe = ProbeSettings(**{
        k: coerce(f"probe.{k}", ProbeSettings, k, list(v) if isinstance(v, tuple) else v)
        for k, v in section.items()
    })  # fmt: skip
    axes_in = data.get("axes", {})
    _check_keys("axes", axes_in, PROBE_AXES[kind])
    axes = tuple(
        (a, _probe_axis(a, axes_in.get(a, _PROBE_AXIS_DEFAULTS[a]))) for a in PROBE_AXES[kind]
    )
    report = tuple(_typed("report", data.get("report", []), list)) or PROBE_REPORT[kind]
    return Spec(
        name=_typed("name", data.get("name", kind), str),
        description=_typed("description", data.get("description", ""), str),
        seed=_typed("seed", data.get("seed", 0), int),
        axes=axes,
        report=report,
        kind=kind,
        probe=probe,
    )


def _probe_axis(name: str, values: Any) -> Sequence:
    """A probe axis: ``seed`` a count, the others non-empty lists without repeats (names for
    ``activation`` and ``weights``, numbers for the ``σ`` axes)."""
    if name == "seed":
        if isinstance(values, bool) or not isinstance(values, int) or not 1 <= values <= MAX_SEED:
            raise SpecError(f"axes.seed must be a positive count, got {values!r}")
        return range(values)
    if not isinstance(values, list) or not values:
        raise SpecError(f"axes.{name} must be a non-empty list, got {values!r}")
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"axes.{name} repeats a value: {values}")
    kind = str if name in ("activation", "weights") else float
    return tuple(_typed(f"axes.{name}", v, kind) for v in values)


def _probe_to_dict(spec: Spec) -> dict[str, Any]:
    axes = {a: len(v) if a == "seed" else list(v) for a, v in spec.axes}
    probe = {k: list(v) if isinstance(v, tuple) else v
             for k, v in dataclasses.asdict(spec.probe).items()}  # fmt: skip
    return {"name": spec.name, "description": spec.description, "kind": spec.kind,
            "seed": spec.seed, "report": list(spec.report), "probe": probe, "axes": axes}  # fmt: skip
