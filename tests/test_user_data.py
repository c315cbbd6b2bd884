"""A user's own data (task ``arrays``, jaxinit.blocks.user_data): arrays, .npz and .csv sweeps, every
check with its message, the data's hash in the run identity, resume, and a report."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import jaxinit
from jaxinit.blocks import user_data
from jaxinit.blocks.tasks import TASKS
from jaxinit.config.spec import Spec, SpecError
from jaxinit.engine.identity import spec_identity
from jaxinit.engine.store import StoreError, read_spec

ROOT = Path(__file__).resolve().parent.parent


def two_blobs(n=24, seed=0):
    """Two separable Gaussian blobs in 3-D, labels 0/1 (integers), float64 inputs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 3)) + 2.0 * y[:, None]
    return x, y


def spec_for(loss="ce", **task):
    return {
        "name": "mine",
        "task": {"name": "arrays", "loss": loss, **task},
        "model": {"widths": [4]},
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "train": {"steps": 20, "log_every": 10},
        "axes": {"seed": 2, "init.scale": [0.5, 1.0]},
    }


def write_csv(path, x, y, names=("a", "b", "c"), target="label"):
    lines = [",".join([*names, target])]
    lines += [",".join([*map(repr, map(float, row)), str(int(t))]) for row, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


# -- running ------------------------------------------------------------------------------------
class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray


def test_run_on_arrays_in_memory_test_set_is_the_training_set():
    x, y = two_blobs()
    ds = jaxinit.run(spec_for("ce"), data=Split(x, y), progress=False)
    assert ds.final_loss.dims == ("seed", "init_scale") and np.isfinite(ds.final_loss).all()
    # no test arrays: the test set is the training set, so the test loss is the final loss
    np.testing.assert_allclose(ds.test_loss, ds.final_loss, rtol=1e-5, atol=1e-7)
    task = json.loads(ds.attrs["spec"])["task"]
    assert task["data_sha256"] == user_data.content_hash({"x_train": x, "y_train": y})


@pytest.mark.parametrize("loss, out_dim", [("ce", 2), ("bce", 1), ("mse", 1)])
def test_prepare_on_arrays_for_each_loss(loss, out_dim):
    x, y = two_blobs()
    prep = jaxinit.prepare(spec_for(loss), data={"x_train": x, "y_train": y})
    assert prep.record["model"]["params"]["layers/1/w"] == [[4, out_dim], "float32"]
    assert prep.record["identity"]["task.loss"] == loss


def test_arrays_task_shapes_per_loss_and_given_test_arrays():
    x, y = two_blobs()
    sha = user_data.register({"x_train": x, "y_train": y, "x_test": x[:5], "y_test": y[:5]})
    ce = TASKS["arrays"](loss="ce", data_sha256=sha)
    assert ce.y_train.dtype == np.int32 and ce.y_train.shape == (24,) and ce.out_dim == 2
    assert ce.x_test.shape == (5, 3) and ce.x_train.dtype == np.float32
    bce = TASKS["arrays"](loss="bce", data_sha256=sha)
    assert bce.y_train.shape == (24, 1) and bce.out_dim == 1
    mse = TASKS["arrays"](loss="mse", data_sha256=sha)
    assert mse.y_train.dtype == np.float32 and mse.success_metric == 0.95


def test_test_fraction_split_is_a_function_of_the_data_alone():
    x, y = two_blobs(40)
    sha = user_data.register({"x_train": x, "y_train": y})
    a = TASKS["arrays"](loss="ce", data_sha256=sha, test_fraction=0.25)
    b = TASKS["arrays"](loss="ce", data_sha256=sha, test_fraction=0.25)
    assert a.x_test.shape == (10, 3) and a.x_train.shape == (30, 3)
    np.testing.assert_array_equal(a.x_test, b.x_test)  # the same rows every time
    rows = np.concatenate([a.x_train, a.x_test])  # every row once, in train or test
    np.testing.assert_array_equal(np.sort(rows, 0), np.sort(x.astype(np.float32), 0))
    assert not np.array_equal(a.x_test, x[:10].astype(np.float32))  # shuffled, not the head
    # other data, other split: the permutation is seeded by the data's hash
    x2, y2 = two_blobs(40, seed=1)
    c = TASKS["arrays"](loss="ce", data_sha256=user_data.register({"x_train": x2, "y_train": y2}),
                        test_fraction=0.25)  # fmt: skip
    held = [np.flatnonzero((x2.astype(np.float32) == r).all(1))[0] for r in c.x_test]
    first = [np.flatnonzero((x.astype(np.float32) == r).all(1))[0] for r in a.x_test]
    assert sorted(held) != sorted(first)


def test_npz_toml_resume_other_data_refused_and_the_file_may_move(tmp_path):
    x, y = two_blobs()
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y)
    spec = spec_for(path="mine.npz")
    (tmp_path / "mine.toml").write_text(_toml(spec))
    out = tmp_path / "out"
    ds = jaxinit.run(tmp_path / "mine.toml", out, progress=False)  # path relative to the TOML
    meta = json.loads((out / "spec.json").read_text())
    assert meta["spec"]["task"]["path"] == "data.npz"  # the directory's own copy
    assert meta["identity"]["task.data_sha256"] == user_data.content_hash(
        {"x_train": x, "y_train": y}
    )
    assert "task.path" not in meta["identity"]
    with np.load(out / "data.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x_train"], x)
    # resume with the same data from somewhere else: the file moved, nothing to recompute
    chunks = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()}
    moved = tmp_path / "elsewhere" / "again.npz"
    moved.parent.mkdir()
    shutil.move(tmp_path / "mine.npz", moved)
    again = jaxinit.run(spec_for(path=str(moved)), out, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()} == chunks
    np.testing.assert_array_equal(again.final_loss, ds.final_loss)
    # the same arrays as data= resume it too: the hash is of the arrays, not of the file
    jaxinit.run(spec_for(), out, data={"x_train": x, "y_train": y}, progress=False)
    # other data: refused, naming the data's hash, and nothing written
    x[0, 0] += 1.0
    with pytest.raises(StoreError, match="task.data_sha256") as e:
        jaxinit.run(spec_for(), out, data={"x_train": x, "y_train": y}, progress=False)
    assert "('mine'): task.data_sha256: " in str(e.value)  # the first difference named
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()} == chunks


def test_csv_columns_and_a_changed_file_is_refused(tmp_path):
    x, y = two_blobs()
    write_csv(tmp_path / "d.csv", x, y, names=("a", "b", "c"))
    spec = spec_for(path=str(tmp_path / "d.csv"), inputs=["c", "a"], target="label")
    task = TASKS["arrays"](**Spec.from_dict(spec).task.params)
    np.testing.assert_allclose(task.x_train, x[:, [2, 0]].astype(np.float32))
    np.testing.assert_array_equal(task.y_train, y)
    out = tmp_path / "out"
    jaxinit.run(spec, out, progress=False)
    write_csv(tmp_path / "d.csv", x[::-1], y[::-1])  # the user's file changes later
    with pytest.raises(StoreError, match="task.data_sha256"):
        jaxinit.run(spec, out, progress=False)
    # a spec that pins the old hash refuses the changed file by name, before anything runs
    sha = json.loads((out / "spec.json").read_text())["spec"]["task"]["data_sha256"]
    with pytest.raises(SpecError, match="holds other data"):
        jaxinit.run(spec_for(path=str(tmp_path / "d.csv"), inputs=["c", "a"], target="label",
                             data_sha256=sha), progress=False)  # fmt: skip


@pytest.mark.slow
def test_report_and_basins_on_a_directory_whose_data_and_folder_moved(tmp_path):
    """The report rebuilds the task from the directory's own data.npz: the user's file and the
    directory may both move. Checked in a fresh process (nothing registered in memory)."""
    x, y = two_blobs()
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y)
    spec = spec_for(path=str(tmp_path / "mine.npz"), test_fraction=0.25)
    spec["store"] = {"save_params": True}
    held_out = TASKS["arrays"](**Spec.from_dict(spec).task.params).x_test
    spec["report"] = ["basin_sizes", "scale_sweep"]
    jaxinit.run(spec, tmp_path / "out", progress=False)
    (tmp_path / "mine.npz").unlink()
    shutil.move(tmp_path / "out", tmp_path / "moved")
    loaded, _ = read_spec(tmp_path / "moved")
    assert loaded.task.params["path"] == str((tmp_path / "moved" / "data.npz").resolve())
    code = (
        "import sys, jaxinit; from jaxinit.reports import draw_report; from jaxinit import basins\n"
        "ds = jaxinit.load(sys.argv[1]); rep = draw_report(ds, sys.argv[1] + '/report')\n"
        "assert not rep.failed, [(f.name, f.cause) for f in rep.failed]\n"
        "g = basins.groups(ds)[0]; print(g.task.x_train.shape, sorted(p.name for p in rep.paths))\n"
        "print(g.task.x_test.tobytes().hex())"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "moved")],
                       capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(18, 3)" in r.stdout and "basin_sizes.png" in r.stdout and "scale_sweep.png" in r.stdout
    assert r.stdout.split()[-1] == held_out.tobytes().hex()  # the same held-out rows, rebuilt


def test_the_directory_copy_is_restored_when_deleted(tmp_path):
    x, y = two_blobs()
    out = tmp_path / "out"
    jaxinit.run(spec_for(), out, data={"x_train": x, "y_train": y}, progress=False)
    (out / "data.npz").unlink()
    jaxinit.run(spec_for(), out, data={"x_train": x, "y_train": y}, progress=False)
    assert user_data.content_hash(user_data.read_file(out / "data.npz")) == (
        user_data.content_hash({"x_train": x, "y_train": y})
    )


def test_identity_leaves_out_where_the_data_came_from():
    a = Spec.from_dict(spec_for(path="a.csv", target="t", data_sha256="0" * 64))
    b = Spec.from_dict(spec_for(path="b/c.csv", target="u", inputs=["x"], data_sha256="0" * 64))
    c = Spec.from_dict(spec_for(path="a.csv", target="t", data_sha256="1" * 64))
    assert spec_identity(a) == spec_identity(b) != spec_identity(c)


# -- validation: each problem its own message, before anything is written ---------------------
X, Y = two_blobs(6)
BAD_ARRAYS = [
    ({"x_train": X[:, 0], "y_train": Y}, "x_train must be 2-D"),
    ({"x_train": X, "y_train": Y[:5]}, "x_train has 6 rows but y_train has 5"),
    ({"x_train": X, "y_train": Y, "x_test": X[:, :2], "y_test": Y}, "x_test has 2 features but x_train has 3"),
    ({"x_train": X, "y_train": Y, "x_test": X}, "x_test without y_test"),
    ({"x_train": X.astype(str), "y_train": Y}, "x_train has dtype <U"),
    ({"x_train": np.where(np.eye(6, 3) > 0, np.nan, X), "y_train": Y}, r"x_train has 3 NaN or inf value\(s\), first x_train\[0, 0\]"),
    ({"x_train": X, "y_train": np.where(Y == 1, np.inf, Y)}, "y_train has 3 NaN or inf"),
    ({"x_train": X, "y_train": Y + 1}, r"labels 0..K-1 with every class present; labels run to 2 but \[0\] never occur"),
    ({"x_train": X, "y_train": Y - 1}, "needs labels 0..K-1; found label -1"),
    ({"x_train": X, "y_train": Y + 0.5}, "needs integer class labels; y_train holds 0.5"),
    ({"x_train": X, "y_train": np.c_[Y, Y]}, r"'ce' takes one integer label per row; y_train has shape \(6, 2\)"),
    ({"x_train": X}, "no y_train"),
    ({"x_train": X, "y_train": Y, "X_test": X}, "unknown array"),
    ({"x_train": X * 1e39, "y_train": Y}, "beyond float32's range"),
    ([X, Y], "expected a mapping or NamedTuple"),
]  # fmt: skip


@pytest.mark.parametrize("data,message", BAD_ARRAYS)
def test_bad_arrays_each_named_and_nothing_written(data, message, tmp_path):
    with pytest.raises(SpecError, match=message):
        jaxinit.run(spec_for("ce"), tmp_path / "out", data=data, progress=False)
    assert not (tmp_path / "out").exists()


def test_bce_labels_and_missing_loss():
    with pytest.raises(SpecError, match="'bce' needs labels 0 or 1; found 2"):
        jaxinit.run(spec_for("bce"), data={"x_train": X, "y_train": Y * 2}, progress=False)
    with pytest.raises(SpecError, match="needs loss = 'mse', 'bce' or 'ce'"):
        jaxinit.run(spec_for(""), data={"x_train": X, "y_train": Y}, progress=False)


def test_data_needs_task_arrays_and_no_path(tmp_path):
    with pytest.raises(SpecError, match="data= runs task 'arrays'.*'xor'"):
        jaxinit.run({"task": {"name": "xor"}}, data={"x_train": X, "y_train": Y}, progress=False)
    with pytest.raises(SpecError, match="data= and \\[task\\] path both"):
        jaxinit.run(spec_for(path="x.npz"), data={"x_train": X, "y_train": Y}, progress=False)
    with pytest.raises(SpecError, match="needs data: pass data="):
        jaxinit.run(spec_for(), progress=False)


def test_bad_files_each_named(tmp_path):
    write_csv(tmp_path / "d.csv", X, Y)
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}] * 6, dtype=object), y_train=Y)
    (tmp_path / "text.csv").write_text("a,b,label\n1,2,0\n1,cat,1\n")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    cases = [
        (dict(path=str(tmp_path / "missing.npz")), "cannot read it"),
        (dict(path=str(tmp_path / "d.txt")), "expected a .npz or .csv file"),
        (dict(path=str(tmp_path / "d.csv"), target="species"), r"no column\(s\) \['species'\]; its columns: a, b, c, label"),
        (dict(path=str(tmp_path / "d.csv"), target="label", inputs=["a", "z"]), r"no column\(s\) \['z'\]"),
        (dict(path=str(tmp_path / "d.csv")), "task.target must name the .csv column"),
        (dict(path=str(tmp_path / "text.csv"), target="label"), "line 3, column 'b': 'cat' is not a number"),
        (dict(path=str(tmp_path / "obj.npz")), "without unpickling"),
        (dict(path=str(tmp_path / "broken.npz")), "not a readable .npz"),
        (dict(path=str(tmp_path / "d.csv"), target="label", inputs="a"), "task.inputs must be a list"),
    ]  # fmt: skip
    for task, message in cases:
        with pytest.raises(SpecError, match=message):
            jaxinit.run(spec_for(**task), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_an_axis_over_the_data_source_is_refused(tmp_path):
    write_csv(tmp_path / "d.csv", X, Y)
    spec = spec_for(path=str(tmp_path / "d.csv"), target="label")
    spec["axes"]["task.path"] = [str(tmp_path / "d.csv")]
    with pytest.raises(SpecError, match="one data set"):
        jaxinit.prepare(spec)


# -- the command line ---------------------------------------------------------------------------
def _toml(spec: dict) -> str:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f'name = "{spec["name"]}"']
    for section in ("task", "model", "optimizer", "train", "store"):
        if section in spec:
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in spec[section].items()]
    lines.append("[axes]")
    lines += [f'"{k}" = {value(v)}' for k, v in spec["axes"].items()]
    return "\n".join(lines) + "\n"


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jaxinit", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)  # fmt: skip


@pytest.mark.slow
def test_cli_runs_a_csv_spec_and_refuses_bad_labels_with_exit_2(tmp_path):
    x, y = two_blobs()
    write_csv(tmp_path / "good.csv", x, y)
    write_csv(tmp_path / "bad.csv", x, y + 1)  # labels 1..2: no class 0
    spec = spec_for(path="good.csv", target="label")
    (tmp_path / "good.toml").write_text(_toml(spec))
    (tmp_path / "bad.toml").write_text(_toml({**spec, "task": {**spec["task"], "path": "bad.csv"}}))
    r = _cli("run", "bad.toml", "--out", "bad_out", "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and "never occur" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad_out").exists()
    elsewhere = tmp_path / "elsewhere"  # the data path is relative to the spec, not the cwd
    elsewhere.mkdir()
    r = _cli("run", "../good.toml", "--out", "good_out", "--report", "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (elsewhere / "good_out" / "data.npz").is_file()
    assert (elsewhere / "good_out" / "report" / "final_loss.png").is_file()
