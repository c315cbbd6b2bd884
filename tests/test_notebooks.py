"""The example notebooks: each executes top to bottom (with JAXINIT_SMALL=1: settings smaller than its
defaults) and shows its figures and a progress bar, run as a user runs it, with Jupyter's own (inline)
matplotlib backend; and each committed notebook carries the outputs of its current code, figures
included (``notebooks/execute.py`` executes them at their defaults and stamps the hash of their code
cells), so a code edit without re-executing fails here."""

import base64
import copy
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("execute", ROOT / "notebooks" / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

MAX_BYTES = 1_000_000  # a committed notebook, outputs and figures included
MAX_FIGURE_BYTES = 200_000  # one PNG figure


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_shows_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXINIT_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no figure (was a non-interactive backend forced?)"
    # every sweep shows a progress bar: tqdm.auto's widget (with ipywidgets) or its text bar, and
    # no warning about a missing ipywidgets in the reader's output
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "IProgress" not in streams and "TqdmWarning" not in streams
    widget = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert widget or re.search(r"runs: +100%\|", streams), f"{path.name} shows no progress bar"
    assert os.environ["JAXINIT_SMALL"] == "1"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_shows_the_outputs_of_its_code(path):
    nb = nbformat.read(path, as_version=4)
    why = execute.problems(nb)
    assert not why, f"{path.name}: {'; '.join(why)}; run: python notebooks/execute.py {path}"
    assert path.stat().st_size <= MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"
    for png in execute.images(nb):
        assert len(base64.b64decode(png)) <= MAX_FIGURE_BYTES, f"a figure of {path.name} is large"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_a_full_switch_and_a_conclusion(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^FULL = False\b", first.source, re.M), "no `FULL = False` in the first cell"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"conclusion", text, re.I), f"{path.name} has no written conclusion"


def test_a_stale_notebook_is_caught():
    """What the freshness test catches, on a copy of a committed notebook: a code edit without
    re-executing, a notebook never executed, executed at the tests' small settings, or without
    its outputs."""
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.metadata[execute.STAMP] = {"code_sha256": execute.code_hash(nb), "small": False}
    code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    edited = copy.deepcopy(nb)
    edited.cells[code].source += "\n"
    assert any("code cells changed" in w for w in execute.problems(edited))
    unstamped = copy.deepcopy(nb)
    unstamped.metadata.pop(execute.STAMP, None)
    assert any("never executed" in w for w in execute.problems(unstamped))
    small = copy.deepcopy(nb)
    small.metadata.setdefault(execute.STAMP, {})["small"] = True
    assert any("JAXINIT_SMALL" in w for w in execute.problems(small))
    bare = copy.deepcopy(nb)
    for c in bare.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    why = execute.problems(bare)
    assert any("no figure" in w for w in why) and any("not executed" in w for w in why)
    # markdown edits need no re-execution
    prose = copy.deepcopy(nb)
    md = next(i for i, c in enumerate(prose.cells) if c.cell_type == "markdown")
    prose.cells[md].source += " More words."
    assert execute.code_hash(prose) == execute.code_hash(nb)


def test_progress_updates_collapse_to_the_last_state():
    cell = nbformat.v4.new_code_cell("", metadata={"execution": {"shell.execute_reply": "t"}})
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\rruns:   0%|  | 0/8"),
        nbformat.v4.new_output("stream", name="stderr", text="\rruns: 100%|##| 8/8\n"),
        nbformat.v4.new_output("stream", name="stdout", text="a\rb\r\nc\n"),
        nbformat.v4.new_output("stream", name="stderr", text="done\n"),
    ]
    execute.clean(cell)
    assert [(o.name, o.text) for o in cell.outputs] == [
        ("stderr", "runs: 100%|##| 8/8\n"),
        ("stdout", "b\nc\n"),
        ("stderr", "done\n"),
    ]
    assert "execution" not in cell.metadata


@pytest.mark.slow
def test_terminal_progress_bar():
    """Outside a notebook ``progress=True`` prints the sweep's size and tqdm's text bar on stderr
    (as ``jaxinit run`` does), and nothing on stdout."""
    code = ("import jaxinit; jaxinit.run({'task': {'name': 'xor'}, 'train': {'steps': 20}, "
            "'axes': {'seed': 3}}, chunk_size=2)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "3 runs" in r.stderr and re.search(r"runs: +100%\|\S+\| 3/3", r.stderr), r.stderr
    assert r.stdout == "" and "Warning" not in r.stderr, (r.stdout, r.stderr)
