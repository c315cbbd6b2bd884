"""Plan: static vs traced axes, groups, run ids in C order, chunking, a machine-free chunk size."""

import numpy as np
import pytest

from jaxinit.config.spec import Spec, SpecError
from jaxinit.engine.plan import CHUNK_BYTES, chunk_id, coordinates, make_plan

AXES = {
    "init.scheme": ["zeros", "he_normal", "orthogonal"],
    "init.scale": [0.5, 1.0],
    "model.widths": [[2], [4, 4]],
    "optimizer.learning_rate": [0.1, 0.3],
    "seed": 5,
}


@pytest.fixture(scope="module")
def plan():
    return make_plan(Spec.from_dict({"axes": AXES}), chunk_size=4)


def test_static_and_traced_axes(plan):
    traced = {a.path: a.traced for a in plan.axes}
    assert traced == {
        "init.scheme": False,
        "init.scale": True,
        "model.widths": False,
        "optimizer.learning_rate": True,
        "seed": True,
    }
    assert [a.dim for a in plan.axes] == [
        "init_scheme",
        "init_scale",
        "model_widths",
        "optimizer_learning_rate",
        "seed",
    ]


@pytest.mark.parametrize(
    "path,values,traced",
    [
        ("model.activation", ["tanh", "relu"], False),
        ("train.steps", [10, 20], False),
        ("train.batch_size", [0, 2], False),
        ("task.n_points", [8, 16], False),
        ("model.dropout", [0.0, 0.5], True),
        ("init.perturbation", [0.0, 0.1], True),
        ("train.grad_tol", [0.0, 1e-3], True),
        ("optimizer.b1", [0.8, 0.9], True),
    ],
)
def test_which_fields_are_traced(path, values, traced):
    spec = {"axes": {path: values}}
    if path.startswith("task."):
        spec["task"] = {"name": "two_spirals"}
    if path.startswith("optimizer."):
        spec["optimizer"] = {"name": "adam"}
    p = make_plan(Spec.from_dict(spec))
    assert p.axes[0].path == path and p.axes[0].traced is traced
    assert len(p.groups) == (1 if traced else 2)


def test_groups(plan):
    assert plan.shape == (3, 2, 2, 2, 5) and plan.n_runs == 120
    assert len(plan.groups) == 3 * 2  # scheme × widths
    ids = np.concatenate([g.run_ids for g in plan.groups])
    assert sorted(ids) == list(range(120))
    for g in plan.groups:
        assert len(g.run_ids) == 2 * 2 * 5 and (np.diff(g.run_ids) > 0).all()
        assert set(g.values) == {"init.scale", "optimizer.learning_rate", "seed"}
        assert isinstance(g.spec.model.widths, tuple)


def test_run_ids_in_c_order(plan):
    """Run ``r`` sits at ``np.unravel_index(r, shape)``; its group and values agree with it."""
    for g in plan.groups:
        for k, r in enumerate(g.run_ids):
            i_scheme, i_scale, i_widths, i_lr, i_seed = np.unravel_index(r, plan.shape)
            assert g.spec.init.scheme == AXES["init.scheme"][i_scheme]
            assert list(g.spec.model.widths) == AXES["model.widths"][i_widths]
            assert g.values["init.scale"][k] == AXES["init.scale"][i_scale]
            assert g.values["optimizer.learning_rate"][k] == AXES["optimizer.learning_rate"][i_lr]
            assert g.values["seed"][k] == i_seed
    # the last axis varies fastest
    first = plan.groups[0]
    np.testing.assert_array_equal(first.values["seed"][:5], np.arange(5))
    # group 0 (zeros, widths [2]): both learning rates, then skip widths [4, 4] to the next scale
    np.testing.assert_array_equal(first.run_ids[:12], [*range(10), 20, 21])


def test_chunks_and_padding(plan):
    """20 runs per group in chunks of 4: 5 per group; with 6 the last chunk is short (padded)."""
    assert plan.chunk_size == 4 and plan.n_chunks == 6 * 5
    assert [chunk_id(g, c) for g, c in list(plan.chunks())[:6]] == [
        "0000-000000",
        "0000-000001",
        "0000-000002",
        "0000-000003",
        "0000-000004",
        "0001-000000",
    ]
    p6 = make_plan(plan.spec, chunk_size=6)
    assert p6.n_chunks == 6 * 4  # ceil(20 / 6)
    from jaxinit.engine.executors import chunk_values

    g = p6.groups[1]
    values, ids = chunk_values(g, 3, "float32")
    np.testing.assert_array_equal(ids, g.run_ids[18:])
    assert all(v.shape == (6,) for v in values.values())
    # padding repeats the last real run
    np.testing.assert_array_equal(values["seed"][2:], np.full(4, g.values["seed"][19]))
    assert values["seed"].dtype == np.int32 and values["init.scale"].dtype == np.float32


def test_chunk_size_capped_by_group_and_validated(plan):
    assert make_plan(plan.spec, chunk_size=10_000).chunk_size == 20
    for bad in (0, -3, 2.5):
        with pytest.raises(SpecError):
            make_plan(plan.spec, chunk_size=bad)


def test_default_chunk_size_is_fixed():
    spec = Spec.from_dict({"axes": {"seed": 100_000}})
    assert make_plan(spec, bytes_per_run=4096).chunk_size == CHUNK_BYTES // 4096
    assert make_plan(spec, bytes_per_run=10**6).chunk_size == CHUNK_BYTES // 10**6
    assert CHUNK_BYTES == 256 * 2**20


def test_coordinates(plan):
    coords = coordinates(plan)
    assert coords["model_widths"] == ["2", "4-4"]
    assert coords["seed"] == list(range(5))
    assert coords["init_scheme"] == AXES["init.scheme"]


def test_a_billion_run_plan_is_lazy_and_small():
    """Defect 5: planning 10⁹ runs materialises no coordinates (it crashed with 22 GiB)."""
    import tracemalloc

    spec = Spec.from_dict(
        {"axes": {"init.scale": [0.1 * (k + 1) for k in range(1000)],
                  "optimizer.learning_rate": [0.001 * (k + 1) for k in range(1000)], "seed": 1000}}
    )  # fmt: skip
    tracemalloc.start()
    p = make_plan(spec)
    group = p.group(0)
    ids = group.chunk_run_ids(p.chunks_per_group - 1)
    values = group.values_of(ids)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert p.n_runs == 10**9 and peak < 200 * 2**20
    assert ids[-1] == 10**9 - 1 and values["seed"][-1] == 999
    assert np.isclose(values["init.scale"][-1], 100.0)


def test_a_huge_seed_count_is_refused_before_allocating():
    with pytest.raises(SpecError, match=r"axes.seed must be a positive count \(1..2147483648\)"):
        Spec.from_dict({"axes": {"seed": 3_000_000_000}})
    assert len(Spec.from_dict({"axes": {"seed": 2**31}}).axes[0][1]) == 2**31  # lazy range


def test_lazy_plan_matches_the_materialised_product(plan):
    """Every run id once, in C order, with the coordinates np.unravel_index gives."""
    seen = []
    for g, c in plan.chunks():
        ids = g.chunk_run_ids(c)
        where = np.unravel_index(ids, plan.shape)
        vals = g.values_of(ids)
        for k, a in enumerate(plan.axes):
            if a.traced:
                assert np.array_equal(vals[a.path], np.asarray(a.values)[where[k]])
            else:
                assert (where[k] == g.static_key[plan.static_axes.index(k)]).all()
        seen.append(ids)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(plan.n_runs))
