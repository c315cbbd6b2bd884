"""The sweep engine end to end: chunking, resume, shards, devices, one compilation per group."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import spec_toml

import jaxinit

SPEC = {
    "name": "tiny",
    "task": {"name": "xor"},
    "model": {"widths": [3]},
    "init": {"scheme": "glorot_normal"},
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "train": {"steps": 200, "log_every": 20, "diagnostics": ["grad_norm"]},
    "axes": {"init.scale": [0.5, 2.0], "seed": 24},
}


CLI = [sys.executable, "-m", "jaxinit.cli"]


def _cli(*args, env=None, **kw):
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


@pytest.fixture(scope="module")
def reference():
    return jaxinit.run(SPEC, progress=False, chunk_size=16)


def test_dataset_layout(reference):
    ds = reference
    assert ds.final_loss.dims == ("init_scale", "seed")
    assert ds.loss.dims == ("init_scale", "seed", "step")
    assert list(ds.step.values) == list(range(0, 201, 20))
    assert bool(ds.done.all()) and ds.attrs["partial"] == 0
    assert np.isfinite(ds.final_loss).all()
    # the logged curve's last point is the final loss
    np.testing.assert_array_equal(ds.loss.isel(step=-1).values, ds.final_loss.values)


@pytest.mark.parametrize("chunk_size", [5, 48])
def test_chunk_size_invariance(reference, chunk_size):
    """Any chunk size gives bit-identical results on this net (XOR 2-3-1, float32, CPU)."""
    other = jaxinit.run(SPEC, progress=False, chunk_size=chunk_size)
    np.testing.assert_array_equal(other.final_loss.values, reference.final_loss.values)
    np.testing.assert_array_equal(other.loss.values, reference.loss.values)


def test_seed_is_common_across_traced_axes(reference):
    """Runs that share a seed share their random init: at equal scale they are the same run."""
    spec = {**SPEC, "axes": {"seed": [3, 7]}, "init": {"scheme": "glorot_normal", "scale": 2.0}}
    alone = jaxinit.run(spec, progress=False)
    np.testing.assert_array_equal(
        alone.final_loss.values, reference.final_loss.sel(init_scale=2.0, seed=[3, 7]).values
    )


def _compiled_programs(spec: dict) -> list[str]:
    """The init and training programs XLA compiled while ``jaxinit.run(spec)`` ran (chunks of
    100), by name, leaving out small eager operations."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles():
            ds = jaxinit.run(spec, progress=False, chunk_size=100)
    finally:
        logging.getLogger("jax").removeHandler(handler)
    prefix = "Finished XLA compilation of jit("
    names = [m[len(prefix) :].split(")")[0] for m in messages if m.startswith(prefix)]
    return ds, [n for n in names if n in ("init", "train")]


def test_one_compilation_per_static_group():
    """4 scales × 3 learning rates × 64 seeds: one compiled training program (and one init).
    Init schemes share the training program: a scheme axis adds only init programs."""
    spec = {
        **SPEC,
        "init": {"scheme": "he_normal"},
        "train": {"steps": 20, "log_every": 10, "diagnostics": []},
        "axes": {
            "init.scale": [0.25, 0.5, 1.0, 2.0],
            "optimizer.learning_rate": [0.1, 0.3, 1.0],
            "seed": 64,
        },
    }
    ds, compiled = _compiled_programs(spec)  # 8 chunks of one group
    assert sorted(compiled) == ["init", "train"], compiled
    assert ds.final_loss.shape == (4, 3, 64)
    spec["axes"]["init.scheme"] = ["zeros", "he_normal"]  # static: two groups
    ds2, compiled = _compiled_programs(spec)
    # only the zeros init is new: he_normal's init and the training program are reused
    assert compiled == ["init"], compiled
    # the he_normal group is the first sweep again, from the same cached program
    np.testing.assert_array_equal(
        ds2.final_loss.sel(init_scheme="he_normal").values, ds.final_loss.values
    )


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
    spec = {**SPEC, "train": {"steps": 400, "log_every": 20, "diagnostics": ["grad_norm"]}}
    spec["axes"] = {"init.scale": [0.5, 1.0, 2.0], "seed": 64}
    path = tmp_path / "spec.toml"
    path.write_text(spec_toml(spec))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*CLI, "run", str(path), "--out", str(out), "--chunk-size", "8", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = out / "manifest.0-of-1.json"
    deadline = time.time() + 120
    written = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            written = len(json.loads(manifest.read_text())["chunks"])
        except (OSError, ValueError):
            written = 0
        if written >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= written < 24, f"kill did not land mid-sweep ({written} of 24 chunks)"
    with pytest.warns(UserWarning, match="partial"):
        partial = jaxinit.load(out)
    assert 0 < partial.attrs["n_done"] < partial.attrs["n_runs"]

    done = _cli(
        "run", str(path), "--out", str(out), "--quiet"
    )  # resumes with the stored chunk size
    assert done.returncode == 0, done.stderr
    resumed = jaxinit.load(out)
    fresh = jaxinit.run(spec, progress=False, chunk_size=8)
    assert bool(resumed.done.all())
    np.testing.assert_array_equal(resumed.final_loss.values, fresh.final_loss.values)
    np.testing.assert_array_equal(resumed.loss.values, fresh.loss.values)
    chunks = json.loads(manifest.read_text())["chunks"]
    assert sum(c["runs"] for c in chunks.values()) == 3 * 64  # nothing duplicated or missing


@pytest.mark.slow
def test_two_devices_and_shards_match_one_process(tmp_path, reference):
    """Forced 2 CPU devices, and two --shard processes into one directory: bit-identical."""
    path = tmp_path / "spec.toml"
    path.write_text(spec_toml(SPEC))
    two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    r = _cli(
        "run", str(path), "--out", str(tmp_path / "dev2"), "--chunk-size", "16", "--quiet", env=two
    )
    assert r.returncode == 0, r.stderr
    shards = [
        subprocess.Popen(
            [*CLI, "run", str(path), "--out", str(tmp_path / "sh"), "--chunk-size", "16"]
            + ["--shard", f"{i}/2", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in shards:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for name in ("dev2", "sh"):
        ds = jaxinit.load(tmp_path / name)
        np.testing.assert_array_equal(ds.final_loss.values, reference.final_loss.values)
        np.testing.assert_array_equal(ds.loss.values, reference.loss.values)


ONE_CHUNK_ON_TWO_DEVICES = """
import json, sys
import jaxinit
from jaxinit.engine import executors
ds = jaxinit.run(json.loads(sys.argv[1]), progress=False, chunk_size=48)
spread = [k for k in executors._PROGRAMS if k[0] == "on devices"]
print(json.dumps({"spread": len(spread), "final_loss": ds.final_loss.values.tolist()}))
"""


def test_a_group_with_fewer_chunks_than_devices_runs_on_one(reference):
    """Two CPU devices and one chunk: the chunk program runs as it is on one device (no second
    device repeating it), with the numbers of one device."""
    out = subprocess.run(
        [sys.executable, "-c", ONE_CHUNK_ON_TWO_DEVICES, json.dumps(SPEC)],
        capture_output=True,
        text=True,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["spread"] == 0
    np.testing.assert_array_equal(np.array(got["final_loss"], np.float32), reference.final_loss)


def test_in_memory_and_on_disk_agree(tmp_path, reference):
    ds = jaxinit.run(SPEC, tmp_path / "sweep", progress=False, chunk_size=16)
    np.testing.assert_array_equal(ds.final_loss.values, reference.final_loss.values)
    again = jaxinit.run(SPEC, tmp_path / "sweep", progress=False)  # resume: nothing to do
    np.testing.assert_array_equal(again.final_loss.values, reference.final_loss.values)


def test_overrides_and_bundled_names():
    ds = jaxinit.run(
        "symmetry", progress=False, train__steps=40, axes__seed=2, axes__init__scheme=["zeros"]
    )
    assert ds.sizes["seed"] == 2 and ds.sizes["init_scheme"] == 1
    assert json.loads(ds.attrs["spec"])["train"]["steps"] == 40


BILLION = {
    "name": "billion",
    "task": {"name": "xor"},
    "axes": {
        "init.scale": [0.01 * (k + 1) for k in range(1000)],
        "optimizer.learning_rate": [0.001 * (k + 1) for k in range(1000)],
        "seed": 1000,
    },
}


def test_unstorable_sweep_is_refused_before_compiling(tmp_path, monkeypatch):
    """Defect 5: a 10⁹-run sweep that cannot fit on the disk is refused with its size, before
    anything compiles or is written (it crashed in planning with a 22 GiB allocation)."""
    import shutil

    import jaxinit.engine.executors as executors

    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10**9))
    prep = jaxinit.prepare(BILLION)
    assert prep.plan.n_runs == 10**9 and prep.stored_bytes > 10**11
    assert "1,000,000,000 runs" in prep.describe()
    with pytest.raises(jaxinit.StoreError, match=r"needs ~.* GB, more than the free space"):
        jaxinit.run(BILLION, tmp_path / "big", progress=False)
    assert not (tmp_path / "big").exists()


@pytest.fixture
def x64_restored():
    """The process's x64 mode as it was, whatever the test did (a defect would leak it)."""
    before = bool(jax.config.read("jax_enable_x64"))
    yield before
    jax.config.update("jax_enable_x64", before)


def test_a_float64_sweep_changes_no_float32_sweep_around_it(tmp_path, x64_restored):
    """float32, float64, float32 in one process (a notebook): the two float32 sweeps are bit
    for bit the same (curves, finals, params0, params), the process's x64 mode is as it was,
    the float32 directory still resumes, and the float64 sweep really is float64."""
    spec = {**SPEC, "store": {"save_params": True}, "train": {"steps": 20, "log_every": 5},
            "axes": {"init.scale": [0.5, 2.0], "seed": 2}}  # fmt: skip
    f64 = {**spec, "train": {**spec["train"], "dtype": "float64"}}
    first = jaxinit.run(spec, tmp_path / "f32", progress=False)
    wide = jaxinit.run(f64, progress=False)
    again = jaxinit.run(spec, progress=False)
    for k in ("final_loss", "params0/layers/0/w", "loss"):
        np.testing.assert_array_equal(again[k].values, first[k].values, err_msg=k)
    resumed = jaxinit.run(spec, tmp_path / "f32", progress=False)  # refused before the fix
    assert bool(jax.config.read("jax_enable_x64")) is x64_restored
    floats = [k for k in first.data_vars if first[k].dtype.kind == "f"]
    assert {"loss", "final_loss", "params0/layers/0/w"} <= set(floats)
    for k in floats:
        assert again[k].dtype == np.float32, k
        np.testing.assert_array_equal(again[k].values, first[k].values, err_msg=k)
        np.testing.assert_array_equal(resumed[k].values, first[k].values, err_msg=k)
        assert wide[k].dtype == np.float64, k
    assert wide.attrs["dtype"] == "float64"
    # float64 really computes in float64: its losses are not float32 numbers
    loss = wide.final_loss.values
    assert (loss != loss.astype(np.float32).astype(np.float64)).any()


def test_float32_and_float64_sweeps_start_from_the_same_weights(x64_restored):
    """The same seed draws the same initial weights in both dtypes (float32 draws, cast): they
    agree to float32 rounding, so a dtype comparison compares training, not initialisation."""
    spec = {**SPEC, "store": {"save_params": True}, "train": {"steps": 5, "log_every": 5},
            "init": {"scheme": "he_uniform", "perturbation": 0.1},
            "axes": {"init.scale": [0.5, 2.0], "seed": 3}}  # fmt: skip
    a = jaxinit.run(spec, progress=False)
    b = jaxinit.run({**spec, "train": {**spec["train"], "dtype": "float64"}}, progress=False)
    for k in [k for k in a.data_vars if k.startswith("params0/")]:
        assert b[k].dtype == np.float64
        np.testing.assert_allclose(b[k].values, a[k].values, rtol=1e-6, atol=1e-7, err_msg=k)


def test_float64_identity_names_its_init_rule():
    """float64 sweeps now draw their inits in float32: their identity says so
    (``software.f64_init_rule``), so a float64 directory begun before is refused, not resumed
    with other initial weights; a float32 identity is unchanged (no such field)."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.identity import F64_INIT_RULE, differences, record

    r32 = record(Spec.from_dict(SPEC))["identity"]
    r64 = record(Spec.from_dict({**SPEC, "train": {**SPEC["train"], "dtype": "float64"}}))
    assert "software.f64_init_rule" not in r32
    old = {k: v for k, v in r64["identity"].items() if k != "software.f64_init_rule"}
    assert differences(old, r64["identity"]) == [
        f'software.f64_init_rule: "(absent)" there, {F64_INIT_RULE} here'
    ]


@pytest.mark.parametrize(
    "train", [{"diagnostics": ["sharpness"]}, {"lambda0": True}, {"lr_unit": "2/lambda0"}]
)
def test_identity_names_the_eigen_solver_where_it_is_used(train):
    """The top-eigenvalue solver's rounding changed (a Ritz pair from a looped row recurrence
    above 8 rows; a bisection before that): a sweep that uses it (the sharpness diagnostic,
    λ₀, a learning rate in units of 2/λ₀) says which solver in its identity
    (``software.eigen_rule``), so a directory begun under the old one is refused, not resumed
    with other sharpness values or step sizes; other sweeps keep their identity."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.identity import EIGEN_RULE, differences, record

    lr_unit = train.pop("lr_unit", "")
    spec = {**SPEC, "train": {**SPEC["train"], **train}}
    spec["optimizer"] = {**SPEC.get("optimizer", {}), "lr_unit": lr_unit}
    plain = record(Spec.from_dict(SPEC))["identity"]
    assert "software.eigen_rule" not in plain
    new = record(Spec.from_dict(spec))["identity"]
    old = {k: v for k, v in new.items() if k != "software.eigen_rule"}
    assert differences(old, new) == [f'software.eigen_rule: "(absent)" there, {EIGEN_RULE} here']


def test_identity_names_where_a_logged_loss_comes_from_with_diagnostics():
    """With diagnostics on, a full-batch logged loss is now the block's first step's, not the
    diagnostics' own forward pass (which could round an ulp apart on the lanes): such a sweep
    says so in its identity (``software.curve_rule``), so a directory begun under the old rule
    is refused, not resumed with curves from both; sweeps without diagnostics keep theirs."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.identity import CURVE_RULE, differences, record

    plain = {**SPEC, "train": {**SPEC["train"], "diagnostics": []}}
    assert "software.curve_rule" not in record(Spec.from_dict(plain))["identity"]
    new = record(Spec.from_dict(SPEC))["identity"]
    old = {k: v for k, v in new.items() if k != "software.curve_rule"}
    assert differences(old, new) == [f'software.curve_rule: "(absent)" there, {CURVE_RULE} here']


def test_a_model_non_finite_from_the_start_is_warned_about_as_such():
    """An ``apply`` that returns NaN: every run is non-finite from step 0, and the warning says
    so (before: "every run ... identical ... does the model's init use its key?", which is
    wrong: the init does use its key)."""
    import warnings

    import jax.numpy as jnp

    from jaxinit.blocks.models import Model

    def init(key, init_spec):
        return {"w": jax.random.normal(key, (2, 1)) * init_spec.scale}

    def apply(params, x, *, key=None, train=False):
        return jnp.log(-jnp.abs(x @ params["w"]) - 1.0)  # NaN everywhere

    spec = {**SPEC, "train": {"steps": 4, "log_every": 2, "diagnostics": []},
            "axes": {"seed": 3}}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = jaxinit.run(spec, model=Model(init, apply, model_id="nan"), progress=False)
    assert (ds.diverged_step.values == 0).all()
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("non-finite from the start" in t for t in texts), texts
    assert not any("use its key" in t for t in texts), texts


def test_compiled_programs_are_cached_per_x64_mode():
    """A program built with x64 off is never handed out with it on (nor the other way): the
    executors' cache key carries the mode (:func:`jaxinit.engine.train.precision`)."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.executors import build_task, chunk_init, chunk_train

    spec = Spec.from_dict(SPEC).first_run()
    task = build_task(spec)
    with jax.enable_x64(False):
        off = chunk_train("vmap", spec, task, None), chunk_init(spec, task, None)
    with jax.enable_x64(True):
        on = chunk_train("vmap", spec, task, None), chunk_init(spec, task, None)
    with jax.enable_x64(False):
        again = chunk_train("vmap", spec, task, None), chunk_init(spec, task, None)
    assert on[0] is not off[0] and on[1] is not off[1]
    assert again[0] is off[0] and again[1] is off[1]
