"""The package's layers import downward only (one-way data flow: spec → … → CLI)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxinit"

LAYERS = [
    # plots.names: the figure names as plain data, so validation can check `report` lists
    ("schema", {"_toml", "_version", "spec", "stats", "bundled", "plots.names"}),
    # adapters: Flax / Equinox modules as Models (flax, equinox imported only when called)
    ("blocks", {"activations", "initializers", "tasks", "models", "adapters", "metrics"}),
    ("numerics", {"sharpness", "maps"}),  # sharpness, phases, box counting (no jaxinit imports)
    # iterative algorithms beside gradient training: k-means, EM (one run each, vmapped later)
    ("algorithms", {"kmeans", "gmm", "algorithms"}),
    # mean-field theory and random nets at init: pure functions of numbers, below the engine so
    # that probe sweeps (jaxinit.probes, beside jaxinit.sweep) can measure them
    ("random nets", {"theory", "signal"}),
    ("validation", {"validation"}),
    ("claims", {"claims"}),  # who writes a shard of a sweep directory (O_EXCL + heartbeat)
    (
        "engine",
        {"plan", "identity", "train", "lanes", "store", "compile_cache", "devices", "executors"},
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
