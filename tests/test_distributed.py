"""Multi-process JAX (``jaxinit run --distributed``): two real processes on this CPU, joined by
``jax.distributed`` through a coordinator on 127.0.0.1, each running its part of the chunks on
its own device and writing its own manifest into one directory.

The results must be bit-identical to one process; a process SIGKILLed part-way (JAX's runtime
then stops the other once its heartbeat is missed) is re-run as the plain shard it is, and the
sweep completes with every chunk listed exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import spec_toml, xor_spec

import jaxinit
from jaxinit.cli import main as cli_main
from jaxinit.engine import distributed, store
from jaxinit.engine.plan import chunk_id, make_plan

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DRIVER = HERE / "fault_driver.py"
SPEC = xor_spec("procs", 4)
"""12 runs; chunk size 2: 6 chunks, 3 per process."""
CHUNK = 2
TOML = spec_toml(SPEC)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    ds = jaxinit.run(SPEC, chunk_size=CHUNK, progress=False)
    return {k: v.values for k, v in ds.data_vars.items()}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Subprocess environment: CPU, this checkout, one shared persistent compilation cache."""
    cache = str(tmp_path_factory.mktemp("jax_cache"))
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(HERE.parent),
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_args(spec_file: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(spec_file), "--out", str(out), "--chunk-size", str(CHUNK), "--quiet", *extra]


def _start(args: list[str], env: dict, fault: tuple[str, int] | None = None) -> subprocess.Popen:
    head = [sys.executable, "-m", "jaxinit.cli"]
    if fault is not None:
        head = [sys.executable, str(DRIVER), fault[0], str(fault[1]), "--"]
    return subprocess.Popen(
        [*head, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _job(spec_file: Path, out: Path, env: dict, faults=(None, None), heartbeat_s: int = 100):
    """Both processes of a 2-process job; -> [(returncode, stdout, stderr)] by process id."""
    port = _free_port()
    procs = []
    for i in range(2):
        job = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        job += ["--process-id", str(i), "--heartbeat-timeout", str(heartbeat_s)]
        procs.append(_start(_run_args(spec_file, out, *job), env, faults[i]))
    results = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append((p.returncode, so, se))
    return results


def _load(out: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partial
        return jaxinit.load(out)


def _assert_matches(out: Path, reference: dict[str, np.ndarray]) -> int:
    """Every finished run equals the one-process reference bit for bit. -> runs done"""
    ds = _load(out)
    done = ds.done.values
    for name, ref in reference.items():
        if name != "done":
            np.testing.assert_array_equal(ds[name].values[done], ref[done], err_msg=name)
    return int(done.sum())


def _assert_listed_once(out: Path) -> None:
    """The two processes' manifests are disjoint, cover the plan, and nothing is left over."""
    spec, meta = store.read_spec(out)
    plan = make_plan(spec, meta["chunk_size"])
    parts = [set(store.read_manifests(out, only=f"manifest.{i}-of-2.json")) for i in range(2)]
    assert not parts[0] & parts[1]
    assert sorted(parts[0] | parts[1]) == sorted(chunk_id(g, c) for g, c in plan.chunks())
    for i, part in enumerate(parts):  # process i has chunks k with k % 2 == i
        assert {int(c.split("-")[1]) % 2 for c in part} <= {i}
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("manifest")) == [
        "manifest.0-of-2.json",
        "manifest.1-of-2.json",
    ]
    assert list(out.glob("**/.*.tmp*")) == [] and list(out.glob("writer.*")) == []


def test_two_processes_are_bit_identical_to_one(tmp_path, reference, env):
    spec_file, out = tmp_path / "procs.toml", tmp_path / "sweep"
    spec_file.write_text(TOML)
    (rc0, so0, se0), (rc1, so1, se1) = _job(spec_file, out, env)
    assert rc0 == 0 and rc1 == 0, (se0[-2000:], se1[-2000:])
    assert "process 0 of 2" in se0 and "process 1 of 2" in se1
    assert "procs: 12/12 runs" in so0, so0  # process 0 summarizes after the barrier
    assert "process 0 prints the summary" in so1
    ds = _load(out)
    assert bool(ds.done.all())
    np.testing.assert_array_equal(ds.final_loss.values, reference["final_loss"])
    assert _assert_matches(out, reference) == 12
    _assert_listed_once(out)


def test_killed_process_is_rerun_as_its_shard(tmp_path, reference, env):
    """Process 1 dies by SIGKILL after its first chunk. JAX stops process 0 once the missed
    heartbeats are noticed (``--heartbeat-timeout 3``), wherever it is. What both wrote is
    valid; re-running the killed process as ``--shard 1/2`` (no coordinator needed: a process
    is a shard), and process 0 as ``--shard 0/2`` in case it was stopped early, completes the
    sweep."""
    spec_file, out = tmp_path / "procs.toml", tmp_path / "sweep"
    spec_file.write_text(TOML)
    faults = (None, ("between_chunks", 1))
    (rc0, _, se0), (rc1, _, se1) = _job(spec_file, out, env, faults, heartbeat_s=3)
    assert rc1 == -signal.SIGKILL, se1[-2000:]
    assert rc0 != 0, se0[-2000:]  # fail-stop: the survivor does not report success
    part1 = store.read_manifests(out, only="manifest.1-of-2.json")
    assert len(part1) == 1  # the killed process's first chunk survived
    assert 2 <= _assert_matches(out, reference) < 12
    procs = [_start(_run_args(spec_file, out, "--shard", f"{i}/2"), env) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert _assert_matches(out, reference) == 12
    _assert_listed_once(out)


def test_combine_splits_an_array_task_among_its_processes():
    for n in (1, 2, 3):
        for big_p in (1, 2, 4):
            for i in range(n):
                parts = [distributed.combine((i, n), (p, big_p)) for p in range(big_p)]
                mine = [{k for k in range(60) if k % m == j} for j, m in parts]
                assert set().union(*mine) == {k for k in range(60) if k % n == i}
                assert sum(map(len, mine)) == len({k for k in range(60) if k % n == i})
    assert distributed.process_shard() == (0, 1)  # this test process: one process


def test_distributed_without_a_cluster_is_a_clean_error(tmp_path, capsys):
    spec_file = tmp_path / "procs.toml"
    spec_file.write_text(TOML)
    code = cli_main(_run_args(spec_file, tmp_path / "x", "--distributed"))
    err = capsys.readouterr().err
    assert code == 2 and "--distributed:" in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_unreachable_coordinator_exits_2_naming_it_while_saying_whom_it_waits_for(tmp_path, env):
    """No process 0 at the address: JAX waited ~5 min silently, then aborted (exit 134). Now it
    says whom it waits for, and after --init-timeout exits 2 naming the address and process."""
    import time

    spec_file, out = tmp_path / "procs.toml", tmp_path / "sweep"
    spec_file.write_text(TOML)
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    job = ["--coordinator", address, "--num-processes", "2", "--process-id", "1"]
    t = time.monotonic()
    p = _start(_run_args(spec_file, out, *job, "--init-timeout", "2"), env)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err[-2000:]
    assert time.monotonic() - t < 60
    assert f"waiting for the coordinator at {address}" in err, err  # said while it waited
    last = err.strip().splitlines()[-1]
    assert last.startswith("jaxinit: error:") and address in last and "process 1 of 2" in last
    assert "Check failure" not in err and "Traceback" not in err
    assert not out.exists()


def test_distributed_settings_are_checked_before_jax_sees_them():
    for bad in [dict(heartbeat_timeout_s=-5), dict(init_timeout_s=0), dict(num_processes=0),
                dict(num_processes=2, process_id=2), dict(coordinator="nohost")]:  # fmt: skip
        args = {"coordinator": None, "num_processes": None, "process_id": None, **bad}
        with pytest.raises(ValueError, match="--"):
            distributed.initialize(**args)
    assert not jax_initialized()


def jax_initialized() -> bool:
    import jax

    return jax.distributed.is_initialized()
