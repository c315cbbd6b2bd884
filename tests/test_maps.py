"""Box-counting dimension of a map's boundary, on boundaries of known dimension."""

import numpy as np
import pytest

from jaxinit.analysis.maps import boundary_dimension, box_counts

KOCH_DIMENSION = np.log(4) / np.log(3)  # 1.2619


def _koch_snowflake(level: int, size: int) -> np.ndarray:
    """Vertices (closed polygon, clockwise in image coordinates) of a Koch snowflake."""
    c, r = size / 2, 0.45 * size
    angles = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3
    pts = np.stack([c + r * np.cos(angles), c + r * np.sin(angles)], axis=1)
    rot = np.array([[0.5, -np.sqrt(3) / 2], [np.sqrt(3) / 2, 0.5]])  # +60 degrees
    for _ in range(level):
        p, q = pts, np.roll(pts, -1, axis=0)
        a, b = p + (q - p) / 3, p + 2 * (q - p) / 3
        peak = a + (b - a) @ rot.T
        pts = np.stack([p, a, peak, b], axis=1).reshape(-1, 2)
    return pts


def _fill(poly: np.ndarray, size: int) -> np.ndarray:
    """Even-odd rasterisation: a pixel is inside if its centre is."""
    p, q = poly, np.roll(poly, -1, axis=0)
    out = np.zeros((size, size), bool)
    centres = np.arange(size) + 0.5
    for row, y in enumerate(centres):
        hit = (p[:, 1] <= y) != (q[:, 1] <= y)
        t = (y - p[hit, 1]) / (q[hit, 1] - p[hit, 1])
        xs = np.sort(p[hit, 0] + t * (q[hit, 0] - p[hit, 0]))
        out[row] = np.searchsorted(xs, centres) % 2 == 1
    return out


def test_counts_by_hand():
    """One True pixel at (1, 1) of a 5x5 map: its four 2x2 neighbourhoods are boundary pixels
    (0..1, 0..1), which fill one box of 2 and sit in one of 4; a True pixel in the far corner
    adds one boundary pixel, at (3, 3): one more box of 2, the same box of 4."""
    m = np.zeros((5, 5), bool)
    m[1, 1] = True
    np.testing.assert_array_equal(box_counts(m, np.array([1, 2, 4])), [4, 1, 1])
    m[4, 4] = True
    np.testing.assert_array_equal(box_counts(m, np.array([1, 2, 4])), [5, 2, 1])


def test_a_boundary_along_box_edges_is_seen():
    """Rows 0-1 True, 2-3 False: the boundary lies between 2-boxes, not inside one."""
    m = np.zeros((9, 9), bool)
    m[:2] = True
    np.testing.assert_array_equal(box_counts(m, np.array([2, 4])), [4, 2])


def test_straight_line_is_one():
    i, j = np.mgrid[:512, :512]
    fit = boundary_dimension(i > 0.37 * j + 100)
    assert abs(fit.dimension - 1.0) < 0.05
    np.testing.assert_array_equal(fit.box_sizes, [2, 4, 8, 16, 32, 64])
    assert np.all(np.abs(fit.local_slopes - 1.0) < 0.1)


def test_koch_snowflake():
    size = 1024
    fit = boundary_dimension(_fill(_koch_snowflake(6, size), size), box_sizes=[2, 4, 8, 16, 32, 64])
    assert abs(fit.dimension - KOCH_DIMENSION) < 0.05, fit


def test_random_checkerboard_is_two():
    m = np.random.default_rng(1).random((256, 256)) < 0.5
    fit = boundary_dimension(m)
    assert abs(fit.dimension - 2.0) < 0.05


def test_no_boundary_has_no_dimension():
    fit = boundary_dimension(np.ones((64, 64), bool))
    assert np.isnan(fit.dimension)
    assert np.all(fit.counts == 0)


@pytest.mark.parametrize(
    ("arg", "sizes", "match"),
    [
        (np.ones((4, 4, 2), bool), None, "2-D map"),
        (np.ones((64, 64)), None, "bool array"),
        (np.ones((64, 64), bool), [4], "at least two sizes"),
        (np.ones((64, 64), bool), [0, 2], r"lie in \[1, 63\]"),
        (np.ones((64, 64), bool), [2, 64], r"lie in \[1, 63\]"),
        (np.ones((1, 64), bool), [2, 4], "at least 2 x 2"),
        (np.ones((64, 64), bool), [2.5, 4], "whole pixels"),
    ],
)
def test_bad_arguments_are_named(arg, sizes, match):
    with pytest.raises(ValueError, match=match):
        boundary_dimension(arg, box_sizes=sizes)


# ---- phases ------------------------------------------------------------------------------------


def test_phases_of_a_wide_linear_net_in_units_of_two_over_lambda0():
    """A wide two-layer linear net (MSE, 4 points) at η·λ₀ = 1, 3 and 12 (``learning_rate``
    0.5, 1.5, 6 in units of 2/λ₀): lazy, catapult (its loss rises hundreds of times, its
    sharpness falls below 2/η) and divergent (Lewkowycz et al. 2020: edges at 2 and about 4),
    for every seed; ``learning_rates`` is each run's absolute η."""
    import jaxinit
    from jaxinit.analysis.maps import learning_rates, phases

    ds = jaxinit.run(
        {
            "task": {
                "name": "teacher_student",
                "in_dim": 4,
                "n_train": 4,
                "teacher_widths": [4],
                "activation": "linear",
            },
            "model": {"widths": [128], "activation": "linear", "bias": False},
            "optimizer": {"lr_unit": "2/lambda0"},
            "train": {"steps": 100, "log_every": 1, "diagnostics": ["sharpness"]},
            "axes": {"seed": 2, "optimizer.learning_rate": [0.5, 1.5, 6.0]},
        },
        progress=False,
    )
    got = phases(ds)
    assert got.dims == ("seed", "optimizer_learning_rate")
    assert got.attrs["labels"] == "lazy catapult divergent"
    np.testing.assert_array_equal(got.values, [[0, 1, 2], [0, 1, 2]])
    eta_lambda0 = (learning_rates(ds) * ds.lambda0).values
    np.testing.assert_allclose(eta_lambda0, [[1.0, 3.0, 12.0]] * 2, rtol=1e-6)
    peak = (ds.loss.max("step") / ds.loss.isel(step=0)).values
    assert np.all(peak[:, 1] > 10)
    edge = (ds.sharpness.isel(step=-1) * learning_rates(ds)).values
    assert np.all(edge[:, 1] < 2)


def test_phases_without_sharpness_read_the_loss_and_books():
    """Without a logged sharpness the phase comes from the loss curve and the divergence books
    alone; a run not finished is -1."""
    import jaxinit
    from jaxinit.analysis.maps import NOT_DONE, phases

    ds = jaxinit.run(
        {
            "task": {"name": "teacher_student", "in_dim": 2, "n_train": 4},
            "model": {"widths": [4], "activation": "linear"},
            "train": {"steps": 40, "log_every": 1, "diagnostics": []},
            "axes": {"seed": 2, "optimizer.learning_rate": [0.01, 100.0]},
        },
        progress=False,
    )
    got = phases(ds)
    np.testing.assert_array_equal(got.values, [[0, 2], [0, 2]])
    assert bool(ds.diverged[:, 1].all())
    ds["done"][0, 0] = False
    assert int(phases(ds)[0, 0]) == NOT_DONE
