"""Small statistics shared by analysis and figures."""

from __future__ import annotations

import numpy as np


def rate_interval(
    k: np.ndarray, n: np.ndarray, z: float = 1.96
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, lo, hi)``: the rate ``k / n`` and its 95% Wilson score interval, all three from the
    same counts in float64 (``n = 0`` counts as 1: ``p = 0``, ``[0, 0.79]``).

    The bounds are clipped at the end so that ``0 <= lo <= p <= hi <= 1`` holds exactly: at
    ``p = 0`` or ``1`` the Wilson formula gives ``lo = 1e-17`` or ``hi = 1 - 1e-16`` by rounding,
    which would make an error bar ``p - lo`` negative.

    >>> p, lo, hi = rate_interval(200, 200)
    >>> float(p), float(hi), round(float(lo), 4)
    (1.0, 1.0, 0.9812)
    """
    k, n = np.asarray(k, np.float64), np.maximum(np.asarray(n, np.float64), 1)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    lo = np.clip(centre - half, 0.0, p)
    hi = np.clip(centre + half, p, 1.0)
    return p, lo, hi


def wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of a binomial rate ``k / n`` (``n = 0`` counts as 1); the
    bounds of :func:`rate_interval`, so ``lo <= k / n <= hi`` exactly.

    >>> lo, hi = wilson(0, 200)
    >>> float(lo), round(float(hi), 4)
    (0.0, 0.0188)
    """
    return rate_interval(k, n, z)[1:]


def error_bars(p, lo, hi) -> np.ndarray:
    """``yerr`` of an interval for ``Axes.errorbar``: ``[[p - lo], [hi - p]]``, never negative
    (an interval that rounding or another dtype left a hair off ``p`` gets a zero-length bar) and
    0 where a value is NaN (matplotlib draws no point there anyway).

    >>> error_bars([0.5, 1.0], [0.25, 0.75], [0.75, 0.9999]).tolist()
    [[0.25, 0.25], [0.25, 0.0]]
    """
    p, lo, hi = (np.asarray(a, np.float64) for a in (p, lo, hi))
    err = np.stack([p - lo, hi - p])
    return np.where(np.isnan(err), 0.0, np.maximum(err, 0.0))
