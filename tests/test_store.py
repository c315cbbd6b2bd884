"""The sweep directory: checksummed chunks, no pickle, refusal of other versions and other specs,
clear errors for damaged files, and recomputation of damaged chunks on resume.

Most tests write chunks by hand through :class:`SweepDir` (no JAX work); the resume tests run a
real tiny sweep.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import jaxinit
import jaxinit.engine.executors as executors
from jaxinit.config.spec import FORMAT_VERSION, Spec
from jaxinit.engine import store
from jaxinit.engine.plan import chunk_id, make_plan

SPEC = Spec.from_dict(
    {"name": "st", "train": {"steps": 10, "log_every": 5}, "axes": {"seed": 6}}
)  # 6 runs; chunk size 2 -> chunks 0000-000000 .. 0000-000002


def _fake_dir(path: Path, spec: Spec = SPEC, chunk: int = 2) -> Path:
    """A finished sweep directory whose chunks hold ``final_loss = run_id / 10`` (no JAX)."""
    plan = make_plan(spec, chunk)
    with store.SweepDir(path, spec, chunk).open(explicit_chunk_size=True) as d:
        for g, c in plan.chunks():
            ids = g.run_ids[c * chunk : (c + 1) * chunk]
            d.write_chunk(chunk_id(g, c), {"run_id": ids, "final/final_loss": ids / 10})
    return path


def _chunk(path: Path, k: int = 1) -> Path:
    return path / "chunks" / f"0000-{k:06d}.npz"


def test_fake_dir_loads(tmp_path):
    ds = jaxinit.load(_fake_dir(tmp_path / "d"))
    np.testing.assert_array_equal(ds.final_loss.values, np.arange(6) / 10)
    assert bool(ds.done.all()) and ds.attrs["partial"] == 0


# -- damaged chunks ------------------------------------------------------------------------------
def _flip(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:-40])


def _delete(f: Path) -> None:
    f.unlink()


@pytest.mark.parametrize("damage", [_flip, _truncate, _delete])
def test_damaged_chunk_is_detected_on_load_with_its_path(tmp_path, damage):
    d = _fake_dir(tmp_path / "d")
    damage(_chunk(d))
    with pytest.raises(store.CorruptChunkError, match=re.escape(str(_chunk(d)))):
        jaxinit.load(d)
    with pytest.warns(UserWarning, match=re.escape(str(_chunk(d)))):
        ds = jaxinit.load(d, on_corrupt="skip")
    assert ds.done.values.tolist() == [True, True, False, False, True, True]
    assert np.isnan(ds.final_loss.values[2:4]).all()  # never silently read
    sd = store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    done, problems = sd.verified_done()
    sd.close()
    assert done == {"0000-000000", "0000-000002"}
    assert len(problems) == 1 and str(_chunk(d)) in problems[0] and "recomputed" in problems[0]


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """A real tiny sweep on disk (chunk size 2) and its results."""
    spec = {
        "name": "real",
        "task": {"name": "xor"},
        "model": {"widths": [3]},
        "train": {"steps": 10, "log_every": 5},
        "axes": {"init.scale": [0.5, 1.0], "seed": 3},
    }
    out = tmp_path_factory.mktemp("real") / "sweep"
    ds = jaxinit.run(spec, out, chunk_size=2, progress=False)
    return spec, out, {k: v.values for k, v in ds.data_vars.items()}


@pytest.mark.slow
def test_damaged_chunks_are_recomputed_on_resume(real_sweep):
    """Flip a byte in one chunk and truncate another: resuming warns with both paths, recomputes
    exactly those two chunks, and gives results bit-identical to the undamaged sweep."""
    spec, out, ref = real_sweep
    _flip(_chunk(out, 0))
    _truncate(_chunk(out, 2))
    untouched = _chunk(out, 1).stat().st_mtime_ns
    with pytest.warns(UserWarning) as record:
        ds = jaxinit.run(spec, out, progress=False)
    msgs = " ".join(str(w.message) for w in record)
    assert str(_chunk(out, 0)) in msgs and str(_chunk(out, 2)) in msgs
    assert _chunk(out, 1).stat().st_mtime_ns == untouched
    for k, v in ref.items():
        np.testing.assert_array_equal(ds[k].values, v, err_msg=k)
    np.testing.assert_array_equal(jaxinit.load(out).final_loss.values, ref["final_loss"])


# -- damaged metadata ----------------------------------------------------------------------------
def _edit_json(f: Path, fn) -> None:
    f.write_text(json.dumps(fn(json.loads(f.read_text()))))


SPEC_DAMAGE = {
    "truncated": lambda f: f.write_text(f.read_text()[:50]),
    "empty": lambda f: f.write_text(""),
    "not an object": lambda f: f.write_text("[1, 2]"),
    "no spec": lambda f: _edit_json(f, lambda m: {k: v for k, v in m.items() if k != "spec"}),
    "invalid spec": lambda f: _edit_json(f, lambda m: m | {"spec": {"task": {"name": 3}}}),
    "edited spec": lambda f: _edit_json(
        f, lambda m: m | {"spec": m["spec"] | {"seed": m["spec"]["seed"] + 1}}
    ),
    "bad chunk size": lambda f: _edit_json(f, lambda m: m | {"chunk_size": 0}),
}


@pytest.mark.parametrize("damage", list(SPEC_DAMAGE), ids=list(SPEC_DAMAGE))
def test_damaged_spec_json_is_a_clear_error(tmp_path, monkeypatch, damage):
    d = _fake_dir(tmp_path / "d")
    SPEC_DAMAGE[damage](d / "spec.json")
    pattern = re.escape(str(d / "spec.json"))
    with pytest.raises(store.StoreError, match=pattern):
        jaxinit.load(d)
    with pytest.raises(store.StoreError, match=pattern):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False)
    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(store.StoreError, match=pattern):
        jaxinit.run(SPEC, d, progress=False)
    # the refused opener released its lock: a healthy opener could take it
    store.SweepDir(tmp_path / "other", SPEC, 2).open(explicit_chunk_size=True).close()
    assert len(list((d / "chunks").glob("*.npz"))) == 3  # nothing deleted


MANIFEST_DAMAGE = {
    "truncated": lambda f: f.write_text(f.read_text()[:30]),
    "no chunks": lambda f: f.write_text("{}"),
    "chunks not a table": lambda f: f.write_text('{"chunks": [1]}'),
    "entry escapes dir": lambda f: _edit_json(
        f,
        lambda m: {
            "chunks": m["chunks"] | {"0000-000001": m["chunks"]["0000-000001"] | {"file": "../x"}}
        },
    ),
    "bad chunk id": lambda f: _edit_json(f, lambda m: {"chunks": m["chunks"] | {"x": {}}}),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE), ids=list(MANIFEST_DAMAGE))
def test_damaged_manifest_is_a_clear_error(tmp_path, damage):
    d = _fake_dir(tmp_path / "d")
    m = d / "manifest.0-of-1.json"
    MANIFEST_DAMAGE[damage](m)
    with pytest.raises(store.StoreError, match=re.escape(str(m)) + ".*delete it"):
        jaxinit.load(d)
    with pytest.raises(store.StoreError, match=re.escape(str(m))):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False)
    store.SweepDir(d / "x", SPEC, 2).open(explicit_chunk_size=True).close()  # lock released


# -- versions and specs --------------------------------------------------------------------------
def test_other_format_version_is_refused(tmp_path):
    d = _fake_dir(tmp_path / "d")
    _edit_json(
        d / "spec.json",
        lambda m: m | {"format_version": FORMAT_VERSION + 1, "jaxinit_version": "9"},
    )
    msg = rf"jaxinit 9 in format {FORMAT_VERSION + 1}.*this is jaxinit .*format {FORMAT_VERSION}"
    with pytest.raises(store.StoreError, match=msg):
        jaxinit.load(d)
    with pytest.raises(store.StoreError, match=msg):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False)


def test_resume_with_a_different_spec_is_refused(tmp_path, monkeypatch):
    d = _fake_dir(tmp_path / "d")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    other = SPEC.with_overrides({"train.steps": 20})
    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(store.StoreError, match="holds a different sweep.*another --out"):
        jaxinit.run(other, d, progress=False)
    with pytest.raises(store.StoreError, match="chunk size 2; resuming with 3"):
        store.SweepDir(d, SPEC, 3).open(explicit_chunk_size=True)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_not_a_sweep_directory(tmp_path):
    with pytest.raises(store.StoreError, match="not a jaxinit sweep directory"):
        jaxinit.load(tmp_path)


# -- no pickle -----------------------------------------------------------------------------------
class _Trap:
    """Unpickling this calls ``Path.touch(marker)``: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_object_array_chunk_is_refused_and_never_unpickled(tmp_path):
    d = _fake_dir(tmp_path / "d")
    marker = tmp_path / "unpickled"
    trap = np.empty(2, object)
    trap[:] = [_Trap(marker), _Trap(marker)]
    import io

    buf = io.BytesIO()
    np.savez(buf, run_id=np.array([2, 3]), **{"final/final_loss": trap})  # pickles the objects
    data = buf.getvalue()
    assert pickle.loads(pickle.dumps(_Trap(marker))) is None and marker.exists()  # trap works
    marker.unlink()
    _chunk(d).write_bytes(data)
    _edit_json(
        d / "manifest.0-of-1.json",
        lambda m: (
            m
            | {
                "chunks": m["chunks"]
                | {"0000-000001": m["chunks"]["0000-000001"] | {"sha256": store.sha256_hex(data)}}
            }
        ),
    )  # a manifest that vouches for it: the checksum is not the only guard
    with pytest.raises(store.CorruptChunkError, match=re.escape(str(_chunk(d))) + ".*decoded"):
        jaxinit.load(d)
    with pytest.raises(store.CorruptChunkError):
        list(store.iter_chunks(d))  # the path load_params reads too
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickle"):
        store.encode_chunk({"run_id": np.arange(2), "x": trap})


def test_no_pickle_in_package_source():
    """Every load path goes through np.load(allow_pickle=False); nothing imports pickle."""
    src = Path(jaxinit.__file__).parent
    loads = 0
    for f in src.rglob("*.py"):  # every subpackage too
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill)\b", text, re.M), f
        assert "allow_pickle=True" not in text and "read_pickle" not in text, f
        for call in re.findall(r"np\.load\((?:[^()]|\([^()]*\))*\)", text):
            assert "allow_pickle=False" in call, (f, call)
            loads += 1
    assert loads >= 1  # the pattern does find the store's np.load


def test_chunk_encoding_is_deterministic(monkeypatch):
    """Same arrays -> same bytes at any time, so a chunk recomputed by another process or shard
    matches the checksum its first writer recorded."""
    arrays = {"run_id": np.arange(3), "final/x": np.linspace(0, 1, 3, dtype=np.float32)}
    a = store.encode_chunk(arrays)
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    b = store.encode_chunk(arrays)
    assert a == b
    back = store.decode_chunk(b)
    assert back.keys() == arrays.keys()
    for k in arrays:
        assert back[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(back[k], arrays[k])


def test_partial_directory_loads_with_warning(tmp_path):
    d = _fake_dir(tmp_path / "d")
    m = d / "manifest.0-of-1.json"
    _edit_json(
        m, lambda x: x | {"chunks": {k: v for k, v in x["chunks"].items() if k != "0000-000002"}}
    )
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = jaxinit.load(d)
    assert any("partial (4/6 runs done)" in str(x.message) for x in w)
    assert ds.attrs["partial"] == 1 and ds.done.values.tolist() == [True] * 4 + [False] * 2


def test_foreign_directory_is_refused_and_untouched(tmp_path, monkeypatch):
    """``--out`` pointing at a non-empty directory that is not a sweep: refused, nothing added."""
    d = tmp_path / "home"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(store.StoreError, match="not empty and not a jaxinit sweep.*thesis.tex"):
        jaxinit.run(SPEC, d, progress=False)
    assert [p.name for p in d.iterdir()] == ["thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()
    store.SweepDir(empty, SPEC, 2).open(explicit_chunk_size=True).close()  # empty is fine
    assert (empty / "spec.json").exists()


def test_cleanup_removes_only_its_own_temp_files(tmp_path):
    d = _fake_dir(tmp_path / "d")
    ours = [d / "chunks" / ".0000-000001.npz.tmp999999", d / ".manifest.0-of-1.json.tmp999999"]
    theirs = [d / "notes" / ".draft.tmp1", d / "chunks" / ".keep.tmp1.txt"]
    (d / "notes").mkdir()
    for f in ours + theirs:
        f.write_bytes(b"x")
    store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False).close()
    assert not any(f.exists() for f in ours)
    assert all(f.exists() for f in theirs)


# -- only the store's own temp files are cleaned up -----------------------------------------------
USER_TOP = [
    ".env.tmp",
    ".gitlab-ci.tmpl",
    ".spec.json.tmpfoo",
    ".x.tmp123",
    ".x.tmp99999999",
    ".spec.json.tmp",
    ".spec.json.tmp0",
    ".spec.json.tmp12x",
    ".spec.json.tmp99999999.bak",
    ".manifest.json.tmp99999999",
    ".0000-000000.npz.tmp99999999",  # a chunk's temp name, but not in chunks/
]
USER_CHUNKS = [
    ".env.tmp",
    ".keep.tmp1.txt",
    ".0000-000000.npz.tmpfoo",
    ".x.npz.tmp99999999",
    ".0000-00000.npz.tmp99999999",
    ".spec.json.tmp99999999",  # spec's temp name, but in chunks/
]
DEAD_TEMPS = [  # what a killed writer (pid 99999999 cannot exist) leaves
    ".spec.json.tmp99999999",
    ".manifest.0-of-1.json.tmp99999999",
    ".manifest.1-of-2.json.tmp99999999",
    "chunks/.0000-000000.npz.tmp99999999",
]


def _plant_files(d: Path, names: list[str]) -> dict[Path, bytes]:
    """Create ``names`` under ``d``, each with distinct bytes; return ``{file: bytes}``."""
    files = {}
    for k, name in enumerate(names):
        f = d / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(f"{name} {k}\n".encode() + bytes(range(k, k + 8)))
        files[f] = f.read_bytes()
    return files


def _intact(files: dict[Path, bytes]) -> bool:
    return all(f.is_file() and f.read_bytes() == b for f, b in files.items())


@pytest.mark.parametrize("name", USER_TOP)
def test_fresh_out_dir_with_a_user_tmp_file_is_refused_and_untouched(tmp_path, monkeypatch, name):
    """``.env.tmp`` and the like are the user's, not a killed writer's: the directory is foreign."""
    d = tmp_path / "out"
    files = _plant_files(d, [name])
    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(store.StoreError, match="not empty and not a jaxinit sweep"):
        jaxinit.run(SPEC, d, progress=False)
    with pytest.raises(store.StoreError, match=re.escape(repr(name))):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    assert _intact(files) and sorted(d.iterdir()) == sorted(files)


def test_fresh_out_dir_keeps_user_files_in_chunks_and_cleans_dead_temps(tmp_path):
    """A killed new sweep (only temp files, no spec.json) is reopened: its temps go, user files
    that merely look like temps stay."""
    d = tmp_path / "out"
    theirs = _plant_files(d, [f"chunks/{n}" for n in USER_CHUNKS])
    ours = _plant_files(d, DEAD_TEMPS)
    store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True).close()
    assert _intact(theirs)
    assert not any(f.exists() for f in ours)
    assert (d / "spec.json").is_file()


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)], ids=["exclusive", "sharded"])
def test_existing_sweep_dir_keeps_user_tmp_files_byte_for_byte(tmp_path, shard):
    d = _fake_dir(tmp_path / "d")
    theirs = _plant_files(d, USER_TOP + [f"chunks/{n}" for n in USER_CHUNKS])
    ours = _plant_files(d, DEAD_TEMPS)
    store.SweepDir(d, SPEC, 2, shard=shard).open(explicit_chunk_size=False).close()
    assert _intact(theirs)
    assert not any(f.exists() for f in ours)
    assert len(list((d / "chunks").glob("*.npz"))) == 3


# -- chunks are checked against the plan ---------------------------------------------------------
PLAN = make_plan(SPEC, 2)
MEMBERS = {"final/final_loss": ((), "float64")}  # what _fake_dir writes
CID = "0000-000001"  # plan run ids [2, 3]


def _expect(members=MEMBERS) -> store.Expect:
    ids = {chunk_id(g, c): g.run_ids[c * 2 : (c + 1) * 2] for g, c in PLAN.chunks()}
    return lambda cid: store.ChunkExpect(ids[cid], members) if cid in ids else None


def _plant(d: Path, cid: str, data: bytes) -> dict:
    """Store ``data`` as chunk ``cid`` with a manifest entry that vouches for it (true SHA-256)."""
    rel = f"chunks/{cid}.npz"
    (d / rel).write_bytes(data)
    entry = {"file": rel, "sha256": store.sha256_hex(data), "runs": 2}
    _edit_json(d / "manifest.0-of-1.json", lambda m: m | {"chunks": m["chunks"] | {cid: entry}})
    return entry


def _npz(members: dict[str, bytes]) -> bytes:
    """A stored (uncompressed) zip of raw ``.npy`` members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _huge_header_chunk() -> bytes:
    """``run_id`` is fine; ``final/final_loss``'s header declares 10**12 float64 (8 TB) and is
    followed by 16 bytes: a reader that trusts the header allocates before it finds out."""
    hdr = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        hdr, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    return _npz({"run_id": _npy(np.array([2, 3])), "final/final_loss": hdr.getvalue() + b"\0" * 16})


def _good(ids=(2, 3), **extra) -> bytes:
    ids = np.asarray(ids)
    return store.encode_chunk({"run_id": ids, "final/final_loss": ids / 10, **extra})


ATTACKS = {
    "negative run ids": (lambda d: _good((-1, 3)), "run ids do not match chunk 0000-000001"),
    "out-of-range run ids": (lambda d: _good((6, 7)), "run ids do not match"),
    "other chunk's run ids": (lambda d: _good((0, 1)), "run ids do not match"),
    "reordered run ids": (lambda d: _good((3, 2)), "run ids do not match"),
    "copied chunk": (lambda d: _chunk(d, 0).read_bytes(), "run ids do not match"),
    "too few runs": (lambda d: _good((2,)), "holds 1 runs; chunk 0000-000001 .* has 2"),
    "extra member": (lambda d: _good(**{"final/evil": np.zeros(2)}), r"unexpected .*final/evil"),
    "missing member": (
        lambda d: store.encode_chunk({"run_id": np.array([2, 3])}),
        r"missing members \['final/final_loss'\]",
    ),
    "huge header": (lambda d: _huge_header_chunk(), r"declares shape \(1000000000000,\)"),
    "wrong dtype": (
        lambda d: store.encode_chunk(
            {"run_id": np.array([2, 3]), "final/final_loss": np.zeros(2, np.float32)}
        ),
        "float32 .*expected float64",
    ),
    "wrong shape": (
        lambda d: store.encode_chunk(
            {"run_id": np.array([2, 3]), "final/final_loss": np.zeros((2, 3))}
        ),
        r"shape \(2, 3\); expected float64 of shape \(2,\)",
    ),
    "float run ids": (lambda d: _good((2.0, 3.0)), "run_id is float64"),
    "compressed member": (
        lambda d: _zip_deflated({"run_id": np.array([2, 3]), "final/final_loss": np.zeros(2)}),
        "compressed",
    ),
}


def _zip_deflated(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_chunk_that_does_not_fit_the_plan_is_refused(tmp_path, attack):
    """A file the manifest vouches for (true checksum) but that is not what the plan puts under
    its id: refused by read_chunk, iter_chunks and verified_done, naming chunk, file, problem."""
    make, problem = ATTACKS[attack]
    d = _fake_dir(tmp_path / "d")
    entry = _plant(d, CID, make(d))
    names = rf"chunk {CID} \({re.escape(str(_chunk(d)))}\).*{problem}"
    start = time.perf_counter()
    with pytest.raises(store.CorruptChunkError, match=names):
        store.read_chunk(d, CID, entry, _expect()(CID))
    assert time.perf_counter() - start < 2
    with pytest.raises(store.CorruptChunkError, match=names + ".*recompute"):
        list(store.iter_chunks(d, expect=_expect()))
    with pytest.warns(UserWarning, match=names):
        kept = list(store.iter_chunks(d, on_corrupt="skip", expect=_expect()))
    assert [c["run_id"].tolist() for c in kept] == [[0, 1], [4, 5]]
    with store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False) as sd:
        done, problems = sd.verified_done(_expect())
    assert done == {"0000-000000", "0000-000002"}
    assert len(problems) == 1 and re.search(names, problems[0]) and "recomputed" in problems[0]


def test_huge_header_is_refused_without_allocating_even_without_expect(tmp_path):
    d = _fake_dir(tmp_path / "d")
    entry = _plant(d, CID, _huge_header_chunk())
    start = time.perf_counter()
    with pytest.raises(store.CorruptChunkError, match=r"declares shape \(1000000000000,\)"):
        store.read_chunk(d, CID, entry)
    with pytest.raises(store.CorruptChunkError, match="declares shape"):
        list(store.iter_chunks(d))
    assert time.perf_counter() - start < 2


def test_chunk_id_not_in_the_plan_is_refused(tmp_path):
    d = _fake_dir(tmp_path / "d")
    stray = "0000-000009"
    _plant(d, stray, _chunk(d, 0).read_bytes())
    msg = rf"chunk {stray} .*{stray}\.npz.*not in this sweep's plan"
    with pytest.raises(store.CorruptChunkError, match=msg):
        list(store.iter_chunks(d, expect=_expect()))
    with pytest.warns(UserWarning, match=msg):
        kept = list(store.iter_chunks(d, on_corrupt="skip", expect=_expect()))
    assert [c["run_id"].tolist() for c in kept] == [[0, 1], [2, 3], [4, 5]]
    with store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False) as sd:
        done, problems = sd.verified_done(_expect())
    assert done == {"0000-000000", "0000-000001", "0000-000002"}
    assert len(problems) == 1 and re.search(msg, problems[0])


@pytest.mark.parametrize("members", [MEMBERS, None], ids=["members", "names only"])
def test_good_chunks_pass_the_plan_check(tmp_path, members):
    d = _fake_dir(tmp_path / "d")
    entry = json.loads((d / "manifest.0-of-1.json").read_text())["chunks"][CID]
    got = store.read_chunk(d, CID, entry, _expect(members)(CID))
    assert got.keys() == {"run_id", "final/final_loss"}
    assert got["run_id"].dtype == np.int64 and got["run_id"].tolist() == [2, 3]
    np.testing.assert_array_equal(got["final/final_loss"], [0.2, 0.3])
    chunks = list(store.iter_chunks(d, expect=_expect(members)))
    assert np.concatenate([c["run_id"] for c in chunks]).tolist() == list(range(6))
    with store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=False) as sd:
        assert sd.verified_done(_expect(members)) == ({c for c in sd.manifest}, [])


def test_member_names_and_sizes_are_checked_without_member_shapes(tmp_path, monkeypatch):
    """``ChunkExpect(run_ids)`` alone: names must be engine outputs, sizes per run bounded."""
    d = _fake_dir(tmp_path / "d")
    ok = store.encode_chunk(
        {"run_id": np.array([2, 3]), "params/layers/0/w": np.zeros((2, 3, 4), np.float32)}
    )
    store.read_chunk(d, CID, _plant(d, CID, ok), _expect(None)(CID))
    for name in ["evil", "final", "final/", "other/x", "final/a b", "run_id/x"]:
        entry = _plant(d, CID, _good(**{name: np.zeros(2)}))
        with pytest.raises(store.CorruptChunkError, match=re.escape(repr(name))):
            store.read_chunk(d, CID, entry, _expect(None)(CID))
    monkeypatch.setattr(store, "MAX_MEMBER_ELEMS_PER_RUN", 11)
    with pytest.raises(store.CorruptChunkError, match="too large per run"):
        store.read_chunk(d, CID, _plant(d, CID, ok), _expect(None)(CID))


# -- shared filesystems: writers' claims where flock is not honoured -------------------------------
def _no_flock(monkeypatch, errno_code: int | None = None) -> None:
    """flock that does nothing (NFS without a lock manager: every opener "gets" the lock), or
    that fails with ``errno_code`` (ENOLCK: a filesystem without flock)."""
    import os

    def flock(f, mode):
        if errno_code is not None:
            raise OSError(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(store.fcntl, "flock", flock)


def _foreign_claim(path: Path, *, age_s: float, pid: int = 4242) -> None:
    import os

    path.write_text(json.dumps({"host": "elsewhere", "host_id": "0" * 12, "pid": pid,
                                "token": "f" * 32, "since": time.time() - age_s}))  # fmt: skip
    os.utime(path, (time.time() - age_s,) * 2)


@pytest.mark.parametrize("flock", ["ignored", "ENOLCK"])
def test_claims_keep_two_writers_of_one_shard_apart_without_flock(tmp_path, monkeypatch, flock):
    import errno

    errno_code = errno.ENOLCK if flock == "ENOLCK" else None
    _no_flock(monkeypatch, errno_code)
    d = tmp_path / "d"
    first = store.SweepDir(d, SPEC, 2, (1, 2)).open(explicit_chunk_size=True)
    assert (d / "writer.1-of-2").is_file()
    assert first.flock_honoured is (errno_code is None)  # a no-op flock cannot be told apart
    with pytest.raises(store.StoreError, match=r"in use by another jaxinit process.*shard 1/2"):
        store.SweepDir(d, SPEC, 2, (1, 2)).open(explicit_chunk_size=True)
    other = store.SweepDir(d, SPEC, 2, (0, 2)).open(explicit_chunk_size=True)  # other shard: fine
    first.write_chunk("0000-000001", {"run_id": np.array([2, 3]), "final/final_loss": np.ones(2)})
    other.close()
    first.close()
    assert not (d / "writer.1-of-2").exists()  # released: the next writer of 1/2 gets in
    store.SweepDir(d, SPEC, 2, (1, 2)).open(explicit_chunk_size=True).close()
    assert list(store.read_manifests(d)) == ["0000-000001"]


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path, monkeypatch):
    import subprocess
    import sys

    from jaxinit.engine import claims

    _no_flock(monkeypatch)
    d = tmp_path / "d"
    store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True).close()
    claim = d / "writer.0-of-1"
    _foreign_claim(claim, age_s=5)  # another machine's writer, heartbeat 5 s ago: alive
    with pytest.raises(store.StoreError, match=r"elsewhere:4242, heartbeat 5 s ago"):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    assert json.loads(claim.read_text())["host"] == "elsewhere"  # left alone
    _foreign_claim(claim, age_s=claims.STALE_S + 5)  # silent for too long: gone
    store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True).close()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)  # fmt: skip
    claim.write_text(json.dumps({"host": "here", "host_id": claims.host_id(), "pid": dead,
                                 "token": "d" * 32, "since": time.time()}))  # fmt: skip
    with store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True):  # this machine, dead pid
        assert json.loads(claim.read_text())["pid"] != dead


def test_a_writer_whose_claim_was_taken_over_stops_before_its_manifest(tmp_path, monkeypatch):
    _no_flock(monkeypatch)
    d = tmp_path / "d"
    w = store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    w.write_chunk("0000-000000", {"run_id": np.array([0, 1]), "final/final_loss": np.ones(2)})
    _foreign_claim(d / "writer.0-of-1", age_s=0)  # another machine judged us stale
    before = (d / "manifest.0-of-1.json").read_bytes()
    with pytest.raises(store.StoreError, match=r"took the shard over"):
        w.write_chunk("0000-000001", {"run_id": np.array([2, 3]), "final/final_loss": np.ones(2)})
    assert (d / "manifest.0-of-1.json").read_bytes() == before
    w.close()
    assert (d / "writer.0-of-1").exists()  # not ours to delete


def test_heartbeat_keeps_the_claim_fresh(tmp_path, monkeypatch):
    import os

    from jaxinit.engine import claims

    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    d = tmp_path / "d"
    with store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True):
        os.utime(d / "writer.0-of-1", (1.0, 1.0))
        deadline = time.time() + 10
        while (d / "writer.0-of-1").stat().st_mtime < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert time.time() - (d / "writer.0-of-1").stat().st_mtime < 10


def test_temp_files_of_other_machines_are_kept_until_stale(tmp_path):
    import os

    from jaxinit.engine import claims

    d = _fake_dir(tmp_path / "d")
    fresh = d / "chunks" / f".0000-000001.npz.tmp{os.getpid()}-{'a' * 12}"  # live elsewhere
    old = d / "chunks" / f".0000-000002.npz.tmp{os.getpid()}-{'b' * 12}"
    mine_dead = d / ".manifest.0-of-1.json.tmp999999999"  # this machine (no host id), dead pid
    for p in (fresh, old, mine_dead):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - claims.STALE_S - 5,) * 2)
    store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True).close()
    assert fresh.exists() and not old.exists() and not mine_dead.exists()
    assert store.atomic_write(d / "x", b"y") and not list(d.glob(".x.tmp*"))


# -- issue 25: nothing lost, nothing mixed -------------------------------------------------------
@pytest.mark.parametrize(
    "names",
    [["report/summary.txt", "report/final_loss.png"], ["chunks/0000-000000.npz"], ["lock"],
     ["manifest.0-of-1.json"]],
    ids=["report folder", "chunk-named file", "non-empty lock", "manifest"],
)  # fmt: skip
def test_new_out_dir_with_user_files_where_the_store_writes_is_refused_untouched(tmp_path, names):
    """A user's ``report/`` or a file under a name the store writes passed the foreign-directory
    check and was overwritten; now the directory is refused, naming the file, and left alone."""
    d = tmp_path / "d"
    theirs = _plant_files(d, names)
    with pytest.raises(store.StoreError, match=re.escape(repr(names[0].split("/")[0]))
                       if names[0].startswith("report") else re.escape(repr(names[0]))):  # fmt: skip
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    assert _intact(theirs)
    assert sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file()) == sorted(
        f.relative_to(d) for f in theirs
    )  # nothing written: no spec.json, lock, chunks/


def test_report_never_writes_over_a_file_it_did_not_write(tiny_sweep, tmp_path):
    from jaxinit.reports import write_report

    out = tmp_path / "report"
    first = write_report(tiny_sweep, out)  # a fresh folder: written, and indexed
    again = write_report(tiny_sweep, out)  # its own files: replaced
    assert first == again and all(p.is_file() for p in again)
    (out / "summary.txt").unlink()
    mine = _plant_files(out, ["summary.txt", "notes.md"])  # the user's now, not jaxinit's
    with pytest.raises(store.StoreError, match=re.escape(str(out / "summary.txt"))):
        write_report(tiny_sweep, out)
    assert _intact(mine)
    other = tmp_path / "other"
    theirs = _plant_files(other, [first[0].name])  # e.g. final_loss.png, never written by us
    with pytest.raises(store.StoreError, match="not written by jaxinit"):
        write_report(tiny_sweep, other)
    assert _intact(theirs) and sorted(other.iterdir()) == sorted(theirs)  # nothing written


SPEC_LR = Spec.from_dict(SPEC.to_dict() | {"optimizer": {"learning_rate": 0.4}})
"""Another sweep: the same plan (run ids, chunks, shapes), another learning rate."""


def _shard_dir(path: Path, spec: Spec, shard: tuple[int, int]) -> Path:
    """Shard ``i/n`` of ``spec``'s sweep, chunks holding ``final_loss = run_id / 10`` (no JAX)."""
    plan = make_plan(spec, 2)
    with store.SweepDir(path, spec, 2, shard).open(explicit_chunk_size=True) as d:
        for k, (g, c) in enumerate(plan.chunks()):
            if k % shard[1] == shard[0]:
                ids = g.run_ids[c * 2 : (c + 1) * 2]
                d.write_chunk(chunk_id(g, c), {"run_id": ids, "final/final_loss": ids / 10})
    return path


def test_manifest_and_chunks_of_another_sweep_are_refused_naming_the_file(tmp_path):
    """Issue 25's repro: shard 0/2 into dX, shard 1/2 of another learning rate into dY, dY's
    manifest and chunks copied into dX. Load, status and resume used to take them."""
    dx, dy = _shard_dir(tmp_path / "dX", SPEC, (0, 2)), _shard_dir(tmp_path / "dY", SPEC_LR, (1, 2))
    foreign = dx / "manifest.1-of-2.json"
    foreign.write_bytes((dy / "manifest.1-of-2.json").read_bytes())
    for f in (dy / "chunks").iterdir():
        (dx / "chunks" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(store.ForeignFileError, match=re.escape(str(foreign)) + ".*another sweep"):
        jaxinit.load(dx)
    with pytest.warns(UserWarning, match=re.escape(str(foreign))):
        ds = jaxinit.load(dx, on_corrupt="skip")
    assert int(ds.done.sum()) == 4  # only dX's own chunks 0 and 2
    st = jaxinit.status(dx)
    assert st.runs_done == 4 and not st.complete
    assert any(str(foreign) in p and "another sweep" in p for p in st.problems), st.problems
    with pytest.raises(store.StoreError, match=re.escape(str(foreign))):
        store.SweepDir(dx, SPEC, 2, (1, 2)).open(explicit_chunk_size=True)  # resume refuses
    assert foreign.read_bytes() == (dy / "manifest.1-of-2.json").read_bytes()  # left as it was


def test_chunk_of_another_sweep_under_a_vouching_manifest_is_refused(tmp_path):
    """A chunk carries its sweep's fingerprint: one of another sweep, even with this sweep's
    run ids, shapes and a manifest entry that vouches for its checksum, is named and refused."""
    dx, dy = _shard_dir(tmp_path / "dX", SPEC, (0, 1)), _shard_dir(tmp_path / "dY", SPEC_LR, (0, 1))
    entry = _plant(dx, CID, _chunk(dy).read_bytes())
    with pytest.raises(
        store.CorruptChunkError, match=re.escape(str(_chunk(dx))) + ".*another sweep"
    ):
        jaxinit.load(dx)
    with store.SweepDir(dx, SPEC, 2).open(explicit_chunk_size=True) as d:
        done, problems = d.verified_done(store.expect_for(make_plan(SPEC, 2)))
    assert CID not in done and any("another sweep" in p for p in problems), problems
    assert entry["sha256"] == store.sha256_hex(_chunk(dx).read_bytes())  # the checksum did vouch


@pytest.mark.parametrize(
    "shard, message",
    [((0, 0), "0 <= i < n"), ((3, 2), "0 <= i < n"), ((-1, 2), "0 <= i < n"),
     ("３/４", "ASCII digits"), ("0/99999999999999999999", "only 3 chunk"), ((0, 1025), "only 3"),
     ((True, 2), "pair of integers")],
)  # fmt: skip
def test_bad_shard_is_refused_before_anything_is_written(tmp_path, monkeypatch, shard, message):
    monkeypatch.setattr(executors.Executor, "compile", lambda *a, **k: pytest.fail("compiled"))
    out = tmp_path / "out"
    with pytest.raises(jaxinit.SpecError, match=re.escape(message)):
        jaxinit.run(SPEC, out, chunk_size=2, shard=shard, progress=False)
    assert not out.exists()
    if isinstance(shard, tuple) and shard[1] < 1000:
        with pytest.raises(jaxinit.SpecError, match=re.escape(message)):
            store.SweepDir(out, SPEC, 2, shard)
        assert not out.exists()


def test_corrupt_spec_json_or_broken_link_is_refused_before_anything_is_created(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "spec.json").write_text("{bad")
    with pytest.raises(store.StoreError, match="spec.json is unreadable or corrupt"):
        store.SweepDir(d, SPEC, 2).open(explicit_chunk_size=True)
    assert [p.name for p in d.iterdir()] == ["spec.json"]  # no chunks/, no lock
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "x")
    with pytest.raises(store.StoreError, match="broken symbolic link"):
        store.SweepDir(link, SPEC, 2).open(explicit_chunk_size=True)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(store.StoreError, match="does not exist"):
        jaxinit.load(tmp_path / "nonexistent")


# -- issue 20: probe sweeps use this store --------------------------------------------------------
PROBE = {"name": "p", "kind": "jacobian_spectrum", "probe": {"width": 4, "depths": [1]},
         "axes": {"activation": ["linear"], "seed": 2}}  # fmt: skip


def test_a_probe_directory_is_a_stamped_sweep_directory_and_an_edited_spec_is_refused(tmp_path):
    """Was: probe.json + one unstamped probe.npz, written at the end; now spec.json (with the
    probe's identity), a manifest and stamped chunks, checked as a training sweep's are."""
    out = tmp_path / "p"
    jaxinit.run(PROBE, out, progress=False)
    spec, meta = store.read_spec(out)
    assert spec.kind == "jacobian_spectrum" and meta["identity"]["probe.width"] == 4
    assert meta["stamped"] and meta["identity"]["chunk.seeds"] == 2
    (chunk,) = (out / "chunks").glob("*.npz")
    assert store._stamp_in(chunk.read_bytes()) == meta["fingerprint"]
    assert not (out / "probe.json").exists()
    meta["spec"]["probe"]["width"] = 8  # an edit: the identity says 4
    (out / "spec.json").write_text(json.dumps(meta))
    with pytest.raises(store.StoreError, match="spec does not match its run identity"):
        jaxinit.load(out)


def test_an_older_probe_directory_is_named_with_what_to_do(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "probe.json").write_text("{}")
    (old / "probe.npz").write_bytes(b"")
    with pytest.raises(store.StoreError, match="older jaxinit.*run the probe spec again"):
        jaxinit.load(old)
    with pytest.raises(store.StoreError, match="not empty and not a jaxinit sweep"):
        jaxinit.run(PROBE, old, progress=False)  # its files are not written over
    assert sorted(p.name for p in old.iterdir()) == ["probe.json", "probe.npz"]
