"""Mean-field theory (jaxinit.blocks.theory): closed forms, quadrature against closed-form kernels, and
q* / χ₁ against a large seeded Monte Carlo."""

import math

import numpy as np
import pytest

from jaxinit.blocks import theory as T
from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.tasks import TASKS

# -- closed forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_b2", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 2.0, 3.0])
def test_relu_chi1_is_half_sigma_w2(sigma_w2, sigma_b2):
    assert T.chi1("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, rel=1e-12)
    assert T.chi_q("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, rel=1e-12)


def test_critical_lines_closed_forms():
    assert T.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, abs=1e-10)
    assert T.critical_sigma_w2("relu", 0.3) == pytest.approx(2.0, abs=1e-10)
    assert T.critical_scale("relu") == pytest.approx(math.sqrt(2), abs=1e-10)  # He
    assert T.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-8)  # LeCun
    assert T.critical_sigma_w2("erf", 0.0) == pytest.approx(math.pi / 4, abs=1e-8)  # erf'(0)²=4/π
    assert T.critical_sigma_w2("linear", 0.2) == pytest.approx(1.0, abs=1e-10)
    # Schoenholz et al. 2017 (Fig. 1): tanh at σ_b² = 0.05 is critical at σ_w² ≈ 1.76.
    assert T.critical_sigma_w2("tanh", 0.05) == pytest.approx(1.76, abs=0.01)


def test_critical_line_separates_phases_and_xi_c_diverges_there():
    crit = T.critical_sigma_w2("tanh", 0.05)
    below, above = (
        T.depth_scales("tanh", crit - 0.2, 0.05),
        T.depth_scales("tanh", crit + 0.2, 0.05),
    )
    assert below.phase == "ordered" and below.chi1 < 1 and below.c_star == 1.0
    assert above.phase == "chaotic" and above.chi1 > 1 and above.c_star < 1
    xi = [T.depth_scales("tanh", crit + d, 0.05).xi_c for d in (-0.4, -0.1, -0.01, 0.01, 0.1, 0.4)]
    assert xi[0] < xi[1] < xi[2] and xi[3] > xi[4] > xi[5]
    assert min(xi[2], xi[3]) > 50 > max(xi[0], xi[5])
    assert T.trainable_depth("tanh", crit - 0.2, 0.05) == pytest.approx(6 * below.xi_c)


def test_fixed_points_closed_forms():
    assert T.fixed_point_q("relu", 1.5, 0.3) == pytest.approx(0.3 / (1 - 0.75), rel=1e-12)
    assert T.fixed_point_q("linear", 0.5, 0.5) == pytest.approx(1.0, rel=1e-12)
    assert T.fixed_point_q("tanh", 0.9, 0.0) == 0.0  # the signal dies out
    assert T.fixed_point_q("relu", 3.0, 0.1) == math.inf  # ... or blows up
    assert T.fixed_point_q("relu", 2.0, 0.0, q0=0.7) == 0.7  # marginal: every q is fixed
    # tanh, σ_b = 0, chaotic: c* = 0 (the correlation map is odd); the map fixes c = 1 always.
    assert T.fixed_point_c("tanh", 2.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert T.correlation_map("tanh", 1.0, 2.0, 0.1) == pytest.approx(1.0, abs=1e-12)
    c = T.fixed_point_c("tanh", 2.5, 0.1)
    assert 0 < c < 1 and T.correlation_map("tanh", c, 2.5, 0.1) == pytest.approx(c, abs=1e-10)


def test_jacobian_moments_dynamical_isometry_closed_forms():
    for depth in (1, 4, 16, 64):
        # deep linear net at unit gain: Gaussian variance L (Fuss–Catalan), orthogonal exactly 0
        assert T.jacobian_moments("linear", 1.0, 0.0, depth, "gaussian") == pytest.approx(
            (1, depth)
        )
        assert T.jacobian_moments("linear", 1.0, 0.0, depth, "orthogonal") == (1.0, 0.0)
        # critical ReLU cannot be isometric: μ₂/μ₁² = 2, variance 2L (Gaussian) or L (orthogonal)
        assert T.jacobian_moments("relu", 2.0, 0.0, depth, "gaussian") == pytest.approx(
            (1, 2 * depth)
        )
        assert T.jacobian_moments("relu", 2.0, 0.0, depth, "orthogonal") == pytest.approx(
            (1, depth)
        )
    # critical tanh with tiny bias: q* → 0, so orthogonal weights are nearly isometric while
    # Gaussian ones still have variance ≈ L
    sw2 = T.critical_sigma_w2("tanh", 1e-6)
    mean, var = T.jacobian_moments("tanh", sw2, 1e-6, 64, "orthogonal")
    assert mean == pytest.approx(1.0, abs=1e-6) and var < 0.1
    assert T.jacobian_moments("tanh", sw2, 1e-6, 64, "gaussian")[1] > 60


def test_scheme_table_places_inits_on_either_side():
    tanh = {r["scheme"]: r for r in T.scheme_table("tanh", 0.0)}
    for s in ("lecun_normal", "glorot_normal", "orthogonal"):
        assert tanh[s]["sigma_w2"] == pytest.approx(1.0) and tanh[s]["phase"] == "critical"
    assert tanh["he_normal"]["phase"] == "chaotic"
    relu = {r["scheme"]: r for r in T.scheme_table("relu", 0.0)}
    assert relu["he_normal"]["phase"] == "critical"
    assert relu["glorot_normal"]["phase"] == "ordered"
    assert relu["glorot_normal"]["chi1"] == pytest.approx(0.5)
    assert relu["lecun_normal"]["scale_to_critical"] == pytest.approx(math.sqrt(2))
    assert T.scheme_sigma_w2("glorot_normal", 100, 300) == pytest.approx(0.5)


def test_gradient_growth_is_chi1_per_layer():
    g = T.gradient_growth("relu", 1.0, 0.0, 5)
    np.testing.assert_allclose(g, 0.5 ** np.arange(4, -1, -1))


def test_gram_curve_matches_length_map_and_stays_at_fixed_point():
    sw2, sb2 = 1.5, 0.05
    q = T.fixed_point_q("tanh", sw2, sb2)
    x_gram = np.array([[(q - sb2) / sw2, 0.5], [0.5, 2.0]])
    g = T.gram_curve("tanh", x_gram, sw2, sb2, 6)
    assert g.shape == (6, 2, 2)
    np.testing.assert_allclose(g[:, 0, 0], q, rtol=1e-10)
    np.testing.assert_allclose(g[1, 1, 1], T.length_map("tanh", g[0, 1, 1], sw2, sb2), rtol=1e-12)


# -- quadrature vs closed-form kernels ----------------------------------------------------------


@pytest.mark.parametrize("q1, q2, c", [(0.3, 2.0, 0.4), (1.0, 1.0, 0.999), (25.0, 4.0, -0.7)])
def test_quadrature_matches_closed_form_kernels(q1, q2, c):
    erf, derf = ACTIVATIONS["erf"].phi, ACTIVATIONS["erf"].dphi
    relu, step = ACTIVATIONS["relu"].phi, ACTIVATIONS["relu"].dphi
    q12 = c * math.sqrt(q1 * q2)
    # Williams (1997): E erf(u1) erf(u2) = (2/π) arcsin(2Σ12 / √((1 + 2Σ11)(1 + 2Σ22)))
    want = 2 / math.pi * math.asin(2 * q12 / math.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    assert T.gauss_mean2(erf, erf, q1, q2, c) == pytest.approx(want, abs=1e-12)
    want = 4 / math.pi / math.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * q12**2)
    assert T.gauss_mean2(derf, derf, q1, q2, c) == pytest.approx(want, abs=1e-10)
    # Cho & Saul (2009) arc-cosine kernels of degree 1 and 0
    theta = math.acos(c)
    want = math.sqrt(q1 * q2) / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * c)
    assert T.gauss_mean2(relu, relu, q1, q2, c) == pytest.approx(want, abs=1e-10)
    assert T.gauss_mean2(step, step, q1, q2, c) == pytest.approx(
        (math.pi - theta) / (2 * math.pi), abs=1e-10
    )


def test_each_activation_is_one_entry_with_its_host_twins():
    """One registry holds the JAX function and the NumPy φ, φ′ the theory integrates (on
    426ca25 theory.py and tasks.py kept their own tables: a teacher could not use sigmoid)."""
    import jax

    assert not hasattr(T, "ACTIVATIONS_NP") and not hasattr(T, "Activation")
    x = np.linspace(-6, 6, 101)
    for name, entry in ACTIVATIONS.items():
        np.testing.assert_allclose(entry.phi(x), entry.fn(x), atol=2e-6, err_msg=name)
        d = jax.vmap(jax.grad(entry.fn))(x.astype(np.float32))
        np.testing.assert_allclose(entry.dphi(x), d, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_a_teacher_net_takes_every_activation(name):
    task = TASKS["teacher_student"](in_dim=3, teacher_widths=(4,), activation=name, n_train=8,
                                    n_test=8)  # fmt: skip
    assert task.y_train.shape == (8, 1) and np.isfinite(task.y_train).all()


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*tanh"):
        T.chi1("swish", 1.0, 0.0)


# -- Monte Carlo --------------------------------------------------------------------------------

MC_N = 2**25  # standard errors below ~2.5e-4 relative at every point below (4σ < 1e-3)
_MC_CHUNK = 2**22


def _mc_means(fs, q: float) -> list[float]:
    """Plain Monte Carlo ``E f(√q z)`` for each ``f``, seeded, one pass over the samples."""
    rng = np.random.default_rng(20240611)
    totals = np.zeros(len(fs))
    for _ in range(MC_N // _MC_CHUNK):
        x = math.sqrt(q) * rng.standard_normal(_MC_CHUNK)
        totals += [float(np.sum(f(x))) for f in fs]
    return list(totals / MC_N)


@pytest.mark.parametrize(
    "activation, sigma_w2, sigma_b2",
    [
        ("tanh", 2.5, 0.3),  # near the critical line (χ₁ ≈ 0.999)
        ("tanh", 1.0, 0.5),
        ("erf", 2.0, 0.5),
        ("sigmoid", 4.0, 0.1),
        ("gelu", 0.5, 0.5),
        ("relu", 0.5, 0.5),
    ],
)
def test_q_star_and_chi1_agree_with_monte_carlo(activation, sigma_w2, sigma_b2):
    phi, dphi = ACTIVATIONS[activation].phi, ACTIVATIONS[activation].dphi
    d = T.depth_scales(activation, sigma_w2, sigma_b2)
    q = d.q_star
    # The Monte Carlo length map's fixed point, to first order around q* (the residual is
    # ~1e-4, so the second-order term is ~1e-8): q_mc = q* + (V_mc(q*) − q*) / (1 − χ_q).
    phi2, dphi2 = _mc_means([lambda x: phi(x) ** 2, lambda x: dphi(x) ** 2], q)
    q_mc = q + (sigma_w2 * phi2 + sigma_b2 - q) / (1 - d.chi_q)
    assert q_mc == pytest.approx(q, rel=1e-3)
    assert sigma_w2 * dphi2 == pytest.approx(d.chi1, rel=1e-3)


# -- the bundled depth specs are set up where the theory says ---------------------------------------


def test_depth_specs_bracket_the_critical_line():
    import jaxinit
    from jaxinit.config.bundled import find_spec

    dp = jaxinit.Spec.from_toml(find_spec("depth_phase"))
    axes = dict(dp.axes)
    sw2 = np.array(axes["init.scale"]) ** 2  # lecun_normal: init.scale is σ_w
    sb2 = dp.init.bias_scale**2
    assert dp.init.scheme == "lecun_normal" and dp.init.bias_scheme == "normal"
    assert sb2 == pytest.approx(0.05, rel=1e-4) and dp.model.activation == "tanh"
    crit = T.critical_sigma_w2("tanh", sb2)
    assert sw2.min() < crit < sw2.max() and np.min(np.abs(sw2 - crit)) < 0.01
    depths = sorted(len(w) for w in axes["model.widths"])
    # the far ends of the σ_w² grid have 6 ξ_c inside the depth range, so both sides can fail
    for s in (sw2.min(), sw2.max()):
        assert depths[0] < T.trainable_depth("tanh", s, sb2) < depths[-1]
    relu = jaxinit.Spec.from_toml(find_spec("deep_relu"))
    phases = {r["scheme"]: r["phase"] for r in T.scheme_table("relu", 0.0, fan_in=32)}
    assert {phases[s] for s in dict(relu.axes)["init.scheme"]} == {"ordered", "critical"}
