"""Algorithms declare their own settings (issue 20): validation reads the declaration, the
algorithm's functions receive them as one NamedTuple, and the settings ``[algorithm]`` had as
fields before keep their identity (specs and directories from before resume)."""

import numpy as np
import pytest

import jaxinit
from jaxinit.blocks import kmeans
from jaxinit.cli import main as cli_main
from jaxinit.config.bundled import find_spec
from jaxinit.config.spec import RECORDED_ALGORITHM_SETTINGS, Setting, Spec, SpecError, at_least
from jaxinit.engine import algorithms
from jaxinit.engine.identity import spec_identity

BLOBS = {
    "task": {"name": "blobs", "k": 3, "n_per_cluster": 10},
    "train": {"steps": 4, "log_every": 2, "diagnostics": []},
    "axes": {"seed": 2},
}


def test_every_declared_recorded_setting_has_its_recorded_type_and_default():
    """A value equal to a recorded default is read as "left out" (Spec.from_dict): that is
    the same only if every algorithm declaring that name has that default."""
    for alg in algorithms.ALGORITHMS.values():
        names = [s.name for s in alg.settings]
        assert {"k", "tol"} <= set(names), alg.name  # the engine reads both
        assert len(set(names)) == len(names), alg.name
        for s in alg.settings:
            if s.name in RECORDED_ALGORITHM_SETTINGS:
                recorded = RECORDED_ALGORITHM_SETTINGS[s.name]
                assert (s.type, s.default) == (type(recorded), recorded), (alg.name, s.name)
            assert isinstance(s.default, s.type) and (s.check is None or s.check(s.default) is None)


def test_bundled_algorithm_specs_record_the_section_as_before():
    """The stored layout of [algorithm] is the one the fields wrote (spec.json, identity)."""
    spec = Spec.from_toml(find_spec("gmm_em_restarts"))
    assert spec.to_dict()["algorithm"] == {
        "name": "gmm_em", "init": "kmeans++", "k": 0, "tol": 1e-4, "reg_covar": 1e-3,
    }  # fmt: skip
    ident = spec_identity(Spec.from_toml(find_spec("kmeans_restarts")))
    assert {k: v for k, v in ident.items() if k.startswith("algorithm.")} == {
        "algorithm.name": "kmeans", "algorithm.init": "kmeans++", "algorithm.k": 0,
        "algorithm.tol": 0.0, "algorithm.reg_covar": 1e-6,
    }  # fmt: skip
    # an int where a float was a field is read as that float; the default is the same as
    # leaving it out, also through with_overrides (which reads to_dict back)
    a = Spec.from_dict({"algorithm": {"name": "kmeans", "tol": 0, "reg_covar": 1e-6}})
    b = Spec.from_dict({"algorithm": {"name": "kmeans"}}).with_overrides({"axes.seed": 1})
    assert a == b and a.algorithm.params == {}
    assert Spec.from_dict({"algorithm": {"name": "kmeans", "tol": 2}}).algorithm.params == {
        "tol": 2.0
    }


def test_unknown_setting_and_bad_values_name_the_algorithm_and_what_is_allowed():
    kmeans_spec = {**BLOBS, "algorithm": {"name": "kmeans"}}
    with pytest.raises(SpecError, match=r"algorithm 'kmeans' has no setting 'reg_covar'.*"
                       r"allowed: init, k, tol"):  # fmt: skip
        jaxinit.resolve_spec(kmeans_spec, {"algorithm.reg_covar": 1e-3})
    with pytest.raises(SpecError, match=r"algorithm 'gradient' has no setting 'tol'.*none"):
        jaxinit.resolve_spec({"algorithm": {"tol": 0.5}})
    gmm_spec = {**BLOBS, "algorithm": {"name": "gmm_em"}}
    with pytest.raises(SpecError, match=r"algorithm.reg_covar \(for gmm_em\) must be > 0"):
        jaxinit.resolve_spec(gmm_spec, {"algorithm.reg_covar": 0.0})
    with pytest.raises(SpecError, match=r"algorithm.tol \(for gmm_em\) must be >= 0"):
        jaxinit.resolve_spec(gmm_spec, {"algorithm.tol": -1.0})
    with pytest.raises(SpecError, match=r"algorithm.init \(for gmm_em\).*random_resp"):
        jaxinit.resolve_spec(gmm_spec, {"algorithm.init": "forgy"})
    with pytest.raises(SpecError, match=r"algorithm.k must be int"):
        jaxinit.resolve_spec(gmm_spec, {"algorithm.k": "three"})


def test_cli_refuses_an_unknown_algorithm_setting_with_exit_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[task]\nname = "blobs"\n[algorithm]\nname = "kmeans"\nreg_covar = 0.1\n')
    out = tmp_path / "out"
    code = cli_main(["run", str(spec), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("jaxinit: error: ") and "allowed: init, k, tol" in err
    assert not out.exists()


def _damped_step(state, x_NxD, settings):
    """Lloyd's step moved only ``settings.rate`` of the way."""
    full = kmeans.step(state, x_NxD)["centres"]
    return {"centres": state["centres"] + settings.rate * (full - state["centres"])}


def test_a_new_algorithm_is_one_registration_and_receives_its_settings(monkeypatch):
    """Extension cost: an algorithm with a setting of its own ("rate") is one entry in
    ALGORITHMS; its setting is validated from the declaration and reaches its step."""
    damped = algorithms.ALGORITHMS["kmeans"]._replace(
        name="damped_kmeans",
        settings=(*kmeans.SETTINGS, Setting("rate", float, 1.0, at_least(0.0, strict=True))),
        step=_damped_step,
    )
    monkeypatch.setitem(algorithms.ALGORITHMS, "damped_kmeans", damped)
    spec = {**BLOBS, "algorithm": {"name": "damped_kmeans", "init": "forgy"},
            "store": {"save_params": True}}  # fmt: skip
    with pytest.raises(SpecError, match=r"algorithm.rate \(for damped_kmeans\) must be > 0"):
        jaxinit.resolve_spec(spec, {"algorithm.rate": 0.0})
    full = jaxinit.run(spec, progress=False)
    half = jaxinit.run(spec, progress=False, algorithm__rate=0.5)
    start = full["params0/centres"].values
    assert np.array_equal(start, half["params0/centres"].values)
    assert not np.array_equal(full["params/centres"].values, half["params/centres"].values)
    assert algorithms.settings(jaxinit.resolve_spec(spec, {"algorithm.rate": 0.5})).rate == 0.5
    # the declared default: an unset rate is the full Lloyd step, as k-means itself
    plain = jaxinit.run({**spec, "algorithm": {"name": "kmeans", "init": "forgy"}}, progress=False)
    assert np.allclose(plain["params/centres"].values, full["params/centres"].values)
    assert algorithms.settings(Spec.from_dict(spec)).rate == 1.0
