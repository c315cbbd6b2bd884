"""Sharpness: top Hessian / NTK eigenvalues against exact spectra, vmapped, warm-started; phases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.blocks.sharpness import (
    CATAPULT,
    DIVERGENT,
    LAZY,
    ntk_top_eigenvalue,
    phase,
    random_direction,
    top_eigenpair,
    top_hessian_eigenvalue,
)


def _quadratic(eigs, seed=0):
    """``(loss, H)``: ``loss(p) = ½ pᵀHp`` with ``H = Q diag(eigs) Qᵀ`` for a random rotation Q."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs), len(eigs))))
    h = (q * np.asarray(eigs)) @ q.T
    hj = jnp.asarray(h, jnp.float32)
    return (lambda p: 0.5 * p @ hj @ p), h


def _mlp_apply(p, x):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    h = jnp.tanh(h @ p["w2"] + p["b2"])
    return h @ p["w3"]


def _mlp(key, d=3, w=6, out=1):
    k = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k[0], (d, w)) / np.sqrt(d),
        "b1": jnp.full((w,), 0.1),
        "w2": jax.random.normal(k[1], (w, w)) / np.sqrt(w),
        "b2": jnp.zeros(w),
        "w3": jax.random.normal(k[2], (w, out)) / np.sqrt(w),
    }


def _mlp_loss(n=16, d=3, out=1):
    x = jax.random.normal(jax.random.key(7), (n, d))
    y = jnp.sin(3 * x[:, :out])
    return lambda p: 0.5 * jnp.mean(jnp.sum((_mlp_apply(p, x) - y) ** 2, -1)), x


LOSS, _ = None, None  # set below, once: one loss function object, so jit caches hit


def _exact_top_fn(loss):
    def top(params):
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        return jnp.linalg.eigvalsh(jax.hessian(lambda t: loss(unravel(t)))(flat))[-1]

    return jax.jit(top)


def _exact_top(loss, params):
    """Top Hessian eigenvalue from the full Hessian (float64)."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        return float(_EXACT(p64)) if loss is LOSS else float(_exact_top_fn(loss)(p64))


LOSS, _X = _mlp_loss()
_EXACT = _exact_top_fn(LOSS)
_TOP = jax.jit(top_hessian_eigenvalue, static_argnames=("loss_fn", "iters", "tol", "method"))


def _top(params, v0, iters=40, tol=1e-4):
    return _TOP(LOSS, params, v0, iters=iters, tol=tol)


def test_quadratic_top_eigenvalue_is_the_largest_algebraic_one():
    """A dominant negative eigenvalue (-10) does not hide the top one (3): Lanczos finds 3 to
    1e-4; power iteration, as documented, finds the dominant -10."""
    eigs = np.concatenate([[-10.0, 3.0, 2.9], np.linspace(-2, 2.5, 27)])
    loss, h = _quadratic(eigs)
    v0 = jnp.ones(len(eigs))
    top = _TOP(loss, jnp.zeros(len(eigs)), v0, iters=30, tol=1e-5)
    assert abs(float(top.value) - 3.0) / 3.0 < 1e-4
    assert float(top.residual) < 1e-4
    vec = np.asarray(top.vector, np.float64)
    assert np.linalg.norm(h @ vec - 3.0 * vec) < 1e-3  # it is the eigenvector too
    power = _TOP(loss, jnp.zeros(len(eigs)), v0, iters=300, tol=1e-5, method="power")
    assert abs(float(power.value) + 10.0) < 1e-3


def test_close_top_eigenvalues_favour_lanczos():
    """Power iteration converges like (λ₂/λ₁)^k: with λ₂/λ₁ = 0.95 it needs ~4x the products
    Lanczos needs for a 1e-4 residual (16 against 62; the case of the edge of stability)."""
    eigs = np.concatenate([[1.0, 0.95], np.linspace(0.0, 0.9, 58)])
    loss, _ = _quadratic(eigs, seed=1)
    v0 = jnp.ones(len(eigs))
    lz = _TOP(loss, jnp.zeros(len(eigs)), v0, iters=60, tol=1e-4)
    pw = _TOP(loss, jnp.zeros(len(eigs)), v0, iters=1000, tol=1e-4, method="power")
    assert float(lz.residual) < 1e-4 and float(pw.residual) < 1e-4
    np.testing.assert_allclose([lz.value, pw.value], 1.0, rtol=1e-5)
    assert 3 * int(lz.steps) < int(pw.steps)


@pytest.mark.parametrize("seed", [0, 3])
def test_small_mlp_matches_the_full_hessian(seed):
    """Measured here too: Lanczos needs fewer products than power iteration to a 1e-4 residual
    on every seed (6-9 against 8-23 on this 72-parameter tanh MLP)."""
    params = _mlp(jax.random.key(seed))
    exact = _exact_top(LOSS, params)
    v0 = random_direction(jax.random.key(1), params)
    top = _top(params, v0)
    assert abs(float(top.value) - exact) / abs(exact) < 1e-4
    assert float(top.residual) < 1e-4
    power = _TOP(LOSS, params, v0, iters=40, tol=1e-4, method="power")
    assert abs(float(power.value) - exact) / abs(exact) < 1e-4
    assert float(power.residual) < 1e-4
    assert int(top.steps) < int(power.steps)


def test_float64_is_tighter():
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _mlp(jax.random.key(0)))
        exact = _exact_top(LOSS, params)
        v0 = random_direction(jax.random.key(1), params)
        top = _TOP(LOSS, params, v0, iters=40, tol=1e-9)
        assert top.value.dtype == jnp.float64
        assert abs(float(top.value) - exact) / abs(exact) < 1e-9


def test_vmapped_equals_one_at_a_time():
    """Runs that stop at different steps inside one vmapped while_loop keep their own answer."""
    keys = jax.random.split(jax.random.key(3), 4)
    params_R = jax.jit(jax.vmap(_mlp))(keys)
    v0_R = jax.jit(jax.vmap(random_direction))(jax.random.split(jax.random.key(4), 4), params_R)
    batched = jax.jit(
        jax.vmap(lambda p, v: top_hessian_eigenvalue(LOSS, p, v, iters=40, tol=1e-4))
    )(params_R, v0_R)
    steps = []
    for r in range(4):
        single = _top(*jax.tree.map(lambda a, r=r: a[r], (params_R, v0_R)))
        np.testing.assert_allclose(batched.value[r], single.value, rtol=1e-5)
        np.testing.assert_allclose(batched.residual[r], single.residual, rtol=1e-2, atol=1e-7)
        assert int(batched.steps[r]) == int(single.steps)
        steps.append(int(single.steps))
    assert len(set(steps)) > 1, "the runs should stop at different steps for this test to bite"


def test_warm_start_needs_fewer_products():
    """After one small gradient step, the previous eigenvector restarts the solver near the
    answer: fewer products than a random start, same value."""
    params = _mlp(jax.random.key(0))
    first = _top(params, random_direction(jax.random.key(1), params))
    moved = jax.tree.map(lambda p, g: p - 0.01 * g, params, jax.grad(LOSS)(params))
    cold = _top(moved, random_direction(jax.random.key(2), moved))
    warm = _top(moved, first.vector)
    assert float(cold.residual) < 1e-4 and float(warm.residual) < 1e-4
    assert int(warm.steps) < int(cold.steps)
    np.testing.assert_allclose(warm.value, cold.value, rtol=1e-4)


def test_too_few_iterations_show_in_the_residual():
    params = _mlp(jax.random.key(0))
    exact = _exact_top(LOSS, params)
    short = _top(params, random_direction(jax.random.key(1), params), iters=2)
    assert int(short.steps) == 2
    assert float(short.residual) > 1e-2
    assert float(short.value) < exact  # a Ritz value is a lower bound on the top eigenvalue


def test_uv_model_ntk_is_known():
    """f(x) = v·u x / √n has JᵀJ = [v; u][v; u]ᵀ x² / n: λ₀ = (|u|² + |v|²) x² / n."""
    n = 64
    k1, k2 = jax.random.split(jax.random.key(0))
    p = {"u": jax.random.normal(k1, (n,)), "v": jax.random.normal(k2, (n,))}
    x = jnp.array([1.5])
    apply = lambda p, x: (p["v"] @ p["u"]) * x / jnp.sqrt(n)  # noqa: E731
    lam0 = jax.jit(lambda p: ntk_top_eigenvalue(apply, p, x))(p)
    assert int(lam0.steps) == 1  # rank one: the default start is the eigenvector
    expected = (p["u"] @ p["u"] + p["v"] @ p["v"]) * 1.5**2 / n
    np.testing.assert_allclose(lam0.value, expected, rtol=1e-5)


def test_ntk_matches_the_explicit_kernel():
    """Several examples and outputs: λ₀ is the top eigenvalue of JJᵀ / N (N examples)."""
    x = jax.random.normal(jax.random.key(5), (10, 3))
    params = _mlp(jax.random.key(6), out=2)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jit(jax.jacobian(lambda t: _mlp_apply(unravel(t), x).ravel()))(flat)
    jac = np.asarray(jac, np.float64)
    expected = np.linalg.eigvalsh(jac @ jac.T / 10)[-1]
    got = jax.jit(lambda p: ntk_top_eigenvalue(_mlp_apply, p, x, iters=60))(params)
    assert abs(float(got.value) - expected) / expected < 1e-4
    assert float(got.residual) < 1e-3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown eigen method 'arnoldi'"):
        top_eigenpair(lambda v: v, jnp.ones(3), method="arnoldi")
    with pytest.raises(ValueError, match="iters must be at least 1"):
        top_eigenpair(lambda v: v, jnp.ones(3), iters=0)


def test_phase_of_hand_made_curves():
    one = jnp.array([1.0])
    assert int(phase(jnp.array([1.0, 0.4, 0.01]), one, 1.0, False)) == LAZY
    assert int(phase(jnp.array([1.0, 50.0, 0.01]), one, 1.0, False)) == CATAPULT
    assert int(phase(jnp.array([1.0, 50.0, 0.01]), one, 1.0, True)) == DIVERGENT  # the flag
    assert int(phase(jnp.array([1.0, 50.0, jnp.inf]), one, 1.0, False)) == DIVERGENT
    assert int(phase(jnp.array([1.0, 50.0, 2.0]), one, 1.0, False)) == DIVERGENT  # not back
    # back below its initial loss, but still beyond the edge 2/η: not settled
    assert int(phase(jnp.array([1.0, 50.0, 0.5]), jnp.array([3.0]), 1.0, False)) == DIVERGENT
    # just above the edge (edge of stability) still counts as converged
    assert int(phase(jnp.array([1.0, 50.0, 0.5]), jnp.array([2.1]), 1.0, False)) == CATAPULT
    # sharpness not measured (NaN): the edge test is skipped
    assert int(phase(jnp.array([1.0, 50.0, 0.5]), jnp.array([jnp.nan]), 1.0, False)) == CATAPULT
    # no rise in the loss, but the sharpness fell through the edge 2/η: a catapult
    fell = jnp.array([2.5, 1.5])
    assert int(phase(jnp.array([1.0, 0.8, 0.01]), fell, 1.0, False)) == CATAPULT
    assert int(phase(jnp.array([1.0, 0.8, 0.01]), jnp.array([1.9, 1.5]), 1.0, False)) == LAZY
    # a constant loss (η = 0) is lazy, not "failed to come back"
    assert int(phase(jnp.array([1.0, 1.0, 1.0]), one, 0.0, False)) == LAZY


def test_phase_vmaps():
    loss_RxT = jnp.array([[1.0, 0.4, 0.01], [1.0, 50.0, 0.01], [1.0, 50.0, 0.5], [1.0, 9.0, 3.0]])
    sharp_RxS = jnp.array([[1.0], [1.0], [3.0], [1.0]])
    lr_R, flag_R = jnp.array([1.0, 1.0, 1.0, 0.5]), jnp.array([False, False, False, False])
    got = jax.vmap(phase)(loss_RxT, sharp_RxS, lr_R, flag_R)
    np.testing.assert_array_equal(got, [LAZY, CATAPULT, DIVERGENT, DIVERGENT])


def test_phases_of_the_uv_model():
    """Gradient descent on f = v·u x/√n, one point (x=1, y=0): lazy below η·λ₀ = 2, catapult
    between 2 and 4, divergent above 4 (Lewkowycz et al. 2020), classified from the runs alone."""
    n, seeds = 256, 4
    apply = lambda p, x: (p["v"] @ p["u"]) * x / jnp.sqrt(n)  # noqa: E731
    x = jnp.ones(1)
    loss = lambda p: 0.5 * jnp.sum(apply(p, x) ** 2)  # noqa: E731
    keys = jax.random.split(jax.random.key(0), seeds)
    params = jax.vmap(lambda k: dict(zip("uv", jax.random.normal(k, (2, n)))))(keys)
    c = jnp.array([1.0, 3.0, 6.0])

    def run(p, lr):
        def step(carry, _):
            p, bad = carry
            value, g = jax.value_and_grad(loss)(p)
            bad = bad | ~(value < 1e8)
            return (jax.tree.map(lambda a, b: jnp.where(bad, a, a - lr * b), p, g), bad), value

        (p, bad), loss_T = jax.lax.scan(step, (p, jnp.bool_(False)), None, 300)
        sharp = top_hessian_eigenvalue(loss, p, random_direction(jax.random.key(1), p), iters=8)
        return phase(loss_T, sharp.value[None], lr, bad)

    def seed(p):
        return jax.vmap(run, (None, 0))(p, c / ntk_top_eigenvalue(apply, p, x).value)

    got = jax.jit(jax.vmap(seed))(params)
    assert np.all(np.asarray(got) == np.array([LAZY, CATAPULT, DIVERGENT])[None, :])


# ---- the `sharpness` diagnostic in the engine (jaxinit.blocks.metrics) --------------------------


def _engine_runs(model, layouts=("vmap", "lanes"), seeds=3, **train):
    """``(spec, task, {layout: outputs})`` of ``seeds`` runs of a tiny XOR net with the
    ``sharpness`` diagnostic, trained 20 steps from the same ``params0`` in each layout."""
    spec = {
        "task": {"name": "xor"},
        "model": model,
        "optimizer": {"learning_rate": 0.5},
        "train": {"steps": 20, "log_every": 10, "diagnostics": ["sharpness"], **train},
        "store": {"save_params": True},
    }
    return _chunk(spec, layouts, seeds)


def _chunk(spec, layouts=("vmap", "lanes"), seeds=3):
    """``(spec, task, {layout: outputs})``: one chunk of ``seeds`` runs of ``spec`` (a dict)
    trained by the engine's compiled program of each layout from the same ``params0``."""
    import jaxinit
    from jaxinit.engine.executors import build_task, chunk_init, chunk_train
    from jaxinit.engine.train import Data

    spec = jaxinit.resolve_spec(spec)
    task = build_task(spec)
    data = Data.from_task(task)
    values = {"seed": jnp.arange(seeds, dtype=jnp.int32)}
    params0 = chunk_init(spec, task, None)(values, data)
    out = {
        layout: jax.device_get(chunk_train(layout, spec, task, None)(values, params0, data))
        for layout in layouts
    }
    return spec, task, out


def _exact_run_tops(spec, task, params_R, trainable_only=False):
    """Top eigenvalue of each run's full-batch loss Hessian from ``jax.hessian`` (float64,
    vmapped over runs) and ``numpy.linalg.eigh`` (over the trainable leaves only, with
    ``trainable_only``: all but the output layer's)."""
    from jaxinit.blocks.models import from_spec
    from jaxinit.blocks.tasks import loss_value

    mdl = from_spec(spec.model, task.in_dim, task.out_dim)
    with jax.enable_x64(True):
        x, y = jnp.asarray(task.x_train, jnp.float64), jnp.asarray(task.y_train, jnp.float64)

        def hessian(p):
            leaves, treedef = jax.tree.flatten(p)
            keep = list(range(len(leaves)))[: -2 if trainable_only else None]
            flat, unravel = jax.flatten_util.ravel_pytree([leaves[i] for i in keep])

            def loss(t):
                full = list(leaves)
                for i, leaf in zip(keep, unravel(t)):
                    full[i] = leaf
                return loss_value(task.loss, mdl.apply(treedef.unflatten(full), x), y)

            return jax.hessian(loss)(flat)

        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params_R)
        h_R = np.asarray(jax.jit(jax.vmap(hessian))(p64))
    return np.array([np.linalg.eigh(h)[0][-1] for h in h_R])


def test_sharpness_diagnostic_matches_the_full_hessian_in_both_layouts():
    """The logged `sharpness` at the final point equals the top eigenvalue of the full-batch
    loss Hessian (``jax.hessian`` + ``eigh``, float64) at the saved final parameters within
    1e-4 relative, its residual is below the tolerance it stopped at, and the lanes layout
    agrees with the vmap layout within the README's float32 tolerance (5e-5)."""
    spec, task, out = _engine_runs({"widths": [3]})
    sharp = out["vmap"]["curves"]["sharpness"]
    resid = out["vmap"]["curves"]["sharpness_residual"]
    assert sharp.shape == resid.shape == (3, 3)
    want = _exact_run_tops(spec, task, out["vmap"]["params"])
    np.testing.assert_allclose(sharp[:, -1], want, rtol=1e-4)
    assert np.all(resid <= 2 * spec.train.sharpness_tol), resid
    lanes = out["lanes"]["curves"]
    np.testing.assert_allclose(lanes["sharpness"], sharp, rtol=5e-5)
    # a converged residual (~1e-5) is a difference at the rounding level of ‖Hv‖: the two
    # layouts' agree to that level (seen: 3e-8), not relative to their own size
    np.testing.assert_allclose(lanes["sharpness_residual"], resid, rtol=0, atol=1e-6)


@pytest.mark.parametrize("iters", [1, 20])
def test_the_first_logged_estimate_is_converged_at_init(iters):
    """The estimate at step 0 is converged at the initial parameters whatever
    ``sharpness_iters``: at 20 (the default) it is the cold estimate itself (no separate
    warm-up solver in the program), at 1 it starts from the warm-up's 20-product cold estimate
    at the same parameters. Both equal the full Hessian's top eigenvalue at ``params0``."""
    spec, task, out = _engine_runs({"widths": [3]}, ("vmap",), sharpness_iters=iters)
    curves = out["vmap"]["curves"]
    want = _exact_run_tops(spec, task, out["vmap"]["params0"])
    np.testing.assert_allclose(curves["sharpness"][:, 0], want, rtol=1e-4)
    assert np.all(curves["sharpness_residual"][:, 0] <= 2 * spec.train.sharpness_tol)


def test_sharpness_is_over_the_trainable_parameters():
    """With the output layer frozen (``model.train_output = false``) the sharpness is that of
    the Hessian over the parameters training moves, not over all of them."""
    spec, task, out = _engine_runs({"widths": [3], "train_output": False}, ("vmap",), seeds=2)
    got = out["vmap"]["curves"]["sharpness"][:, -1]
    want = _exact_run_tops(spec, task, out["vmap"]["params"], trainable_only=True)
    every = _exact_run_tops(spec, task, out["vmap"]["params"])
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert np.all(np.abs(every - want) > 1e-2 * np.abs(want))  # the test can tell them apart


def test_too_few_sharpness_iterations_show_in_the_logged_residual():
    """``train.sharpness_iters`` reaches the solver: one product per logged step (a power step
    from the last vector) leaves a residual above the tolerance once training moves the
    eigenvector, where 20 converge; the values agree to far better than the residual."""
    _, _, few = _engine_runs({"widths": [3]}, ("vmap",), sharpness_iters=1)
    _, _, full = _engine_runs({"widths": [3]}, ("vmap",))
    few, full = few["vmap"]["curves"], full["vmap"]["curves"]
    assert np.all(few["sharpness_residual"][:, 1:] > 1e-3)
    assert np.all(full["sharpness_residual"] <= 1e-4)
    # a Rayleigh quotient never exceeds the top eigenvalue: one product is a lower bound, here
    # visibly below it (the eigenvector turns within 10 steps at η = 0.5)
    assert np.all(few["sharpness"] <= full["sharpness"] * (1 + 1e-5))
    assert np.max(1 - few["sharpness"] / full["sharpness"]) > 1e-2


def test_sharpness_through_jaxinit_run_has_both_curves_with_attrs():
    import jaxinit

    ds = jaxinit.run(
        {
            "task": {"name": "xor"},
            "model": {"widths": [2]},
            "train": {"steps": 10, "log_every": 5, "diagnostics": ["sharpness"]},
            "axes": {"seed": 2},
        },
        progress=False,
    )
    for name in ("sharpness", "sharpness_residual"):
        assert ds[name].dims == ("seed", "step") and ds[name].shape == (2, 3)
        assert np.all(np.isfinite(ds[name].values))
        assert set(ds[name].attrs) == {"long_name", "units", "description"}
    assert "Hessian" in ds.sharpness.attrs["description"]
    assert "sharpness_tol" in ds.sharpness_residual.attrs["description"]
    assert np.all(ds.sharpness.values > 0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sharpness_iters", 0, "train.sharpness_iters must be an integer >= 1"),
        ("sharpness_iters", 2.5, "train.sharpness_iters"),
        ("sharpness_tol", -1e-3, "train.sharpness_tol must be >= 0"),
        ("sharpness_every", 0, "train.sharpness_every must be an integer >= 1"),
        ("sharpness_every", 2.5, "train.sharpness_every"),
        ("sharpness_every", True, "train.sharpness_every"),
    ],
)
def test_bad_sharpness_settings_are_refused(field, value, message):
    from jaxinit.config.spec import SpecError
    from jaxinit.engine.validation import resolve_spec

    with pytest.raises(SpecError, match=message):
        resolve_spec({"train": {"diagnostics": ["sharpness"], field: value}})


def test_sharpness_settings_are_in_the_identity_only_with_the_diagnostic():
    """Directories begun before the settings existed keep their identity; with the diagnostic
    on, changing the iteration count changes the numbers, so the identity too."""
    from jaxinit.config.spec import Spec
    from jaxinit.engine.identity import spec_identity

    plain = spec_identity(Spec.from_dict({}))
    assert not any("sharpness" in k for k in plain)
    assert spec_identity(Spec.from_dict({"train": {"sharpness_iters": 5}})) == plain
    on = {"train": {"diagnostics": ["sharpness"]}}
    a = spec_identity(Spec.from_dict(on))
    b = spec_identity(Spec.from_dict({"train": {**on["train"], "sharpness_iters": 5}}))
    assert a["train.sharpness_iters"] == 20 and b["train.sharpness_iters"] == 5
    # sharpness_every came later: at its default (1) sharpness directories keep their identity
    assert "train.sharpness_every" not in a
    c = spec_identity(Spec.from_dict({"train": {**on["train"], "sharpness_every": 3}}))
    assert (
        c["train.sharpness_every"] == 3
        and {k: v for k, v in c.items() if k != "train.sharpness_every"} == a
    )


@pytest.mark.parametrize("layout", ["vmap", "lanes"])
def test_sharpness_every_measures_every_kth_logged_step_and_the_last(layout):
    """``train.sharpness_every = 3`` over 7 logged steps (and the final one): the sharpness is
    measured at logged steps 0, 3, 6 and the final one, NaN at the others, and the measured
    values are those of measuring at every logged step (the warm start then comes from 3
    logged steps back, so they agree to the solver's tolerance, not bitwise); the training is
    unchanged, and the figure draws the measured points."""
    import jaxinit
    from jaxinit.plots.sharpness_figures import sharpness_curves, sharpness_table

    def spec(every):
        return {
            "task": {"name": "xor"},
            "model": {"name": "mlp", "widths": [3], "activation": "tanh"},
            "optimizer": {"learning_rate": 0.5},
            "train": {
                "steps": 70, "log_every": 10, "diagnostics": ["sharpness"],
                "sharpness_every": every, "layout": layout,
            },
            "axes": {"seed": 3},
        }  # fmt: skip

    every, sparse = (jaxinit.run(spec(k), progress=False) for k in (1, 3))
    measured = np.isfinite(sparse.sharpness.values)
    assert measured.shape == (3, 8)
    assert np.all(measured == np.isin(np.arange(8), [0, 3, 6, 7])[None, :])
    assert np.all(np.isfinite(sparse.sharpness_residual.values) == measured)
    np.testing.assert_allclose(
        sparse.sharpness.values[measured], every.sharpness.values[measured], rtol=1e-4
    )
    assert np.all(sparse.sharpness_residual.values[measured] <= 1e-4)
    # the same training, and the same logged loss: the block's first step's (tests/test_train.py)
    np.testing.assert_array_equal(sparse.loss.values, every.loss.values)
    fig = sharpness_curves(sparse)
    line = fig.axes[0].get_lines()[0]  # the median curve (the 2/η line comes after it)
    np.testing.assert_array_equal(line.get_xdata(), sparse.step.values[[0, 3, 6, 7]])
    assert np.all(np.isfinite(line.get_ydata()))
    assert sharpness_table(sparse).runs.iloc[0] == 3


def test_edge_of_stability_smoke():
    """Full-batch GD on a small tanh MLP with MSE (sinusoid, 32 points, 16-16 units): the
    logged sharpness rises from well below ``2/η`` to it (progressive sharpening) and then
    hovers there, at two learning rates (Cohen et al. 2021). Measured (4 seeds, 2000 steps):
    the median of ``η·λ/2`` after it first reaches 1 is 0.95-1.14 at η = 0.2, 1.01-1.02 at
    η = 0.1, 0.99-1.02 at η = 0.05."""
    import jaxinit

    lrs = (0.1, 0.2)
    ds = jaxinit.run(
        {
            "task": {"name": "sinusoid", "n_points": 32, "frequency": 3.0},
            "model": {"widths": [16, 16], "activation": "tanh"},
            "train": {"steps": 1000, "log_every": 20, "diagnostics": ["sharpness"]},
            "axes": {"seed": 2, "optimizer.learning_rate": list(lrs)},
        },
        progress=False,
    )
    assert not ds.diverged.any()
    assert float(ds.sharpness_residual.max()) <= 2e-4
    edge = ds.sharpness.values * np.asarray(lrs)[None, :, None] / 2  # η·λ/2: 1 at the edge
    assert edge[0, 0, 0] < 0.5 and edge[1, 0, 0] < 0.6  # η = 0.1 starts well below the edge
    for r in range(2):
        for i in range(len(lrs)):
            reached = np.flatnonzero(edge[r, i] >= 1.0)
            assert reached.size, (r, lrs[i], edge[r, i])
            assert 0.9 <= np.median(edge[r, i, reached[0] :]) <= 1.2, (r, lrs[i], edge[r, i])


# ---- λ₀ and learning rates in units of 2/λ₀ ---------------------------------------------------


def test_lambda0_is_the_top_hessian_eigenvalue_at_init_in_both_layouts():
    """``train.lambda0`` records each run's top Hessian eigenvalue at its initial parameters
    (bce: the Hessian, not the Gauss–Newton matrix), equal to ``jax.hessian`` + ``eigh`` within
    1e-4 relative, the same in both layouts."""
    spec, task, out = _engine_runs({"widths": [3]}, lambda0=True, diagnostics=[])
    want = _exact_run_tops(spec, task, out["vmap"]["params0"])
    np.testing.assert_allclose(out["vmap"]["final"]["lambda0"], want, rtol=1e-4)
    np.testing.assert_allclose(out["lanes"]["final"]["lambda0"], want, rtol=1e-4)


def _mse_spec(**optimizer):
    return {
        "task": {"name": "teacher_student", "in_dim": 3, "n_train": 8, "activation": "tanh"},
        "model": {"widths": [16], "activation": "tanh"},
        "optimizer": optimizer,
        "train": {"steps": 20, "log_every": 10, "diagnostics": [], "lambda0": True},
        "store": {"save_params": True},
        "axes": {"seed": 3},
    }


def test_lambda0_for_mse_is_the_gauss_newton_top_eigenvalue():
    """For the MSE loss λ₀ is the top eigenvalue of ``JᵀJ / N`` (the empirical NTK over N),
    checked against the explicit Jacobian (float64) in both layouts; it differs from the
    Hessian's (the residual term), so the test can tell them apart."""
    from jaxinit.blocks.models import from_spec

    spec, task, out = _chunk(_mse_spec(learning_rate=0.1))
    mdl = from_spec(spec.model, task.in_dim, task.out_dim)
    with jax.enable_x64(True):
        x = jnp.asarray(task.x_train, jnp.float64)

        def gauss_newton(p):
            flat, unravel = jax.flatten_util.ravel_pytree(p)
            jac = jax.jacobian(lambda t: mdl.apply(unravel(t), x).ravel())(flat)
            return jac.T @ jac / x.shape[0]

        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), out["vmap"]["params0"])
        want = np.linalg.eigvalsh(np.asarray(jax.vmap(gauss_newton)(p64)))[:, -1]
    for layout in ("vmap", "lanes"):
        np.testing.assert_allclose(out[layout]["final"]["lambda0"], want, rtol=1e-4)
    hessian = _exact_run_tops(spec, task, out["vmap"]["params0"])
    assert np.all(np.abs(hessian - want) > 1e-3 * want)


def test_lr_unit_steps_at_learning_rate_times_two_over_lambda0():
    """``optimizer.lr_unit = "2/lambda0"``: a run with ``learning_rate = c`` trains exactly
    as the same run with the absolute rate ``c·2/λ₀`` of its own λ₀, in both layouts."""
    import jaxinit
    from jaxinit.engine.executors import build_task, chunk_init, chunk_train
    from jaxinit.engine.train import Data

    unit_spec, task, unit = _chunk(_mse_spec(learning_rate=0.7, lr_unit="2/lambda0"))
    eta = 0.7 * 2 / unit["vmap"]["final"]["lambda0"]
    assert len(set(np.round(eta, 6))) == 3  # the seeds really step at different rates
    spec = jaxinit.resolve_spec(_mse_spec(learning_rate=0.1))
    data = Data.from_task(build_task(spec))
    values = {"seed": jnp.arange(3, dtype=jnp.int32)}
    params0 = chunk_init(spec, task, None)(values, data)
    values["optimizer.learning_rate"] = jnp.asarray(eta, jnp.float32)  # traced, per run
    absolute = jax.device_get(chunk_train("vmap", spec, task, None)(values, params0, data))
    for layout in ("vmap", "lanes"):
        np.testing.assert_allclose(
            unit[layout]["curves"]["loss"], absolute["curves"]["loss"], rtol=1e-5
        )


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"lr_unit": "1/lambda0"}, "optimizer.lr_unit = '1/lambda0' is not known"),
        ({"name": "adam", "lr_unit": "2/lambda0"}, "optimizer 'adam' is adaptive"),
    ],
)
def test_bad_lr_units_are_refused(optimizer, message):
    from jaxinit.config.spec import SpecError
    from jaxinit.engine.validation import resolve_spec

    with pytest.raises(SpecError, match=message):
        resolve_spec({"optimizer": optimizer})


def test_lambda0_and_lr_unit_are_in_the_identity_only_when_set():
    from jaxinit.config.spec import Spec
    from jaxinit.engine.identity import spec_identity

    plain = spec_identity(Spec.from_dict({}))
    assert "optimizer.lr_unit" not in plain and "train.lambda0" not in plain
    assert spec_identity(Spec.from_dict({"train": {"lambda0": False}})) == plain
    on = spec_identity(Spec.from_dict({"optimizer": {"lr_unit": "2/lambda0"}}))
    assert on["optimizer.lr_unit"] == "2/lambda0"
    assert spec_identity(Spec.from_dict({"train": {"lambda0": True}}))["train.lambda0"] is True


# ---- the warm start -------------------------------------------------------------------------


def test_recurrence_residual_equals_the_product_residual():
    """Lanczos' own residual ``β_j |y_j| / |θ|`` (free) is the true ``‖Hv − θv‖ / |θ|`` (one
    more product) to rounding, converged or not."""
    params = _mlp(jax.random.key(0))
    v0 = random_direction(jax.random.key(1), params)
    for iters in (2, 40):
        a = jax.jit(lambda p, v, iters=iters: top_hessian_eigenvalue(LOSS, p, v, iters=iters))(
            params, v0
        )
        b = jax.jit(
            lambda p, v, iters=iters: top_hessian_eigenvalue(
                LOSS, p, v, iters=iters, residual="recurrence"
            )
        )(params, v0)
        assert float(a.value) == float(b.value)
        np.testing.assert_allclose(b.residual, a.residual, rtol=1e-2, atol=2e-6)


def test_a_batch_on_the_trailing_axes_equals_one_run_at_a_time():
    """``batch=(R,)`` (the lanes layout: runs on the leaves' last axis, the loss one per run)
    gives every run the answer it gets alone, though they stop at different steps."""
    keys = jax.random.split(jax.random.key(3), 4)
    params_R = jax.vmap(_mlp)(keys)
    last = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), params_R)

    def losses(q):
        return jax.vmap(LOSS, in_axes=-1)(q)

    v0 = random_direction(jax.random.key(4), last, (4,))
    batched = jax.jit(lambda q, v: top_hessian_eigenvalue(losses, q, v, iters=40, batch=(4,)))(
        last, v0
    )
    steps = []
    for r in range(4):
        one = _top(
            jax.tree.map(lambda a, r=r: a[r], params_R), jax.tree.map(lambda a, r=r: a[..., r], v0)
        )
        np.testing.assert_allclose(batched.value[r], one.value, rtol=1e-5)
        assert int(batched.steps[r]) == int(one.steps)
        steps.append(int(one.steps))
    assert len(set(steps)) > 1, "the runs should stop at different steps for this test to bite"


def test_warm_started_sharpness_along_training_matches_the_full_hessian():
    """Along a real training run (XOR 2-3-1, η = 0.5, 4 logged blocks of 10 steps) every logged
    estimate, warm-started from the previous block's vector with the default
    ``train.sharpness_iters``, equals the top eigenvalue of the full Hessian (``jax.hessian`` +
    ``eigh``, float64) at that step's parameters within 1e-4 relative, in both layouts. The
    parameters at each logged step come from training 10 steps at a time (full-batch SGD has
    no state, so this is the same run)."""
    from jaxinit.engine.executors import build_task, chunk_init, chunk_train
    from jaxinit.engine.train import Data

    def spec_of(steps, diagnostics):
        return jaxinit_resolve(
            {
                "task": {"name": "xor"},
                "model": {"widths": [3]},
                "optimizer": {"learning_rate": 0.5},
                "train": {"steps": steps, "log_every": 10, "diagnostics": diagnostics},
                "store": {"save_params": True},
            }
        )

    # the 10-step blocks train without the diagnostic: the same steps (tests/test_train.py)
    long, short = spec_of(40, ["sharpness"]), spec_of(10, [])
    task = build_task(long)
    data = Data.from_task(task)
    values = {"seed": jnp.arange(3, dtype=jnp.int32)}
    p = chunk_init(long, task, None)(values, data)
    ten = chunk_train("vmap", short, task, None)
    at_blocks = [p]
    for _ in range(4):
        at_blocks.append(ten(values, at_blocks[-1], data)["params"])
    stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *at_blocks)  # (5 blocks x 3 runs)
    want = _exact_run_tops(long, task, stacked).reshape(5, 3).T
    for layout in ("vmap", "lanes"):
        logged = jax.device_get(chunk_train(layout, long, task, None)(values, p, data))
        np.testing.assert_allclose(logged["curves"]["sharpness"], want, rtol=1e-4, err_msg=layout)
    assert np.all(want[:, -1] > want[:, 0])  # the sharpness moved: the warm start had to track


def jaxinit_resolve(spec):
    import jaxinit

    return jaxinit.resolve_spec(spec)


@pytest.mark.parametrize("iters", [3, 12, 30])
def test_a_batch_of_matrices_through_every_stage_matches_eigh(iters):
    """The batched Ritz solver (Sturm bisection on the tridiagonal, elementwise over the runs)
    through the unrolled loop and every stage of the staged one (``STAGES``, then ``iters``):
    each run of a batch on the trailing axis gets its own matrix's top eigenvalue, with the
    residual it reports, and a run that needs every step gets there."""
    rng = np.random.default_rng(3)
    n, runs = 30, 5
    mats = []
    for r in range(runs):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        eigs = np.concatenate([[4.0, 4.0 - 0.2 * (r + 1), -5.0], rng.uniform(-3, 3, n - 3)])
        mats.append((q * eigs) @ q.T)
    m = jnp.asarray(np.stack(mats, -1), jnp.float32)  # (n, n, runs)
    matvec = lambda v: jnp.einsum("ijr,jr->ir", m, v)  # noqa: E731
    v0 = jnp.asarray(rng.normal(size=(n, runs)), jnp.float32)
    top = np.linalg.eigvalsh(np.moveaxis(np.stack(mats, -1), -1, 0))[:, -1]
    value, vec, res, steps, _ = top_eigenpair(
        matvec, v0, iters=iters, tol=1e-5, residual="recurrence"
    )
    miss = np.linalg.norm(np.asarray(matvec(vec) - value * vec), axis=0) / np.abs(value)
    np.testing.assert_allclose(np.asarray(res), miss, rtol=1e-3, atol=2e-5)
    assert np.all(np.asarray(steps) <= iters)
    if iters == 30:  # n = 30: Lanczos spans the whole space, every run converges
        assert np.all(np.asarray(res) <= 1e-5)
        np.testing.assert_allclose(np.asarray(value), top, rtol=1e-5)
    else:  # a Ritz value never exceeds the top eigenvalue
        assert np.all(np.asarray(value) <= top * (1 + 1e-6))


def test_plain_lane_ops_give_the_lanes_loss_and_its_derivatives():
    """``lanes.PLAIN_OPS`` (the sharpness probe's loss) computes the same losses as
    ``LANE_OPS`` bit for bit, and, unlike it, can be differentiated forward: its Hessian-vector
    products equal the custom rules' reverse-over-reverse ones to rounding."""
    from jaxinit.engine import lanes

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)  # (I, O, C)
    b = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, 5))

    def losses(params, ops):
        out = ops.dense(x, params[0], params[1])
        return -ops.mean_points(ops.pick(ops.log_softmax(jnp.tanh(out)), labels))

    assert np.array_equal(losses((w, b), lanes.LANE_OPS), losses((w, b), lanes.PLAIN_OPS))
    v = (jnp.ones_like(w), jnp.ones_like(b))
    grad = lambda ops: jax.grad(lambda p: jnp.sum(losses(p, ops)))  # noqa: E731
    custom = jax.vjp(grad(lanes.LANE_OPS), (w, b))[1](v)[0]
    forward = jax.jvp(grad(lanes.PLAIN_OPS), ((w, b),), (v,))[1]
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(grad(lanes.LANE_OPS), ((w, b),), (v,))
    for a, c in zip(custom, forward):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_the_ritz_solver_program_does_not_grow_with_its_rows():
    """The tridiagonal's top eigenpair (Sturm bisection, inverse iteration) loops over the rows
    above ``UNROLL_ROWS``: its program is about the same size at 40 rows as at 12 (unrolled, it
    grew with the rows, 55 kB to 162 kB of StableHLO, and took ~7 s to compile at 40: the
    ``lambda0`` solver's size), and it still finds the top eigenvalue."""
    from jaxinit.blocks.sharpness import UNROLL_ROWS, _top_tridiagonal

    sizes = {}
    for k in (UNROLL_ROWS + 4, 40):
        diag = jnp.linspace(0.0, 1.0, k)[:, None] * jnp.ones((1, 3))
        off = 0.1 * jnp.ones((k - 1, 3))
        filled = jnp.ones((k, 3), bool)
        sizes[k] = len(jax.jit(_top_tridiagonal).lower(diag, off, filled).as_text())
        theta, y = _top_tridiagonal(diag, off, filled)
        dense = np.diag(np.asarray(diag[:, 0])) + np.diag(np.asarray(off[:, 0]), 1)
        top = np.linalg.eigvalsh(dense + np.triu(dense, 1).T)[-1]
        np.testing.assert_allclose(np.asarray(theta), top, rtol=1e-5)
        assert np.allclose(np.linalg.norm(np.asarray(y), axis=0), 1.0, rtol=1e-5)
    assert sizes[40] < 1.3 * sizes[UNROLL_ROWS + 4], sizes
