"""The package's layers import downward only (one-way data flow: spec → … → CLI)."""

import ast
import functools
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parent.parent / "jaxinit"


class Layer(NamedTuple):
    name: str
    folder: str  # where its modules live: jaxinit/<folder>/ ("": the package root)
    modules: frozenset[str]  # dotted names under jaxinit
    about: str  # one line for the layer list of docs/development.md


def _layer(name: str, folder: str, modules: str, about: str) -> Layer:
    return Layer(name, folder, frozenset(modules.split()), about)


LAYERS = [
    _layer("schema", "config", "config.toml_io config.spec config.bundled config.outputs plots.names",
           "the spec (dataclasses, TOML, overrides; traced fields declared in field metadata), the "
           "bundled specs, the per-run outputs declared once; `plots.names` is the figure registry "
           "as plain data, so that validation can check `report` lists without matplotlib"),
    _layer("building blocks", "blocks",
           "blocks.ops blocks.activations blocks.initializers blocks.user_data blocks.tasks "
           "blocks.models blocks.adapters blocks.metrics blocks.kmeans blocks.gmm blocks.theory "
           "blocks.signal blocks.sharpness",
           "layout primitives (`ops`), activations (one entry: JAX function, symmetry, saturation, "
           "host φ and φ′), initializers, tasks and your own data, models, Flax/Equinox adapters, "
           "diagnostics, k-means and EM steps, mean-field theory and random nets, sharpness"),
    _layer("program", "engine", "engine.program",
           "the one run loop: a `Program` of pure per-run functions run in a `Layout`"),
    _layer("algorithms", "engine", "engine.algorithms", "k-means and EM as programs"),
    _layer("validation", "engine", "engine.validation",
           "every name and value, before anything compiles (`resolve_spec`)"),
    _layer("stored sweeps", "engine", "engine.rebuild",
           "`from_dataset(ds)`: a saved sweep's spec, task and model"),
    _layer("claims", "engine", "engine.claims",
           "who writes a shard of a sweep directory (O_EXCL and a heartbeat)"),
    _layer("engine", "engine",
           "engine.plan engine.identity engine.train engine.lanes engine.store "
           "engine.compile_cache engine.devices engine.executors engine.probe_spec",
           "lazy plans, run identity, gradient training in the vmap and lanes layouts, the "
           "store, the one place that lays runs out on devices (`executors`), probe plans"),
    _layer("processes", "engine", "engine.distributed engine.progress",
           "multi-process jobs; a directory's progress"),
    _layer("results", "engine", "engine.results", "labelled Datasets"),
    _layer("sweep", "engine", "engine.sweep engine.probes",
           "`prepare`, `run`: orchestrate the engine and hand back labelled results"),
    _layer("analysis", "analysis",
           "analysis.stats analysis.symmetry analysis.basins analysis.curvature "
           "analysis.restarts analysis.landscape analysis.maps",
           "statistics, symmetry canonicalisation, basins, curvature, restarts, landscapes, maps"),
    _layer("plots", "plots", "plots", "every figure, registered next to its code"),
    _layer("report", "", "reports report_html", "a sweep's figures, tables and summary (`jaxinit.report`)"),
    _layer("cli", "", "cli __main__", "the command line, a thin shell (`python -m jaxinit`)"),
]  # fmt: skip
"""Lowest first. A module may import its own layer and the ones before it, never a later one.
The folders follow the same order, so the tree shows the layers (docs/development.md: :func:`layer_list`)."""

FOLDERS = ("config", "blocks", "engine", "analysis", "plots", "")
"""The package's folders, lowest layer first (``""``: modules at the package root)."""


def _layer_of(module: str) -> int:
    for k, layer in enumerate(LAYERS):
        if module in layer.modules:
            return k
    if module.startswith("plots."):
        return _layer_of("plots")
    if module in FOLDERS:  # a layer folder's __init__: a docstring, no imports
        return 0
    raise AssertionError(f"jaxinit.{module} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path) -> set[str]:
    """Every ``jaxinit`` module a module imports, at any depth (function-level imports
    included): ``from jaxinit.engine import train`` is ``engine.train``."""
    known = set(_modules()) | set(FOLDERS)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "jaxinit":
                continue
            base = node.module.removeprefix("jaxinit").removeprefix(".")
            for a in node.names:
                sub = f"{base}.{a.name}".lstrip(".")
                if sub in known:
                    out.add(sub)
                elif base:
                    out.add(base)
        elif isinstance(node, ast.Import):
            out |= {
                a.name.removeprefix("jaxinit.") for a in node.names if a.name.startswith("jaxinit.")
            }
    return out


LAYER_PAGE = "docs/development.md"
"""The docs page that shows the layer list (between the ``<!-- layers: ... -->`` markers)."""


@functools.cache
def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name != "__init__":
            mods[name] = path
    return mods


def layer_list() -> str:
    """The layer list of :data:`LAYER_PAGE`, generated from :data:`LAYERS`."""
    lines = []
    for k, layer in enumerate(LAYERS, 1):
        names = ", ".join(
            f"`{m.removeprefix(layer.folder + '.') if layer.folder else m}`"
            for m in sorted(layer.modules, key=lambda m: (not m.startswith(layer.folder), m))
        )
        lines.append(f"{k}. {layer.name} (`jaxinit/{layer.folder + '/' if layer.folder else ''}`): "
                     f"{names}: {layer.about}")  # fmt: skip
    return "\n".join(lines)


def test_folders_show_the_layers():
    """Every module lives in its layer's folder (``plots.names``, plain data read by validation,
    is the one exception), and the folders come in layer order."""
    misplaced = []
    for name in _modules():
        if name in FOLDERS or name == "plots.names":
            continue
        folder = "plots" if name.startswith("plots") else name.rpartition(".")[0]
        if LAYERS[_layer_of(name)].folder != folder:
            misplaced.append(f"jaxinit.{name} is in {folder or 'the root'}, its layer in "
                             f"{LAYERS[_layer_of(name)].folder or 'the root'}")  # fmt: skip
    assert not misplaced, "\n".join(misplaced)
    order = [FOLDERS.index(layer.folder) for layer in LAYERS]
    assert order == sorted(order)


def test_the_docs_layer_list_is_generated_from_layers():
    page = (PACKAGE.parent / LAYER_PAGE).read_text()
    start, end = "<!-- layers: generated from tests/test_layers.py -->\n", "\n<!-- /layers -->"
    assert start in page and end in page
    shown = page[page.index(start) + len(start) : page.index(end)]
    assert shown == layer_list(), f"paste this into {LAYER_PAGE}:\n" + layer_list()


def test_every_import_points_down():
    bad = []
    for name, path in _modules().items():
        mine = _layer_of(name)
        for target in _imports(path):
            if _layer_of(target) > mine:
                bad.append(f"jaxinit.{name} ({LAYERS[mine][0]}) imports jaxinit.{target} "
                           f"({LAYERS[_layer_of(target)][0]})")  # fmt: skip
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test itself can fail: a schema module importing the CLI is caught."""
    f = tmp_path / "spec.py"
    f.write_text(
        "def f():\n    from jaxinit.cli import main\n    from jaxinit.engine import train\n"
    )
    assert _imports(f) == {"cli", "engine.train"}
    assert _layer_of("cli") > _layer_of("config.spec")


def _private_imports(path: Path) -> set[str]:
    """Every underscored name a module takes from another jaxinit module, at any depth:
    ``from jaxinit.x import _y`` gives ``jaxinit.x._y``; ``import jaxinit._x`` and
    ``from jaxinit import _x`` give ``jaxinit._x`` (a module named ``_x`` is private too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "jaxinit":
                continue
            if any(p.startswith("_") for p in parts[1:]):
                out.add(node.module)
            out |= {
                f"{node.module}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and a.name != "__version__"
            }
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "jaxinit" and any(p.startswith("_") for p in parts[1:]):
                    out.add(a.name)
    return out


def test_no_module_imports_another_modules_private_names():
    found = {
        (name, target) for name, path in _modules().items() for target in _private_imports(path)
    }
    new = sorted(found)
    assert not new, "import of another module's underscored name:\n" + "\n".join(
        f"jaxinit.{name} imports {target}" for name, target in new
    )


def test_the_private_import_check_sees_each_form(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import jaxinit._toml\nfrom jaxinit import _toml, spec\n"
        "def f():\n    from jaxinit.plots.core import _pool, cells\n"
    )
    assert _private_imports(f) == {"jaxinit._toml", "jaxinit.plots.core._pool"}


def _reads_stored_spec(path: Path) -> bool:
    """Whether a module reads ``<x>.attrs["spec"]`` (or ``.attrs.get("spec")``) itself."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript):
            owner, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr != "get":
                continue
            owner, key = node.func.value, node.args[0]
        else:
            continue
        if isinstance(owner, ast.Attribute) and owner.attr == "attrs":
            if isinstance(key, ast.Constant) and key.value == "spec":
                return True
    return False


def test_only_from_dataset_parses_a_stored_spec():
    """One way back from a Dataset to its spec, task and model: jaxinit.engine.rebuild.from_dataset
    (on 426ca25, 11 sites in 8 modules parsed ``ds.attrs["spec"]`` themselves)."""
    left = {"engine.rebuild"}
    readers = sorted(n for n, p in _modules().items() if _reads_stored_spec(p) and n not in left)
    assert not readers, readers


def test_the_stored_spec_check_sees_both_forms(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f(ds):\n    return ds.attrs.get('spec')\n")
    assert _reads_stored_spec(f)
    f.write_text("def f(ds):\n    return json.loads(ds.attrs['spec'])\n")
    assert _reads_stored_spec(f)
    f.write_text("def f(ds):\n    return ds.attrs['axes'], ds.attrs.get('model')\n")
    assert not _reads_stored_spec(f)


def _import_graph() -> dict[str, set[str]]:
    """``module -> the jaxinit modules it imports``, at any depth (an import inside a function
    closes a circle as soon as it runs); ``from jaxinit.x import y`` counts ``x`` and, where
    ``y`` is a module, ``x.y``. The package roots (``jaxinit``) are left out."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module.removeprefix("jaxinit").removeprefix(".")
                if node.module.split(".")[0] != "jaxinit":
                    continue
                targets |= {base} | {f"{base}.{a.name}".lstrip(".") for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name.removeprefix("jaxinit.") for a in node.names}
        graph[name] = (targets & set(mods)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    """On 426ca25: models <-> adapters and plots.core <-> plots.init_figures (issue 20), both
    through imports inside functions."""
    assert _cycles(_import_graph()) == []


def test_the_circle_check_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _defined_at_top(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_the_clashing_names_mean_one_thing():
    """Issue 20 found two ``Activation`` (activations, theory), two ``haar_orthogonal`` (signal
    on a JAX key, tasks on a NumPy seed), two ``Group`` (plan, basins) and two ``spec_of``."""
    where = {
        name: sorted(m for m, p in _modules().items() if name in _defined_at_top(p))
        for name in ("Activation", "haar_orthogonal", "Group", "spec_of")
    }
    assert where == {
        "Activation": ["blocks.activations"],
        "haar_orthogonal": ["blocks.signal"],
        "Group": ["engine.plan"],
        "spec_of": [],
    }
