"""Relaxed and straight-line barriers against hidden width: do the relaxed barriers vanish?

Draxler et al. (ICML 2018) and Garipov et al. (NeurIPS 2018) found nearly flat paths between the
minima of large nets. Here: the net family of the bundled ``sinusoid_landscape`` spec (sin(3x)
on 32 points, a 1-w-1 tanh MLP) at several widths w, many seeds each; per width, the basins are
found (``jaxinit.analysis.basins``), the landscape of the lowest ``--nodes`` minima is relaxed
(``jaxinit.analysis.landscape.graph``) and the barriers of its edges are summarised. A barrier
is ``highest loss on the path - mean of the two ends``; edges whose straight line does not rise
above both ends (no barrier to relax) are left out of the medians.

    PYTHONPATH=. python benchmarks/landscape_width.py [--widths 2 3 4 6 8 16] [--seeds 256]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import jaxinit
from jaxinit.analysis import landscape
from jaxinit.config.bundled import find_spec
from jaxinit.config.spec import Spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[2, 3, 4, 6, 8, 16])
    ap.add_argument("--seeds", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--nodes", type=int, default=16)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()}")
    spec = Spec.from_toml(find_spec("sinusoid_landscape")).with_overrides({
        "axes.seed": args.seeds, "train.steps": args.steps,
        "axes.model.widths": [[w] for w in args.widths]})  # fmt: skip
    t = time.perf_counter()
    ds = jaxinit.run(spec, progress=False)
    print(f"{ds.attrs['n_runs']} runs in {time.perf_counter() - t:.0f} s; "
          f"lowest {args.nodes} minima per width, MST + 2 nearest neighbours\n")  # fmt: skip
    head = (f"{'width':>5} {'params':>6} {'minima':>6} {'edges':>5} {'conv':>4} "
            f"{'lin. median':>11} {'rel. median':>11} {'rel. max':>9} {'ratio med':>9} "
            f"{'ratio 90%':>9} {'rel<1e-3':>8}")  # fmt: skip
    print(head)
    for gi, w in enumerate(args.widths):
        try:
            g = landscape.graph(ds, group=gi, max_nodes=args.nodes)
        except landscape.TooFewMinima as why:
            print(f"{w:>5} {'':>6} {why}")
            continue
        e = g.edges
        hump = (
            e.linear_saddle
            > np.maximum(g.nodes.loss.to_numpy()[e.i], g.nodes.loss.to_numpy()[e.j]) + 1e-6
        )
        h = e[hump]
        params = 3 * w + 1
        assert f"[{w}]" in g.label, g.label
        print(f"{w:>5} {params:>6} {len(g.nodes):>6} {len(e):>5} {int(e.converged.sum()):>4} "
              f"{np.median(h.linear_barrier):>11.3g} {np.median(h.relaxed_barrier):>11.3g} "
              f"{h.relaxed_barrier.max():>9.3g} {np.median(h.ratio):>9.3g} "
              f"{np.quantile(h.ratio, 0.9):>9.3g} {int((h.relaxed_barrier < 1e-3).sum()):>8}"
              if len(h) else f"{w:>5} {params:>6} {len(g.nodes):>6} {len(e):>5}  no barriers")  # fmt: skip


if __name__ == "__main__":
    main()
