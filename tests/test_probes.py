"""Probe sweeps (random nets at init, jaxinit.engine.probes), their bundled specs, and the depth figures
and tables (magic numbers, phase diagram). Tiny nets only."""

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import jaxinit  # noqa: E402
from jaxinit import plots
from jaxinit.blocks import theory  # noqa: E402
from jaxinit.config.bundled import bundled_specs  # noqa: E402
from jaxinit.config.spec import SpecError  # noqa: E402
from jaxinit.engine import probes
from jaxinit.engine.validation import resolve_spec  # noqa: E402
from jaxinit.reports import write_report  # noqa: E402

SIGNAL = {
    "name": "tiny_signal",
    "kind": "signal_propagation",
    "report": ["signal_propagation", "signal_phase"],
    "probe": {"depth": 6, "width": 32, "in_dim": 8, "correlation": 0.5},
    "axes": {"activation": ["relu"], "sigma_w": [1.0, 1.5], "sigma_b": [0.0, 0.3], "seed": 3},
}  # fmt: skip
JACOBIAN = {
    "name": "tiny_jacobian",
    "kind": "jacobian_spectrum",
    "report": ["jacobian_spectrum"],
    "probe": {"width": 16, "depths": [2, 4], "sigma_b": 0.0},
    "axes": {"activation": ["linear"], "weights": ["gaussian", "orthogonal"], "seed": 2},
}


@pytest.fixture(scope="module")
def sig():
    return jaxinit.run(SIGNAL, progress=False)


def test_bundled_probe_specs_are_listed_and_sized_as_the_issue_asks():
    listed = bundled_specs()
    for name in ("signal_propagation", "jacobian_spectrum"):
        assert listed[name] and probes.is_probe(name)
        spec = probes.resolve(name)
        assert spec.report and all(f in plots.FIGURES for f in spec.report)
    sp = probes.resolve("signal_propagation")
    assert sp.probe.depth >= 50 and sp.probe.width >= 256
    axes = dict(sp.axes)
    # the σ_w grid brackets both activations' critical scales at every σ_b
    for act in axes["activation"]:
        for sb in axes["sigma_b"]:
            assert min(axes["sigma_w"]) < theory.critical_scale(act, sb) < max(axes["sigma_w"])
    js = dict(probes.resolve("jacobian_spectrum").axes)
    assert set(js["weights"]) == {"gaussian", "orthogonal"}
    assert {"linear", "tanh", "relu"} <= set(js["activation"])
    assert not probes.is_probe("symmetry") and not probes.is_probe("no_such_spec")


def test_probe_specs_are_specs_of_one_class_and_bad_fields_named():
    """Issue 20: one spec class, one resolve_spec, one with_overrides, one load (was: a
    separate ProbeSpec, and resolve_spec refused probe specs)."""
    spec = resolve_spec("signal_propagation", {"probe.width": 64})
    assert isinstance(spec, jaxinit.Spec) and spec.is_probe and spec.probe.width == 64
    assert spec == probes.resolve("signal_propagation", {"probe.width": 64})
    assert jaxinit.Spec.from_json(json.dumps(spec.to_dict())) == spec
    assert (
        not resolve_spec("symmetry").is_probe and "kind" not in resolve_spec("symmetry").to_dict()
    )
    with pytest.raises(SpecError, match="is not a probe spec"):
        probes.resolve("symmetry")
    with pytest.raises(SpecError, match="kind must be one of train, signal_propagation"):
        resolve_spec({**SIGNAL, "kind": "signal"})
    with pytest.raises(SpecError, match="probe.width must be >= 2"):
        resolve_spec(SIGNAL, {"probe.width": 1})
    with pytest.raises(SpecError, match="report = 'no_such_figure' is not known"):
        resolve_spec(SIGNAL, {"report": ["no_such_figure"]})
    with pytest.raises(SpecError, match="axes.depth"):
        probes.resolve({**SIGNAL, "axes": {"depth": [3]}})
    with pytest.raises(SpecError, match="axes.activation value 'swish'"):
        probes.resolve(SIGNAL, {"axes.activation": ["swish"]})
    with pytest.raises(SpecError, match="probe.depths"):
        probes.resolve(JACOBIAN, {"probe.depths": [4, 2]})
    assert probes.resolve(SIGNAL, {"probe.width": 64}).probe.width == 64


def test_signal_probe_is_labelled_and_uses_common_random_numbers(sig):
    assert sig.q.dims == ("activation", "weights", "sigma_w", "sigma_b", "seed", "layer", "input")
    assert list(sig.layer.values) == list(range(1, 7)) and sig.attrs["kind"] == "signal_propagation"
    assert sig.x_gram.values[0, 1] == pytest.approx(0.5, abs=1e-5)  # inputs at the given cosine
    lin = sig.sel(activation="relu", weights="gaussian", sigma_b=0.0)
    # ReLU is positively homogeneous, so without bias q^l ∝ σ_w^(2l) exactly (and c^l does not
    # depend on σ_w) when every σ_w shares the seed's draw
    ratio = lin.q.sel(sigma_w=1.5) / lin.q.sel(sigma_w=1.0)
    np.testing.assert_allclose((ratio / 1.5 ** (2 * sig.layer)).values, 1.0, rtol=1e-4)
    np.testing.assert_allclose(lin.c.sel(sigma_w=1.5), lin.c.sel(sigma_w=1.0), atol=1e-5)
    # gradient norms of ReLU nets grow by χ₁ = σ_w²/2 per layer going back (loosely, 3 seeds)
    g = sig.grad_sq.sel(activation="relu", weights="gaussian", sigma_b=0.0, sigma_w=1.5)
    growth = float(np.exp(np.log(g.isel(layer=0) / g.isel(layer=-1)).mean() / 5))
    assert growth == pytest.approx(1.5**2 / 2, rel=0.25)


def test_signal_probe_stores_resumes_and_refuses_another(sig, tmp_path):
    out = tmp_path / "p"
    ds = jaxinit.run(SIGNAL, out, progress=False)
    np.testing.assert_array_equal(ds.q.values, sig.q.values)  # same numbers on disk and in memory
    again = jaxinit.load(out)
    assert again.attrs["spec"] == ds.attrs["spec"] and "seconds" not in again.attrs
    np.testing.assert_array_equal(again.grad_sq.values, ds.grad_sq.values)
    assert jaxinit.run(SIGNAL, out, progress=False).q.equals(ds.q)  # loads, computes nothing
    with pytest.raises(jaxinit.StoreError, match="probe.depth: 6 there, 5 here"):
        jaxinit.run(SIGNAL, out, progress=False, probe__depth=5)
    paths = write_report(again, tmp_path / "report")
    assert {p.name for p in paths} >= {"signal_propagation.png", "signal_phase.png", "summary.txt"}
    assert (tmp_path / "report" / "summary.txt").read_text().startswith("tiny_signal: 12 random")


def test_jacobian_probe_linear_orthogonal_is_isometric_gaussian_is_not(tmp_path):
    ds = jaxinit.run(JACOBIAN, progress=False)
    assert ds.sq_sv.dims == ("activation", "weights", "seed", "depth", "sv")
    orth = ds.sel(activation="linear", weights="orthogonal")
    np.testing.assert_allclose(orth.sq_sv.values, 1.0, atol=1e-4)
    gauss = ds.sv_var.sel(activation="linear", weights="gaussian").mean("seed")
    assert (gauss.values > 0.5).all()  # theory: variance = depth (2, 4), far from 0
    # the moments are those of the stored spectra
    np.testing.assert_allclose(ds.sv_mean, ds.sq_sv.mean("sv"), rtol=1e-3)
    fig = plots.FIGURES["jacobian_spectrum"](ds)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_cli_dry_run_runs_and_reports_a_probe(tmp_path, capsys):
    from jaxinit.cli import main

    assert main(["run", "jacobian_spectrum", "--dry-run"]) == 0
    assert "96 random nets" in capsys.readouterr().err
    spec = tmp_path / "j.toml"
    spec.write_text(
        'name = "j"\nkind = "jacobian_spectrum"\nreport = ["jacobian_spectrum"]\n'
        '[probe]\nwidth = 8\ndepths = [2]\n[axes]\nactivation = ["relu"]\nseed = 2\n'
    )
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--report"]) == 0
    assert "relu" in capsys.readouterr().out  # the summary table
    assert (tmp_path / "o" / "report" / "jacobian_spectrum.png").stat().st_size > 5000
    assert main(["report", str(tmp_path / "o")]) == 0
    assert "summary.txt" in capsys.readouterr().out
    assert main(["run", str(spec), "--set", "probe.width=1", "--dry-run"]) == 2
    assert "probe.width" in capsys.readouterr().err


# -- magic numbers and the phase diagram, on a tiny sweep with known values ----------------------
def _sweep_like(axes: dict, spec: dict) -> xr.Dataset:
    """A Dataset laid out as ``jaxinit.run`` lays one out (dims = axes, ``attrs`` spec/axes),
    every run done, values to be filled in: the figures read nothing else."""
    full = jaxinit.Spec.from_dict({**spec, "axes": axes}).to_dict()
    dims = {p.replace(".", "_"): p for p in axes}
    coords = {}
    for d, p in dims.items():
        v = axes[p]
        coords[d] = (np.arange(v) if p == "seed"
                     else ["-".join(map(str, x)) for x in v] if isinstance(v[0], list) else v)  # fmt: skip
    shape = tuple(len(coords[d]) for d in dims)
    zeros = (tuple(dims), np.zeros(shape))
    return xr.Dataset(
        {"final_loss": zeros, "final_metric": zeros, "done": (tuple(dims), np.ones(shape, bool))},
        coords,
        attrs={"name": "grid", "spec": json.dumps(full), "axes": json.dumps(dims)},
    )


@pytest.fixture(scope="module")
def grid():
    """Depth 1, 2, 3 × two activations × two σ_b × three scales, 2 seeds (values filled in)."""
    return _sweep_like(
        {"model.activation": ["tanh", "relu"], "model.widths": [[2], [2, 2], [2, 2, 2]],
         "init.bias_scale": [0.0, 0.3], "init.scale": [0.5, 1.0, 2.0], "seed": 2},
        {"task": {"name": "xor"}, "init": {"scheme": "lecun_normal", "bias_scheme": "normal"}},
    )  # fmt: skip


def test_magic_numbers_table_picks_the_lowest_loss_among_scales_that_train(grid):
    ds = grid.copy(deep=True)
    # loss falls with the scale, but only scale 1.0 trains (accuracy 1) except at depth 3 (none)
    ds["final_loss"] = (1.0 / ds.init_scale).broadcast_like(ds.final_loss)
    ds["final_loss"] = ds.final_loss.transpose(*grid.final_loss.dims)
    trains = (ds.init_scale == 1.0) & (ds.model_widths != ds.model_widths.values[-1])
    ds["final_metric"] = (ds.final_loss * 0 + 0.5).where(~trains, 1.0)
    tab = plots.magic_numbers_table(ds, wide=False)
    assert len(tab) == 2 * 2 * 3 and set(tab.depth) == {1, 2, 3}
    assert (tab[tab.depth < 3].best_scale == 1.0).all() and tab[
        tab.depth == 3
    ].best_scale.isna().all()
    crit = tab.set_index(["activation", "sigma_b"]).critical_sigma_w
    assert crit[("relu", 0.3)].iloc[0] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert crit[("tanh", 0.0)].iloc[0] == pytest.approx(1.0, rel=1e-6)
    wide = plots.TABLES["magic_numbers"](ds)
    assert list(wide.columns[:3]) == ["activation", "sigma_b", "critical_sigma_w"]
    assert "best_scale_depth_3" in wide.columns and len(wide) == 4
    fig = plots.FIGURES["magic_numbers"](ds)
    assert len(fig.axes) == 2  # a panel per σ_b
    plt.close(fig)


def test_phase_diagram_table_reads_the_deepest_trained_depth(grid):
    ds = grid.sel(model_activation=["tanh"], init_bias_scale=[0.3])
    ds = ds.squeeze(["model_activation", "init_bias_scale"], drop=True)
    spec = json.loads(ds.attrs["spec"])
    spec["init"]["bias_scale"] = 0.3
    axes = {k: v for k, v in json.loads(ds.attrs["axes"]).items()
            if k not in ("model_activation", "init_bias_scale")}  # fmt: skip
    ds.attrs.update(spec=json.dumps(spec), axes=json.dumps(axes))
    # scale 0.5 trains at depths 1, 2; scale 1.0 at every depth; scale 2.0 at depth 1 and 3 only
    acc = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1]], float)  # (depth, scale)
    known = xr.DataArray(acc, dims=("model_widths", "init_scale"))
    ds["final_metric"] = known.broadcast_like(ds.final_metric).transpose(*ds.final_metric.dims)
    tab = plots.phase_diagram_table(ds)
    assert tab.measured_trainable_depth.tolist() == [2, 3, 1]
    assert tab.first_failing_depth.tolist()[0] == 3 and math.isnan(tab.first_failing_depth[1])
    want = [theory.trainable_depth("tanh", s**2, 0.09) for s in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(tab["theory_6_xi_c"], want)
    fig = plots.FIGURES["phase_diagram"](ds)
    assert fig.axes
    plt.close(fig)


# -- issue 20: probe directories are sweep directories ----------------------------------------
def _jacobian_toml(tmp_path, seeds: int = 2) -> str:
    spec = tmp_path / "j.toml"
    spec.write_text(
        'name = "j"\nkind = "jacobian_spectrum"\n[probe]\nwidth = 8\ndepths = [2]\n'
        f'[axes]\nactivation = ["relu", "linear"]\nseed = {seeds}\n'
    )
    return str(spec)


def test_probe_flags_status_and_load_are_those_of_a_sweep(tmp_path, capsys):
    """Was: --shard refused ("measured in one call"), status printed a one-line special case,
    jaxinit.load refused a probe directory ("load it with jaxinit.engine.probes.load")."""
    from jaxinit.cli import main

    spec, out = _jacobian_toml(tmp_path), tmp_path / "o"
    for flags in (["--chunk-size", "4"], ["--distributed"], ["--shard", "2/2"]):
        assert main(["run", spec, "--out", str(out), *flags]) == 2, flags
        assert flags[0] in capsys.readouterr().err
        assert not out.exists()  # refused before anything is written
    with pytest.raises(SpecError, match="--chunk-size"):
        jaxinit.run(spec, out, chunk_size=4, progress=False)
    assert main(["run", spec, "--out", str(out), "--shard", "1/2"]) == 0
    run = capsys.readouterr()
    assert run.err.count("random nets") == 1 and "2 chunk(s)" in run.err  # the size line, once
    assert "partial: 2/4 nets measured" in run.out
    assert main(["status", str(out)]) == 0
    said = capsys.readouterr().out
    assert "sweep 'j'" in said and "2/4 runs (50.0%), 1/2 chunks" in said and "0/2" in said
    with pytest.warns(UserWarning, match="partial"):
        half = jaxinit.load(out)
    assert half.attrs["partial"] == 1 and half.sv_mean.sel(activation="relu").isnull().all()
    assert main(["run", spec, "--out", str(out), "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "4/4 runs (100.0%), 2/2 chunks" in capsys.readouterr().out
    whole = jaxinit.load(out)
    ref = jaxinit.run(spec, progress=False)
    assert whole.attrs["partial"] == 0 and set(whole.data_vars) == set(ref.data_vars)
    for name in ref.data_vars:
        assert whole[name].dims == ref[name].dims
        np.testing.assert_array_equal(whole[name].values, ref[name].values, err_msg=name)
    assert main(["report", str(out)]) == 0
    assert "jacobian_spectrum.png" in capsys.readouterr().out


def test_an_interrupted_probe_run_resumes_without_recomputing(tmp_path, monkeypatch):
    """Was: a probe sweep was written whole at the end, so a killed run had to start over."""
    spec, out = _jacobian_toml(tmp_path, seeds=3), tmp_path / "o"
    measure, computed = probes.measure, []

    def interrupted(plan, todo):
        for cid, arrays in measure(plan, todo):
            yield cid, arrays
            raise KeyboardInterrupt  # killed after the first chunk was stored

    monkeypatch.setattr(probes, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jaxinit.run(spec, out, progress=False)
    assert len(list((out / "chunks").glob("*.npz"))) == 1

    def counted(plan, todo):
        computed.extend(f"{g.index}-{c}" for g, c in todo)
        return measure(plan, todo)

    monkeypatch.setattr(probes, "measure", counted)
    ds = jaxinit.run(spec, out, progress=False)
    assert computed == ["1-0"]  # only the chunk that was not stored
    ref = jaxinit.run(spec, progress=False)
    np.testing.assert_array_equal(ds.sq_sv.values, ref.sq_sv.values)
    computed.clear()
    jaxinit.run(spec, out, progress=False)  # complete: loads, measures nothing
    assert computed == []


def test_probe_numbers_depend_on_the_seed_not_on_the_chunk_that_measured_it(tmp_path):
    """Seeds come in fixed blocks (the last one padded), so seed s is bit-identical whatever the
    seed count, chunk or shard; a sharded directory loads as the unsharded in-memory run."""
    small = {**SIGNAL, "probe": {"depth": 3, "width": 8, "in_dim": 4}}
    n = probes.SEEDS_PER_CHUNK
    more = jaxinit.run(small, progress=False, axes__seed=n + 2)  # 2 chunks, the last padded
    fewer = jaxinit.run(small, progress=False, axes__seed=n + 1)
    for name in ("q", "c", "grad_sq"):
        np.testing.assert_array_equal(more[name].isel(seed=slice(0, n + 1)).values,
                                      fewer[name].values, err_msg=name)  # fmt: skip
    out = tmp_path / "s"
    for i in range(3):  # 2 chunks, 3 shards: one has nothing to do
        part = jaxinit.run(small, out, shard=f"{i}/3", progress=False, axes__seed=n + 1)
    assert part.attrs["partial"] == 0
    for name in fewer.data_vars:
        np.testing.assert_array_equal(part[name].values, fewer[name].values, err_msg=name)


def test_a_probe_spec_without_report_gets_its_kinds_figures_and_overrides_are_shared():
    """Was: no `report` gave the training figures (final_loss …), which fail on random nets."""
    assert probes.resolve({"kind": "jacobian_spectrum"}).report == ("jacobian_spectrum",)
    assert probes.resolve({"kind": "signal_propagation"}).report == (
        "signal_propagation",
        "signal_phase",
    )
    # one --set implementation for both kinds of spec (jaxinit.config.spec.apply_overrides)
    with pytest.raises(SpecError, match=r"cannot set 'train.steps'.*\('probe',\)"):
        probes.resolve(SIGNAL, {"train.steps": 3})
    assert probes.resolve(SIGNAL, {"axes.seed": 5, "name": "n"}).name == "n"


def test_another_spec_or_a_training_sweep_is_refused_in_a_probe_directory(tmp_path):
    spec, out = _jacobian_toml(tmp_path), tmp_path / "o"
    jaxinit.run(spec, out, progress=False)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(jaxinit.StoreError, match=r"holds a different sweep \('j'\).*probe.width"):
        jaxinit.run(spec, out, progress=False, probe__width=4)
    with pytest.raises(jaxinit.StoreError, match="different sweep"):
        jaxinit.run(
            {"task": {"name": "xor"}, "train": {"steps": 2, "log_every": 1}}, out, progress=False
        )
    assert sorted(p.name for p in out.rglob("*")) == before
    assert jaxinit.run(spec, out, progress=False, name="renamed").attrs["name"] == "renamed"


def test_a_probe_runs_through_prepare_and_the_sweep_path(sig, tmp_path):
    """Issue 20: one run path (prepare -> store -> chunks); was a separate probes.run, and
    jaxinit.prepare refused probe specs."""
    prep = jaxinit.prepare(SIGNAL)
    assert prep.spec.is_probe and prep.plan.n_runs == prep.spec.n_runs == 2 * 2 * 3
    assert prep.record["identity"]["kind"] == "signal_propagation"
    assert "random nets" in prep.describe() and prep.members["probe/q"] == ((6, 2), "float32")
    stored = jaxinit.run(prep, tmp_path / "o", progress=False)
    for name in sig.data_vars:  # in memory and stored: the same numbers
        np.testing.assert_array_equal(stored[name].values, sig[name].values, err_msg=name)
    with pytest.raises(SpecError, match="chunks are fixed by its spec"):
        jaxinit.prepare(SIGNAL, chunk_size=4)
    with pytest.raises(SpecError, match="model= is for training sweeps"):
        jaxinit.run(SIGNAL, model=jaxinit.mlp((2,), in_dim=2, out_dim=1), progress=False)


STORED_BEFORE = {
    "name": "jacobian_spectrum", "description": "d", "kind": "jacobian_spectrum", "seed": 0,
    "report": ["jacobian_spectrum"],
    "probe": {"depth": 50, "width": 16, "in_dim": 64, "correlation": 0.6, "gradients": True,
              "depths": [2, 4], "sigma_w": "critical", "sigma_b": 0.2236},
    "axes": {"activation": ["linear", "tanh", "relu"], "weights": ["gaussian", "orthogonal"],
             "seed": 3},
}  # fmt: skip
"""The ``spec`` of a probe directory's spec.json as ProbeSpec wrote it (before issue 20)."""


def test_a_stored_probe_spec_reads_back_to_the_same_layout_and_identity():
    """Probe specs became Specs: a directory written before keeps its spec.json layout and run
    identity (so it loads and resumes, not refused as another sweep)."""
    from jaxinit.engine.probe_spec import probe_identity

    spec = jaxinit.Spec.from_json(json.dumps(STORED_BEFORE))
    assert json.dumps(spec.to_dict()) == json.dumps(STORED_BEFORE)  # key order too
    ident = probe_identity(spec)
    assert {k for k in ident if not k.startswith("software.")} == {
        "kind", "seed", "chunk.seeds", "axes.activation", "axes.weights", "axes.seed",
        "axes.order", *(f"probe.{k}" for k in STORED_BEFORE["probe"]),
    }  # fmt: skip
    assert ident["probe.depths"] == [2, 4] and ident["chunk.seeds"] == 3
