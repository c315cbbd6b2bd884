"""A user's own data set: read, checked and hashed before anything compiles.

A sweep on user data names task ``arrays`` (:func:`jaxinit.blocks.tasks.arrays`). The data arrive as
arrays (``jaxinit.run(spec, data=...)``: a mapping or NamedTuple with ``x_train``, ``y_train``
and optionally ``x_test``, ``y_test``), or from a file named by ``[task] path``: an ``.npz``
with those keys (read with ``allow_pickle=False``), or a ``.csv`` with a header row of column
names (``inputs = [...]``, default every other column, and ``target = "..."``). A relative
``path`` in a TOML spec is relative to the spec file's folder.

Two steps, so the checks that need the loss wait for the spec:

1. :func:`check_raw` (the arrays as given): known keys, numeric dtypes, 2-D inputs with at least
   one row and column, targets 1-D or 2-D, matching lengths, test inputs as wide as the training
   ones, no NaN or inf. The checked arrays are hashed by :func:`content_hash` (SHA-256 of each
   array's name, dtype, shape and bytes): the hash is ``task.data_sha256``, part of the run
   identity (:mod:`jaxinit.engine.identity`).
2. :func:`for_loss`: class labels (``ce``: integers ``0..K-1``, every class present; ``bce``:
   0 or 1), the test split, and ``float32`` inputs (as every built-in task).

Without test arrays the test set is the training set, unless ``test_fraction > 0``: then that
fraction of the rows (rounded, at least one) is held out by a permutation seeded with the data's
own hash, so the split is a function of the data alone.

A sweep directory keeps a copy of the arrays as given, ``data.npz`` (:data:`DATA_FILE`), and its
``spec.json`` names that copy (``path = "data.npz"``, relative to the directory) with the hash:
a report made later reads the copy, so it stays right when the user's file moves or changes,
and when the directory itself moves (:func:`beside`).

>>> import numpy as np
>>> raw = check_raw({"x_train": np.eye(2), "y_train": np.array([0, 1])})
>>> [a.shape for a in for_loss(raw, "ce")]
[(2, 2), (2,), (2, 2), (2,)]
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxinit.config.bundled import find_spec
from jaxinit.config.spec import Spec, SpecError

__all__ = [
    "DATA_FILE",
    "DATA_KEYS",
    "LOSSES",
    "SOURCE_FIELDS",
    "UserArrays",
    "beside",
    "check_raw",
    "content_hash",
    "for_loss",
    "npz_bytes",
    "pin",
    "raw_arrays",
    "spec_arrays",
    "read_file",
    "register",
    "with_data",
]

DATA_KEYS = ("x_train", "y_train", "x_test", "y_test")
LOSSES = ("mse", "bce", "ce")
DATA_FILE = "data.npz"
"""The copy of a sweep's data in its directory, beside ``spec.json``."""

SOURCE_FIELDS = ("path", "inputs", "target")
"""``[task]`` fields that say where the arrays come from, not what they are: left out of the run
identity (the content hash stands for them), so a moved or re-exported file resumes."""

_SHA = re.compile(r"[0-9a-f]{64}")


class UserArrays(NamedTuple):
    """Arrays ready for a :class:`~jaxinit.blocks.tasks.Task`; the test set may be the training set."""

    x_train: np.ndarray  # (N, I) float32
    y_train: np.ndarray  # (N,) int32 for "ce", (N, O) float32 otherwise
    x_test: np.ndarray  # (M, I) float32
    y_test: np.ndarray  # like y_train, M rows


# -- step 1: the arrays as given ----------------------------------------------------------------
def _as_mapping(data: Any, source: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "_asdict"):  # a NamedTuple
        return dict(data._asdict())
    raise SpecError(
        f"{source}: expected a mapping or NamedTuple with x_train, y_train (and optionally "
        f"x_test, y_test), got {type(data).__name__}"
    )


def _first_bad(a: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return f"[{', '.join(map(str, idx))}] = {a[idx]}"


def check_raw(data: Any, source: str = "data") -> dict[str, np.ndarray]:
    """The arrays of ``data`` checked for shape, dtype and finiteness (step 1, no loss needed).

    Returns ``name -> read-only copy`` for the keys given. Raises :class:`SpecError` naming the
    array and the problem."""
    given = _as_mapping(data, source)
    unknown = sorted(set(given) - set(DATA_KEYS))
    if unknown:
        raise SpecError(
            f"{source}: unknown array(s) {', '.join(map(repr, unknown))}; expected x_train, "
            "y_train and optionally x_test, y_test"
        )
    for k in ("x_train", "y_train"):
        if given.get(k) is None:
            raise SpecError(f"{source}: no {k} (x_train and y_train are required)")
    tests = [k for k in ("x_test", "y_test") if given.get(k) is not None]
    if len(tests) == 1:
        other = "y_test" if tests[0] == "x_test" else "x_test"
        raise SpecError(f"{source}: {tests[0]} without {other}: give both test arrays or neither")
    out: dict[str, np.ndarray] = {}
    for k in DATA_KEYS:
        if given.get(k) is None:
            continue
        try:
            a = np.array(given[k])  # a copy: later edits of the caller's array change nothing
        except Exception as e:  # ragged lists and the like
            raise SpecError(f"{source}: {k} is not an array: {type(e).__name__}: {e}") from None
        if a.dtype.kind not in "biuf":
            raise SpecError(
                f"{source}: {k} has dtype {a.dtype}, not a number type (bool, int or float): "
                "encode categories as integers"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            n = int((~np.isfinite(a)).sum())
            raise SpecError(f"{source}: {k} has {n} NaN or inf value(s), first {k}{_first_bad(a)}")
        a.flags.writeable = False
        out[k] = a
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if x not in out:
            continue
        xa, ya = out[x], out[y]
        if xa.ndim != 2:
            hint = " (one feature: x.reshape(-1, 1))" if xa.ndim == 1 else ""
            raise SpecError(
                f"{source}: {x} must be 2-D (points, features), got shape {xa.shape}{hint}"
            )
        if xa.shape[0] < 1 or xa.shape[1] < 1:
            raise SpecError(f"{source}: {x} is empty (shape {xa.shape})")
        if ya.ndim not in (1, 2) or (ya.ndim == 2 and ya.shape[1] < 1):
            raise SpecError(
                f"{source}: {y} must be 1-D (points,) or 2-D (points, outputs), got shape {ya.shape}"
            )
        if len(ya) != len(xa):
            raise SpecError(
                f"{source}: {x} has {len(xa)} rows but {y} has {len(ya)}: one target per input row"
            )
    if "x_test" in out:
        xt, xs = out["x_train"], out["x_test"]
        if xs.shape[1] != xt.shape[1]:
            raise SpecError(
                f"{source}: x_test has {xs.shape[1]} features but x_train has {xt.shape[1]}"
            )
        yt, ys = out["y_train"], out["y_test"]
        if yt.shape[1:] != ys.shape[1:]:
            raise SpecError(
                f"{source}: y_test has shape {ys.shape} but y_train {yt.shape}: the outputs must match"
            )
    return out


def content_hash(raw: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes (C order), in :data:`DATA_KEYS`
    order: equal for equal arrays wherever they came from, different if any value changes."""
    h = hashlib.sha256()
    for k in DATA_KEYS:
        if k in raw:
            a = np.ascontiguousarray(raw[k])
            h.update(f"{k}:{a.dtype.str}:{list(a.shape)};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


# -- step 2: what the loss needs ----------------------------------------------------------------
def _labels(y: np.ndarray, name: str, loss: str, source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if loss == "ce" and y.ndim != 1:
        raise SpecError(
            f"{source}: loss 'ce' takes one integer label per row; {name} has shape {y.shape}"
        )
    whole = np.round(y) == y
    if not whole.all():
        i = int(np.flatnonzero(~whole.ravel())[0])
        raise SpecError(
            f"{source}: loss {loss!r} needs integer class labels; {name} holds {y.ravel()[i]}"
        )
    return y


def for_loss(raw: Mapping[str, np.ndarray], loss: str, test_fraction: float = 0.0,
             source: str = "data") -> UserArrays:  # fmt: skip
    """Step 2: the arrays a task with loss ``loss`` trains on (labels checked, test split made,
    inputs as float32). Raises :class:`SpecError`."""
    if loss not in LOSSES:
        raise SpecError(
            f"task 'arrays' needs loss = 'mse', 'bce' or 'ce' (in [task]), got {loss!r}"
        )
    if not 0.0 <= test_fraction < 1.0:
        raise SpecError(f"task.test_fraction must be in [0, 1), got {test_fraction}")
    x, y = raw["x_train"], raw["y_train"]
    if "x_test" in raw:
        if test_fraction > 0:
            raise SpecError(f"{source}: has x_test and y_test, so task.test_fraction must be 0")
        xs, ys = raw["x_test"], raw["y_test"]
    elif test_fraction > 0:
        n_test = max(1, round(test_fraction * len(x)))
        if n_test >= len(x):
            raise SpecError(
                f"{source}: test_fraction = {test_fraction} of {len(x)} rows leaves none to train on"
            )
        seed = int(content_hash(raw)[:16], 16)
        order = np.random.default_rng(seed).permutation(len(x))
        x, y, xs, ys = x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]
    else:
        xs, ys = x, y
    if loss in ("ce", "bce"):
        y, ys = _labels(y, "y_train", loss, source), _labels(ys, "y_test", loss, source)
    if loss == "ce":
        both = np.concatenate([y, ys])
        if both.min() < 0:
            raise SpecError(f"{source}: loss 'ce' needs labels 0..K-1; found label {both.min():g}")
        classes = np.unique(both).astype(np.int64)
        k = int(classes[-1]) + 1
        if len(classes) != k:
            missing = sorted(set(range(k)) - set(classes.tolist()))
            raise SpecError(
                f"{source}: loss 'ce' needs labels 0..K-1 with every class present; labels run to "
                f"{k - 1} but {missing[:5]} never occur (renumber the classes 0..{len(classes) - 1})"
            )
        y, ys = y.astype(np.int32), ys.astype(np.int32)
    else:
        if loss == "bce":
            bad = ~np.isin(np.concatenate([y.ravel(), ys.ravel()]), (0, 1))
            if bad.any():
                value = np.concatenate([y.ravel(), ys.ravel()])[np.flatnonzero(bad)[0]]
                raise SpecError(f"{source}: loss 'bce' needs labels 0 or 1; found {value:g}")
        y, ys = (a[:, None] if a.ndim == 1 else a for a in (y, ys))
        y, ys = _float32("y_train", y, source), _float32("y_test", ys, source)
    return UserArrays(_float32("x_train", x, source), y, _float32("x_test", xs, source), ys)


def _float32(name: str, a: np.ndarray, source: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.asarray(a, np.float32)
    if not np.isfinite(out).all():
        raise SpecError(
            f"{source}: {name} has values beyond float32's range (largest |value| "
            f"{np.abs(a).max():.4g}); rescale the data"
        )
    return out


# -- files --------------------------------------------------------------------------------------
def read_file(path: str | Path, inputs: Sequence[str] | None = None, target: str = "") -> dict:
    """The checked arrays (step 1) of an ``.npz`` or ``.csv`` file. Raises :class:`SpecError`."""
    p = Path(path)
    if p.suffix.lower() not in (".npz", ".csv"):
        raise SpecError(f"task.path {str(path)!r}: expected a .npz or .csv file")
    try:
        stat = p.stat()
    except OSError as e:
        raise SpecError(f"task.path {str(path)!r}: cannot read it ({e.strerror or e})") from None
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size, tuple(inputs or ()), target)
    return _read_file(*key)


@functools.lru_cache(maxsize=8)
def _read_file(path: str, _mtime: int, _size: int, inputs: tuple[str, ...], target: str) -> dict:
    if path.lower().endswith(".npz"):
        if inputs or target:
            raise SpecError(f"task.inputs and task.target name columns of a .csv, not of {path}")
        return check_raw(_read_npz(path), path)
    if not target:
        raise SpecError(f"task.target must name the .csv column to predict ({path})")
    return check_raw(_read_csv(path, list(inputs), target), path)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise SpecError(f"{path} is not a readable .npz file (not a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays: refused, never unpickled
        raise SpecError(f"{path}: cannot be read without unpickling: {e}") from None
    except Exception as e:  # not a zip file, truncated …
        raise SpecError(f"{path} is not a readable .npz file: {type(e).__name__}: {e}") from None


def _read_csv(path: str, inputs: list[str], target: str) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read it as a UTF-8 .csv: {e}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise SpecError(f"{path}: expected a header row of column names and at least one data row")
    header = [c.strip() for c in rows[0]]
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise SpecError(f"{path}: column name(s) {dup} appear more than once in the header")
    inputs = inputs or [c for c in header if c != target]
    missing = [c for c in [*inputs, target] if c not in header]
    if missing:
        raise SpecError(f"{path} has no column(s) {missing}; its columns: {', '.join(header)}")
    if target in inputs:
        raise SpecError(f"{path}: the target column {target!r} is also in task.inputs")
    cols = [header.index(c) for c in [*inputs, target]]
    values = np.empty((len(rows) - 1, len(cols)))
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise SpecError(f"{path} line {i + 2}: {len(row)} fields, the header has {len(header)}")
        for j, c in enumerate(cols):
            try:
                values[i, j] = float(row[c])
            except ValueError:
                raise SpecError(
                    f"{path} line {i + 2}, column {header[c]!r}: {row[c]!r} is not a number "
                    "(encode categories as integers)"
                ) from None
    return {"x_train": values[:, :-1], "y_train": values[:, -1]}


# -- arrays in this process, and a sweep's own copy ---------------------------------------------
_REGISTERED: dict[str, dict[str, np.ndarray]] = {}


def register(data: Any) -> str:
    """Check ``data`` (step 1), keep it in this process under its content hash, return the hash
    (``task.data_sha256``): how ``jaxinit.run(spec, data=...)`` hands arrays to the task."""
    raw = check_raw(data)
    sha = content_hash(raw)
    _REGISTERED.setdefault(sha, raw)
    return sha


def raw_arrays(data_sha256: str = "", path: str = "", inputs: Sequence[str] | None = None,
               target: str = "") -> dict[str, np.ndarray]:  # fmt: skip
    """The checked arrays with this hash (registered in this process), or read from ``path``
    and checked against the hash when one is given. Raises :class:`SpecError`."""
    if inputs is not None and not (
        isinstance(inputs, (list, tuple)) and all(isinstance(c, str) for c in inputs)
    ):
        raise SpecError(f"task.inputs must be a list of .csv column names, got {inputs!r}")
    if data_sha256 and not _SHA.fullmatch(data_sha256):
        raise SpecError(f"task.data_sha256 must be 64 lowercase hex digits, got {data_sha256!r}")
    if data_sha256 in _REGISTERED:
        return _REGISTERED[data_sha256]
    if not path:
        if data_sha256:
            raise SpecError(
                f"the arrays with data_sha256 {data_sha256[:16]}… are not in this process and "
                "no [task] path names a file: pass the same arrays as data= again"
            )
        raise SpecError(
            "task 'arrays' needs data: pass data= to jaxinit.run, or name a .npz or .csv file "
            "as [task] path"
        )
    raw = read_file(path, inputs, target)
    got = content_hash(raw)
    if data_sha256 and got != data_sha256:
        raise SpecError(
            f"{path} holds other data (sha256 {got[:16]}…) than the sweep's (data_sha256 "
            f"{data_sha256[:16]}…): the file changed since"
        )
    return raw


def npz_bytes(raw: Mapping[str, np.ndarray]) -> bytes:
    """``raw`` as ``.npz`` bytes (no pickles), read back to the same arrays and hash."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: raw[k] for k in DATA_KEYS if k in raw})
    return buf.getvalue()


def with_data(spec: Spec | Mapping | str | os.PathLike, data_sha256: str) -> Spec:
    """``spec`` (a Spec, dict, TOML path or bundled name; task ``arrays`` without ``path``) set
    to run on the registered arrays with this hash. Not validated yet."""
    if isinstance(spec, (str, os.PathLike)):
        spec = Spec.from_toml(find_spec(spec))
    spec = Spec.from_dict(spec)  # a Spec as it is
    if spec.task.name != "arrays":
        raise SpecError(
            f"data= runs task 'arrays', but the spec's [task] name is {spec.task.name!r}: "
            'set [task] name = "arrays" and its loss (mse, bce or ce)'
        )
    given = [k for k in SOURCE_FIELDS if spec.task.params.get(k)]
    if given:
        raise SpecError(f"data= and [task] {', '.join(given)} both give the data: keep one")
    return spec.replace({"task.data_sha256": data_sha256})


def pin(spec: Spec) -> Spec:
    """``spec`` with ``task.data_sha256`` set (task ``arrays``; other tasks unchanged): every
    later build of the task then checks it gets these very arrays. One sweep, one data set."""
    if spec.task.name != "arrays":
        return spec
    for path, _ in spec.axes:
        if path.startswith("task.") and path.removeprefix("task.") in (
            "data_sha256",
            *SOURCE_FIELDS,
        ):
            raise SpecError(
                f"axes.{path}: a sweep runs on one data set; run one sweep per data set"
            )
    return spec.replace({"task.data_sha256": content_hash(spec_arrays(spec))})


def spec_arrays(spec: Spec) -> dict[str, np.ndarray]:
    """The checked arrays (step 1) a spec with task ``arrays`` names (:func:`raw_arrays`)."""
    t = spec.task.params
    return raw_arrays(
        t.get("data_sha256", ""), t.get("path", ""), t.get("inputs"), t.get("target", "")
    )


def beside(spec: Spec, directory: str | Path) -> Spec:
    """A sweep directory's spec with its ``path = "data.npz"`` read from that directory."""
    task = getattr(spec, "task", None)  # a probe spec has none
    if task is None or task.name != "arrays" or task.params.get("path") != DATA_FILE:
        return spec
    return spec.replace({"task.path": str(Path(directory).resolve() / DATA_FILE)})
