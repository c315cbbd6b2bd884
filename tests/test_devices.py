"""jaxinit.engine.devices: one CPU device per core, never over the user's choice. The device count is
fixed when JAX starts, so each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jaxinit.engine.devices import MAX_DEFAULT, cores

PROBE = (
    "import jax, jaxinit.engine.devices as d; n = d.use_cpu_cores({arg}); "
    "print(n, len(jax.devices('cpu')), d.use_cpu_cores({arg}))"
)


def _probe(env: dict[str, str], arg: str = "") -> tuple[int, int, int]:
    """``(returned before start, devices JAX started with, returned after start)``."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXINIT_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(arg=arg)],
        env={**base, "JAX_PLATFORMS": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return tuple(int(v) for v in out.stdout.split())


def test_one_device_per_core_by_default():
    want = min(cores(), MAX_DEFAULT)
    assert _probe({}) == (want, want, want)


@pytest.mark.parametrize(
    "env, arg, want",
    [
        ({"JAXINIT_CPU_DEVICES": "3"}, "", 3),  # the environment sets it
        ({"JAXINIT_CPU_DEVICES": "1"}, "", 1),  # ... or keeps XLA's single device
        ({}, "2", 2),  # an explicit count
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, "1", 3),  # the user's flag wins
    ],
)
def test_counts_from_the_environment_and_the_users_flag(env, arg, want):
    assert _probe(env, arg) == (want, want, want)


def test_after_jax_started_it_reports_the_count_in_force():
    code = (
        "import jax, jaxinit.engine.devices as d; jax.numpy.zeros(1).block_until_ready(); "
        "print(d.use_cpu_cores(4))"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXINIT_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]


def test_a_bad_count_is_a_clear_error(monkeypatch):
    from jaxinit.engine.devices import use_cpu_cores

    monkeypatch.setenv("JAXINIT_CPU_DEVICES", "many")
    with pytest.raises(ValueError, match="JAXINIT_CPU_DEVICES='many'"):
        use_cpu_cores()
    with pytest.raises(ValueError, match="positive"):
        use_cpu_cores(0)


def test_the_default_is_one_per_core_up_to_a_cap(monkeypatch):
    from jaxinit.engine import devices

    monkeypatch.delenv("JAXINIT_CPU_DEVICES", raising=False)
    monkeypatch.setattr(devices, "cores", lambda: 64)
    assert devices.default_count() == MAX_DEFAULT
    monkeypatch.setattr(devices, "cores", lambda: 3)
    assert devices.default_count() == 3
    monkeypatch.setenv("JAXINIT_CPU_DEVICES", "16")
    assert devices.default_count() == 16
