"""The front door: what ``import jaxinit`` gives a user."""

import subprocess
import sys

import pytest

import jaxinit

INTERNALS = {"make_run", "make_plan", "Plan", "dense_stack", "assemble", "Executor"}


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


def test_executor_is_reachable_but_not_listed():
    """Issue 20: ``Executor`` (an engine internal) was in ``__all__``; the README's
    ``jaxinit.Executor(...)`` keeps working as a lazy attribute."""
    from jaxinit.engine.executors import Executor

    assert "Executor" not in jaxinit.__all__ and jaxinit.Executor is Executor
    assert "Executor" in dir(jaxinit)


def test_report_is_a_verb_and_the_layers_are_folders(tmp_path):
    """``jaxinit.report(DIR)`` draws what ``jaxinit report DIR`` draws (issue 20: the verb was
    missing); the layers are subpackages reachable from ``jaxinit``."""
    out = tmp_path / "sweep"
    spec = {"task": {"name": "xor"}, "train": {"steps": 20, "log_every": 10}, "axes": {"seed": 2},
            "report": ["final_loss"]}  # fmt: skip
    jaxinit.run(spec, out=out, progress=False)
    rep = jaxinit.report(out)
    assert [p.name for p in rep.paths if p.suffix == ".png"] == ["final_loss.png"]
    assert (out / "report" / "final_loss.png").is_file() and not rep.failed
    with pytest.raises(ValueError, match="out="):
        jaxinit.report(jaxinit.load(out))
    for layer in ("config", "blocks", "engine", "analysis", "plots"):
        assert getattr(jaxinit, layer).__name__ == f"jaxinit.{layer}"
