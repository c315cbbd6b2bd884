"""The README and the docs pages (issues 20, 27): every Python block runs as written, the README
stays a front page (at most 200 lines, every bundled spec in its table), and the generated docs
pages (``docs/hooks.py``) cover the whole spec schema and ``jaxinit.__all__``.

README blocks run each in a fresh interpreter; a docs page's blocks run in order in one
interpreter (a page reads like a notebook: a later block may use an earlier one's names). A block
whose first line starts with :data:`NO_RUN` is only compiled (the reason follows the marker,
visible on the page)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = sorted((ROOT / "docs").rglob("*.md"))
NO_RUN = "# not run by the tests:"
"""First line of a block that must not run here (e.g. it needs a Slurm cluster)."""
MAX_README_LINES = 200


def python_blocks(text: str) -> list[str]:
    """The ```` ```python ```` blocks of a Markdown text (any attributes after the language)."""
    return re.findall(r"^```python[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def runs(block: str) -> bool:
    return not block.startswith(NO_RUN)


BLOCKS = python_blocks(README)
PAGE_BLOCKS = {p.relative_to(ROOT).as_posix(): python_blocks(p.read_text()) for p in PAGES}


def _sandbox(tmp_path: Path, code: str) -> None:
    """A folder with the bundled ``sweeps/`` and, for code that loads it, the README's main job's
    ``results/symmetry`` (made smaller here: 8 seeds)."""
    (tmp_path / "sweeps").symlink_to(ROOT / "jaxinit" / "sweeps")
    if 'results/symmetry"' in code or "results/symmetry'" in code:
        setup = "import jaxinit; jaxinit.run('symmetry', out='results/symmetry', axes__seed=8)"
        subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, check=True, timeout=600)


def _run(code: str, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_every_python_block_compiles_and_few_are_not_run():
    every = [("README.md", b) for b in BLOCKS]
    every += [(page, b) for page, blocks in PAGE_BLOCKS.items() for b in blocks]
    for where, block in every:
        compile(block, where, "exec")
    assert len(BLOCKS) >= 1
    not_run = [where for where, b in every if not runs(b)]
    assert len(not_run) <= 2, not_run  # keep them rare: each names its reason after NO_RUN


def test_the_marker_is_what_the_tests_skip():
    assert python_blocks("```python\nx = 1\n```\n```python title='a'\ny\n```\n") == [
        "x = 1\n",
        "y\n",
    ]
    assert not runs(f"{NO_RUN} needs a cluster\nimport submitit\n")
    assert runs("import jaxinit\n")


@pytest.mark.slow
@pytest.mark.parametrize("k", [k for k, b in enumerate(BLOCKS) if runs(b)])
def test_readme_example_runs_as_written(k, tmp_path):
    _sandbox(tmp_path, BLOCKS[k])
    _run(BLOCKS[k], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p, blocks in PAGE_BLOCKS.items() if any(map(runs, blocks))])
def test_docs_page_examples_run_as_written(page, tmp_path):
    """A page's blocks, in order, in one interpreter (each block's top-level names stay)."""
    blocks = [b for b in PAGE_BLOCKS[page] if runs(b)]
    _sandbox(tmp_path, "\n".join(blocks))
    code = "\n".join(f"exec(compile({b!r}, {page!r} + ' block {k}', 'exec'))"
                     for k, b in enumerate(blocks))  # fmt: skip
    _run(code, tmp_path)


# -- the README is a front page ----------------------------------------------------------------
def test_the_readme_is_at_most_200_lines():
    n = len(README.splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move content into docs/"


def test_the_readme_table_lists_every_bundled_spec():
    from jaxinit.config.bundled import bundled_specs

    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", README, flags=re.M)
    missing = sorted(set(bundled_specs()) - set(listed))
    assert not missing, f"bundled specs missing from the README's table: {missing}"
    assert not set(listed) - set(bundled_specs()), "the README's table lists a spec not bundled"


def test_the_readme_keeps_the_two_setup_commands():
    setup = '```bash\npip install -e ".[test]" && jaxinit run symmetry --out results/symmetry --report\npython -m pytest -q\n```'
    assert setup in README


def test_readme_links_point_at_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


# -- the generated pages cannot drift ----------------------------------------------------------
def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_spec_reference_covers_every_field_and_name():
    import dataclasses

    from jaxinit.blocks.activations import ACTIVATIONS
    from jaxinit.blocks.initializers import INITIALIZERS
    from jaxinit.blocks.metrics import REGISTRY
    from jaxinit.blocks.tasks import TASKS
    from jaxinit.config import spec as S

    hooks = _hooks()
    ProbeSettings, kinds = hooks.probe_schema()
    text = hooks.spec_reference()
    assert hooks.SPEC_MARKER in (ROOT / "docs" / "spec.md").read_text()
    for name in S.SECTIONS:
        assert f"## `[{name}]`" in text
    classes = [S.Spec, S.TaskSpec, S.ModelSpec, S.InitSpec, S.OptimizerSpec, S.TrainSpec,
               S.StoreSpec, S.BasinSpec, S.AlgorithmSpec, ProbeSettings]  # fmt: skip
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name not in S.SECTIONS:
                assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name}"
    for registry in (TASKS, ACTIVATIONS, INITIALIZERS, REGISTRY, kinds):
        for name in registry:
            assert f"`{name}`" in text, name
    # a traced field is marked, and the comment beside a field is its meaning
    assert "| `scale` | `float` | `1.0` | yes |" in text
    assert "record curves every this many steps" in text
    # the fallback notes name real fields
    for key in hooks.FIELD_NOTES:
        cls, _, field = key.partition(".")
        assert field in {f.name for f in dataclasses.fields(getattr(S, cls))}, key


def test_field_comments_read_the_comment_above_and_beside():
    from jaxinit.config.spec import InitSpec, TrainSpec

    notes = _hooks().field_comments(InitSpec)
    assert notes["plane_seed"].startswith("A 2-D slice of init space")
    assert notes["plane_seed_a"].startswith(">= 0: the direction d1")
    assert notes["scale"] == ""
    assert _hooks().field_comments(TrainSpec)["batch_size"] == "0: full batch"


def test_the_api_page_has_every_public_name():
    import jaxinit

    text = _hooks().api_reference()
    assert (_hooks().API_MARKER) in (ROOT / "docs" / "api" / "index.md").read_text()
    for name in jaxinit.__all__:
        assert f"## `jaxinit.{name}`\n" in text, name
    assert "::: jaxinit.engine.sweep.run\n" in text
    assert "::: jaxinit.blocks.tasks.TASKS\n" in text  # a registry, at the module defining it


def test_every_toml_block_is_a_valid_spec():
    """The TOML examples parse as specs (structure and types); the spec reference's example is
    also validated as a whole (names and values), as ``jaxinit run --dry-run`` would."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.validation import validate

    texts = [README, *(p.read_text() for p in PAGES)]
    blocks = [b for t in texts for b in re.findall(r"^```toml\n(.*?)^```", t, flags=re.S | re.M)]
    assert len(blocks) >= 2
    for block in blocks:
        Spec.from_toml_string(block)
    (example,) = re.findall(r"^```toml\n(.*?)^```", (ROOT / "docs" / "spec.md").read_text(),
                            flags=re.S | re.M)  # fmt: skip
    validate(Spec.from_toml_string(example))
