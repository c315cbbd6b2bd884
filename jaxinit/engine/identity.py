"""Run identity: exactly the inputs that change a sweep's numbers, and nothing else.

Two sweeps with the same identity compute bit-identical runs, so a directory may be resumed,
sharded or extended only by a sweep with its identity. The identity is a flat ``name -> value``
dict, so that a mismatch names the field that differs:

- every training field of the spec (``task.*``, ``model.*``, ``init.*``, ``optimizer.*``,
  ``train.*`` incl. ``train.dtype`` and ``train.layout``, ``store.*``, ``seed``, ``axes.*``); not
  ``name``, ``description``, ``report`` nor ``[basins]``, which only describe or analyse;
- for a user's data (task ``arrays``, :mod:`jaxinit.blocks.user_data`): its content hash
  ``task.data_sha256``, not where it was read from (``task.path``, ``inputs``, ``target``), so
  the same arrays resume from anywhere and other arrays are refused;
- the model: its name (``mlp`` or ``user``), a user model's ``model_id``, and the shapes and
  dtypes of its parameters; for k-means or EM (``[algorithm]``, :mod:`jaxinit.engine.algorithms`) the
  algorithm's fields and its state's shapes instead of ``model.*``, ``init.*``, ``optimizer.*``;
- the software that draws the random bits and rounds the floats: the JAX version, the PRNG
  implementation and ``jax_threefry_partitionable`` (JAX 0.5 changed its default, which changes
  every random bit), and the backend (cpu, gpu, tpu).

>>> from jaxinit.config.spec import Spec
>>> a = Spec.from_dict({"name": "a", "axes": {"seed": 2}})
>>> b = Spec.from_dict({"name": "b", "description": "renamed", "axes": {"seed": 2}})
>>> spec_identity(a) == spec_identity(b)
True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import numpy as np

from jaxinit.blocks.models import Model, from_spec
from jaxinit.blocks.tasks import TASKS, Task
from jaxinit.blocks.user_data import DATA_FILE, SOURCE_FIELDS, pin
from jaxinit.config.spec import DESCRIPTIVE, Spec

LAYOUT_RULE = 4
"""Version of how runs are laid out into compiled programs; bump it when that changes a run's
numbers (by rounding), so a directory begun under the old rule is refused, not mixed.
1: always vmap. 2: ``train.layout = "auto"`` takes lanes on the CPU where
:func:`jaxinit.engine.lanes.prefer_lanes` says so. 3: the init is compiled apart from training
(:mod:`jaxinit.engine.executors`); of the bundled specs only deep ones moved, by ≤ 1e-6.
4: lanes programs on the CPU are compiled with XLA options (:data:`jaxinit.engine.lanes.CPU_OPTIONS`:
512-bit vectors) and deeper nets train in smaller lane blocks; of the bundled specs only
``dropout``'s lanes test loss moved (by ≤ 1.4e-6), vmap runs not at all."""

F64_INIT_RULE = 2
"""Version of how a float64 sweep draws its initial weights, recorded (as
``software.f64_init_rule``) only in float64 sweeps, so float32 directories keep their identity.
1 (absent): drawn in float64. 2: drawn in float32 and cast, as float32 sweeps draw them
(:func:`jaxinit.blocks.initializers.standard_normal`): a float64 directory begun under rule 1 is refused."""

EIGEN_RULE = 4
"""Version of the top-eigenvalue solver (:mod:`jaxinit.blocks.sharpness`), recorded (as
``software.eigen_rule``) only in sweeps that use it: the ``sharpness`` diagnostic, the
``lambda0`` final or ``optimizer.lr_unit`` (whose runs step at ``2/λ₀``, so a last-bit change in
``λ₀`` moves a catapulting run anywhere). 1 (absent): the Ritz pair from a dense tridiagonal
eigensolver; 2: from Sturm bisection, unrolled over the rows; 3: over more than
``UNROLL_ROWS`` rows the row recurrences loop (sharpness values move by ≤ 3e-7 relative);
4: Hessian-vector products forward over reverse (``jax.linearize`` of the gradient) instead of
reverse over reverse, the same products to rounding; and with ``sharpness_iters`` ≥ 20 the first
logged estimate is the cold one (no separate cold estimate before it). A directory begun under
another rule is refused, not mixed."""

CURVE_RULE = 2
"""Version of where a logged loss comes from when diagnostics are on, recorded (as
``software.curve_rule``) only in sweeps with ``train.diagnostics``, so other sweeps keep their
identity. 1 (absent): the diagnostics' own full-batch forward pass; 2: the block's first step's
loss wherever a step computes it (full batch, no dropout), as without diagnostics (on the lanes
rule 1 could round a logged loss an ulp apart). Training is the same under both."""


def uses_eigen_solver(spec: Spec) -> bool:
    """Whether a sweep's numbers come partly from the top-eigenvalue solver."""
    tr = spec.train
    return "sharpness" in tr.diagnostics or tr.lambda0 or bool(spec.optimizer.lr_unit)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    else:
        out[prefix] = value


def spec_identity(spec: Spec) -> dict[str, Any]:
    """The spec's training fields as ``dotted.path -> value`` (descriptive fields left out)."""
    data = {k: v for k, v in spec.to_dict().items() if k not in DESCRIPTIVE}
    # gradient training ignores [algorithm] (so sweeps from before it keep their identity);
    # k-means and EM ignore the model, its init and the optimizer
    unused = ("algorithm",) if spec.algorithm.name == "gradient" else ("model", "init", "optimizer")
    data = {k: v for k, v in data.items() if k not in unused}
    if "sharpness" not in spec.train.diagnostics:  # its settings change nothing without it
        data["train"] = {k: v for k, v in data["train"].items() if not k.startswith("sharpness_")}
    # fields added after directories existed: in the identity only when they change something
    if "optimizer" in data and not spec.optimizer.lr_unit:
        data["optimizer"] = {k: v for k, v in data["optimizer"].items() if k != "lr_unit"}
    if not spec.train.lambda0:
        data["train"] = {k: v for k, v in data["train"].items() if k != "lambda0"}
    if spec.train.sharpness_every == 1:
        data["train"] = {k: v for k, v in data["train"].items() if k != "sharpness_every"}
    if spec.task.name == "arrays":  # the content hash stands for where the data came from
        data["task"] = {k: v for k, v in data["task"].items() if k not in SOURCE_FIELDS}
    out: dict[str, Any] = {}
    _flatten("", data, out)
    out["axes.order"] = list(spec.axis_names)  # the order numbers the runs (C order)
    return out


def describe_model(spec: Spec, task: Task, model: Model | None) -> dict[str, Any]:
    """``{"name", "model_id", "params": {path: [shape, dtype]}}`` of the model the first run
    uses: the built-in one the spec names, or a user's ``Model``."""
    first = spec.first_run()
    if first.algorithm.name != "gradient":  # k-means, EM: the algorithm and its state
        from jaxinit.engine.algorithms import describe

        return describe(spec, task)
    mdl = model if model is not None else from_spec(first.model, task.in_dim, task.out_dim)
    shapes = jax.eval_shape(lambda k: mdl.init(k, first.init), jax.random.key(0))
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    params = {
        jax.tree_util.keystr(p, simple=True, separator="/"): [list(s.shape), str(s.dtype)]
        for p, s in leaves
    }
    name = first.model.name if model is None else "user"
    return {"name": name, "model_id": getattr(model, "model_id", None), "params": params}


def software() -> dict[str, Any]:
    """What draws the random bits and rounds the floats in this process."""
    return {
        "jax": jax.__version__,
        "prng": str(jax.config.jax_default_prng_impl),
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "backend": jax.default_backend(),
        "layout_rule": LAYOUT_RULE,
    }


def run_identity(spec: Spec, model: dict[str, Any]) -> dict[str, Any]:
    """The flat identity of a sweep: spec training fields, ``model.*`` and ``software.*``."""
    out = spec_identity(spec)
    if model["name"] == "user":  # the spec's model section does not build the model
        out = {k: v for k, v in out.items() if not k.startswith("model.") or k == "model.dropout"}
    _flatten("model", {"name": model["name"], "model_id": model["model_id"]}, out)
    out["model.params"] = model["params"]
    _flatten("software", software(), out)
    if spec.train.dtype == "float64":
        out["software.f64_init_rule"] = F64_INIT_RULE
    if uses_eigen_solver(spec):
        out["software.eigen_rule"] = EIGEN_RULE
    if spec.train.diagnostics:
        out["software.curve_rule"] = CURVE_RULE
    return json.loads(json.dumps(out, default=list))


def digest(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable lines ``field: A there, B here`` for every field that differs, the
    data's hash, the model's and the software's first (they explain the rest)."""
    first = ("task.data_sha256", "model.name", "model.model_id", "model.params", "software.")
    lines = []
    keys = set(stored) | set(current)
    for k in sorted(keys, key=lambda k: (not k.startswith(first), k)):
        a, b = stored.get(k, "(absent)"), current.get(k, "(absent)")
        if a != b:
            lines.append(f"{k}: {_short(a)} there, {_short(b)} here")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value, default=lambda o: np.asarray(o).tolist())
    return text if len(text) <= 60 else text[:57] + "..."


def record(spec: Spec, model: Model | None = None, task: Task | None = None) -> dict[str, Any]:
    """What a sweep directory's ``spec.json`` records: the spec, the model and the identity.

    A user's data (task ``arrays``) is recorded by its hash and as the directory's own copy,
    ``path = "data.npz"`` (written there by :func:`jaxinit.run`; relative to the directory)."""
    spec = pin(spec)
    if task is None:
        first = spec.first_run()
        task = TASKS[first.task.name](**first.task.params)
    info = describe_model(spec, task, model)
    stored = spec.to_dict()
    if spec.task.name == "arrays":
        kept = {k: v for k, v in stored["task"].items() if k not in SOURCE_FIELDS}
        stored["task"] = {**kept, "path": DATA_FILE}
    return {"spec": stored, "identity": run_identity(spec, info), "model": info}
