"""The front door: what ``import jaxinit`` gives a user."""

import subprocess
import sys

import pytest

import jaxinit

INTERNALS = {"make_run", "make_plan", "Plan", "dense_stack", "assemble"}


@pytest.mark.slow
def test_analysis_modules_are_attributes_after_import_jaxinit():
    """The README's ``jaxinit.basins.find_basins`` works right after ``import jaxinit`` (it raised
    AttributeError), and reaching one module does not import the others' heavy dependencies first."""
    code = (
        "import sys, jaxinit\n"
        "before = 'xarray' in sys.modules\n"
        "names = ['basins', 'curvature', 'plots', 'probes', 'restarts', 'signal', 'symmetry', 'theory']\n"
        "ok = [callable(jaxinit.basins.find_basins)] + [hasattr(jaxinit, n) for n in names]\n"
        "print(before, all(ok))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "True"]


def test_all_lists_user_facing_names_that_exist():
    assert not INTERNALS & set(jaxinit.__all__)
    assert len(set(jaxinit.__all__)) == len(jaxinit.__all__)
    missing = [n for n in jaxinit.__all__ if not hasattr(jaxinit, n)]
    assert not missing
    assert {"run", "load", "status", "tidy", "Spec", "Model", "Symmetry", "SpecError"} <= set(
        jaxinit.__all__
    )
