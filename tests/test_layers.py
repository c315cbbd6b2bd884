"""The package's layers import downward only (one-way data flow: spec → … → CLI)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxinit"

LAYERS = [
    # plots.names: the figure names as plain data, so validation can check `report` lists
    # outputs: the per-run outputs, declared once (names, kinds, units, descriptions)
    ("schema", {"toml_io", "_version", "spec", "stats", "bundled", "plots.names", "outputs"}),
    # adapters: Flax / Equinox modules as Models (flax, equinox imported only when called)
    (
        "blocks",
        {
            "ops",
            "activations",
            "initializers",
            "user_data",
            "tasks",
            "models",
            "adapters",
            "metrics",
        },
    ),
    # the one run loop: a Program (pure per-run functions) run in a Layout
    ("program", {"program"}),
    # iterative algorithms beside gradient training: k-means, EM (one run each, vmapped later)
    ("algorithms", {"kmeans", "gmm", "algorithms"}),
    # mean-field theory and random nets at init: pure functions of numbers, below the engine so
    # that probe sweeps (jaxinit.probes, beside jaxinit.sweep) can measure them
    ("random nets", {"theory", "signal"}),
    ("validation", {"validation"}),
    ("stored sweeps", {"rebuild"}),  # a saved Dataset's spec, task and model (from_dataset)
    ("claims", {"claims"}),  # who writes a shard of a sweep directory (O_EXCL + heartbeat)
    (
        "engine",
        {
            "plan",
            "identity",
            "train",
            "lanes",
            "store",
            "compile_cache",
            "devices",
            "executors",
            "probe_spec",
        },  # fmt: skip
    ),
    ("processes", {"distributed", "progress"}),  # multi-process jobs; a directory's progress
    ("results", {"results"}),
    ("sweep", {"sweep", "probes"}),  # orchestrates the engine and hands back labelled results
    ("analysis", {"basins", "curvature", "symmetry", "tables", "restarts", "landscape"}),
    ("plots", {"plots"}),
    ("report", {"report"}),
    ("cli", {"cli", "__main__"}),  # __main__: `python -m jaxinit`
]
"""Lowest first. A module may import its own layer and the ones before it, never a later one."""


def _layer_of(module: str) -> int:
    for key in (module, module.split(".")[0]):
        for k, (_, names) in enumerate(LAYERS):
            if key in names:
                return k
    raise AssertionError(f"jaxinit.{module} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path) -> set[str]:
    """Every ``jaxinit.X`` a module imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "jaxinit":
                out |= {a.name for a in node.names}
            elif node.module.startswith("jaxinit."):
                out.add(node.module.removeprefix("jaxinit."))
        elif isinstance(node, ast.Import):
            out |= {
                a.name.removeprefix("jaxinit.") for a in node.names if a.name.startswith("jaxinit.")
            }
    return out


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name != "__init__":
            mods[name] = path
    return mods


def test_every_import_points_down():
    bad = []
    for name, path in _modules().items():
        mine = _layer_of(name)
        for target in _imports(path):
            if target == "__version__":
                continue
            if _layer_of(target) > mine:
                bad.append(f"jaxinit.{name} ({LAYERS[mine][0]}) imports jaxinit.{target} "
                           f"({LAYERS[_layer_of(target)][0]})")  # fmt: skip
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test itself can fail: a schema module importing the CLI is caught."""
    f = tmp_path / "spec.py"
    f.write_text("def f():\n    from jaxinit.cli import main\n")
    assert {_layer_of(t) for t in _imports(f)} == {_layer_of("cli")}
    assert _layer_of("cli") > _layer_of("spec")


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
    """One way back from a Dataset to its spec, task and model: jaxinit.rebuild.from_dataset
    (on 426ca25, 11 sites in 8 modules parsed ``ds.attrs["spec"]`` themselves)."""
    left = {"rebuild", "probes"}  # probes: the probes helper's file (issue 20)
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
        "Activation": ["activations"],
        "haar_orthogonal": ["signal"],
        "Group": ["plan"],
        "spec_of": [],
    }
