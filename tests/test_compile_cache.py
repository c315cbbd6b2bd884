"""The persistent compilation cache: on by default, in the directory the environment names, off
when asked, and never overriding a cache the user configured for JAX themselves."""

import json
import os
import subprocess
import sys

SWEEP = """
import json, jaxinit
ds = jaxinit.run({"task": {"name": "xor"}, "model": {"widths": [2]},
                  "train": {"steps": 20, "log_every": 10}, "axes": {"seed": 3}}, progress=False)
print(json.dumps(ds.final_loss.values.tolist()))
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAXINIT_", "JAX_COMP"))}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}
    )
    assert r.returncode == 0, r.stderr
    return r


def _entries(path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.exists() else set()


def test_second_process_loads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "cache"
    first = _python(SWEEP, JAXINIT_CACHE_DIR=str(cache))
    written = _entries(cache)
    assert written, "the first process wrote nothing to the cache"
    second = _python(SWEEP, JAXINIT_CACHE_DIR=str(cache))
    assert _entries(cache) == written  # every program was found: nothing new compiled
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_switched_off_and_the_users_own_jax_cache_respected(tmp_path):
    probe = "from jaxinit.engine import compile_cache; print(compile_cache.enable())"
    off = _python(probe, JAXINIT_COMPILATION_CACHE="0", JAXINIT_CACHE_DIR=str(tmp_path / "a"))
    assert off.stdout.strip() == "None" and not (tmp_path / "a").exists()
    mine = str(tmp_path / "mine")
    theirs = _python(probe, JAX_COMPILATION_CACHE_DIR=mine, JAXINIT_CACHE_DIR=str(tmp_path / "b"))
    assert theirs.stdout.strip() == mine and not (tmp_path / "b").exists()
    home = _python(probe, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert home.stdout.strip() == str(tmp_path / "xdg" / "jaxinit" / "xla")
