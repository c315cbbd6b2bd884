"""Maps of runs over two hyperparameters: each run's phase, and the box-counting dimension of the
trainability boundary.

:func:`phases` labels every run of a gradient-descent sweep ``lazy`` / ``catapult`` /
``divergent`` (Lewkowycz et al. 2020) from its loss curve, its logged sharpness and its
divergence books, with the thresholds of :func:`jaxinit.blocks.sharpness.phase`;
:func:`learning_rates` gives each run's absolute step ``η`` (``learning_rate × 2/λ₀`` under
``optimizer.lr_unit = "2/lambda0"``).

A *map* is a grid of runs over two swept quantities (two learning rates, or init scale x
learning rate), each pixel a run that trained (True) or diverged (False). Sohl-Dickstein (2024)
found the boundary between the two fractal, with box-counting dimensions between about 1.2
and 2.0. :func:`boundary_dimension` measures it: mark the boundary pixels (2 x 2 neighbourhoods that hold
both classes: the paper's sign changes among neighbouring pixels), cover them with ``s x s``
boxes, count the boxes ``N(s)`` that hold one, and fit the slope of ``log N(s)`` against
``log(1/s)``. A smooth boundary gives 1 (``N ∝ 1/s``), one that fills the plane gives 2.

The fit uses box sizes from 2 pixels (at 1 pixel the staircase of a rasterised curve shows) to
an eighth of the shorter side, in powers of 2, unless ``box_sizes`` says otherwise; the last row
and column of boxes may overhang the map's edge (they count like the others). The slopes between
consecutive sizes (``local_slopes``) show whether one power law holds over the range: their
spread is the fit's spread over scales.

>>> import numpy as np
>>> half = np.arange(256)[:, None] < np.arange(256)[None, :]  # trained above the diagonal
>>> round(boundary_dimension(half).dimension, 1)
1.0
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import jax
import numpy as np
import xarray as xr

from jaxinit.blocks import sharpness as sharp
from jaxinit.engine.rebuild import from_dataset

NOT_DONE = -1
"""The phase code of a run that has not finished (:func:`phases`)."""


class BoxCount(NamedTuple):
    """A box-counting fit of one map's boundary (``K`` box sizes)."""

    dimension: float  # slope of log N(s) against log(1/s), least squares over all K sizes
    box_sizes: np.ndarray  # (K,) int, box edge in pixels, ascending
    counts: np.ndarray  # (K,) int, N(s): boxes holding both classes
    local_slopes: np.ndarray  # (K-1,) the slope between consecutive sizes
    intercept: float  # of the fit, log N at s = 1


def default_box_sizes(shape: tuple[int, int]) -> np.ndarray:
    """Powers of 2 from 2 to an eighth of the shorter side (at least 2, 4, 8)."""
    top = max(8, min(shape) // 8)
    return 2 ** np.arange(1, int(np.log2(top)) + 1)


def boundary_pixels(trainable_HxW: np.ndarray) -> np.ndarray:
    """``(H-1, W-1)`` bool: the 2 x 2 neighbourhoods of the map that hold both classes.

    The boundary runs between pixels; marking the mixed neighbourhoods puts it on a grid of its
    own, so a boundary that runs along box edges is not missed (the paper's sign-change edges).
    """
    a = trainable_HxW
    windows = np.stack([a[1:, 1:], a[:-1, 1:], a[1:, :-1], a[:-1, :-1]])
    return windows.any(axis=0) & ~windows.all(axis=0)


def box_counts(trainable_HxW: np.ndarray, box_sizes: np.ndarray) -> np.ndarray:
    """``N(s)`` for each box size: the ``s x s`` boxes over :func:`boundary_pixels` (the last
    row and column of boxes may overhang the edge) that hold a boundary pixel, i.e. the ``(s+1) x (s+1)`` windows of the
    map at stride ``s`` that hold both a True and a False pixel."""
    edges = boundary_pixels(trainable_HxW)
    out = []
    for s in box_sizes:
        s = int(s)
        h, w = -(-edges.shape[0] // s) * s, -(-edges.shape[1] // s) * s
        padded = np.pad(edges, ((0, h - edges.shape[0]), (0, w - edges.shape[1])))
        out.append(int(np.sum(padded.reshape(h // s, s, w // s, s).any(axis=(1, 3)))))
    return np.asarray(out, dtype=np.int64)


def boundary_dimension(
    trainable_HxW: np.ndarray, *, box_sizes: np.ndarray | list[int] | None = None
) -> BoxCount:
    """The box-counting dimension of the boundary between True and False pixels of a map.

    ``trainable_HxW``: a 2-D bool array (True: the run trained). ``box_sizes``: box edges in
    pixels, at least two, each from 1 to the shorter side less one; by default
    :func:`default_box_sizes`.
    Sizes with no boundary box are left out of the fit; with fewer than two left, the
    dimension is NaN (no boundary to measure).
    """
    a = np.asarray(trainable_HxW)
    if a.ndim != 2:
        raise ValueError(f"trainable_HxW must be a 2-D map, got shape {a.shape}")
    if a.dtype != np.bool_:
        raise ValueError(f"trainable_HxW must be a bool array (True: trained), got {a.dtype}")
    sizes = default_box_sizes(a.shape) if box_sizes is None else np.asarray(box_sizes)
    if sizes.ndim != 1 or len(sizes) < 2:
        raise ValueError(f"box_sizes needs at least two sizes, got {sizes.tolist()}")
    if not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"box_sizes must be whole pixels, got {sizes.tolist()}")
    sizes = np.unique(sizes)
    if min(a.shape) < 2:
        raise ValueError(f"trainable_HxW needs at least 2 x 2 pixels, got shape {a.shape}")
    if sizes[0] < 1 or sizes[-1] > min(a.shape) - 1:
        raise ValueError(
            f"box_sizes must lie in [1, {min(a.shape) - 1}] (boxes over the {min(a.shape) - 1} "
            f"boundary pixels along the shorter side), got {sizes.tolist()}"
        )
    counts = box_counts(a, sizes)
    x, y = np.log(1.0 / sizes), np.log(np.maximum(counts, 1))
    local = np.where((counts[1:] > 0) & (counts[:-1] > 0), np.diff(y) / np.diff(x), np.nan)
    keep = counts > 0
    if keep.sum() < 2:
        return BoxCount(float("nan"), sizes, counts, local, float("nan"))
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    return BoxCount(float(slope), sizes, counts, local, float(intercept))


# ---- phases -------------------------------------------------------------------------------------


def learning_rates(ds: xr.Dataset) -> xr.DataArray:
    """Each run's absolute learning rate ``η``, over the sweep's dims: ``optimizer.learning_rate``
    (its axis' coordinate where it is swept), times ``2/λ₀`` (the ``lambda0`` final) under
    ``optimizer.lr_unit = "2/lambda0"``."""
    spec = from_dataset(ds).spec
    axes = json.loads(ds.attrs.get("axes", "{}"))
    dim_of = {p: d for d, p in axes.items()}
    path = "optimizer.learning_rate"
    lr = (
        ds[dim_of[path]].astype(float)
        if path in dim_of
        else xr.DataArray(spec.optimizer.learning_rate)
    )
    unit = "optimizer.lr_unit"
    scaled = (
        ds[dim_of[unit]] != "" if unit in dim_of else xr.DataArray(spec.optimizer.lr_unit != "")
    )
    if bool(scaled.any()):
        if "lambda0" not in ds:
            raise ValueError("optimizer.lr_unit is set but the Dataset has no lambda0 final")
        lr = xr.where(scaled, lr * 2.0 / ds["lambda0"], lr)
    lr = lr.broadcast_like(ds["final_loss"]) if "final_loss" in ds else lr
    return lr.rename("learning_rate").assign_attrs(
        long_name="learning rate η", units="1", description="each run's absolute step size"
    )


def phases(
    ds: xr.Dataset,
    *,
    peak_ratio: float = sharp.CATAPULT_PEAK_RATIO,
    edge_slack: float = sharp.EDGE_SLACK,
) -> xr.DataArray:
    """The phase of every run of a gradient-descent sweep: ``0`` lazy, ``1`` catapult, ``2``
    divergent (:data:`jaxinit.blocks.sharpness.PHASES`), ``-1`` (:data:`NOT_DONE`) for a run not
    finished yet; over the sweep's dims, with the labels in ``attrs["labels"]``.

    Per run, from its ``loss`` curve (the first point at init), its ``sharpness`` curve when
    the sweep logged it (the first point at init, the last the final one), its absolute
    learning rate ``η`` (:func:`learning_rates`) and its ``diverged`` flag, by
    :func:`jaxinit.blocks.sharpness.phase`:

    - **divergent**: it diverged (non-finite loss or parameters), or its last loss is not below
      its initial loss, or it ends beyond the stability edge, ``η·λ_final > 2·(1 + edge_slack)``
      (``edge_slack`` = 0.1: the edge of stability hovers a few per cent above ``2/η``);
    - **catapult**: otherwise, if its loss rose above ``peak_ratio`` (2) times the initial loss
      at a logged step, or its sharpness started above the edge and ended below it
      (``η·λ_first > 2`` and ``η·λ_final < 2``);
    - **lazy**: otherwise.

    A catapult's rise lasts a few steps; log every step or few (``train.log_every``), or its
    peak may fall between logged steps (the sharpness test catches those that log it).

    >>> import jaxinit  # doctest: +SKIP
    >>> ds = jaxinit.run("catapult")  # doctest: +SKIP
    >>> phases(ds).attrs["labels"]  # doctest: +SKIP
    'lazy catapult divergent'
    """
    loss = ds["loss"]
    runs = [d for d in loss.dims if d != "step"]
    eta = learning_rates(ds).broadcast_like(ds["final_loss"]).transpose(*runs)
    if "sharpness" in ds:
        sharp_T = ds["sharpness"].transpose(*runs, "step").values
    else:
        sharp_T = np.full((*eta.shape, 1), np.nan)
    n = int(np.prod(eta.shape))
    flat = (
        loss.transpose(*runs, "step").values.reshape(n, -1),
        sharp_T.reshape(n, -1),
        eta.values.reshape(n),
        ds["diverged"].transpose(*runs).values.reshape(n),
    )

    def one(loss_T: Any, sharpness_T: Any, lr: Any, diverged: Any) -> Any:
        return sharp.phase(
            loss_T, sharpness_T, lr, diverged, peak_ratio=peak_ratio, edge_slack=edge_slack
        )

    with jax.enable_x64(flat[0].dtype == np.float64):
        codes = np.asarray(jax.vmap(one)(*flat)).reshape(eta.shape)
    codes = np.where(ds["done"].transpose(*runs).values, codes, NOT_DONE)
    return xr.DataArray(
        codes.astype(np.int32),
        coords=eta.coords,
        dims=eta.dims,
        name="phase",
        attrs={
            "long_name": "phase",
            "labels": " ".join(sharp.PHASES),
            "description": (
                "0 lazy, 1 catapult, 2 divergent, -1 not done; divergent: diverged, last loss "
                f"not below the first, or η·λ_final > 2·(1 + {edge_slack}); catapult: peak "
                f"loss ratio > {peak_ratio}, or η·λ fell through 2"
            ),
        },
    )
