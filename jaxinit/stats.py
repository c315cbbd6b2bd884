"""Small statistics shared by analysis and figures."""

from __future__ import annotations

import numpy as np


def wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of a binomial rate ``k / n`` (``n = 0`` counts as 1).

    >>> lo, hi = wilson(0, 200)
    >>> round(float(hi), 4)
    0.0188
    """
    k, n = np.asarray(k, float), np.maximum(np.asarray(n, float), 1)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half
