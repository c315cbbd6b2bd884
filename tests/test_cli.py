"""The command line, run as a user runs it: a subprocess."""

import os
import subprocess
import sys

import pytest


def jaxinit_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxinit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ,
    )


@pytest.mark.slow
def test_readme_main_job_run_load_report(tmp_path):
    """Acceptance: run sweeps/symmetry.toml, load it in Python, write the report's figures."""
    out = tmp_path / "sym"
    r = jaxinit_cli("run", "sweeps/symmetry.toml", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "init.scheme=zeros" in r.stdout and "success" in r.stdout  # the summary table
    show = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import jaxinit; ds = jaxinit.load({str(out)!r}); print(ds); "
            "assert ds.sizes['seed'] >= 256 and 'final_loss' in ds",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert show.returncode == 0, show.stderr
    assert "final_loss" in show.stdout and "seed" in show.stdout
    rep = jaxinit_cli("report", str(out))
    assert rep.returncode == 0, rep.stderr
    pngs = sorted((out / "report").glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    assert (out / "report" / "summary.txt").read_text().startswith("symmetry: 1280/1280 runs")


def test_list_shows_bundled_specs():
    r = jaxinit_cli("list")
    assert r.returncode == 0
    assert any(line.startswith("symmetry ") for line in r.stdout.splitlines())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "no_such_spec"], "bundled specs"),
        (["run", "symmetry", "--set", "train.steps=-5"], "train.steps"),
        (["run", "symmetry", "--set", "model.activation=swish"], "allowed: tanh"),
        (["run", "symmetry", "--set", "train.steps"], "expected field.path=value"),
        (["report", "/nonexistent/dir"], "not a jaxinit sweep directory"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, needle):
    r = jaxinit_cli(*args, "--out", str(tmp_path / "o")) if args[0] == "run" else jaxinit_cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing written
