"""Faults during a sweep end cleanly and lose nothing: SIGKILL at every stage of a chunk's life,
a full disk, an unwritable directory, a second writer, shards sharing a directory.

Kills happen in real subprocesses (``tests/fault_driver.py`` wraps the store's functions from
outside and SIGKILLs itself at the chosen moment); each resume must converge to results that are
bit-identical to an uninterrupted run of the same spec and chunk size.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import spec_toml, xor_spec

import jaxinit
from jaxinit.cli import main as cli_main
from jaxinit.config.spec import Spec
from jaxinit.engine import store
from jaxinit.engine.plan import chunk_id, make_plan

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DRIVER = HERE / "fault_driver.py"
SPEC = xor_spec("faults", 4)
"""XOR 2-3-1 tanh, 3 scales × 4 seeds = 12 runs; with chunk size 2: 6 chunks in one group."""
CHUNK = 2
N_CHUNKS = 6


def _write_spec(tmp: Path, spec: dict = SPEC) -> Path:
    path = tmp / f"{spec['name']}.toml"
    path.write_text(spec_toml(spec))
    return path


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """Every data variable of an uninterrupted in-memory run with the same chunk size."""
    ds = jaxinit.run(SPEC, chunk_size=CHUNK, progress=False)
    assert bool(ds.done.all())
    return {k: v.values for k, v in ds.data_vars.items()}


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
    """Subprocesses share JAX's persistent compilation cache: only the first one compiles.
    (A cached executable is the same program; the bit-identity checks would catch otherwise.)"""
    _CACHE["dir"] = str(tmp_path_factory.mktemp("jax_cache"))
    yield
    _CACHE.clear()


_CACHE: dict[str, str] = {}


def _env() -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(HERE.parent)}
    if _CACHE:
        env["JAX_COMPILATION_CACHE_DIR"] = _CACHE["dir"]
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _driver(fault: str, n: int, out: Path, spec_file: Path, *extra: str):
    cmd = [sys.executable, str(DRIVER), fault, str(n), "--", "run", str(spec_file)]
    cmd += ["--out", str(out), "--chunk-size", str(CHUNK), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)


def _load_quiet(out: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sweep is partial"
        return jaxinit.load(out)


def _assert_done_runs_match(out: Path, reference: dict[str, np.ndarray]) -> int:
    """Every finished run equals the reference bit for bit; unfinished ones are marked. -> n done"""
    ds = _load_quiet(out)
    done = ds.done.values
    if not done.any():  # no chunk yet: every per-run variable exists, all NaN / not done
        assert done.shape == reference["done"].shape and np.isnan(ds.final_loss.values).all()
        return 0
    assert set(ds.data_vars) == set(reference)
    for name, ref in reference.items():
        got = ds[name].values
        assert got.shape == ref.shape, name
        if name == "done":
            continue
        np.testing.assert_array_equal(got[done], ref[done], err_msg=name)
    return int(done.sum())


def _assert_manifest_exact(out: Path) -> None:
    """Each chunk of the plan listed once, each run id present exactly once, no temp files left."""
    spec, meta = store.read_spec(out)
    plan = make_plan(spec, meta["chunk_size"])
    entries = store.read_manifests(out)
    assert sorted(entries) == sorted(chunk_id(g, c) for g, c in plan.chunks())
    ids = np.concatenate([c["run_id"] for c in store.iter_chunks(out)])
    assert np.array_equal(np.sort(ids), np.arange(plan.n_runs))
    assert list(out.glob("**/.*.tmp*")) == []


KILL_POINTS = [
    # (fault, n-th event, what must be on disk right after the kill)
    ("write_spec", 1, "spec_tmp"),  # while writing spec.json of a new directory
    ("mid_compute", 3, "none"),  # third chunk dispatched, device computing; chunk 0 was written
    ("write_chunk", 2, "chunk_tmp"),  # half of a chunk file written
    ("before_manifest", 1, "unlisted_chunk"),  # chunk file renamed, manifest not yet updated
    ("write_manifest", 1, "manifest_tmp"),  # half of the manifest's temp file written
    ("between_chunks", 1, "none"),  # a chunk and its manifest complete, next not started
]


def _evidence(out: Path) -> set[str]:
    found = set()
    if any(out.glob(".*spec.json*.tmp*")):
        found.add("spec_tmp")
    if any((out / "chunks").glob(".*.tmp*")):
        found.add("chunk_tmp")
    if any(out.glob(".manifest*.tmp*")):
        found.add("manifest_tmp")
    if (out / "spec.json").exists():
        listed = set(store.read_manifests(out))
        files = {p.stem for p in (out / "chunks").glob("*.npz")}
        if files - listed:
            found.add("unlisted_chunk")
    return found


def test_sigkill_at_every_stage_then_resume_is_bit_identical(tmp_path, reference):
    spec_file, out = _write_spec(tmp_path), tmp_path / "sweep"
    progress = []
    for fault, n, evidence in KILL_POINTS:
        r = _driver(fault, n, out, spec_file)
        assert r.returncode == -signal.SIGKILL, (fault, r.returncode, r.stderr[-2000:])
        if evidence != "none":
            assert evidence in _evidence(out), (fault, sorted(_evidence(out)))
        if (out / "spec.json").exists():  # what survived is valid and correct, right now
            progress.append(_assert_done_runs_match(out, reference))
    assert progress == sorted(progress) and progress[-1] < 12, progress  # never lost, not done
    r = _driver("none", 0, out, spec_file)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _assert_done_runs_match(out, reference) == 12
    _assert_manifest_exact(out)


def test_timed_sigkill_of_the_cli_then_resume(tmp_path, reference):
    """A plain ``jaxinit run`` killed from outside once it has saved something, then resumed."""
    spec_file, out = _write_spec(tmp_path), tmp_path / "sweep"
    cmd = [sys.executable, "-m", "jaxinit.cli", "run", str(spec_file), "--out", str(out)]
    cmd += ["--chunk-size", str(CHUNK), "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.0-of-1.json"
    deadline = time.monotonic() + 120
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait()
    proc_err = proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    assert rc == -signal.SIGKILL, proc_err  # killed part-way, not finished
    n_done = _assert_done_runs_match(out, reference)
    assert 2 <= n_done < 12, n_done
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _assert_done_runs_match(out, reference) == 12
    _assert_manifest_exact(out)


# -- disk full, unwritable directory ---------------------------------------------------------------
def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def test_disk_full_and_unwritable_directory_are_clean_errors(tmp_path, reference):
    """One directory through a series of write failures, each of which must exit 2 with the
    failing path in the message and no traceback, leave no temp file, and keep what was already
    finished valid; finally the same command finishes the sweep to the reference results.

    Disk full is ENOSPC raised by ``write`` on the n-th file write (the driver wraps ``open``
    inside the store's real ``atomic_write``). A read-only directory is ``chmod 555``; chmod does
    not stop root, so as root the driver makes writes fail with EACCES (what a read-only
    directory raises) instead, and the assertions are the same."""
    spec_file, out = _write_spec(tmp_path), tmp_path / "sweep"

    def failing(fault: str, nth: int, path: Path, n_done: int, text: str) -> None:
        r = _driver(fault, nth, out, spec_file)
        assert r.returncode == 2, r.stderr[-2000:]
        assert str(path) in r.stderr and text in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        assert list(out.glob("**/.*.tmp*")) == []
        assert not (out / "spec.json").exists() or _assert_done_runs_match(out, reference) == n_done

    failing("enospc", 1, out / "spec.json", 0, "disk full")  # the very first write
    assert not (out / "spec.json").exists()
    failing("enospc", 2, out / "chunks/0000-000000.npz", 0, "disk full")  # first chunk
    # spec.json exists now; writes: chunk 0, manifest, chunk 1, manifest <- full
    failing("enospc", 4, out / "manifest.0-of-1.json", 2, "disk full")
    if _is_root():
        failing("eacces", 1, out / "chunks/0000-000001.npz", 2, "ermission denied")
    else:
        os.chmod(out / "chunks", 0o555)
        try:
            failing("none", 0, out / "chunks", 2, "ermission denied")
        finally:
            os.chmod(out / "chunks", 0o755)
    r = _driver("none", 0, out, spec_file)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _assert_done_runs_match(out, reference) == 12
    _assert_manifest_exact(out)


def test_output_path_that_cannot_be_a_directory(tmp_path, capsys):
    """``--out`` below a regular file (ENOTDIR, blocks root too) or naming a file: exit 2, the
    path in the message, nothing created."""
    spec_file = _write_spec(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for out in (blocker / "sweep", blocker):
        code = cli_main(["run", str(spec_file), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and str(out) in err, err
    assert blocker.read_text() == "not a directory"


def test_atomic_write_enospc_cleans_up_and_names_path(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(store.StoreError, match=r"x\.bin.*disk full"):
        store.atomic_write(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# -- concurrent writers ----------------------------------------------------------------------------
def test_second_writer_is_refused_not_interleaved(tmp_path, reference):
    """While one writer holds the directory, a second ``jaxinit run`` (a real process) exits 2
    saying it is in use and writes nothing; afterwards the sweep runs normally."""
    spec_file, out = _write_spec(tmp_path), tmp_path / "sweep"
    spec = Spec.from_dict(SPEC)
    holder = store.SweepDir(out, spec, CHUNK).open(explicit_chunk_size=True)
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
        r = _driver("none", 0, out, spec_file)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "in use by another jaxinit process" in r.stderr and str(out) in r.stderr
        assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before
        with pytest.raises(store.StoreError, match="in use"):  # same process, second opener
            store.SweepDir(out, spec, CHUNK).open(explicit_chunk_size=True)
        with pytest.raises(store.StoreError, match="in use"):  # a shard cannot join either
            store.SweepDir(out, spec, CHUNK, (0, 2)).open(explicit_chunk_size=True)
    finally:
        holder.close()
    r = _driver("none", 0, out, spec_file)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _assert_done_runs_match(out, reference) == 12


def test_shards_share_a_directory_and_match_one_process(tmp_path, reference):
    """``--shard 0/2`` and ``--shard 1/2`` running at the same time into one directory: disjoint
    manifests whose union is the whole plan, results identical to the single-process run; the
    same shard twice at once is refused."""
    spec_file, out = _write_spec(tmp_path), tmp_path / "sweep"
    spec = Spec.from_dict(SPEC)
    store.SweepDir(out, spec, CHUNK).open(explicit_chunk_size=True).close()  # spec.json only
    slot = store.SweepDir(out, spec, CHUNK, (1, 2)).open(explicit_chunk_size=True)
    with pytest.raises(store.StoreError, match="in use"):
        store.SweepDir(out, spec, CHUNK, (1, 2)).open(explicit_chunk_size=True)
    slot.close()
    cmd = [sys.executable, "-m", "jaxinit.cli", "run", str(spec_file), "--out", str(out)]
    cmd += ["--chunk-size", str(CHUNK), "--quiet"]
    procs = [
        subprocess.Popen(
            [*cmd, "--shard", f"{i}/2"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    m0 = set(store.read_manifests(out, only="manifest.0-of-2.json"))
    m1 = set(store.read_manifests(out, only="manifest.1-of-2.json"))
    assert m0 and m1 and not m0 & m1 and len(m0 | m1) == N_CHUNKS
    assert _assert_done_runs_match(out, reference) == 12
    _assert_manifest_exact(out)
