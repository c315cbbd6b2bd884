"""From a saved sweep back to what ran it: :func:`from_dataset`, the one reader of
``Dataset.attrs["spec"]`` for analysis and figures.

A sweep's Dataset (:func:`jaxinit.run`, :func:`jaxinit.load`) keeps its spec as JSON in
``attrs["spec"]``, the spec path of each dimension in ``attrs["axes"]`` and, for a training sweep,
the model it ran in ``attrs["model"]``. :func:`from_dataset` reads them once and rebuilds the
:class:`~jaxinit.config.spec.Spec`, the :class:`~jaxinit.blocks.tasks.Task` and the :class:`~jaxinit.blocks.models.Model`
(each on first use), optionally at one cell's axis values.

>>> import xarray as xr
>>> from jaxinit.config.spec import Spec
>>> ds = xr.Dataset(attrs={"spec": Spec.from_dict({"task": {"name": "xor"}}).to_json(),
...                        "axes": '{"seed": "seed"}'})
>>> from_dataset(ds).task.x_train.shape
(4, 2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jax

from jaxinit.blocks import models, tasks
from jaxinit.blocks.models import Model
from jaxinit.blocks.tasks import Task
from jaxinit.config.spec import Spec

__all__ = ["Rebuilt", "from_dataset"]


@dataclass(frozen=True)
class Rebuilt:
    """What a Dataset's attrs say ran. ``data`` is the stored spec as plain dicts (any kind of
    spec, a probe spec too); ``spec``, ``task`` and ``model()`` are rebuilt on first use, at
    the axis values ``cell`` fixes (``{dim: coordinate}``; other axes keep the spec's values)."""

    data: Mapping[str, Any]  # the stored spec, json.loads(attrs["spec"])
    text: str = field(repr=False)  # attrs["spec"] as stored
    axes: Mapping[str, str]  # dimension -> spec path, json.loads(attrs["axes"])
    model_info: Mapping[str, Any] | None  # json.loads(attrs["model"]): name, model_id, params
    cell: Mapping[str, Any]  # {dim: coordinate} the spec is taken at

    @cached_property
    def spec(self) -> Spec:
        """The stored spec (not re-validated), with ``cell``'s axis values filled in."""
        spec = Spec.from_json(self.text)
        updates = {self.axes[d]: _axis_value(spec, self.axes[d], v) for d, v in self.cell.items()}
        return spec.replace(updates) if updates else spec

    @cached_property
    def task(self) -> Task:
        return tasks.from_spec(self.spec.task)

    def model(
        self, user: Model | None = None, *, at: Spec | None = None, task: Task | None = None
    ) -> Model:
        """The sweep's model: the built-in one its spec names, or ``user``, which a sweep of a
        user model needs (and which must have the parameter shapes the sweep stored). ``at``
        and its ``task``: another spec of the same sweep to build it for (a static group's)."""
        spec = at or self.spec
        info = self.model_info or {"name": spec.model.name}
        if info["name"] != "user":
            if user is not None:
                return user
            task = task or (self.task if at is None else tasks.from_spec(spec.task))
            return models.from_spec(spec.model, task.in_dim, task.out_dim)
        if user is None:
            raise ValueError(
                f"this sweep ran a user model (model_id={info.get('model_id')!r}): pass the same "
                "Model as model= to analyse it"
            )
        shapes = jax.eval_shape(lambda k: user.init(k, spec.init), jax.random.key(0))
        got = {
            jax.tree_util.keystr(p, simple=True, separator="/"): [list(x.shape), str(x.dtype)]
            for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]
        }
        if got != info["params"]:
            raise ValueError("model= has other parameter shapes than the model this sweep ran")
        return user


def from_dataset(ds: Any, cell: Mapping[str, Any] | None = None) -> Rebuilt:
    """The spec, task and model of a saved sweep ``ds`` (anything with jaxinit's ``attrs``),
    at the axis values ``cell`` (``{dim: coordinate}``, e.g. ``{"task_name": "xor"}``)."""
    attrs = ds.attrs
    text = attrs["spec"]
    return Rebuilt(
        data=json.loads(text),
        text=text,
        axes=json.loads(attrs.get("axes", "{}")),
        model_info=json.loads(attrs.get("model", "null")),
        cell=dict(cell or {}),
    )


def _axis_value(spec: Spec, path: str, coord: Any) -> Any:
    """The spec value behind a Dataset coordinate: numpy scalars become Python ones, and a
    tuple axis (``model.widths``), stored as ``"4-4"``, gets its tuple back."""
    value = coord.item() if hasattr(coord, "item") else coord
    for candidate in dict(spec.axes).get(path, ()):
        if isinstance(candidate, tuple) and "-".join(map(str, candidate)) == value:
            return candidate
    return value
