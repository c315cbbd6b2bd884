"""Minimum energy paths (CI-NEB + FIRE), transition states and disconnectivity graphs.

Reference surfaces (both from the path-finding literature):

- **Müller–Brown** (K. Müller & L. D. Brown, Theor. Chim. Acta 53, 75, 1979). Stationary points as
  tabulated there and in later work that uses it: minima A (-0.558, 1.442) V = -146.70,
  B (0.623, 0.028) -108.17, C (-0.050, 0.467) -80.77; saddles (-0.822, 0.624) -40.66 and
  (0.212, 0.293) -72.25. The path A → B crosses both saddles with C between them.
- **Wolfe–Quapp** (W. Quapp, M. Hirsch, O. Imig & D. Heidrich, J. Comput. Chem. 19, 1087,
  1998): ``V = x⁴ + y⁴ - 2x² - 4y² + xy + 0.3x + 0.1y``. The path (1.124, -1.485) →
  (-1.174, 1.477) crosses the saddles (-0.303, -1.401) and (-1.022, -0.116) with the minimum
  (-0.822, -1.367) between them (values found here by Newton's method on the closed form).

The references the tests compare with to 1e-3 are those points refined by Newton's method in
float64 (to machine precision), after checking that they round to the tabulated values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.analysis import landscape as L

_A = np.array([-200.0, -100.0, -170.0, 15.0])
_a = np.array([-1.0, -1.0, -6.5, 0.7])
_b = np.array([0.0, 0.0, 11.0, 0.6])
_c = np.array([-10.0, -10.0, -6.5, 0.7])
_X, _Y = np.array([1.0, 0.0, -0.5, -1.0]), np.array([0.0, 0.5, 1.5, 1.0])


def mueller_brown(p):
    x, y = p[0], p[1]
    return jnp.sum(_A * jnp.exp(_a * (x - _X) ** 2 + _b * (x - _X) * (y - _Y) + _c * (y - _Y) ** 2))


def wolfe_quapp(p):
    x, y = p[0], p[1]
    return x**4 + y**4 - 2 * x**2 - 4 * y**2 + x * y + 0.3 * x + 0.1 * y


def curved_well(p):
    """Minima (±1, 0); the valley floor y = 0.5 (1 - x²) crosses the saddle (0, 0.5), V = 1; the
    straight line between the minima crosses (0, 0) at V = 1.5."""
    return (p[0] ** 2 - 1) ** 2 + 2 * (p[1] - 0.5 * (1 - p[0] ** 2)) ** 2


# surface, end a, end b, [(saddle, tabulated value)], [(intermediate minimum, tabulated value)]
SURFACES = {
    "mueller_brown": (
        mueller_brown,
        (-0.558, 1.442),
        (0.623, 0.028),
        [((-0.822, 0.624), -40.66), ((0.212, 0.293), -72.25)],
        [((-0.050, 0.467), -80.77)],
    ),
    "wolfe_quapp": (
        wolfe_quapp,
        (1.124, -1.485),
        (-1.174, 1.477),
        [((-0.303, -1.401), -3.980), ((-1.022, -0.116), -1.251)],
        [((-0.822, -1.367), -4.137)],
    ),
}
BAND = dict(images=16, steps=20_000, spring=10.0, dt=1e-3, dt_max=3e-3, force_tol=1e-4)


def _newton(f, p):
    def step(_, p):
        return p - jnp.linalg.solve(jax.hessian(f)(p), jax.grad(f)(p))

    return np.asarray(
        jax.jit(lambda p: jax.lax.fori_loop(0, 50, step, p))(jnp.asarray(p, jnp.float64))
    )


@pytest.mark.parametrize("name", list(SURFACES))
def test_finds_every_saddle_and_the_minimum_between(name):
    f, a, b, saddles, minima = SURFACES[name]
    with jax.enable_x64(True):
        ends = [_newton(f, p) for p in (a, b)]
        path = L.minimum_energy_path(f, jnp.asarray(ends[0]), jnp.asarray(ends[1]), **BAND)
        assert path.converged
        for found, refs in ((path.transition_states, saddles), (path.minima, minima)):
            assert len(found) == len(refs)
            for (x, v), (ref, tab) in zip(found, refs):
                exact = _newton(f, ref)
                assert np.allclose(exact, ref, atol=1e-3)  # the tabulated point, refined
                assert float(f(exact)) == pytest.approx(tab, abs=0.01)
                assert np.linalg.norm(np.asarray(x) - exact) < 1e-3
                assert abs(v - float(f(exact))) < 1e-3
        ts = np.stack([np.asarray(x) for x, _ in path.transition_states])
        index, gnorm = L.saddle_index(f, ts)
        assert index.tolist() == [1, 1] and (gnorm < 1e-3).all()
        mins = np.stack([np.asarray(x) for x, _ in path.minima])
        assert L.saddle_index(f, mins)[0].tolist() == [0]
        # the straight-line barrier, reported beside them: at the points the path is checked at
        t = np.linspace(0, 1, L.BandConfig(images=16).points)[:, None]
        line = np.array([float(f(q)) for q in (1 - t) * ends[0] + t * ends[1]])
        assert path.linear_barrier == pytest.approx(line.max() - (line[0] + line[-1]) / 2, rel=1e-6)
        assert path.barrier < path.linear_barrier


def _tangent(x_KxD, e_K):  # one path in the layout of many (path axis last)
    return L.tangents(jnp.asarray(x_KxD).T[:, :, None], jnp.asarray(e_K)[:, None])[:, 0, 0]


def test_improved_tangent_points_uphill_and_blends_at_extrema():
    x = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    d_plus, d_minus = np.array([0.0, 1.0]), np.array([1.0, 0.0])
    up = _tangent(x, [0.0, 1.0, 2.0])
    down = _tangent(x, [2.0, 1.0, 0.0])
    assert np.allclose(up, d_plus) and np.allclose(down, d_minus)  # towards the higher side
    # at a maximum with V_{i+1} = 0.5 > V_{i-1} = 0: weights ΔV_max = 1 on τ+, ΔV_min = 0.5 on τ-
    peak = _tangent(x, [0.0, 1.0, 0.5])
    blend = 1.0 * d_plus + 0.5 * d_minus
    assert np.allclose(peak, blend / np.linalg.norm(blend))
    # equal losses: the bisector
    flat = _tangent(x, [1.0, 1.0, 1.0])
    assert np.allclose(flat, (d_plus + d_minus) / np.sqrt(2))


def test_climbing_image_reaches_the_saddle_that_the_plain_band_misses():
    with jax.enable_x64(True):
        a, b = jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0])
        kw = dict(images=8, steps=20_000, force_tol=1e-6, dt=0.01, dt_max=0.05)  # no image at x = 0
        ci = L.minimum_energy_path(curved_well, a, b, **kw)
        plain = L.minimum_energy_path(curved_well, a, b, climbing=False, **kw)
    assert ci.converged and plain.converged
    assert np.allclose(np.asarray(ci.saddle), [0.0, 0.5], atol=1e-4)
    assert ci.saddle_loss == pytest.approx(1.0, abs=1e-6)
    assert plain.saddle_loss < 1.0 - 1e-3  # its images straddle the saddle
    # the line is checked where the path is: 36 points, none at x = 0 (V = 1.5 there)
    t = np.linspace(0, 1, L.BandConfig(images=8).points)
    assert ci.linear_barrier == pytest.approx(max(curved_well((2 * t - 1, 0 * t))), abs=1e-9)
    assert 1.49 < ci.linear_barrier < 1.5


def test_a_path_on_the_valley_floor_stays_put():
    """The straight line between the minima of (x² - 1)² + 5y² is the MEP: the nudged forces
    vanish (a plain elastic band would slide its images down towards the minima)."""
    f = lambda p: (p[0] ** 2 - 1) ** 2 + 5 * p[1] ** 2  # noqa: E731
    with jax.enable_x64(True):
        a, b = jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0])
        path = L.minimum_energy_path(f, a, b, images=9, steps=2000)
    assert path.converged
    t = np.linspace(0, 1, 9)[:, None]
    assert np.allclose(path.images, (1 - t) * np.asarray(a) + t * np.asarray(b), atol=1e-12)
    assert path.barrier == pytest.approx(path.linear_barrier)


def test_converged_paths_are_frozen_by_their_mask():
    with jax.enable_x64(True):
        a = jnp.array([[-1.0, 0.0], [-1.0, 0.0]])
        b = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # the second path has zero length: done at once
        paths = L.minimum_energy_paths(curved_well, a, b, images=8, steps=5000, climb_start=50)
        short = L.minimum_energy_paths(curved_well, a, b, images=8, steps=60, climb_start=50)
    assert paths.converged.tolist() == [True, True]
    assert paths.steps[1] == 51 < paths.steps[0]  # climbs from step 50, frozen at the next
    assert np.allclose(paths.images[1], -1.0 * (np.arange(2) == 0) + 0.0)
    assert short.converged.tolist() == [False, True]  # the step budget ran out for the first
    with pytest.raises(ValueError, match="at least 3 images"):
        L.minimum_energy_path(curved_well, a[0], b[0], images=2)
    with pytest.raises(ValueError, match="'fire' or 'lbfgs'"):
        L.minimum_energy_path(curved_well, a[0], b[0], optimizer="adam")
    with pytest.raises(ValueError, match="unknown band settings \\['image'\\]"):
        L.minimum_energy_path(curved_well, a[0], b[0], image=8)
    with pytest.raises(ValueError, match="different shapes"):
        L.minimum_energy_path(curved_well, a[0], jnp.zeros(3))
    with pytest.raises(ValueError, match="different pytrees"):
        L.minimum_energy_paths(curved_well, {"w": a}, {"v": b})


def test_vmapped_paths_equal_one_at_a_time():
    f, *_ = SURFACES["mueller_brown"]
    with jax.enable_x64(True):
        ends = np.array([[-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467], [-0.7, 1.2]])
        a, b = ends[[0, 2, 3]], ends[[1, 1, 2]]
        kw = dict(BAND, steps=3000)
        many = L.minimum_energy_paths(f, jnp.asarray(a), jnp.asarray(b), chunk=2, **kw)
        for n in range(3):
            one = L.minimum_energy_path(f, jnp.asarray(a[n]), jnp.asarray(b[n]), **kw)
            got = many.path(n)
            assert got.steps == one.steps and got.converged == one.converged
            np.testing.assert_allclose(got.images, one.images, atol=1e-9)
            np.testing.assert_allclose(got.losses, one.losses, atol=1e-9)


def test_disconnectivity_merges_at_the_lowest_saddle():
    loss = np.array([0.0, 0.1, 0.2, 0.3])
    links = [(0, 1, 1.0), (1, 2, 0.5), (0, 2, 2.0), (2, 3, 3.0)]
    tree = L.disconnectivity(loss, links)
    assert tree.level.tolist() == [0.5, 1.0, 3.0]  # (0, 2) at 2.0 is redundant
    assert tree.members.tolist() == [[1, 2], [0, 1, 2], [0, 1, 2, 3]]
    assert tree.cluster.tolist() == [4, 5, 6] and tree.right.tolist()[1] == 4


@pytest.fixture(scope="module")
def small_sweep():
    import jaxinit
    from jaxinit.config.bundled import find_spec
    from jaxinit.config.spec import Spec

    spec = Spec.from_toml(find_spec("sinusoid_landscape"))
    small = {"axes.seed": 24, "train.steps": 2000, "landscape.max_nodes": 6, "landscape.k": 1}
    return jaxinit.run(spec.with_overrides(small), progress=False)


def test_graph_of_the_bundled_net(small_sweep):
    """Relaxed paths between the minima of the bundled net: never above the straight line (every
    edge, both checked at the same points), an MST that joins every minimum, and the
    disconnectivity figure; the settings come from the spec's [landscape] section."""
    from jaxinit.plots import FIGURES, TABLES

    g = L.graph(small_sweep)  # [landscape] max_nodes = 6, k = 1
    e = g.edges
    n = len(g.nodes)
    assert n >= 6 and (g.nodes.source[:6] == "basin").all()
    assert e.chosen_by.str.contains("mst").sum() == 5  # N - 1 edges of the spanning tree
    assert g.tree["size"].iloc[-1] == n and g.tree.level.is_monotonic_increasing
    ok = e[e.converged & e.resolved]
    assert len(ok) >= 3
    assert (e.relaxed_barrier <= e.linear_barrier).all() and (e.ratio <= 1).all()
    assert (ok.saddle_barrier <= ok.relaxed_barrier + 1e-6).all()
    assert (e.linear_barrier > 0).all()
    # every merge level is a saddle between minima: at least as high as both sides' minima
    loss = g.nodes.loss.to_numpy()
    assert all(r.level >= loss[r.members].max() - 1e-6 for r in g.tree.itertuples())
    fig = FIGURES["disconnectivity"](small_sweep)
    assert len(fig.axes) == 2 and fig.axes[0].lines
    assert set(TABLES["disconnectivity"](small_sweep).columns) >= {"linear_barrier", "ratio"}


def test_a_band_that_runs_off_stops_at_max_stretch():
    """The barrier of (x² - 1)² / (1 + (y - 0.1)²) vanishes as y grows: the band slides away for
    ever. It stops (escaped) once longer than max_stretch × the straight line, never converged,
    its last state still a path from a to b below the straight line's height."""
    f = lambda p: (p[0] ** 2 - 1) ** 2 / (1 + (p[1] - 0.1) ** 2)  # noqa: E731
    with jax.enable_x64(True):
        a, b = jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0])
        path = L.minimum_energy_path(f, a, b, images=9, steps=20_000, max_stretch=2.0)
        free = L.minimum_energy_path(f, a, b, images=9, steps=300, max_stretch=1e9)
    length = np.linalg.norm(np.diff(path.images, axis=0), axis=1).sum()
    assert path.escaped and not path.converged and path.steps < 20_000
    assert 2.0 * 2 * 0.9 < length <= 2.0 * 2
    assert path.path_max < max(path.linear_losses)
    assert np.allclose(path.images[[0, -1]], [[-1, 0], [1, 0]])
    assert not free.escaped and not free.converged


def test_the_pool_refills_and_shrinks_without_changing_a_path():
    """40 paths through a pool of 32: freed slots take the waiting pairs, then the pool shrinks to 8;
    every path is the one it would be alone (the steps it took, its images)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        a = np.stack([-np.ones(40), 0.3 * rng.standard_normal(40)], 1)
        b = np.stack([np.ones(40), 0.3 * rng.standard_normal(40)], 1)
        kw = dict(images=7, steps=3000, force_tol=1e-6, dt=0.01, dt_max=0.05, segment=25)
        many = L.minimum_energy_paths(curved_well, jnp.asarray(a), jnp.asarray(b), chunk=32, **kw)
        assert len(set(many.steps.tolist())) > 5  # paths finish at different times
        for n in (0, 33, 39):
            one = L.minimum_energy_path(curved_well, jnp.asarray(a[n]), jnp.asarray(b[n]), **kw)
            assert many.steps[n] == one.steps
            np.testing.assert_allclose(many.images[n], one.images, atol=1e-9)


def _ridge(p):
    """The barrier of the run-off surface vanishes as y falls, but a ridge near the ends at
    y = -1 lies across the way: an escaping band's images pass it, the chords from the fixed
    ends to them cross it."""
    x, y = p[0], p[1]
    ridge = 4.0 * jnp.exp(-((y + 1.0) ** 2) / 0.1) * jnp.exp(-((jnp.abs(x) - 1) ** 2) / 0.02)
    return (x**2 - 1) ** 2 / (1 + (y - 0.1) ** 2) + ridge


def test_a_band_that_runs_off_over_a_ridge_is_never_above_the_straight_line():
    """Before: the band ran off until it was 4× the straight line, and its last state (path_max
    2.82) was returned, above the straight line (0.99). Now the lowest band checked on the way
    is returned, evaluated at the same points as the straight line."""
    with jax.enable_x64(True):
        a, b = jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0])
        path = L.minimum_energy_path(_ridge, a, b, images=5, steps=20_000, max_stretch=4.0)
        line = max(path.linear_losses)
        assert path.escaped and L.SOURCES[path.source] == "lowest band"
        assert path.path_max < 0.5 * line and path.barrier <= path.linear_barrier
        # a real path from a to b, and path_max is its highest loss at BandConfig.points points
        x = np.asarray(path.images)
        assert np.allclose(x[[0, -1]], [[-1, 0], [1, 0]])
        w = np.linspace(0, 1, 6)[:-1, None]
        pts = np.concatenate([((1 - w) * x[i] + w * x[i + 1]) for i in range(4)] + [x[-1:]])
        assert len(pts) == L.BandConfig(images=5).points
        assert max(float(_ridge(q)) for q in pts) == pytest.approx(path.path_max, abs=1e-12)
        t = np.linspace(0, 1, len(pts))
        assert line == pytest.approx(
            max(float(_ridge(q)) for q in np.outer(1 - t, a) + np.outer(t, b))
        )


def test_images_climb_even_when_the_plain_band_settles_before_climb_start():
    """A band whose forces fall below force_tol before climb_start is not converged until its
    images have climbed: its highest image ends on the saddle."""
    with jax.enable_x64(True):
        a, b = jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0])
        kw = dict(images=8, steps=20_000, force_tol=1e-6, dt=0.01, dt_max=0.05, climb_start=3000)
        path = L.minimum_energy_path(curved_well, a, b, **kw)
    assert path.converged and path.steps > 3000
    assert path.saddle_loss == pytest.approx(1.0, abs=1e-6)


def test_the_lanes_loss_is_the_loss(small_sweep):
    """graph() relaxes the built-in model's paths with its every-point-at-once loss: the same
    values and gradients as loss_fn (graph's own test then runs the whole relaxation on it)."""
    from jaxinit.analysis import basins
    from jaxinit.engine.lanes import from_lanes, to_lanes

    g = basins.groups(small_sweep)[0]
    loss_fn, fast = g.loss_fn(), L.lanes_loss_of(g.model, g.task)
    params = jax.tree.map(lambda a: jnp.asarray(a[:5]), g.params_R)
    want = jax.vmap(jax.value_and_grad(loss_fn))(params)
    got = jax.grad(lambda p: jnp.sum(fast(p)))(to_lanes(params))
    np.testing.assert_allclose(fast(to_lanes(params)), want[0], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(from_lanes(got)), jax.tree.leaves(want[1])):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_landscape_settings_are_validated_and_leave_the_identity_alone():
    from jaxinit.config.spec import Spec, SpecError
    from jaxinit.engine.identity import spec_identity
    from jaxinit.engine.validation import validate

    base = {"task": {"name": "xor"}, "train": {"steps": 10}}
    plain = Spec.from_dict(base)
    assert "landscape" not in plain.to_dict()  # the stored spec of a sweep without it: unchanged
    tuned = Spec.from_dict({**base, "landscape": {"images": 8, "k": 3, "optimizer": "lbfgs"}})
    validate(tuned)
    assert spec_identity(tuned) == spec_identity(plain)
    assert Spec.from_json(tuned.to_json()).landscape == tuned.landscape
    assert L.band_config(tuned.landscape).images == 8
    for bad, needle in [({"images": 2}, "landscape.images must be an integer >= 3"),
                        ({"optimizer": "adam"}, "landscape.optimizer"),
                        ({"dt": 0.5, "dt_max": 0.1}, "landscape.dt"),
                        ({"max_stretch": 1.0}, "landscape.max_stretch"),
                        ({"force_tol": -1.0}, "landscape.force_tol must be > 0")]:  # fmt: skip
        with pytest.raises(SpecError, match=needle):
            validate(Spec.from_dict({**base, "landscape": bad}))
    with pytest.raises(SpecError, match="axis 'landscape.images' is not allowed"):
        validate(Spec.from_dict({**base, "axes": {"landscape.images": [8, 16]}}))


def test_bad_landscape_setting_exits_2(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "jaxinit", "run", "sinusoid_landscape", "--out", str(tmp_path / "o"),
         "--set", "landscape.images=2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "landscape.images" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
