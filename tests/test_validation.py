"""Bad input is refused up front: a :class:`SpecError` naming the field and the allowed values,
exit code 2 from the CLI, nothing written to ``--out``, never a traceback from inside JAX.

The full set of input classes goes through ``Spec.from_dict`` and ``cli.main`` in-process; a
representative set goes through the real ``jaxinit`` command in subprocesses. Property-based
tests fuzz specs (valid and invalid) at the spec level, and run a few random valid tiny sweeps.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxinit
from jaxinit.blocks.activations import ACTIVATIONS
from jaxinit.blocks.initializers import INITIALIZERS
from jaxinit.blocks.tasks import TASKS
from jaxinit.blocks.user_data import register
from jaxinit.cli import main as cli_main
from jaxinit.cli import parse_set
from jaxinit.config.spec import Spec, SpecError
from jaxinit.engine.validation import OPTIMIZERS, resolve_spec

BASE = {
    "name": "v",
    "task": {"name": "xor"},
    "model": {"widths": [3]},
    "train": {"steps": 20, "log_every": 5},
    "axes": {"seed": 2},
}
NAN, INF = math.nan, math.inf


def _with(path: str, value) -> dict:
    """BASE with ``section.field`` (or ``axes.<path>`` / a top-level key) set to ``value``."""
    return _set(BASE, path, value)


# (path, bad value, substrings the message must contain: the field, then what is allowed)
BAD = [
    ("task.name", "xorr", ["task.name", "'xorr'", "two_spirals", "parity"]),
    ("model.activation", "swish", ["model.activation", "tanh", "relu", "gelu"]),
    ("init.scheme", "kaiming", ["init.scheme", "he_normal", "orthogonal"]),
    ("init.bias_scheme", "kaiming", ["init.bias_scheme", "zeros"]),
    ("optimizer.name", "adamx", ["optimizer.name", "sgd", "adam"]),
    ("model.widths", [0], ["model.widths[0]", "positive integer"]),
    ("model.widths", [4, -3], ["model.widths[1]", "positive integer"]),
    ("model.widths", ["4"], ["model.widths", "int"]),
    ("model.widths", 4, ["model.widths", "list"]),
    ("init.scale", NAN, ["init.scale", "finite"]),
    ("init.scale", INF, ["init.scale", "finite"]),
    ("init.scale", -0.5, ["init.scale", ">= 0"]),
    ("init.bias_scale", -1.0, ["init.bias_scale", ">= 0"]),
    ("init.perturbation", -1e-3, ["init.perturbation", ">= 0"]),
    ("init.value", INF, ["init.value", "finite"]),
    ("optimizer.learning_rate", 0.0, ["optimizer.learning_rate", "> 0"]),
    ("optimizer.learning_rate", -0.1, ["optimizer.learning_rate", "> 0"]),
    ("optimizer.learning_rate", NAN, ["optimizer.learning_rate", "finite"]),
    ("optimizer.learning_rate", INF, ["optimizer.learning_rate", "finite"]),
    ("optimizer.learning_rate", "fast", ["optimizer.learning_rate", "float"]),
    ("axes.init.scale", [], ["axes.init.scale", "empty"]),
    ("axes.seed", [], ["axes.seed", "empty"]),
    ("axes.seed", 0, ["axes.seed", "positive count"]),
    ("axes.seed", -4, ["axes.seed", "positive count"]),
    ("axes.seed", [0, -1], ["axes.seed", "0..2147483647"]),
    ("axes.seed", [2**40], ["axes.seed", "0..2147483647"]),
    ("axes.seed", [1, 1], ["axes.seed", "repeats"]),
    ("axes.init.scael", [1.0], ["init.scael", "[init] has no field", "scale"]),
    ("axes.model.depth", [1, 2], ["model.depth", "[model] has no field", "widths"]),
    ("axes.optimizer.momentun", [0.9], ["momentun", "optimizer 'sgd' has no parameter"]),
    ("axes.learning_rate", [0.1], ["'learning_rate' does not exist", "optimizer"]),
    ("axes.init.scale", [1.0, -1.0], ["axes.init.scale value -1.0", ">= 0"]),
    ("axes.init.scale", [1.0, NAN], ["axes.init.scale", "finite"]),
    ("axes.optimizer.learning_rate", [0.1, 0.0], ["axes.optimizer.learning_rate", "> 0"]),
    ("axes.init.scheme", ["he_normal", "kaiming"], ["axes.init.scheme", "glorot_normal"]),
    ("axes.model.activation", ["tanh", "swish"], ["axes.model.activation", "sigmoid"]),
    ("axes.model.widths", [[4], [0]], ["axes.model.widths", "positive integer"]),
    ("axes.train.dtype", ["float32", "float64"], ["train.dtype", "not allowed"]),
    ("axes.store.save_params", [True, False], ["store.save_params", "not allowed"]),
    ("axes.task.params", [{}], ["task.params", "not allowed"]),
    ("axes.init.scale", 0.5, ["axes.init.scale", "list"]),
    ("train.steps", 0, ["train.steps", "1..10000000"]),
    ("train.steps", -20, ["train.steps", "1..10000000"]),
    ("train.steps", 10**8, ["train.steps", "1..10000000"]),
    ("train.steps", 2.5, ["train.steps", "int"]),
    ("train.log_every", 0, ["train.log_every", "divide"]),
    ("train.log_every", 3, ["train.log_every", "divide train.steps (20)"]),
    ("train.log_every", 40, ["train.log_every", "divide"]),
    ("train.batch_size", -1, ["train.batch_size", ">= 0"]),
    ("train.dtype", "float16", ["train.dtype", "float32, float64"]),
    ("train.diagnostics", ["grad_nrm"], ["train.diagnostics", "grad_norm"]),
    ("train.grad_tol", -1.0, ["train.grad_tol", ">= 0"]),
    ("model.dropout", 1.0, ["model.dropout", "< 1.0"]),
    ("model.name", "resnet", ["model.name", "mlp"]),
    ("model.name", "cnn", ["model.name = 'cnn' does not fit task 'xor'", "square"]),
    ("model.widht", [3], ["model.widht", "allowed", "widths"]),
    ("nmae", "x", ["spec.nmae", "allowed", "name"]),
    ("seed", -1, ["seed", "0..2147483647"]),
    ("seed", 2**40, ["seed", "0..2147483647"]),
    ("seed", "0", ["seed", "int"]),
    ("report", ["loss_curvs"], ["report", "loss_curves"]),
    ("task.n_points", 10, ["task 'xor' has no parameter 'n_points'"]),
    ("init.plane_seed", -7, ["init.plane_seed", "-1"]),
    ("basins.f_tol", 0.0, ["basins.f_tol", "> 0"]),
    ("init.plane_seed_a", 4, ["init.plane_seed_a", "plane_seed >= 0"]),
    ("basins.probe", "grid", ["basins.probe", "data", "box"]),
    ("axes.basins.f_tol", [0.1, 0.2], ["basins.f_tol", "not allowed"]),
]
TASK_BAD = [
    ({"name": "parity", "n": -1}, ["task.n", "0..20"]),
    ({"name": "parity", "n": 64}, ["task.n", "0..20"]),
    ({"name": "two_spirals", "n_points": 0}, ["two_spirals", "empty"]),
    ({"name": "two_spirals", "n_points": "many"}, ["task.n_points", "integer"]),
    ({"name": "circles", "noise": NAN}, ["task.noise", "finite"]),
    ({"name": "teacher_student", "teacher_widths": [4, 0]}, ["task.teacher_widths", "1.."]),
    ({"name": "teacher_student", "activation": "swish"}, ["teacher_student", "swish"]),
    ({"name": "sinusoid", "n_points": 10**9}, ["task.n_points", "0..100000"]),
]
OPT_BAD = [
    ({"name": "adam", "b1": "x"}, ["optimizer.b1", "finite number"]),
    ({"name": "sgd", "momentum": NAN}, ["optimizer.momentum", "finite"]),
    ({"name": "sgd", "nesterov": 1}, ["optimizer.nesterov", "bool"]),
    ({"name": "adam", "betas": [0.9]}, ["optimizer 'adam' has no parameter 'betas'", "b1"]),
]


def _expect(d: dict, parts: list[str]) -> str:
    with pytest.raises(SpecError) as e:
        resolve_spec(d)
    msg = str(e.value)
    for p in parts:
        assert p in msg, (p, msg)
    return msg


@pytest.mark.parametrize("path, value, parts", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_field_names_field_and_allowed_values(path, value, parts):
    _expect(_with(path, value), parts)


@pytest.mark.parametrize("task, parts", TASK_BAD, ids=[str(t) for t, _ in TASK_BAD])
def test_bad_task_arguments(task, parts):
    _expect({**BASE, "task": task}, parts)


@pytest.mark.parametrize("opt, parts", OPT_BAD, ids=[str(o) for o, _ in OPT_BAD])
def test_bad_optimizer_arguments(opt, parts):
    _expect({**BASE, "optimizer": opt}, parts)


def test_every_bad_case_is_refused_by_run_before_any_jax_work(monkeypatch):
    """``jaxinit.run`` raises the same SpecError; nothing is compiled (no program is built)."""
    import jaxinit.engine.executors as executors

    for builder in ("chunk_init", "chunk_train"):
        monkeypatch.setattr(executors, builder, lambda *a, **k: pytest.fail("compiled bad input"))
    for path, value, parts in BAD[:20]:
        with pytest.raises(SpecError, match=parts[0].replace("[", r"\[").replace("(", r"\(")):
            jaxinit.run(_with(path, value), progress=False)


def test_duplicate_axis_by_two_spellings():
    d = copy.deepcopy(BASE)
    d["axes"] = {"init.scale": [1.0], "init": {"scale": [2.0]}}
    _expect(d, ["axes.init.scale", "twice"])


def test_toml_syntax_error_has_line_number(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\n[task]\nname = "xor"\n[model\nwidths = [4]\n')
    with pytest.raises(SpecError, match=r"bad\.toml.*TOML syntax error.*line 4"):
        resolve_spec(f)
    with pytest.raises(SpecError, match=r"line 2"):
        Spec.from_toml_string('name = "x"\nseed = = 3\n')
    with pytest.raises(SpecError, match="cannot read spec"):
        Spec.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "item, parts",
    [
        ("init.scale", ["expected field.path=value"]),
        ("=0.5", ["expected field.path=value"]),
        ("init.scale=[1, 2", ["not a TOML value"]),
        ("init.scale=1 2", ["not a TOML value"]),
        ("init.scale=", ["not a TOML value"]),
        ("optimizer.learning_rate=0.1.2", ["not a TOML value"]),  # a typo, not a string
        ("init.scheme=he normal", ["not a TOML value"]),
    ],
)
def test_set_that_does_not_parse(item, parts):
    with pytest.raises(SpecError) as e:
        parse_set(item)
    for p in parts:
        assert p in str(e.value)


@pytest.mark.parametrize(
    "item, value",
    [
        ("init.scheme=he_normal", "he_normal"),
        ("optimizer.lr_unit=2/lambda0", "2/lambda0"),  # refused before: it starts with a digit
        ("task.path=data/mine.csv", "data/mine.csv"),
        ('optimizer.lr_unit="2/lambda0"', "2/lambda0"),
        ("train.steps=7", 7),
        ("init.scale=1e-3", 1e-3),
    ],
)
def test_set_takes_a_bare_word_as_a_string(item, value):
    assert parse_set(item)[1] == value


def test_set_that_parses_but_is_invalid():
    spec = resolve_spec(BASE)
    with pytest.raises(SpecError, match="cannot set 'bogus.x'.*section"):
        spec.with_overrides({"bogus.x": 1})
    with pytest.raises(SpecError, match="train.steps must be int"):
        spec.with_overrides(dict([parse_set("train.steps=many")]))
    assert spec.with_overrides(dict([parse_set("init.scheme=he_normal")])).init.scheme == (
        "he_normal"
    )


# -- through the CLI ----------------------------------------------------------------------------
def _toml(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "spec.toml"
    f.write_text(text)
    return f


GOOD_TOML = """name = "v"
[task]
name = "xor"
[model]
widths = [3]
[train]
steps = 20
log_every = 5
[axes]
seed = 2
"""

CLI_BAD = [
    # (extra args, toml text or None for GOOD_TOML, substrings of stderr)
    (["--set", "model.activation=swish"], None, ["model.activation", "tanh"]),
    (["--set", "optimizer.learning_rate=-1"], None, ["optimizer.learning_rate", "> 0"]),
    (["--set", "axes.init.scael=[1.0]"], None, ["init.scael", "scale"]),
    (["--set", "axes.seed=0"], None, ["axes.seed", "positive"]),
    (["--set", "train.log_every=3"], None, ["train.log_every", "divide"]),
    (["--set", "init.scale=[1,"], None, ["--set", "not a TOML value"]),
    (["--set", "nofield"], None, ["--set", "field.path=value"]),
    ([], GOOD_TOML.replace("[model]", "[model"), ["TOML syntax error", "line 4"]),
    ([], GOOD_TOML.replace("xor", "xro"), ["task.name", "xor"]),
    ([], GOOD_TOML + '"init.scheme" = []\n', ["axes.init.scheme", "empty"]),
    (["--chunk-size", "0"], None, ["--chunk-size", "positive"]),
    (["--shard", "2/2"], None, ["--shard", "0 <= i < n"]),
    (["--shard", "half"], None, ["--shard", "i/n"]),
]


@pytest.mark.parametrize("extra, text, parts", CLI_BAD, ids=[str(c[:1]) for c in CLI_BAD])
def test_cli_bad_input_exit_2_nothing_written(tmp_path, capsys, extra, text, parts):
    spec_file, out = _toml(tmp_path, text or GOOD_TOML), tmp_path / "out"
    code = cli_main(["run", str(spec_file), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("jaxinit: error: "), err
    for p in parts:
        assert p in err, (p, err)
    assert not out.exists()


@pytest.mark.slow
def test_real_cli_bad_input_representative(tmp_path):
    """The installed ``jaxinit`` entry point (``python -m jaxinit.cli``), in parallel processes:
    exit 2, one-line message naming the field and allowed values, no traceback, no ``--out``."""
    picks = [CLI_BAD[i] for i in (0, 5, 7)]
    procs = []
    for k, (extra, text, parts) in enumerate(picks):
        d = tmp_path / str(k)
        d.mkdir()
        spec_file, out = _toml(d, text or GOOD_TOML), d / "out"
        cmd = [sys.executable, "-m", "jaxinit.cli", "run", str(spec_file), "--out", str(out)]
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        procs.append(
            (subprocess.Popen([*cmd, *extra], env=env, stderr=subprocess.PIPE), out, parts)
        )
    for p, out, parts in procs:
        _, err = p.communicate(timeout=120)
        err = err.decode()
        assert p.returncode == 2, err
        assert "Traceback" not in err and err.count("\n") == 1, err
        for part in parts:
            assert part in err, (part, err)
        assert not out.exists()


# -- property-based ---------------------------------------------------------------------------
_finite = st.floats(0.01, 2.0)
_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_FIELDS = [
    "task.name",
    "task.n_points",
    "task.n",
    "model.widths",
    "model.activation",
    "model.dropout",
    "model.bias",
    "init.scheme",
    "init.scale",
    "init.value",
    "init.plane_seed",
    "optimizer.name",
    "optimizer.learning_rate",
    "optimizer.momentum",
    "train.steps",
    "train.log_every",
    "train.batch_size",
    "train.dtype",
    "train.diagnostics",
    "train.threshold",
    "seed",
    "name",
    "report",
    "axes.seed",
    "axes.init.scale",
    "axes.init.scheme",
    "axes.model.widths",
    "axes.optimizer.learning_rate",
    "axes.bogus.field",
    "axes.model.bogus",
    "store.save_params",
]


@st.composite
def fuzzed_specs(draw):
    """BASE with 1–3 fields set to arbitrary JSON-ish values (mostly invalid, some valid)."""
    d = copy.deepcopy(BASE)
    for path in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3, unique=True)):
        value = draw(
            st.one_of(
                _anything,
                st.sampled_from(["xor", "parity", "tanh", "he_normal", "adam", "float64"]),
                st.lists(_anything, max_size=3),
            )
        )
        d = _set(d, path, value)
    return d


def _set(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    head, _, rest = path.partition(".")
    if head == "axes":
        d["axes"][rest] = value
    elif rest:
        d.setdefault(head, {})[rest] = value
    else:
        d[head] = value
    return d


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_specs())
def test_fuzzed_specs_are_valid_or_spec_error(d):
    """Anything at all in any field: either a valid Spec that round-trips exactly, or a
    SpecError naming a field — never a TypeError/KeyError/JAX error."""
    try:
        spec = resolve_spec(d)
    except SpecError as e:
        assert str(e) and "Traceback" not in str(e)
        return
    again = resolve_spec(spec.to_dict())
    assert again == spec and again.to_json() == spec.to_json()
    assert spec.n_runs == math.prod(len(v) for _, v in spec.axes) >= 1


@st.composite
def tiny_valid_specs(draw):
    """Random valid tiny sweeps (≤ 6 runs, ≤ 8 steps) over tasks, models, inits, optimizers."""
    steps = draw(st.sampled_from([2, 4, 8]))
    axes = {"seed": draw(st.integers(1, 2))}
    if draw(st.booleans()):
        axes["init.scale"] = draw(st.lists(_finite, min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        axes["optimizer.learning_rate"] = draw(
            st.lists(_finite, min_size=1, max_size=2, unique=True)
        )
    task = draw(
        st.sampled_from(
            [
                {"name": "xor"},
                {"name": "parity", "n": 2},
                {"name": "circles", "n_points": 8},
                {"name": "sinusoid", "n_points": 8},
                {"name": "teacher_student", "in_dim": 2, "n_train": 8, "n_test": 8},
            ]
        )
    )
    return {
        "task": task,
        "model": {
            "widths": draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)),
            "activation": draw(st.sampled_from(tuple(ACTIVATIONS))),
        },
        "init": {"scheme": draw(st.sampled_from(sorted(INITIALIZERS))), "scale": draw(_finite)},
        "optimizer": {"name": draw(st.sampled_from(OPTIMIZERS)), "learning_rate": draw(_finite)},
        "train": {
            "steps": steps,
            "log_every": draw(st.sampled_from([1, steps])),
            "diagnostics": [],
        },
        "axes": axes,
    }


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_valid_specs())
def test_random_valid_specs_run_with_the_right_shapes(d):
    spec = resolve_spec(d)
    ds = jaxinit.run(spec, progress=False)
    shape = tuple(len(v) for _, v in spec.axes)
    assert ds.final_loss.shape == shape and bool(ds.done.all())
    t = spec.train.steps // spec.train.log_every + 1
    assert ds.loss.shape == (*shape, t)
    np.testing.assert_array_equal(ds.step.values, np.arange(t) * spec.train.log_every)
    ok = ~ds.diverged.values
    assert np.isfinite(ds.final_loss.values[ok]).all()
    assert np.isnan(ds.diverged_step.values[ok]).all()


def test_every_registered_name_is_accepted():
    """The allowed values the messages list are really allowed (one spec each, no JAX work)."""
    for name in TASKS:
        task = {"name": name}
        if name == "arrays":  # a user's data: here two points, registered as data= does
            data = {"x_train": np.eye(2), "y_train": np.array([0.0, 1.0])}
            task.update(loss="bce", data_sha256=register(data))
        resolve_spec({**BASE, "task": task})
    for act in ACTIVATIONS:
        resolve_spec(_with("model.activation", act))
    for scheme in INITIALIZERS:
        resolve_spec(_with("init.scheme", scheme))
    for opt in OPTIMIZERS:
        resolve_spec(_with("optimizer.name", opt))


def test_error_names_the_field_that_is_wrong():
    """Defect 9: overriding train.steps so that the bundled log_every no longer divides it named
    an unrelated axis value ('axes.init.scale value 0.01: ...'); now it names train.log_every
    and says how to fix it."""
    with pytest.raises(SpecError) as e:
        resolve_spec("scale_lr_map", {"axes.seed": 32, "train.steps": 300})
    msg = str(e.value)
    assert msg.startswith("train.log_every (") and "axes." not in msg
    assert "--set train.log_every=" in msg
    fixed = int(msg.rsplit("=", 1)[1])
    assert 300 % fixed == 0
    assert resolve_spec("scale_lr_map", {"train.steps": 300, "train.log_every": fixed})
    with pytest.raises(SpecError, match=r"^axes\.train\.steps value 7: train\.log_every"):
        resolve_spec({**BASE, "axes": {"train.steps": [100, 7]}})


def test_teacher_rotation_seed_minus_one_means_off():
    task = {"name": "teacher_student", "in_dim": 3, "population": True, "teacher_widths": []}
    for seed in (-1, 0, 5):
        resolve_spec({**BASE, "task": {**task, "teacher_rotation_seed": seed}})
    with pytest.raises(SpecError, match=r"teacher_rotation_seed must be an integer in -1\.\."):
        resolve_spec({**BASE, "task": {**task, "teacher_rotation_seed": -2}})


# (a swept field's invalid base value, the axis that overrides it, what the message names)
BAD_BASE_OF_AXIS = [
    ("init.scheme", "kaiming", ["he_normal"], ["init.scheme", "'kaiming'", "base value"]),
    ("model.activation", "swishy", ["tanh", "relu"], ["model.activation", "'swishy'", "base"]),
    ("model.widths", [0], [[3], [4]], ["model.widths[0]", "positive integer", "base value"]),
]


@pytest.mark.parametrize("path, base, axis, parts", BAD_BASE_OF_AXIS, ids=lambda v: str(v))
def test_a_swept_fields_base_value_is_validated(path, base, axis, parts):
    """The base value of a field that is also an axis is checked like any other (before: not
    checked, and the plan's sizing crashed on it with KeyError / ZeroDivisionError)."""
    d = _with(path, base)
    d["axes"] = {path: axis, "seed": 2}
    _expect(d, parts)
    with pytest.raises(SpecError, match=path.replace("[", r"\[")):
        jaxinit.prepare(d)


@pytest.mark.parametrize(
    "name, item",
    [
        ("symmetry", "init.scheme=kaiming"),
        ("init_scale", "model.activation=swishy"),
        ("init_scale", "model.widths=[0]"),
    ],
)
def test_issue_25_swept_base_reproductions_exit_2(capsys, name, item):
    """``jaxinit run <bundled> --dry-run --set <bad base>``: exit 2 naming the field."""
    code = cli_main(["run", name, "--dry-run", "--set", item])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("jaxinit: error: " + item.split("=")[0]), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "path, value",
    [
        ("axes.init.scale", [1.0, 1e308]),
        ("axes.init.scale", [1e308]),
        ("init.value", -1e39),
        ("optimizer.learning_rate", 1e300),
        ("train.grad_tol", 3.5e38),
    ],
)
def test_numbers_must_fit_the_sweeps_dtype(path, value):
    """A finite number that is inf in float32 (``init.scale = 1e308``) is refused naming the
    field and the dtype (before: accepted, NumPy's overflow warning, every run NaN); float64
    takes it."""
    msg = _expect(_with(path, value), [path.removeprefix("axes."), "float32", "3.403e+38"])
    assert "float64" in msg
    wide = _with(path, value)
    wide["train"] = {**wide["train"], "dtype": "float64"}
    resolve_spec(wide)


# -- a model declares its own settings (issue 20) -----------------------------------------------
def _gained_mlp(spec, in_dim: int, out_dim: int, *, gain: float = 1.0, skip: bool = False):
    """A test model with settings of its own: the MLP's output times ``gain`` (> 0)."""
    from jaxinit.blocks.models import mlp

    if gain <= 0:
        raise ValueError(f"model.gain must be > 0, got {gain}")
    net = mlp(spec.widths, in_dim=in_dim, out_dim=out_dim, activation=spec.activation)
    return net._replace(apply=lambda p, x, **kw: gain * net.apply(p, x, **kw))


@pytest.fixture
def gained(monkeypatch):
    """``gained_mlp`` registered the way a built-in model is: one line, MODELS[name] = factory."""
    from jaxinit.blocks.models import MODELS

    monkeypatch.setitem(MODELS, "gained_mlp", _gained_mlp)
    return {**BASE, "model": {"name": "gained_mlp", "widths": [3], "gain": 2.5}}


def test_a_new_models_settings_need_no_change_to_spec_or_validation(gained):
    """Its settings parse, validate, reach the factory, are swept like any field and enter the
    sweep's identity (on 426ca25 ``[model] gain`` was an unknown field)."""
    from jaxinit.blocks.models import from_spec
    from jaxinit.engine.identity import spec_identity
    from jaxinit.engine.validation import model_settings

    spec = resolve_spec(gained)
    assert spec.model.params == {"gain": 2.5} and spec.get("model.gain") == 2.5
    assert list(model_settings("gained_mlp")) == ["gain", "skip"]
    assert spec.to_dict()["model"]["gain"] == 2.5
    assert Spec.from_json(spec.to_json()) == spec
    x = np.ones((3, 2), np.float32)
    net, plain = from_spec(spec.model, 2, 1), from_spec(spec.model.__class__(widths=(3,)), 2, 1)
    import jax

    p = net.init(jax.random.key(0), spec.init)
    np.testing.assert_allclose(net.apply(p, x), 2.5 * plain.apply(p, x), rtol=1e-6)
    swept = resolve_spec({**gained, "axes": {"seed": 2, "model.gain": [0.5, 2.0]}})
    assert swept.first_run().model.params == {"gain": 0.5}
    assert spec_identity(spec) != spec_identity(spec.replace({"model.gain": 3.0}))
    ds = jaxinit.run({**gained, "train": {"steps": 4, "log_every": 2}}, out=None, progress=False)
    assert bool(ds.done.all()) and np.isfinite(ds.final_loss.values).all()


@pytest.mark.parametrize(
    "model, parts",
    [
        ({"gain": "big"}, ["model.gain", "finite"]),
        ({"skip": 1}, ["model.skip", "bool"]),
        ({"gian": 2.0}, ["model.gian", "'gained_mlp'", "allowed", "widths", "gain", "skip"]),
        ({"gain": -1.0}, ["gained_mlp", "model.gain must be > 0"]),  # the model's own check
    ],
    ids=str,
)
def test_a_models_own_settings_are_checked(gained, model, parts):
    _expect({**gained, "model": {"name": "gained_mlp", "widths": [3], **model}}, parts)


def test_a_built_in_model_refuses_settings_it_does_not_declare():
    _expect(_with("model.kernel_size", 5), ["model.kernel_size", "'mlp'", "allowed", "dropout"])
