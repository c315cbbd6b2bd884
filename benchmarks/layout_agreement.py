"""How closely the lanes and vmap layouts agree, on every bundled spec that both can run.

The two layouts (``train.layout``, :mod:`jaxinit.engine.lanes` vs :mod:`jaxinit.engine.train`) compute the same
runs with a different summation order, so they agree to rounding, not bit for bit. This script
runs each bundled gradient-training spec whose every static group the lanes layout supports, once
per layout, at a reduced size (``--seeds`` seeds, at most ``--steps`` steps, axes thinned to at most
``--max-runs`` runs and ``--work`` multiply-adds, so the deep nets, where lanes is slow, stay
cheap), and prints, per spec:

* ``runs``: runs compared; ``>1e-6``, ``>1e-5``: runs whose final loss differs by more than that,
  relative (``|a - b| / max(|a|, |b|, 1e-6 · the run's loss at step 0)``, :data:`FLOOR`);
* ``final_loss``: the largest relative difference of a final loss, and the run it belongs to;
* ``loss curve``: the largest relative difference anywhere on the logged loss curves;
* ``diverged``: runs that diverged in one layout and not in the other;
* ``worst run along its curve``: that run's loss difference at the first, middle and last
  logged step: differences that grow by orders of magnitude along the run are rounding amplified
  by the run's own dynamics.

The per-run figures say where a large difference comes from (its activation, depth and init
scale), so that a real instability (a saturated or exploding run amplifying rounding) can be
told from the summation-order rounding every run has.

    python benchmarks/layout_agreement.py --seeds 2 --steps 100
    python benchmarks/layout_agreement.py --dtype float64 --only init_scale
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

import jaxinit
from jaxinit.config.bundled import bundled_specs
from jaxinit.engine import lanes
from jaxinit.engine.executors import build_task
from jaxinit.engine.plan import make_plan
from jaxinit.engine.validation import resolve_spec


def rel_diff(a: np.ndarray, b: np.ndarray, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """``|a - b| / max(|a|, |b|, floor)`` elementwise; 0 where both are equal (or both NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    return np.where(same, 0.0, np.where(np.isfinite(out), out, np.inf))


FLOOR = 1e-6
"""Losses are compared relative to ``max(|a|, |b|, FLOOR · loss at step 0)``: a loss that has
fallen a millionfold from its start (deep_linear reaches 1e-13) carries float32 rounding of
its start, and its raw relative difference says nothing about the layouts."""


def reduced(name: str, seeds: int, steps: int, max_runs: int, dtype: str, work: float):
    """The bundled spec ``name`` at reduced size, or ``(None, why)`` if lanes cannot run it.

    At most ``seeds`` seeds and ``steps`` steps; the longest axes thinned (every other value)
    until there are at most ``max_runs`` runs and ``runs · steps · step_cost <= work``
    (:func:`jaxinit.engine.lanes.step_cost`), with the steps cut (to no fewer than 20) first."""
    spec = resolve_spec(name)
    if spec.is_probe:  # random nets measured at init: nothing trained, no layout
        return None, f"a probe of random nets ({spec.kind}), not a training sweep"
    if spec.algorithm.name != "gradient":
        return None, f"algorithm {spec.algorithm.name}: vmap only"
    groups = make_plan(spec, None).groups
    for g in groups:
        why = lanes.supports(g.spec, None, build_task(g.spec))
        if why is not None:
            return None, why
    cost = sum(lanes.step_cost(g.spec, build_task(g.spec)) for g in groups) / len(groups)
    axes = {p: list(v) for p, v in spec.axes if p != "seed"}
    n_seeds = min(seeds, len(dict(spec.axes)["seed"]))

    def count():
        return n_seeds * math.prod(len(v) for v in axes.values())

    n_steps = min(steps, spec.train.steps)
    n_steps = max(min(n_steps, 20), min(n_steps, int(work / (count() * cost))))
    while count() > max_runs or count() * n_steps * cost > work:
        longest = max(axes, key=lambda p: len(axes[p]), default=None)
        if longest is None or len(axes[longest]) < 2:
            break
        axes[longest] = axes[longest][::2]
    tr = spec.train
    log_every = max(d for d in range(1, n_steps + 1) if n_steps % d == 0 and d <= tr.log_every)
    over = {"train.steps": n_steps, "train.log_every": log_every, "axes.seed": n_seeds}
    over |= {"train.dtype": dtype} | {f"axes.{p}": v for p, v in axes.items()}
    return resolve_spec(name, over), None


def compare(spec) -> dict:
    """Run ``spec`` in both layouts and measure their differences."""
    runs = {}
    t0 = time.perf_counter()
    for layout in ("vmap", "lanes"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[layout] = jaxinit.run(spec, progress=False, train__layout=layout)
    a, b = runs["vmap"], runs["lanes"]
    start = FLOOR * np.abs(a["loss"].values[..., 0])
    fl = rel_diff(a.final_loss.values, b.final_loss.values, start)
    curve = rel_diff(a["loss"].values, b["loss"].values, start[..., None])
    worst = np.unravel_index(np.argmax(fl), fl.shape)
    coords = {
        d: a.final_loss[d].values[i]
        for d, i in zip(a.final_loss.dims, worst)
        if d != "seed"  # fmt: skip
    }
    return {
        "runs": fl.size,
        "over_1e-6": int((fl > 1e-6).sum()),
        "over_1e-5": int((fl > 1e-5).sum()),
        "final_loss": float(fl.max()),
        "worst_run": coords,
        "worst_loss": (float(a.final_loss.values[worst]), float(b.final_loss.values[worst])),
        "curve": float(curve.max()),
        # the worst run's loss difference along its curve: rounding that grows step by step
        # is an instability of that run, not of a layout
        "growth": curve[worst][[0, curve.shape[-1] // 2, -1]].tolist(),
        "diverged": int((a.diverged.values != b.diverged.values).sum()),
        "seconds": time.perf_counter() - t0,
        "per_run": (a.final_loss, fl),
    }


def by_axis(final_loss, fl: np.ndarray, axis: str) -> str:
    """The largest final-loss difference per value of ``axis`` (its dims name), one line each."""
    dim = axis.replace(".", "_")
    k = final_loss.dims.index(dim)
    others = tuple(i for i in range(fl.ndim) if i != k)
    worst = fl.max(axis=others)
    over = (fl > 1e-6).sum(axis=others)
    lines = [f"  by {axis}: value, final_loss max rel, runs > 1e-6 (of {fl.size // fl.shape[k]})"]
    for v, w, n in zip(final_loss[dim].values, worst, over):
        lines.append(f"    {v}: {w:.2g}, {n}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--max-runs", type=int, default=600)
    ap.add_argument("--only", nargs="*", help="bundled spec names (default: all)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--by", nargs="*", default=[], help="also break down by these axes")
    ap.add_argument("--work", type=float, default=2e8, help="runs x steps x step cost, at most")
    args = ap.parse_args()
    names = args.only or sorted(bundled_specs())
    print(
        f"{args.dtype}; seeds {args.seeds}, at most {args.steps} steps, at most {args.max_runs} "
        "runs per spec"
    )
    print(
        "| spec | steps | runs | >1e-6 | >1e-5 | final_loss max rel | worst run (vmap, lanes) "
        "| worst run along its curve | loss curve max rel | diverged differ | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        spec, why = reduced(name, args.seeds, args.steps, args.max_runs, args.dtype, args.work)
        if spec is None:
            print(f"| {name} | | | | | not compared: {why} | | | | | |")
            continue
        r = compare(spec)
        where = ", ".join(f"{k}={v}" for k, v in r["worst_run"].items())
        print(
            f"| {name} | {spec.train.steps} | {r['runs']} | {r['over_1e-6']} | {r['over_1e-5']} "
            f"| {r['final_loss']:.2g} | {where} ({r['worst_loss'][0]:.4g}, "
            f"{r['worst_loss'][1]:.4g}) | {' → '.join(f'{g:.1g}' for g in r['growth'])} "
            f"| {r['curve']:.2g} | {r['diverged']} "
            f"| {r['seconds']:.0f} |",
            flush=True,
        )
        for axis in args.by:
            if axis.replace(".", "_") in r["per_run"][0].dims:
                print(by_axis(*r["per_run"], axis), flush=True)


if __name__ == "__main__":
    main()
