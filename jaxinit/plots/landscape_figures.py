"""Landscape figures: the disconnectivity graph of a sweep's minima (:mod:`jaxinit.analysis.landscape`).

A **disconnectivity graph** (Becker & Karplus 1997; Wales's PATHSAMPLE) draws each minimum as a
vertical line from its loss up to the loss of the lowest saddle that joins it to another group
of minima; groups merge at the height of the saddle between them. Beside it: every relaxed path's
barrier against the straight line's between the same minima.
"""

from __future__ import annotations

import weakref

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from jaxinit.plots.core import NothingToDraw
from jaxinit.plots.names import figure

_CACHE: dict = {}  # id(ds) -> (weakref to ds, Landscape): the figure and its table share one graph


def landscape_of(ds: xr.Dataset):
    """:func:`jaxinit.analysis.landscape.graph` of the first group, computed once per Dataset object."""
    from jaxinit.analysis.landscape import TooFewMinima, graph

    hit = _CACHE.get(id(ds))
    if hit is not None and hit[0]() is ds:
        return hit[1]
    try:
        g = graph(ds)
    except TooFewMinima as why:
        raise NothingToDraw(str(why)) from None
    _CACHE.clear()
    _CACHE[id(ds)] = (weakref.ref(ds), g)
    return g


def tree_layout(loss_N: np.ndarray, tree: pd.DataFrame) -> tuple[dict, dict]:
    """``(x, top)`` per cluster id (nodes ``0..N-1``, merges ``N + r``): leaves left to right in
    the order of a depth-first walk (the lower child first), a merge above the middle of its
    children; ``top`` is the height a cluster's line reaches (a leaf: its own loss)."""
    n = len(loss_N)
    children = {int(r.cluster): (int(r.left), int(r.right)) for r in tree.itertuples()}
    low = {i: float(loss_N[i]) for i in range(n)}
    for r in tree.itertuples():
        low[int(r.cluster)] = min(low[int(r.left)], low[int(r.right)])
    top = {i: float(loss_N[i]) for i in range(n)}
    top.update({int(r.cluster): float(r.level) for r in tree.itertuples()})
    merged = {c for pair in children.values() for c in pair}
    roots = [c for c in [*range(n), *children] if c not in merged]
    x, counter = {}, [0]

    def place(c):
        if c in children:
            a, b = sorted(children[c], key=lambda k: low[k])
            place(a)
            place(b)
            x[c] = (x[a] + x[b]) / 2
        else:
            x[c] = float(counter[0])
            counter[0] += 1

    for r in sorted(roots, key=lambda k: low[k]):
        place(r)
    return x, top


def disconnectivity(ds: xr.Dataset) -> plt.Figure:
    """Left: the disconnectivity graph of the sweep's minima (relaxed saddles; a minimum found
    inside a relaxed path is marked apart). Right: relaxed vs straight-line barrier per edge."""
    return draw_disconnectivity(landscape_of(ds), ds.attrs["name"])


def draw_disconnectivity(g, name: str = "") -> plt.Figure:
    """The :func:`disconnectivity` figure of a :class:`jaxinit.analysis.landscape.Landscape` already built
    (e.g. ``graph(ds, max_nodes=…)``)."""
    loss = g.nodes.loss.to_numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    x, top = tree_layout(loss, g.tree)
    for r in g.tree.itertuples():
        for c in (int(r.left), int(r.right)):
            ax.plot([x[c], x[c]], [top[c], r.level], color="0.2", lw=0.8)
        ax.plot([x[int(r.left)], x[int(r.right)]], [r.level, r.level], color="0.2", lw=0.8)
    basin = g.nodes.source.to_numpy() == "basin"
    xs = np.array([x[i] for i in range(len(loss))])
    ax.scatter(xs[basin], loss[basin], s=14, color="tab:blue", zorder=3, label="basin of the sweep")
    if (~basin).any():
        ax.scatter(xs[~basin], loss[~basin], s=18, marker="v", color="tab:orange", zorder=3,
                   label="minimum inside a relaxed path")  # fmt: skip
    if (loss > 0).all():
        ax.set_yscale("log")
    ax.set_xticks([])
    ax.set_ylabel("training loss (minima; merges at the relaxed saddle)")
    e = g.edges
    conv = int(e.converged.sum())
    ax.set_title(f"{g.label}: {len(loss)} minima, {len(e)} relaxed paths ({conv} converged)",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="best")
    ok = (e.linear_barrier > 0) & (e.relaxed_barrier > 0)
    bx.scatter(e.linear_barrier[ok & e.converged], e.relaxed_barrier[ok & e.converged], s=10,
               label="converged")  # fmt: skip
    bx.scatter(e.linear_barrier[ok & ~e.converged], e.relaxed_barrier[ok & ~e.converged], s=10,
               marker="x", color="0.5", label="not converged (an upper bound)")  # fmt: skip
    lo = float(np.nanmin(e[ok][["linear_barrier", "relaxed_barrier"]].to_numpy(), initial=1e-6))
    hi = float(np.nanmax(e[ok][["linear_barrier", "relaxed_barrier"]].to_numpy(), initial=1.0))
    bx.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="relaxed = straight line")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("straight-line barrier (after weight matching)")
    bx.set_ylabel("relaxed barrier (CI-NEB)")
    med = np.nanmedian(e.ratio[e.converged]) if conv else np.nan
    bx.set_title(f"median relaxed / straight-line ratio {med:.3g}", fontsize=9)
    bx.legend(fontsize=7)
    fig.suptitle(f"{name}: disconnectivity graph" if name else "disconnectivity graph")
    fig.tight_layout()
    return fig


def disconnectivity_table(ds: xr.Dataset) -> pd.DataFrame:
    """The relaxed paths behind the figure, one row per edge (:func:`jaxinit.analysis.landscape.graph`)."""
    return landscape_of(ds).edges


figure("disconnectivity", table=disconnectivity_table)(disconnectivity)  # + .csv / .txt
