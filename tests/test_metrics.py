"""Symmetry, saturation and dead-unit diagnostics on hand-made layers with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import train_in_both_layouts

from jaxinit.blocks import metrics
from jaxinit.blocks.metrics import DIAGNOSTICS, Probe, count_distinct
from jaxinit.blocks.models import mlp
from jaxinit.config.spec import InitSpec

count = jax.jit(count_distinct, static_argnames="rtol")
X = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def _layer(w_UxI):
    """Incoming weights (no bias) and tanh activations on X of one layer."""
    w = np.asarray(w_UxI, np.float32)
    return w, np.tanh(np.asarray(X) @ w.T)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1.0, 2.0]] * 5, 1),  # all identical
        ([[0.0, 0.0]] * 3, 1),  # all zero
        ([[1.0, 2.0], [1.0, 2.0], [-1.0, 0.5], [-1.0, 0.5]], 2),  # two pairs
        ([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0], [2.0, 1.0]], 4),  # all different
    ],
)
def test_count_distinct_known_groups(rows, expected):
    assert int(count(*_layer(rows))) == expected


def test_count_distinct_tolerance_is_relative_to_the_layer_scale():
    base = np.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]])
    for scale in (1e-3, 1.0, 1e3):
        near = np.vstack([base, base[:1] * (1 + 1e-4)]) * scale  # a near-copy of unit 0
        far = np.vstack([base, base[:1] * (1 + 0.2)]) * scale  # 20% away: distinct at 1% and 10%
        assert int(count(*_layer(near))) == 3
        assert int(count(*_layer(far))) == 4
    mid = np.vstack([base, base[:1] * 1.05])  # 5% away: distinct at 1%, the same at 10%
    assert int(count(*_layer(mid), rtol=metrics.DISTINCT_RTOL)) == 4
    assert int(count(*_layer(mid), rtol=metrics.COARSE_RTOL)) == 3


def test_same_weights_but_different_activations_are_not_merged():
    w, _ = _layer([[1.0, 2.0], [1.0, 2.0]])
    acts = jnp.stack([jnp.zeros(4), jnp.ones(4)], 1)
    assert int(count(w, acts)) == 2


def test_count_distinct_jits_and_vmaps():
    w = jax.random.normal(jax.random.key(0), (6, 3, 2))
    out = jax.jit(jax.vmap(lambda w: count_distinct(w, jnp.tanh(X @ w.T))))(w)
    assert out.shape == (6,) and np.all(np.asarray(out) == 3)


def _diag(name, activation, scheme="he_normal", widths=(4, 3), scale=1.0, value=1.0):
    """Diagnostic ``name`` of a freshly initialized MLP on X (jitted: eager tiny ops are slow)."""
    net = mlp(widths, in_dim=2, out_dim=1, activation=activation)
    init = InitSpec(scheme=scheme, scale=scale, value=value)

    def go(key):
        params = net.init(key, init)
        grads = jax.tree.map(jnp.zeros_like, params)
        return DIAGNOSTICS[name](Probe(net, params, params, grads, X, jnp.zeros((4, 1))))[name]

    return np.asarray(jax.jit(go)(jax.random.key(1)))


@pytest.mark.parametrize(
    ("activation", "name"),
    [("tanh", "distinct_units"), ("tanh", "distinct_units_coarse"), ("tanh", "saturation"),
     ("relu", "dead_units")],
)  # fmt: skip
def test_per_layer_outputs_share_the_layer_dim_of_layer_grad_norm(activation, name):
    n_layers = len(_diag("layer_grad_norm", activation))
    v = _diag(name, activation)
    assert v.shape == (n_layers,)
    assert np.all(np.isfinite(v[:-1])) and np.isnan(v[-1])  # the output layer has no units


def test_distinct_units_of_symmetric_and_random_mlp_inits():
    assert _diag("distinct_units", "tanh", "constant")[:2].tolist() == [1, 1]
    assert _diag("distinct_units", "tanh")[:2].tolist() == [4, 3]


def test_saturation_counts_preactivations_beyond_the_threshold():
    # constant init, value 1, scale s, no bias: z = s·(x1 + x2) on X = {0, s, s, 2s} in layer 1
    for act, thr in (("tanh", 2.0), ("sigmoid", 4.0)):
        for s, expected in ((0.5, 0.0), (1.5 * thr / 2, 0.25), (1.5 * thr, 0.75)):
            sat = _diag("saturation", act, "constant", (3,), scale=s)
            assert float(sat[0]) == pytest.approx(expected)
    assert np.isnan(_diag("saturation", "relu")[0])


def test_dead_units_fraction():
    net = mlp((3,), in_dim=2, out_dim=1, activation="relu", bias=False)
    w = jnp.array([[1.0, -1.0, 0.5], [1.0, -2.0, -1.0]])  # unit 1 is negative on every x ≥ 0
    params = {"layers": [{"w": w}, {"w": jnp.ones((3, 1))}]}
    p = Probe(net, params, params, params, X, jnp.zeros((4, 1)))
    assert float(DIAGNOSTICS["dead_units"](p)["dead_units"][0]) == pytest.approx(1 / 3)
    assert np.isnan(_diag("dead_units", "tanh")[0])


def test_relative_distance_from_init_in_both_layouts():
    """A diagnostic added in metrics.py alone (written against Probe.ops) runs in the vmap and
    the lanes layout: ‖θ − θ₀‖ / ‖θ₀‖, equal between them to the README's float32 tolerance."""
    import jaxinit
    from jaxinit.blocks.metrics import ANY_LAYOUT
    from jaxinit.engine.results import VARIABLE_ATTRS

    name = "relative_distance_from_init"
    assert name in ANY_LAYOUT and VARIABLE_ATTRS[name]["units"] == "1"
    spec = jaxinit.resolve_spec(
        {
            "task": {"name": "xor"},
            "model": {"widths": [3]},
            "train": {"steps": 20, "log_every": 10, "diagnostics": [name]},
            "store": {"save_params": True},
        }
    )
    out = train_in_both_layouts(spec, 4)
    flat = jax.vmap(lambda t: jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]))
    p0, p = flat(out["vmap"]["params0"]), flat(out["vmap"]["params"])
    want = np.linalg.norm(p - p0, axis=1) / np.linalg.norm(p0, axis=1)
    got = out["vmap"]["curves"][name]
    assert got.shape == (4, 3) and np.all(got[:, 0] == 0) and np.all(got[:, -1] > 0)
    np.testing.assert_allclose(got[:, -1], want, rtol=1e-5)
    np.testing.assert_allclose(out["lanes"]["curves"][name], got, rtol=5e-5, atol=1e-7)
