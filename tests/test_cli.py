"""The command line, run as a user runs it: a subprocess."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxinit
from jaxinit.engine.devices import MAX_DEFAULT, cores

TINY_TOML = """
name = "{name}"
[task]
name = "xor"
[model]
widths = [2]
[train]
steps = 4
log_every = 2
[axes]
seed = 2
"""


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
        (["report", "/nonexistent/dir"], "/nonexistent/dir does not exist"),  # not "no spec.json"
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, needle):
    r = jaxinit_cli(*args, "--out", str(tmp_path / "o")) if args[0] == "run" else jaxinit_cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing written


def _tiny_spec(tmp_path: Path, name: str = "tiny") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML.format(name=name))
    return path


def _clean_exit_2(r, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_binary_spec_exits_2(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(0x80, 0x100)))
    r = jaxinit_cli("run", str(garbage), "--out", str(tmp_path / "o"))
    _clean_exit_2(r, "not a UTF-8 TOML file")
    assert not (tmp_path / "o").exists()


def test_unknown_task_parameter_lists_what_is_allowed(tmp_path):
    r = jaxinit_cli("run", "symmetry", "--set", "task.nosuch=1", "--out", str(tmp_path / "o"))
    _clean_exit_2(r, "nosuch")
    assert re.search(r"allowed: \S", r.stderr), r.stderr  # not an empty list
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "ab\nc", "ABSOLUTE"])
def test_spec_name_must_stay_inside_results(tmp_path, name):
    """Without --out the sweep goes to results/<name>: a name with a path in it is refused."""
    if name == "ABSOLUTE":
        name = str(tmp_path / "absolute")
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    r = jaxinit_cli("run", str(_tiny_spec(tmp_path, name.replace("\n", "\\n"))), cwd=cwd)
    _clean_exit_2(r, "cannot name a directory under results/")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["here", "tiny.toml", "work"]


@pytest.mark.slow
def test_plain_spec_name_goes_to_results(tmp_path):
    r = jaxinit_cli("run", str(_tiny_spec(tmp_path, "tiny-1.b")), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "results" / "tiny-1.b" / "spec.json").is_file()


@pytest.mark.slow
def test_report_on_a_sweep_with_no_finished_run_exits_2(tmp_path):
    """spec.json but no chunk (this shard had nothing to run): a message, not a KeyError."""
    out = tmp_path / "d"
    r = jaxinit_cli("run", str(_tiny_spec(tmp_path)), "--out", str(out), "--shard", "1/2",
                    "--chunk-size", "4", "--quiet", "--report")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "tiny: 0/2 runs (partial)" in r.stdout
    assert (out / "spec.json").is_file()
    rep = jaxinit_cli("report", str(out))
    _clean_exit_2(rep, "no finished runs yet")
    assert not (out / "report").exists()


def test_version():
    r = jaxinit_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"jaxinit {jaxinit.__version__}"


def test_help_is_plain_text():
    r = jaxinit_cli("--help")
    assert r.returncode == 0
    assert "``" not in r.stdout and ":mod:" not in r.stdout
    assert "exit status" in r.stdout and "--version" in r.stdout


def test_toml_falls_back_to_tomli():
    """Python 3.10 has no tomllib: jaxinit.config.toml_io (used by the spec reader and --set) uses tomli."""
    code = (
        "import sys; sys.modules['tomllib'] = None; "
        "import tomli; from jaxinit.config import toml_io; from jaxinit.cli import parse_set; "
        "assert toml_io.loads is tomli.loads and toml_io.TOMLDecodeError is tomli.TOMLDecodeError; "
        "from jaxinit.config.spec import Spec; "
        "print(parse_set('train.steps=7'), Spec.from_toml_string('name = \"t\"').name)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "('train.steps', 7) t"


def test_dry_run_of_a_billion_runs_prints_its_size_and_writes_nothing(tmp_path):
    """Defect 5: the run count is printed before compiling; planning 10⁹ runs is cheap."""
    spec = tmp_path / "billion.toml"
    scales = ", ".join(str(0.01 * (k + 1)) for k in range(1000))
    lrs = ", ".join(str(0.001 * (k + 1)) for k in range(1000))
    spec.write_text(
        f'name = "billion"\n[axes]\n"init.scale" = [{scales}]\n'
        f'"optimizer.learning_rate" = [{lrs}]\nseed = 1000\n'
    )
    r = jaxinit_cli("run", str(spec), "--out", str(tmp_path / "out"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "1,000,000,000 runs = 1 static group(s) × 1,000,000,000 runs" in r.stderr
    assert not (tmp_path / "out").exists()
    devices = re.search(r"; (\d+) (\w+) devices?$", r.stderr.splitlines()[0])
    assert devices, r.stderr
    if devices[2] == "cpu":  # one CPU device per core (jaxinit.engine.devices)
        assert int(devices[1]) == min(cores(), MAX_DEFAULT)


def test_what_run_imports_before_training_leaves_out_the_heavy_libraries():
    """`jaxinit run` starts training sooner without xarray, pandas, SciPy and matplotlib, which
    it needs only afterwards (acceptance 5 of the lanes issue: a warm start under 3 s)."""
    code = (
        "import sys, jaxinit.cli, jaxinit.engine.sweep, jaxinit.engine.probes, jaxinit.engine.validation; "
        "print(sorted(m for m in ('xarray', 'pandas', 'scipy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- issue 25: the user's files, broken links, corrupt spec.json, --shard -------------------------
def test_run_into_a_folder_with_the_users_report_and_chunks_exits_2_untouched(tmp_path, capsys):
    from jaxinit.cli import main

    d = tmp_path / "d"
    mine = {d / "report" / "summary.txt": b"mine\n", d / "report" / "final_loss.png": b"mine\n",
            d / "chunks" / "0000-000000.npz": b"mine\n"}  # fmt: skip
    for f, data in mine.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    code = main(["run", str(_tiny_spec(tmp_path)), "--out", str(d), "--report", "--quiet"])
    assert code == 2
    assert "not a jaxinit sweep directory" in capsys.readouterr().err
    assert all(f.read_bytes() == data for f, data in mine.items())
    assert sorted(p for p in d.rglob("*") if p.is_file()) == sorted(mine)


@pytest.mark.parametrize("case", ["dangling link", "corrupt spec.json", "full-width shard",
                                  "huge shard count", "negative heartbeat"])  # fmt: skip
def test_bad_out_or_flags_exit_2_before_anything_is_written(tmp_path, capsys, case):
    from jaxinit.cli import main

    spec, out, extra = _tiny_spec(tmp_path), tmp_path / "o", []
    if case == "dangling link":
        out.symlink_to(tmp_path / "gone")
        needle = "broken symbolic link"
    elif case == "corrupt spec.json":
        out.mkdir()
        (out / "spec.json").write_text("{bad")
        needle = "spec.json is unreadable or corrupt"
    elif case == "full-width shard":
        extra, needle = ["--shard", "\uff13/\uff14"], "ASCII digits"
    elif case == "huge shard count":
        extra, needle = ["--shard", "0/99999999999999999999"], "chunk(s)"
    else:  # JAX used to abort on it with a C++ check failure (exit status 134)
        extra = ["--distributed", "--num-processes", "2", "--process-id", "1",
                 "--heartbeat-timeout", "-5"]  # fmt: skip
        needle = "--heartbeat-timeout must be a positive"
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", str(spec), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "File exists" not in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no chunks/, lock, spec.json


SMALL_SIGNAL = {"probe.depth": 4, "probe.width": 8, "probe.in_dim": 4, "axes.seed": 3,
                "axes.sigma_w": [1.0, 2.0], "axes.sigma_b": [0.0]}  # fmt: skip
"""The bundled signal_propagation (tanh, relu) at 2 × 2 × 3 = 12 tiny nets: 2 chunks."""


@pytest.mark.slow
def test_signal_propagation_in_two_shards_then_status_and_load(tmp_path):
    """Issue 20, acceptance 4: `jaxinit run signal_propagation --shard 0/2` and `1/2` (each a
    process) complete the sweep; `jaxinit status` says partial, then complete; jaxinit.load is
    the unsharded run. Was: --shard refused, status and load special-cased probe directories."""
    import json

    import numpy as np

    out = tmp_path / "sp"
    sets = [a for k, v in SMALL_SIGNAL.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    said = []
    for shard in ("0/2", "1/2"):
        r = jaxinit_cli("run", "signal_propagation", "--out", str(out), "--shard", shard, *sets)
        assert r.returncode == 0, r.stderr[-2000:]
        s = jaxinit_cli("status", str(out))
        assert s.returncode == 0, s.stderr[-2000:]
        said.append(s.stdout)
    assert "6/12 runs (50.0%), 1/2 chunks" in said[0] and "not started" in said[0], said[0]
    assert "12/12 runs (100.0%), 2/2 chunks" in said[1] and "problems" not in said[1], said[1]
    ds = jaxinit.load(out)
    ref = jaxinit.run("signal_propagation", progress=False,
                      **{k.replace(".", "__"): v for k, v in SMALL_SIGNAL.items()})  # fmt: skip
    assert ds.attrs["partial"] == 0 and dict(ds.sizes) == dict(ref.sizes)
    assert set(ds.data_vars) == set(ref.data_vars) == {"q", "c", "grad_sq", "grad_q_in", "x_gram"}
    for name, var in ref.variables.items():
        assert ds[name].dims == var.dims, name
        np.testing.assert_array_equal(ds[name].values, var.values, err_msg=name)
