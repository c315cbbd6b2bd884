"""How soon a small sweep starts training in a new process, cold and with a warm cache.

Runs the bundled ``symmetry`` spec cut to 2 seeds × 40 steps (5 init schemes) with ``jaxinit
run`` in fresh processes sharing one new persistent compilation cache: the first process is
cold (it fills the cache), the next ``--repeat`` are warm. Each prints when its first chunk's
program has been compiled (or loaded from the cache) and dispatched, counted from the
process's start, and the whole command's wall and CPU seconds.

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeat 5 --spec xor_minima --set axes.seed=2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

# Run inside each measured process: time from its start (the interpreter's own start-up is
# added from outside) to the return of the first chunk's compiled call.
_PROBE = """
import sys, time
t0 = time.perf_counter()
import jaxinit.engine.executors as ex
compile_ = ex.Executor.compile

def compile(self, *a, **k):
    fn = compile_(self, *a, **k)
    def first(*args):
        out = fn(*args)
        if not getattr(compile, "seen", False):
            compile.seen = True
            print(f"STARTED {time.perf_counter() - t0:.3f}", file=sys.stderr, flush=True)
        return out
    return first

ex.Executor.compile = compile
from jaxinit import cli
sys.argv = ["jaxinit", *sys.argv[1:]]
sys.exit(cli.main())
"""


def one(args: list[str], env: dict) -> tuple[float, float, float]:
    """``(seconds to the first dispatched chunk, wall, cpu)`` of one ``jaxinit`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    started = [
        float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("STARTED")
    ]
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return started[0], wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--spec", default="symmetry")
    p.add_argument(
        "--set", action="append", default=None, help="override (default: 2 seeds, 40 steps)"
    )
    p.add_argument("--repeat", type=int, default=3, help="warm runs after the cold one")
    a = p.parse_args()
    sets = a.set or ["axes.seed=2", "train.steps=40"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JAXINIT_CACHE_DIR": os.path.join(tmp, "xla")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env.pop("JAXINIT_COMPILATION_CACHE", None)
        print(
            f"{a.spec} with {' '.join(sets)}; load {os.getloadavg()[0]:.1f}; the interpreter "
            f"starts in {interpreter:.2f} s (added to 'training starts')"
        )
        for k in range(1 + a.repeat):
            out = os.path.join(tmp, f"out{k}")
            args = [
                "run",
                a.spec,
                "--out",
                out,
                "--quiet",
                *[x for s in sets for x in ("--set", s)],
            ]
            started, wall, cpu = one(args, env)
            kind = "cold" if k == 0 else "warm"
            print(
                f"  {kind}: training starts at {started + interpreter:.2f} s; "
                f"whole command {wall:.2f} s wall, {cpu:.2f} s cpu"
            )


if __name__ == "__main__":
    main()
