"""MkDocs hooks: the pages that are generated from the code, so that they cannot drift.

- ``spec.md``: the marker ``<!-- generated: spec reference -->`` is replaced by the spec schema,
  read from the dataclasses of :mod:`jaxinit.config.spec` and :mod:`jaxinit.engine.probe_spec`
  (each field's type, default, whether it is traced, and the comment written beside it) and
  from the registries (tasks and their settings, models and theirs, activations, init schemes,
  algorithms, diagnostics).
- ``api/index.md``: the marker ``<!-- generated: api jaxinit.__all__ -->`` becomes one
  mkdocstrings entry per name of ``jaxinit.__all__``, at the module that defines it.
- The notebooks (``notebooks/*.ipynb`` at the repository root) are added to the site and to the
  nav's ``Notebooks`` section, in file order (mkdocs-jupyter renders them, outputs as committed).

The generators are plain functions (no MkDocs import), tested in ``tests/test_readme.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_MARKER = "<!-- generated: spec reference -->"
API_MARKER = "<!-- generated: api jaxinit.__all__ -->"
NOTEBOOKS = "Notebooks"


# -- the spec reference ----------------------------------------------------------------------------
FIELD_NOTES = {
    "Spec.name": "shown by `jaxinit list` and in the summary; not part of the run identity",
    "Spec.description": "one line shown by `jaxinit list`; not part of the run identity",
    "Spec.axes": "what varies: `seed` (a count or a list) and any field by its dotted path "
    "(`init.scale`, `model.widths` …), in the order of the Dataset's dims",
    "TaskSpec.name": "a task of the table below (its settings sit beside it in `[task]`)",
    "ModelSpec.name": "a built-in model of the table below",
    "ModelSpec.activation": "an activation of the list below",
    "ModelSpec.bias": "hidden and output layers have biases",
    "InitSpec.scheme": "the weights' init scheme (list below)",
    "InitSpec.scale": "multiplies every drawn weight",
    "InitSpec.value": "the weight of the `constant` scheme",
    "InitSpec.perturbation": "std of Gaussian noise added to every weight",
    "InitSpec.bias_scheme": "the biases' init scheme",
    "InitSpec.bias_scale": "multiplies every drawn bias",
    "InitSpec.plane_a": "coordinate along d1 (an axis of a basin map)",
    "InitSpec.plane_b": "coordinate along d2",
    "InitSpec.plane_seed_b": "the same for d2",
    "OptimizerSpec.name": "any optax optimizer by name (`sgd`, `adam`, `momentum` …)",
    "OptimizerSpec.learning_rate": "the optimizer's learning rate",
    "TrainSpec.steps": "training steps (algorithm iterations) per run",
    "TrainSpec.dtype": '`"float32"` or `"float64"`',
    "TrainSpec.diagnostics": "curves recorded at every logged step (table below)",
    "TrainSpec.sharpness_tol": "see `sharpness_iters`",
    "BasinSpec.n_probe": 'probe points (`probe = "box"`)',
    "AlgorithmSpec.name": '`"gradient"` or an algorithm below',
}
"""What a field is, where the source has no comment beside it (the source's comment wins)."""


def _md(text: str) -> str:
    """Sphinx-flavoured docstring text as Markdown: ``code`` and :role:`name` become `code`."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}``: the comment on a dataclass field's line, after the comment lines
    right above it (a block comment describes the field below it)."""
    source = textwrap.dedent(inspect.getsource(cls))
    alone: dict[int, str] = {}  # comment lines
    beside: dict[int, str] = {}  # comments after code
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string.lstrip("#").strip()
        if tok.type == tokenize.COMMENT and not text.startswith("fmt:"):
            (alone if tok.line.strip().startswith("#") else beside)[tok.start[0]] = text
    out = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, line = [], node.lineno - 1
            while line in alone:
                above.insert(0, alone[line])
                line -= 1
            after = [beside[k] for k in range(node.lineno, node.end_lineno + 1) if k in beside]
            out[node.target.id] = " ".join(above + after)
    return out


def _annotation(cls: type, name: str) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            return ast.unparse(node.annotation)
    return ""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, dict):
        return "`{}`"
    return f"`{value!r}`".replace("|", "\\|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def fields_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """One row per field of a dataclass: name, type, default, traced, what it is."""
    notes = field_comments(cls)
    rows = ["| field | type | default | traced | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        traced = "yes" if f.metadata.get("traced") else ""
        note = notes.get(f.name) or FIELD_NOTES.get(f"{cls.__name__}.{f.name}", "")
        rows.append(f"| `{f.name}` | `{_cell(_annotation(cls, f.name))}` | {_default(f)} "
                    f"| {traced} | {_cell(_md(note))} |")  # fmt: skip
    return "\n".join(rows)


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    if doc.startswith(getattr(obj, "__name__", "") + "("):  # a dataclass's generated signature
        return ""
    return _md(" ".join(doc.split("\n\n")[0].split()))


def _settings_table(params: dict[str, inspect.Parameter]) -> str:
    if not params:
        return "–"
    return ", ".join(
        f"`{k} = {p.default!r}`" if p.default is not inspect.Parameter.empty else f"`{k}`"
        for k, p in params.items()
    )


def spec_reference() -> str:
    """The spec schema as Markdown: every section's fields, then the names each field takes."""
    from jaxinit.blocks.activations import ACTIVATIONS
    from jaxinit.blocks.initializers import INITIALIZERS
    from jaxinit.blocks.metrics import REGISTRY
    from jaxinit.blocks.models import MODELS
    from jaxinit.blocks.tasks import TASKS
    from jaxinit.config import spec as S
    from jaxinit.engine.algorithms import ALGORITHMS
    from jaxinit.engine.validation import model_settings
    from jaxinit.plots.names import DEFAULT_FIGURES, FIGURE_NAMES

    probe, kinds = probe_schema()
    sections = {f.name: f.type for f in dataclasses.fields(S.Spec) if f.name in S.SECTIONS}
    classes = {name: getattr(S, t) if isinstance(t, str) else t for name, t in sections.items()}
    parts = [
        "## Top level",
        f"{_doc(S.Spec)}\n",
        fields_table(S.Spec, skip=(*S.SECTIONS, "probe")),
    ]
    for name in S.SECTIONS:
        cls = classes[name]
        doc = _doc(cls)
        descriptive = (
            " (descriptive: not part of the run identity)" if name in S.DESCRIPTIVE else ""
        )
        parts += [f"## `[{name}]`{descriptive}", doc, fields_table(cls)]
    tasks = ["| task | settings | what it is |", "|---|---|---|"]
    for name, fn in TASKS.items():
        sig = dict(inspect.signature(fn).parameters)
        tasks.append(f"| `{name}` | {_cell(_settings_table(sig))} | {_cell(_doc(fn))} |")
    models = ["| model | own settings |", "|---|---|"]
    for name in sorted(MODELS):
        models.append(f"| `{name}` | {_cell(_settings_table(model_settings(name)))} |")
    diagnostics = ["| diagnostic | curves | meaning |", "|---|---|---|"]
    for name, d in REGISTRY.items():
        curves = ", ".join(f"`{o.name}`" for o in (d.output, *d.more))
        diagnostics.append(f"| `{name}` | {curves} | {_cell(_md(d.output.description))} |")
    parts += [
        "## Names",
        "### Tasks (`task.name`)",
        "Each task's settings are written directly in `[task]` (they fill `params`).",
        "\n".join(tasks),
        "### Models (`model.name`)",
        "A model's own settings are written directly in `[model]` (they fill `params`).",
        "\n".join(models),
        "### Activations (`model.activation`)",
        ", ".join(f"`{a}`" for a in ACTIVATIONS),
        "### Init schemes (`init.scheme`, `init.bias_scheme`)",
        ", ".join(f"`{a}`" for a in INITIALIZERS),
        "### Algorithms (`algorithm.name`)",
        _algorithms(ALGORITHMS),
        "### Diagnostics (`train.diagnostics`)",
        "\n".join(diagnostics),
    ]
    parts += [
        "### Figures (`report`)",
        f"Default: {', '.join(f'`{n}`' for n in DEFAULT_FIGURES)}. All: "
        + ", ".join(f"`{n}`" for n in FIGURE_NAMES)
        + " (see the [figure guide](figures.md)).",
        "## Probe specs (`kind = ...`)",
        f"A probe spec measures random nets at init and trains nothing: `kind` is one of "
        f"{', '.join(f'`{k}`' for k in kinds)}; a `[probe]` section and the kind's axes replace "
        "the training sections; `name`, `description`, `seed` and `report` are as above.",
        "### `[probe]`",
        _doc(probe),
        fields_table(probe),
    ]
    return "\n\n".join(p for p in parts if p)


def probe_schema() -> tuple[type, tuple[str, ...]]:
    """The ``[probe]`` dataclass and the probe kinds, wherever the schema keeps them (the spec
    module, or the probe module of the engine before probes joined the spec)."""
    from jaxinit.config import spec as S

    if hasattr(S, "ProbeSettings"):
        return S.ProbeSettings, tuple(S.PROBE_KINDS)
    from jaxinit.engine import probe_spec

    return probe_spec.ProbeSettings, tuple(probe_spec.KINDS)


def _algorithms(registry: dict) -> str:
    """``gradient`` and each registered algorithm with the settings it declares (a table of
    ``Setting(name, type, default, check, doc)``), or the starts it accepts (``inits``)."""
    parts = ["`gradient` (the default): trains `[model]` with `[optimizer]`."]
    for a in registry.values():
        settings = getattr(a, "settings", ())
        if settings:
            rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
            rows += [f"| `{s.name}` | `{s.type.__name__}` | `{s.default!r}` | {_cell(_md(s.doc))} |"
                     for s in settings]  # fmt: skip
            parts.append(f"`{a.name}`, its settings in `[algorithm]`:\n\n" + "\n".join(rows))
        else:
            inits = ", ".join(f"`{i}`" for i in getattr(a, "inits", ()))
            parts.append(f"`{a.name}` (`algorithm.init`: {inits})")
    return "\n\n".join(parts)


# -- the API reference -----------------------------------------------------------------------------
def api_reference() -> str:
    """One mkdocstrings entry per name of ``jaxinit.__all__``, at its defining module."""
    import jaxinit

    parts = []
    for name in jaxinit.__all__:
        obj = getattr(jaxinit, name)
        module = getattr(obj, "__module__", None)
        if not isinstance(obj, type) and not callable(obj):  # a registry (a dict): where it is
            module = _defining_module(name)
        parts.append(f"## `jaxinit.{name}`\n\n::: {module}.{name}\n")
    return "\n".join(parts)


def _defining_module(name: str) -> str:
    import jaxinit

    source = Path(jaxinit.__file__).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            return node.module
    raise LookupError(f"jaxinit.{name}: no `from ... import {name}` in jaxinit/__init__.py")


# -- MkDocs events ---------------------------------------------------------------------------------
def on_config(config):
    """The ``Notebooks`` section of the nav: every notebook, in file order."""
    for entry in config["nav"]:
        if isinstance(entry, dict) and NOTEBOOKS in entry:
            entry[NOTEBOOKS] = [f"notebooks/{p.name}" for p in _notebooks()]
    return config


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def on_files(files, config):
    from mkdocs.structure.files import File

    for path in _notebooks():
        files.append(File(f"notebooks/{path.name}", src_dir=str(path.parent.parent),
                          dest_dir=config["site_dir"], use_directory_urls=config["use_directory_urls"]))  # fmt: skip
    return files


on_files.mkdocs_priority = 100  # before mkdocs-jupyter's on_files, which wraps the notebooks


def on_page_markdown(markdown, page, config, files):
    if SPEC_MARKER in markdown:
        markdown = markdown.replace(SPEC_MARKER, spec_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference())
    return markdown
