"""Every bundled spec, run by the CLI at its default size, with ``train.layout = vmap`` (the
engine before the lanes layout) and with the default ``auto``, interleaved, each in a fresh
process with the persistent compilation cache off (so both pay their compile).

Prints one row per spec: wall and CPU seconds of each, their ratio, and how far apart their
``final_loss`` values are (the layouts round differently, so chaotic runs may part ways).
Specs whose ``auto`` layout is vmap run the same program either way and are listed, not run,
unless named on the command line.

    python benchmarks/bench_specs.py                  # the specs auto runs on lanes
    python benchmarks/bench_specs.py symmetry --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import jaxinit
from jaxinit.config import bundled
from jaxinit.engine import sweep
from jaxinit.engine.executors import build_task, choose_layout


def auto_layouts(name: str) -> set[str]:
    """The layouts ``auto`` picks for a spec's static groups (on this machine's backend)."""
    plan = sweep.prepare(jaxinit.Spec.from_toml(bundled.find_spec(name))).plan
    return {choose_layout(g.spec, build_task(g.spec), None)[0] for g in plan.groups}


def timed_run(name: str, out: Path, layout: str, extra: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one ``jaxinit run`` subprocess."""
    env = {**os.environ, "JAXINIT_COMPILATION_CACHE": "0"}
    cmd = [sys.executable, "-m", "jaxinit.cli", "run", name, "--out", str(out), "--quiet"]
    cmd += ["--set", f"train.layout={layout}", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compare(a: Path, b: Path) -> str:
    """How far the two layouts' final losses are apart."""
    x, y = jaxinit.load(a).final_loss.values, jaxinit.load(b).final_loss.values
    ok = np.isfinite(x) & np.isfinite(y)
    rel = np.abs(x - y)[ok] / np.maximum(np.abs(y[ok]), 1e-12)
    far = float(np.mean(np.abs(x - y)[ok] > 1e-3)) if ok.any() else float("nan")
    return f"max rel {rel.max():.1e}, |Δ|>1e-3 in {100 * far:.2f}% of runs"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="*", help="bundled spec names (default: every bundled spec)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each layout, interleaved")
    p.add_argument("--set", action="append", default=[], help="passed on to jaxinit run")
    args = p.parse_args(argv)
    names = args.specs or list(bundled.bundled_specs())
    extra = [a for s in args.set for a in ("--set", s)]
    print(f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores; cache off; one process each")
    print(f"{'spec':<16} {'vmap wall/cpu s':>16} {'auto wall/cpu s':>16} {'ratio':>11}  final loss")
    for name in names:
        picked = auto_layouts(name)
        if picked == {"vmap"} and not args.specs:
            print(f"{name:<16} auto = vmap: the same program either way (not run)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            times: dict[str, list] = {"vmap": [], "auto": []}
            for k in range(args.repeat):
                for layout in times:
                    out = Path(tmp) / f"{layout}{k}"
                    times[layout].append(timed_run(name, out, layout, extra))
            v, a = (np.median(np.array(times[x]), axis=0) for x in ("vmap", "auto"))
            diff = compare(Path(tmp) / "auto0", Path(tmp) / "vmap0")
        print(
            f"{name:<16} {v[0]:7.1f}/{v[1]:7.1f}  {a[0]:7.1f}/{a[1]:7.1f}  "
            f"{v[0] / a[0]:4.1f}×/{v[1] / a[1]:4.1f}×  auto={'+'.join(sorted(picked))}; {diff} "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
