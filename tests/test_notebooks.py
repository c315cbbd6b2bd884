"""Every example notebook executes top to bottom (with JAXINIT_SMALL=1: small settings) and shows
its figures: run as a user runs it, with Jupyter's own (inline) matplotlib backend."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


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
    assert os.environ["JAXINIT_SMALL"] == "1"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"
