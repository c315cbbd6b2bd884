"""Rates and their intervals (jaxinit.analysis.stats): the bounds hold the rate exactly, so no error bar
is ever negative (issue 24: ``jaxinit run xor_minima --set axes.seed=128 --report`` crashed in
success_rate with "'yerr' must not contain negative values")."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxinit.analysis.stats import error_bars, rate_interval, wilson


def test_wilson_bounds_hold_the_rate_at_zero_and_one_for_every_n():
    """Before: wilson(n, n) had hi = 1 - 1.1e-16 for n = 6, 21, 31 … and wilson(0, n) had
    lo = 1e-17 for n = 11, 22 …, so ``hi - p`` or ``p - lo`` came out negative."""
    n = np.arange(1, 1001)
    for k in (np.zeros_like(n), n):
        lo, hi = wilson(k, n)
        p = k / n
        assert np.all(lo <= p) and np.all(p <= hi), "an interval that misses its own rate"
        assert np.all(error_bars(p, lo, hi) >= 0)
    assert np.all(wilson(n, n)[1] == 1.0) and np.all(wilson(0 * n, n)[0] == 0.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_rate_interval_is_ordered_and_in_unit_range(kn):
    k, n = kn
    p, lo, hi = rate_interval(k, n)
    assert 0.0 <= lo <= p <= hi <= 1.0
    assert p == (k / n if n else 0.0)
    np.testing.assert_array_equal(error_bars(p, lo, hi) >= 0, True)


def test_rate_interval_known_values_and_arrays():
    p, lo, hi = rate_interval(np.array([5, 0, 10]), np.array([10, 10, 10]))
    np.testing.assert_allclose(p, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(lo, [0.2366, 0.0, 0.7225], atol=1e-4)
    np.testing.assert_allclose(hi, [0.7634, 0.2775, 1.0], atol=1e-4)
    assert rate_interval(0, 0)[0] == 0.0  # no runs: rate 0, the n = 1 interval


def test_error_bars_clip_foreign_intervals_and_nan():
    """An interval computed elsewhere (float32 rate vs float64 bounds) a hair off its rate."""
    p = np.float32(1.0) - np.float32(1e-7)
    err = error_bars([p, np.nan, 0.5], [0.9, 0.1, 0.25], [1.0 - 1e-12, np.nan, 0.75])
    assert err.shape == (2, 3) and np.all(err >= 0)
    assert err[1, 1] == 0.0 and err[0, 1] == 0.0
    assert err[:, 2].tolist() == [0.25, 0.25]
    with pytest.raises(ValueError):  # what matplotlib says to the raw subtraction
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        try:
            ax.errorbar([0], [1.0], yerr=[[0.0], [(1.0 - 1e-16) - 1.0]])
        finally:
            plt.close(fig)
