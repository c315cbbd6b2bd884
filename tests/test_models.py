"""Models: MLP shapes, biases, dropout, symmetric inits, and a user (init, apply) pair in a sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

import jaxinit
from jaxinit.blocks.initializers import INITIALIZERS, expected_std
from jaxinit.blocks.models import ACTIVATIONS, Model, draw_weight, mlp
from jaxinit.config.spec import InitSpec

X = jax.random.normal(jax.random.key(0), (5, 3))


CASES = [((), "linear"), ((4,), "tanh"), ((4, 6), "relu"), ((2,), "gelu"), ((3, 2), "erf")]
CASES += [((5,), "sigmoid")]


def test_cases_cover_activations():
    assert {a for _, a in CASES} == set(ACTIVATIONS)


@pytest.mark.parametrize("widths,activation", CASES)
def test_mlp_shapes(widths, activation):
    net = mlp(widths, in_dim=3, out_dim=2, activation=activation)
    params = net.init(jax.random.key(1), InitSpec(scheme="he_normal"))
    dims = (3, *widths, 2)
    assert [lay["w"].shape for lay in params["layers"]] == list(zip(dims[:-1], dims[1:]))
    assert [lay["b"].shape for lay in params["layers"]] == [(d,) for d in dims[1:]]
    y = net.apply(params, X)
    assert y.shape == (5, 2) and bool(jnp.isfinite(y).all())
    hidden = net.hidden(params, X)
    assert [h.act_BxU.shape for h in hidden] == [(5, w) for w in widths]
    assert [h.incoming_UxI.shape for h in hidden] == [(w, a + 1) for a, w in zip(dims, widths)]


def test_activation_is_applied():
    params = mlp((4,), in_dim=3, out_dim=1).init(jax.random.key(1), InitSpec(scheme="normal"))
    outs = {a: mlp((4,), in_dim=3, out_dim=1, activation=a).apply(params, X) for a in ACTIVATIONS}
    h = X @ params["layers"][0]["w"] + params["layers"][0]["b"]
    last = params["layers"][1]
    np.testing.assert_allclose(outs["relu"], jnp.maximum(h, 0) @ last["w"] + last["b"], rtol=1e-5)
    np.testing.assert_allclose(outs["tanh"], jnp.tanh(h) @ last["w"] + last["b"], rtol=1e-5)
    assert len({np.asarray(o).tobytes() for o in outs.values()}) == len(ACTIVATIONS)


def test_bias_off():
    net = mlp((4, 4), in_dim=3, out_dim=1, bias=False)
    params = net.init(jax.random.key(2), InitSpec(scheme="normal", bias_scheme="normal"))
    assert all(set(layer) == {"w"} for layer in params["layers"])
    # tanh(0) = 0 and no biases: zero input maps to exactly zero output
    np.testing.assert_array_equal(net.apply(params, jnp.zeros((2, 3))), np.zeros((2, 1)))
    assert net.hidden(params, X)[0].incoming_UxI.shape == (4, 3)


def test_bias_scheme_is_used():
    net = mlp((4,), in_dim=3, out_dim=1)
    params = net.init(jax.random.key(2), InitSpec(bias_scheme="normal", bias_scale=2.0))
    assert float(jnp.abs(params["layers"][0]["b"]).max()) > 0


def _probe_net(rate):
    """One hidden layer whose output layer is the identity, so the output shows the dropout mask."""
    net = mlp((64,), in_dim=3, out_dim=64, activation="tanh", dropout=rate)
    params = net.init(jax.random.key(3), InitSpec(scheme="normal"))
    params["layers"][1] = {"w": jnp.eye(64), "b": jnp.zeros(64)}
    return net, params


def test_dropout_only_when_training_with_a_key():
    rate = 0.25
    net, params = _probe_net(rate)
    h = net.hidden(params, X)[0].act_BxU
    apply = jax.jit(net.apply, static_argnames="train")
    np.testing.assert_allclose(apply(params, X), h, rtol=1e-6)
    np.testing.assert_allclose(apply(params, X, train=True), h, rtol=1e-6)
    np.testing.assert_allclose(apply(params, X, key=jax.random.key(0)), h, rtol=1e-6)
    y = np.asarray(apply(params, X, key=jax.random.key(0), train=True))
    kept = y != 0
    # inverted dropout: kept units are scaled by 1 / (1 - rate), the others are exactly zero
    np.testing.assert_allclose(y[kept], np.asarray(h)[kept] / (1 - rate), rtol=1e-5)
    n = kept.size
    assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    y2 = apply(params, X, key=jax.random.key(1), train=True)
    assert not np.array_equal(y, y2)
    np.testing.assert_array_equal(y, apply(params, X, key=jax.random.key(0), train=True))


def test_dropout_preserves_expected_value():
    rate = 0.5
    net, params = _probe_net(rate)
    h = np.asarray(net.hidden(params, X)[0].act_BxU)
    keys = jax.random.split(jax.random.key(9), 2000)
    ys = np.asarray(jax.jit(jax.vmap(lambda k: net.apply(params, X, key=k, train=True)))(keys))
    # each entry is h/(1-rate) with probability 1-rate: mean h, std |h|·sqrt(rate/(1-rate))
    se = np.abs(h) * np.sqrt(rate / (1 - rate)) / np.sqrt(len(keys))
    assert np.all(np.abs(ys.mean(0) - h) <= 5 * se + 1e-6)


@pytest.mark.parametrize("scheme", ["zeros", "constant", "identical_rows"])
def test_symmetric_inits_give_identical_hidden_units(scheme):
    net = mlp((4, 5, 3), in_dim=3, out_dim=2)
    params = net.init(jax.random.key(4), InitSpec(scheme=scheme, value=0.7))
    for h in net.hidden(params, X):
        np.testing.assert_array_equal(
            h.incoming_UxI, np.broadcast_to(h.incoming_UxI[:1], h.incoming_UxI.shape)
        )
        np.testing.assert_array_equal(h.act_BxU, np.broadcast_to(h.act_BxU[:, :1], h.act_BxU.shape))
    # outgoing weights of the last hidden layer are shared too, so every unit gets the same gradient
    w_out = np.asarray(params["layers"][-1]["w"])
    np.testing.assert_array_equal(w_out, np.broadcast_to(w_out[:1], w_out.shape))
    if scheme == "identical_rows":
        assert float(jnp.abs(params["layers"][0]["w"]).max()) > 0


ROLES = [("identical_rows", r) for r in ("first", "middle", "last")] + [("he_normal", "last")]


def test_draw_weight_std_in_every_role():
    """Over many keys, one weight's std is the scheme's ``expected_std`` wherever the layer sits."""
    shape, n = (16, 4), 4000
    keys = jax.random.split(jax.random.key(11), n)

    @jax.jit
    def draw_all(key):
        return [draw_weight(key, shape, InitSpec(scheme=s, scale=1.5), role=r) for s, r in ROLES]

    draws = jax.vmap(draw_all)(keys)
    for (scheme, role), w in zip(ROLES, draws):
        target = expected_std(scheme, shape, 1.5)
        for i, j in ((0, 0), (15, 3)):
            std = np.asarray(w[:, i, j], np.float64).std()
            assert abs(std - target) < 5 * target / np.sqrt(2 * n), (scheme, role, i, j, std)


def test_he_normal_gives_distinct_hidden_units():
    net = mlp((4,), in_dim=3, out_dim=1)
    act = net.hidden(net.init(jax.random.key(4), InitSpec(scheme="he_normal")), X)[0].act_BxU
    assert not np.allclose(act[:, 0], act[:, 1])


def _user_model(widths=(3,)):
    """A hand-written tanh MLP that draws the same parameters as ``mlp`` (same key discipline)."""
    dims = (2, *widths, 1)

    def init(key, init_spec):
        layers = []
        for i, shape in enumerate(zip(dims[:-1], dims[1:])):
            k_w, k_b = jax.random.split(jax.random.fold_in(key, i))
            k_draw, _ = jax.random.split(k_w)
            w = INITIALIZERS[init_spec.scheme](k_draw, shape, init_spec.scale)
            layers.append((w, jnp.zeros(shape[1])))
        return layers

    def apply(params, x, *, key=None, train=False):
        for w, b in params[:-1]:
            x = jnp.tanh(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    return Model(init, apply)


def test_user_model_runs_like_the_mlp(tiny_sweep):
    """The hand-written pair in the tiny sweep's spec reproduces the built-in mlp's he_normal runs."""
    spec = {**TINY, "axes": {**TINY["axes"], "init.scheme": ["he_normal"]}}
    ours = jaxinit.run(spec, model=_user_model(), progress=False).isel(init_scheme=0)
    ref = tiny_sweep.sel(init_scheme="he_normal")
    assert ours.loss.shape == ref.loss.shape == (2, 3, 5)
    np.testing.assert_allclose(ours.loss, ref.loss, rtol=1e-5)
    np.testing.assert_allclose(ours.final_loss, ref.final_loss, rtol=1e-5)
    np.testing.assert_allclose(ours.grad_norm, ref.grad_norm, rtol=1e-4)
    np.testing.assert_array_equal(ours.success, ref.success)
    np.testing.assert_allclose(ours["params0/0/0"], ref["params0/layers/0/w"], rtol=1e-6)
    assert float(ours.loss[..., -1].mean()) < float(ours.loss[..., 0].mean())
