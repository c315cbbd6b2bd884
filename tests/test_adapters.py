"""Models users already have (issue 11): reinit, Flax (linen, nnx) and Equinox adapters, their
symmetry declarations, and the same sweep + basin analysis as the built-in MLP."""

import math
import subprocess
import sys

# The `test` extra includes `adapters`: a missing flax / equinox fails here instead of skipping.
import equinox as eqx  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx  # noqa: E402

import jaxinit
from jaxinit.analysis import basins, symmetry
from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.adapters import from_equinox, from_flax, reinit
from jaxinit.blocks.initializers import expected_std
from jaxinit.blocks.models import mlp
from jaxinit.config.spec import InitSpec

X = jnp.asarray(np.random.default_rng(0).normal(size=(16, 2)), jnp.float32)
_reinit = jax.jit(reinit, static_argnums=2, static_argnames="layout")  # compiled once per shape


@pytest.mark.parametrize(
    "scheme, layout", [("he_normal", "io"), ("glorot_uniform", "oi"), ("lecun_normal", "oi")]
)
def test_reinit_gives_each_kernel_the_variance_of_its_scheme(scheme, layout):
    """Dense and conv kernels get the std the scheme promises at their own fans (conv fan-in =
    receptive field × in-channels = 288 here, not 32), biases their own scheme, other leaves
    are kept."""
    dense_io, conv_io = (256, 128), (3, 3, 32, 64)
    shape = {"io": lambda s: s, "oi": lambda s: (s[-1], s[-2], *s[:-2])}[layout]
    params = {
        "dense": {"kernel": jnp.zeros(shape(dense_io)), "bias": jnp.zeros(128)},
        "conv": {"kernel": jnp.zeros(shape(conv_io)), "bias": jnp.zeros(64)},
        "norm": {"scale": jnp.ones(64)},
    }
    spec = InitSpec(scheme, scale=1.5, bias_scheme="normal", bias_scale=0.3)
    p = _reinit(jax.random.key(0), params, spec, layout=layout)
    assert math.isclose(expected_std("he_normal", conv_io), math.sqrt(2 / 288))
    for name, io in (("dense", dense_io), ("conv", conv_io)):
        w = np.asarray(p[name]["kernel"])
        assert w.shape == shape(io)
        assert np.std(w) == pytest.approx(expected_std(scheme, io, 1.5), rel=0.04)
        assert np.std(p[name]["bias"]) == pytest.approx(0.3, rel=0.3)
    np.testing.assert_array_equal(p["norm"]["scale"], np.ones(64))


def test_reinit_conv_orthogonal_and_identical_rows():
    """Orthogonal conv kernels have orthonormal columns over receptive field × in-channels;
    identical_rows gives every output channel the same filter."""
    params = {"conv": {"kernel": jnp.zeros((3, 3, 4, 8))}, "out": {"kernel": jnp.zeros((8, 2))}}
    w = _reinit(jax.random.key(1), params, InitSpec("orthogonal", scale=2.0))["conv"]["kernel"]
    m = np.asarray(w).reshape(36, 8)
    np.testing.assert_allclose(m.T @ m, 4.0 * np.eye(8), atol=1e-4)
    w = _reinit(jax.random.key(1), params, InitSpec("identical_rows"))["conv"]["kernel"]
    w = np.asarray(w)
    assert np.ptp(w, axis=-1).max() == 0 and np.std(w) > 0


def test_reinit_seeds_differ_and_repeat():
    params = {"a": {"kernel": jnp.zeros((5, 3)), "bias": jnp.zeros(3)}}
    spec = InitSpec("glorot_normal")
    a, b = (reinit(jax.random.key(s), params, spec) for s in (0, 1))
    again = reinit(jax.random.key(0), params, spec)
    assert not np.allclose(a["a"]["kernel"], b["a"]["kernel"])
    np.testing.assert_array_equal(a["a"]["kernel"], again["a"]["kernel"])
    np.testing.assert_array_equal(a["a"]["bias"], np.zeros(3))  # default bias scheme: zeros


def _user_mlp(framework: str, activation: str):
    """A 2-3-3-1 dense stack written in each framework with the built-in activation function."""
    act = ACTIVATIONS[activation].fn
    if framework == "linen":
        net = nn.Sequential([nn.Dense(3), act, nn.Dense(3), act, nn.Dense(1)])
        return from_flax(net, X)
    if framework == "nnx":

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in ((2, 3), (3, 3))])
                self.out = nnx.Linear(3, 1, rngs=rngs)

            def __call__(self, x):
                for layer in self.layers:
                    x = act(layer(x))
                return self.out(x)

        return from_flax(Net(nnx.Rngs(0)), X)
    return from_equinox(eqx.nn.MLP(2, 1, 3, 2, activation=act, key=jax.random.key(0)))


@pytest.mark.parametrize(
    "framework, activation",
    [("linen", a) for a in ("tanh", "relu", "sigmoid", "gelu")]
    + [("nnx", "relu"), ("equinox", "sigmoid")],  # nnx tanh, equinox tanh: in the sweeps below
)
def test_dense_stack_equals_builtin_mlp_and_declares_its_symmetry(framework, activation):
    """The same weights give the same outputs as the built-in MLP; the symmetry found is the
    activation's own (odd for tanh, sigmoid flips, ReLU rescaling, plain permutation for GELU)."""
    model = _user_mlp(framework, activation)
    builtin = mlp((3, 3), in_dim=2, out_dim=1, activation=activation)
    ref = builtin.init(jax.random.key(3), InitSpec("glorot_normal", bias_scheme="normal"))
    assert model.symmetry is not None
    assert model.symmetry.kind == ACTIVATIONS[activation].symmetry
    params = model.symmetry.from_layers(ref["layers"])
    np.testing.assert_allclose(model.apply(params, X), builtin.apply(ref, X), atol=1e-5)
    # the dense-stack view reads back the layers it was given
    for got, want in zip(model.symmetry.layers(params), ref["layers"]):
        np.testing.assert_array_equal(got["w"], want["w"])
    # init honours the scheme: the same key and scheme give the MLP's layer shapes and stds
    init = model.init
    drawn = model.symmetry.layers(init(jax.random.key(0), InitSpec("he_normal", scale=2)))
    assert [layer["w"].shape for layer in drawn] == [(2, 3), (3, 3), (3, 1)]
    first = [model.symmetry.layers(init(jax.random.key(s), InitSpec()))[0]["w"] for s in (0, 1)]
    assert not np.allclose(*first)  # two seeds, two inits


def test_a_skip_connection_is_no_dense_stack():
    """Shapes of a dense stack are not enough: a residual net fails the permutation check, so
    it declares no symmetry, and insisting on one is an error."""

    class Res(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = jnp.tanh(nn.Dense(4)(x))
            h = h + jnp.tanh(nn.Dense(4)(h))
            return nn.Dense(1)(h)

    assert from_flax(Res(), X).symmetry is None
    with pytest.raises(ValueError, match="not a dense stack with that symmetry"):
        from_flax(Res(), X, symmetry="perm")
    relu = nn.Sequential([nn.Dense(3), jax.nn.relu, nn.Dense(1)])
    with pytest.raises(ValueError, match="'odd'"):
        from_flax(relu, X, symmetry="odd")  # ReLU is not odd
    assert from_flax(relu, X, symmetry=None).symmetry is None


def test_conv_modules_redraw_conv_kernels_at_their_fan_in():
    """A linen and an Equinox conv layer: the kernel gets he_normal at receptive field ×
    in-channels (144, not 16), the bias its own scheme (Equinox's is (out, 1, 1)); neither is a
    dense stack."""
    m = from_flax(nn.Conv(8, (3, 3)), jnp.zeros((2, 4, 4, 16)))
    p = m.init(jax.random.key(0), InitSpec("he_normal"))
    w = np.asarray(p["kernel"])
    assert w.shape == (3, 3, 16, 8) and np.std(w) == pytest.approx(math.sqrt(2 / 144), rel=0.08)
    assert m.symmetry is None
    e = from_equinox(eqx.nn.Conv2d(16, 8, 3, padding=1, key=jax.random.key(0)))
    spec = InitSpec("he_normal", bias_scheme="constant", bias_scale=0.5)
    q = e.init(jax.random.key(0), spec)
    assert q.weight.shape == (8, 16, 3, 3)
    assert np.std(q.weight) == pytest.approx(math.sqrt(2 / 144), rel=0.08)
    np.testing.assert_array_equal(q.bias, np.full((8, 1, 1), 0.5))
    assert e.symmetry is None


def _tiny_spec(**axes):
    return {
        "task": {"name": "xor"},
        "init": {"scheme": "glorot_normal", "bias_scheme": "normal", "bias_scale": 0.1},
        "optimizer": {"name": "sgd", "learning_rate": 1.0},
        "train": {"steps": 200, "log_every": 100},
        "store": {"save_params": True},
        "axes": {"seed": 6, **axes},
    }


def _permuted_copy(ds, model, src: int, dst: int):
    """``ds`` with run ``dst`` replaced by run ``src`` with its hidden units permuted and
    sign-flipped (the same function) and the same loss."""
    ds = ds.copy(deep=True)
    names = [v for v in ds.data_vars if v.startswith("params/")]
    one = model.init(jax.random.key(0), InitSpec())
    paths = [
        "params/" + jax.tree_util.keystr(p, simple=True, separator="/")
        for p, _ in jax.tree_util.tree_flatten_with_path(one)[0]
    ]
    assert sorted(paths) == sorted(names)
    run = jax.tree.unflatten(jax.tree.structure(one), [ds[n].values[src] for n in paths])
    layers = model.symmetry.layers(run)
    w0, b0, w1 = (np.array(layers[0]["w"]), np.array(layers[0]["b"]), np.array(layers[1]["w"]))
    perm, sign = np.array([2, 0, 1]), np.array([-1.0, 1.0, -1.0])
    moved = [
        {"w": w0[:, perm] * sign, "b": b0[perm] * sign},
        {"w": w1[perm] * sign[:, None], "b": np.array(layers[1]["b"])},
    ]
    for n, leaf in zip(paths, jax.tree.leaves(model.symmetry.from_layers(moved))):
        ds[n].values[dst] = leaf
    for v in ("final_loss", "final_grad_norm", "done", "diverged"):
        ds[v].values[dst] = ds[v].values[src]
    return ds


@pytest.mark.parametrize("framework", ["linen", "equinox"])
def test_sweep_and_basins_see_a_permuted_duplicate_as_one_basin(framework):
    """jaxinit.run trains the adapted model; find_basins with model= analyses it. A run replaced
    by a permuted, sign-flipped copy of another is the same basin by canonical parameters
    (p_tol) with the declared symmetry, and a different one without."""
    act = ACTIVATIONS["tanh"].fn
    if framework == "linen":
        model = from_flax(nn.Sequential([nn.Dense(3), act, nn.Dense(1)]), X)
    else:
        model = from_equinox(eqx.nn.MLP(2, 1, 3, 1, activation=act, key=jax.random.key(0)))
    assert model.symmetry.kind == "odd"
    ds = jaxinit.run(_tiny_spec(), model=model, progress=False)
    assert bool(ds.done.all()) and np.isfinite(ds.final_loss.values).all()
    assert np.unique(ds.final_loss.values).size > 1  # seeds gave different inits
    found = basins.find_basins(ds, model=model)
    assert len(found.table) >= 1 and not found.notes
    dup = _permuted_copy(ds, model, 0, 1)
    config = basins.BasinConfig(f_tol=0.05, p_tol=1e-3, converged_only=False)
    lab = basins.find_basins(dup, config, model=model).label.values
    assert lab[0] == lab[1] >= 0
    blind = model._replace(symmetry=None)
    got = basins.find_basins(dup, config, model=blind)
    assert got.label.values[0] != got.label.values[1]
    assert any("declares no symmetry" in n for n in got.notes)
    # the canonical forms agree exactly
    a = [dup[n].values[0] for n in dup.data_vars if n.startswith("params/")]
    b = [dup[n].values[1] for n in dup.data_vars if n.startswith("params/")]
    names = [n for n in dup.data_vars if n.startswith("params/")]
    assert names and any(not np.allclose(x, y) for x, y in zip(a, b))
    one = model.init(jax.random.key(0), InitSpec())
    tree = jax.tree.structure(one)
    paths = [
        "params/" + jax.tree_util.keystr(p, simple=True, separator="/")
        for p, _ in jax.tree_util.tree_flatten_with_path(one)[0]
    ]
    pa = jax.tree.unflatten(tree, [dup[n].values[0] for n in paths])
    pb = jax.tree.unflatten(tree, [dup[n].values[1] for n in paths])
    ca, cb = (symmetry.canonical_params(p, model.symmetry) for p in (pa, pb))
    for x, y in zip(jax.tree.leaves(ca), jax.tree.leaves(cb)):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_nnx_model_runs_a_scale_sweep():
    """An nnx module trains under a traced init.scale axis: scale 0 gives a constant output."""
    model = _user_mlp("nnx", "tanh")
    ds = jaxinit.run(
        {**_tiny_spec(**{"init.scale": [0.0, 1.0]}), "init": {"bias_scheme": "zeros"}},
        model=model,
        progress=False,
    )
    zero, one = (ds.final_loss.sel(init_scale=s).values for s in (0.0, 1.0))
    assert np.ptp(zero) < 1e-6 < np.ptp(one)  # all-zero init: every seed the same


def test_core_never_imports_flax_or_equinox():
    code = (
        "import sys, jaxinit, jaxinit.blocks.models, jaxinit.blocks.adapters, jaxinit.analysis.basins;"
        "bad = [m for m in ('flax', 'equinox', 'sklearn') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)
    with pytest.raises(ImportError, match=r"jaxinit\[adapters\]"):
        from_flax(object(), X)
    monkeypatch.setitem(sys.modules, "equinox", None)
    with pytest.raises(ImportError, match=r"jaxinit\[adapters\]"):
        from_equinox(object())


class _NnxNorm(nnx.Module):
    """2-4-1 with a BatchNorm between: stateful in training mode, not with running averages."""

    def __init__(self, rngs, running: bool = False):
        self.l1 = nnx.Linear(2, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=running, rngs=rngs)
        self.l2 = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.bn(self.l1(x))))


class _EqxNorm(eqx.Module):
    l1: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    l2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.l1, self.l2 = eqx.nn.Linear(2, 4, key=k1), eqx.nn.Linear(4, 1, key=k2)
        self.bn = eqx.nn.BatchNorm(4, "batch", mode="batch")

    def __call__(self, x, state):
        h, state = self.bn(self.l1(x), state)
        return self.l2(jnp.tanh(h)), state


def _linen_norm():
    return nn.Sequential([nn.Dense(4), nn.BatchNorm(use_running_average=False), nn.Dense(1)])


@pytest.mark.parametrize(
    "make, where",
    [
        (lambda: from_flax(_NnxNorm(nnx.Rngs(0)), jnp.zeros((4, 2))), "bn.mean"),
        (lambda: from_equinox(eqx.nn.make_with_state(_EqxNorm)(jax.random.key(0))[0]), "bn."),
        (lambda: from_flax(_linen_norm(), jnp.ones((4, 2))), "batch_stats"),
    ],
    ids=["flax.nnx", "equinox", "flax.linen"],
)
def test_stateful_modules_are_refused_up_front(make, where):
    """BatchNorm in nnx (on an all-zero batch: its running mean is written with an equal value),
    Equinox and linen: refused by the adapter, naming the state and saying
    that stateful modules are unsupported and why (before, nnx and Equinox were accepted and
    failed inside the sweep with TraceContextError / "missing argument 'state'")."""
    with pytest.raises(ValueError) as e:
        make()
    msg = str(e.value)
    assert where in msg and "Stateful modules are unsupported" in msg, msg
    assert "pure apply(params, x)" in msg, msg


def test_an_nnx_module_that_only_reads_its_state_is_accepted():
    """nnx BatchNorm with running averages changes nothing when called: it runs, and the
    adapter left the user's module as it was."""
    net = _NnxNorm(nnx.Rngs(0), running=True)
    before = np.asarray(net.bn.mean[...]).copy()
    model = from_flax(net, jnp.ones((4, 2)))
    ds = jaxinit.run(
        {"task": {"name": "xor"}, "train": {"steps": 4, "log_every": 2}, "axes": {"seed": 2}},
        model=model,
        progress=False,
    )
    assert np.isfinite(ds.final_loss.values).all()
    np.testing.assert_array_equal(np.asarray(net.bn.mean[...]), before)
