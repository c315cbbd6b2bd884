"""The on-disk sweep directory: crash-safe chunk files, a checksummed manifest, a lock.

Layout of ``DIR``::

    spec.json                  resolved spec, fingerprint, format version, chunk size
    manifest.<i>-of-<n>.json   finished chunks of shard i of n: file, SHA-256, run count
    chunks/<group>-<chunk>.npz one chunk's outputs (NumPy .npz, read with allow_pickle=False)
    lock                       flock'd while a process writes (released by the OS if it dies)

Every file is written to a temporary name, fsync'd and renamed, so a SIGKILL at any moment
leaves either the old or the new file, never half of one. A chunk counts as done only once the
manifest lists it with its checksum; a chunk whose bytes no longer match is reported with its
path and recomputed on resume. Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jaxinit.spec import FORMAT_VERSION, Spec, SpecError

__all__ = ["StoreError", "CorruptChunkError", "SweepDir", "read_spec"]


class StoreError(RuntimeError):
    """The sweep directory cannot be used as asked (other spec, locked, unwritable, full)."""


class CorruptChunkError(StoreError):
    """A chunk file's bytes do not match the checksum recorded when it was written."""


def _version() -> str:
    from jaxinit import __version__

    return __version__


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, whole.

    With ``exclusive`` the file is only created if it does not exist yet (returns False and
    leaves it alone otherwise): concurrent shards opening a new directory agree on one file.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return True
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        hint = " (disk full)" if e.errno == errno.ENOSPC else ""
        raise StoreError(
            f"could not write {path}: {e.strerror or e}{hint}. Chunks already finished are intact; "
            "fix the cause and run the same command again to resume."
        ) from e


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_EPOCH = (1980, 1, 1, 0, 0, 0)


def encode_chunk(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (zip of ``.npy``) whose bytes depend only on the arrays: fixed timestamps, so a
    chunk recomputed by another process or shard is byte-identical. Object arrays are refused."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def decode_chunk(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``; never unpickles (object arrays raise ``ValueError``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_spec(path: str | Path) -> tuple[Spec, dict[str, Any]]:
    """The spec and metadata of a sweep directory; refuses other format versions."""
    path = Path(path)
    meta_file = path / "spec.json"
    if not meta_file.is_file():
        raise StoreError(f"{path} is not a jaxinit sweep directory (no spec.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{meta_file} is unreadable or corrupt: {e}") from None
    if not isinstance(meta, dict) or not _META_KEYS <= meta.keys():
        raise StoreError(
            f"{meta_file} is corrupt: expected a JSON object with keys {sorted(_META_KEYS)}"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} was written by jaxinit {meta.get('jaxinit_version', '?')} in format "
            f"{meta.get('format_version')!r}; this is jaxinit {_version()} (format {FORMAT_VERSION}). "
            "Re-run the sweep with this version, or load it with the version that wrote it."
        )
    try:
        spec = Spec.from_dict(meta["spec"])
    except SpecError as e:
        raise StoreError(f"{meta_file} holds an invalid spec: {e}") from None
    if spec.fingerprint() != meta["fingerprint"]:
        raise StoreError(f"{meta_file} is corrupt: its spec does not match its fingerprint")
    size = meta["chunk_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise StoreError(f"{meta_file} is corrupt: chunk_size = {size!r}")
    return spec, meta


_META_KEYS = frozenset({"format_version", "fingerprint", "chunk_size", "spec"})


class SweepDir:
    """A sweep directory opened for writing by one process (or one shard of a sweep)."""

    def __init__(
        self, path: str | Path, spec: Spec, chunk_size: int, shard: tuple[int, int] = (0, 1)
    ):
        self.path = Path(path)
        self.spec = spec
        self.shard = shard
        self.chunk_size = chunk_size
        self._lock_files: list[Any] = []
        self.manifest: dict[str, dict[str, Any]] = {}

    # -- opening ----------------------------------------------------------------------------------
    def open(self, explicit_chunk_size: bool) -> SweepDir:
        """Create or reopen the directory: check it holds this spec, lock it, read the manifest."""
        _refuse_foreign(self.path)
        try:
            (self.path / "chunks").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create output directory {self.path}: {e.strerror or e}"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"output directory {self.path} is not writable")
        self._lock()
        try:
            self._init_or_check(explicit_chunk_size)
            self.manifest = read_manifests(self.path)
            self._own_manifest = read_manifests(self.path, only=self._manifest_name)
        except StoreError:
            self.close()
            raise
        for tmp in _leftovers(self.path):  # temp files of killed writers
            pid = _TMP_PID.search(tmp.name)
            if not self._is_sharded or (pid and not _alive(int(pid.group(1)))):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return self

    def _init_or_check(self, explicit_chunk_size: bool) -> None:
        """Write ``spec.json`` if this is a new directory, else check it holds this sweep."""
        meta = {
            "format_version": FORMAT_VERSION,
            "jaxinit_version": _version(),
            "fingerprint": self.spec.fingerprint(),
            "chunk_size": self.chunk_size,
            "spec": self.spec.to_dict(),
        }
        spec_file = self.path / "spec.json"
        blob = json.dumps(meta, indent=1).encode()
        if spec_file.exists() or not atomic_write(spec_file, blob, exclusive=True):
            self._check_same_sweep(explicit_chunk_size)

    @property
    def _is_sharded(self) -> bool:
        return self.shard[1] > 1

    @property
    def _manifest_name(self) -> str:
        i, n = self.shard
        return f"manifest.{i}-of-{n}.json"

    def _lock(self) -> None:
        """Unsharded writers lock the directory exclusively; shards share it and lock their slot."""
        names = [("lock", fcntl.LOCK_SH if self._is_sharded else fcntl.LOCK_EX)]
        if self._is_sharded:
            names.append((f"lock.{self.shard[0]}-of-{self.shard[1]}", fcntl.LOCK_EX))
        for name, mode in names:
            try:
                f = open(self.path / name, "a+")  # noqa: SIM115 (held until close)
            except OSError as e:
                self.close()
                raise StoreError(
                    f"cannot write in output directory {self.path}: {e.strerror or e} "
                    f"({self.path / name})"
                ) from None
            try:
                fcntl.flock(f, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                self.close()
                raise StoreError(
                    f"{self.path} is in use by another jaxinit process (lock {name}); wait for it, "
                    "or run disjoint parts with --shard i/n"
                ) from None
            self._lock_files.append(f)

    def _check_same_sweep(self, explicit_chunk_size: bool) -> None:
        spec, meta = read_spec(self.path)
        if meta["fingerprint"] != self.spec.fingerprint():
            raise StoreError(
                f"{self.path} holds a different sweep (spec {spec.name!r}, fingerprint "
                f"{meta['fingerprint'][:12]}…, this spec {self.spec.fingerprint()[:12]}…). "
                "Use another --out directory, or delete this one to start over."
            )
        if explicit_chunk_size and meta["chunk_size"] != self.chunk_size:
            raise StoreError(
                f"{self.path} was started with chunk size {meta['chunk_size']}; resuming with "
                f"{self.chunk_size} would change the compiled shape. Omit --chunk-size to resume."
            )
        self.chunk_size = meta["chunk_size"]

    def close(self) -> None:
        for f in self._lock_files:
            with contextlib.suppress(OSError):
                fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        self._lock_files = []

    def __enter__(self) -> SweepDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- chunks -----------------------------------------------------------------------------------
    def verified_done(self) -> tuple[set[str], list[str]]:
        """Chunk ids whose files match their checksums, and messages for those that do not."""
        done, problems = set(), []
        for cid, entry in self.manifest.items():
            try:
                read_chunk(self.path, cid, entry)
                done.add(cid)
            except StoreError as e:
                problems.append(f"{e}; it will be recomputed")
        return done, problems

    def write_chunk(self, chunk_id: str, arrays: dict[str, np.ndarray]) -> None:
        """Atomically write one chunk, then record it (and its checksum) in this shard's manifest."""
        data = encode_chunk(arrays)
        rel = f"chunks/{chunk_id}.npz"
        atomic_write(self.path / rel, data)
        entry = {"file": rel, "sha256": _sha256(data), "runs": int(len(arrays["run_id"]))}
        self._own_manifest[chunk_id] = entry
        self.manifest[chunk_id] = entry
        blob = json.dumps({"chunks": self._own_manifest}, indent=0).encode()
        atomic_write(self.path / self._manifest_name, blob)


_OWN = re.compile(r"^(spec\.json|chunks|lock(\.\d+-of-\d+)?|manifest\.\d+-of-\d+\.json|report)$")


def _leftovers(path: Path) -> list[Path]:
    """Temp files this module writes (``.<name>.tmp<pid>``) and nothing else."""
    return [*path.glob(".*.tmp*"), *(path / "chunks").glob(".*.npz.tmp*")]


def _refuse_foreign(path: Path) -> None:
    """Refuse an existing directory that holds other things and no ``spec.json``: a sweep would
    scatter its files among the user's. Empty directories and killed new sweeps are fine."""
    if not path.is_dir() or (path / "spec.json").exists():
        return
    leftover = set(_leftovers(path))
    foreign = sorted(p.name for p in path.iterdir() if p not in leftover and not _OWN.match(p.name))
    if foreign:
        raise StoreError(
            f"{path} is not empty and not a jaxinit sweep directory (it holds {foreign[0]!r}"
            f"{' …' if len(foreign) > 1 else ''}); use a new or empty --out directory"
        )


_TMP_PID = re.compile(r"\.tmp(\d+)$")
_CHUNK_ID = re.compile(r"^\d{4}-\d{6}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _valid_entry(cid: Any, entry: Any) -> bool:
    return (
        isinstance(cid, str)
        and bool(_CHUNK_ID.match(cid))
        and isinstance(entry, dict)
        and entry.get("file") == f"chunks/{cid}.npz"
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("runs"), int)
    )


def read_manifests(path: Path, only: str | None = None) -> dict[str, dict[str, Any]]:
    """Merge the manifests of every shard (or just ``only``) into ``chunk id -> entry``.

    Manifests are written atomically, so a malformed one was damaged from outside: it is
    reported by path rather than guessed at (its chunk files stay untouched).
    """
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(path).glob(only or "manifest.*.json")):
        try:
            chunks = json.loads(f.read_text())["chunks"]
            if not isinstance(chunks, dict):
                raise ValueError("'chunks' is not a table")
            bad = [c for c, e in chunks.items() if not _valid_entry(c, e)]
            if bad:
                raise ValueError(f"bad entry for chunk {bad[0]!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"manifest {f} is unreadable or corrupt ({e}); delete it to recompute the "
                "chunks it lists"
            ) from None
        out.update(chunks)
    return out


def read_chunk(path: Path, chunk_id: str, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read one chunk, checking its SHA-256 first; raise :class:`CorruptChunkError` naming it."""
    file = Path(path) / entry["file"]
    try:
        data = file.read_bytes()
    except OSError as e:
        raise CorruptChunkError(
            f"chunk {chunk_id} ({file}) is unreadable: {e.strerror or e}"
        ) from None
    if _sha256(data) != entry["sha256"]:
        raise CorruptChunkError(f"chunk {chunk_id} ({file}) is corrupt: checksum mismatch")
    try:
        return decode_chunk(data)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:  # e.g. an object array
        raise CorruptChunkError(f"chunk {chunk_id} ({file}) cannot be decoded: {e}") from None


def iter_chunks(path: str | Path, on_corrupt: str = "raise") -> Iterator[dict[str, np.ndarray]]:
    """Every finished chunk of a sweep directory, verified. ``on_corrupt``: ``raise`` or ``skip``."""
    import warnings

    for cid, entry in sorted(read_manifests(Path(path)).items()):
        try:
            yield read_chunk(Path(path), cid, entry)
        except CorruptChunkError as e:
            if on_corrupt == "raise":
                raise CorruptChunkError(f"{e}. Run the sweep again to recompute it.") from None
            warnings.warn(f"{e}; its runs are left out", stacklevel=2)
