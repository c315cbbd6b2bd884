"""Every bundled training spec at a reduced size, its numbers saved, so that two versions of jaxinit
can be compared: bit-identical where the computation did not change, else the largest difference.

    python benchmarks/spec_fingerprints.py save before.npz            # on the old version
    python benchmarks/spec_fingerprints.py save after.npz             # on the new one
    python benchmarks/spec_fingerprints.py compare before.npz after.npz

Reduced size: each listed axis keeps its first two values (a map's plane axes four), two seeds, at
most 200 steps (logged every 50), in both layouts (``vmap`` and ``auto``, which is ``lanes`` where
it applies). Probe specs (nothing trained) are skipped. Every numeric variable of the Dataset is
saved (finals, curves, params) under ``<spec>/<layout>/<variable>``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import jaxinit
from jaxinit.config.bundled import bundled_specs, find_spec
from jaxinit.config.spec import Spec

STEPS, LOG_EVERY, SEEDS = 200, 50, 2
PLANE_AXES = ("init.plane_a", "init.plane_b")


def reduced(spec: Spec, layout: str) -> Spec:
    """``spec`` at the reduced size described in the module docstring."""
    over: dict = {"train.layout": layout}
    for path, values in spec.axes:
        if path == "seed":
            over["axes.seed"] = SEEDS
        elif path in PLANE_AXES:
            over[f"axes.{path}"] = list(np.linspace(values[0], values[-1], 4).tolist())
        else:
            over[f"axes.{path}"] = list(values)[:2]
    steps = min(spec.train.steps, STEPS)
    over["train.steps"] = steps
    over["train.log_every"] = LOG_EVERY if steps % LOG_EVERY == 0 else steps
    return spec.with_overrides(over)


def fingerprints(names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        spec = Spec.from_toml(find_spec(name)) if not _is_probe(name) else None
        if spec is None:
            continue
        for layout in ("vmap", "auto"):
            t = time.perf_counter()
            ds = jaxinit.run(reduced(spec, layout), out=None, progress=False)
            for var in ds.data_vars:
                a = np.asarray(ds[var].values)
                if a.dtype.kind in "fiub":
                    out[f"{name}/{layout}/{var}"] = a
            took = time.perf_counter() - t
            print(f"{name:18s} {layout:5s} {ds.attrs['n_runs']:5d} runs  {took:6.1f} s", flush=True)
    return out


def _is_probe(name: str) -> bool:
    from jaxinit.config import toml_io

    return "kind" in toml_io.loads(find_spec(name).read_text())


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> int:
    """Print one line per spec × layout: identical variables, and the largest relative difference."""

    def group_of(key: str) -> str:
        return "/".join(key.split("/", 2)[:2])  # <spec>/<layout>

    in_a, in_b = {group_of(k) for k in a}, {group_of(k) for k in b}
    for group in sorted(in_a ^ in_b):  # a spec one version does not have: nothing to compare
        print(f"{group:28s} only in the {'first' if group in in_a else 'second'}")
    rows: dict[str, list] = {}
    for key in sorted(set(a) | set(b)):
        group = group_of(key)
        if group not in in_a & in_b:
            continue
        if key not in a or key not in b:
            rows.setdefault(group, []).append((key, "only in one"))
            continue
        x, y = a[key], b[key]
        if x.shape != y.shape:
            rows.setdefault(group, []).append((key, f"shape {x.shape} vs {y.shape}"))
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            if x.dtype.kind in "bui":  # flags and counts: how many entries differ
                what = f"{int(np.sum(x != y))} of {x.size} entries differ"
                rows.setdefault(group, []).append((key, what))
                continue
            with np.errstate(all="ignore"):
                rel = np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-30))
            rows.setdefault(group, []).append((key, f"max rel diff {rel:.2e}"))
        else:
            rows.setdefault(group, [])
    bad = 0
    for group, diffs in rows.items():
        print(f"{group:28s} {'bit-identical' if not diffs else f'{len(diffs)} variable(s) differ'}")
        for key, what in diffs:
            print(f"    {key.split('/', 2)[2]}: {what}")
        bad += bool(diffs)
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("path")
    s.add_argument("--specs", nargs="*", default=None)
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args(argv)
    if args.cmd == "save":
        np.savez_compressed(args.path, **fingerprints(args.specs or sorted(bundled_specs())))
        return 0
    with np.load(args.before) as x, np.load(args.after) as y:
        return 1 if compare(dict(x), dict(y)) else 0


if __name__ == "__main__":
    sys.exit(main())
