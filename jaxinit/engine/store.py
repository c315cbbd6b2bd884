"""The on-disk sweep directory: crash-safe chunk files, a checksummed manifest, a lock.

Layout of ``DIR``::

    spec.json                  resolved spec, run identity and its SHA-256, format, chunk size
    manifest.<i>-of-<n>.json   finished chunks of shard i of n: file, SHA-256, run count
    chunks/<group>-<chunk>.npz one chunk's outputs (NumPy .npz, read with allow_pickle=False)
    lock, lock.<i>-of-<n>      flock'd while a process writes (released by the OS if it dies)
    writer.<i>-of-<n>          the writer of shard i of n: created with O_EXCL, kept fresh by a
                               heartbeat (jaxinit.engine.claims), for filesystems that ignore flock
    report/                    figures and summary.txt, and .jaxinit-outputs.json: the files
                               jaxinit wrote there with their SHA-256 (it replaces no other)

A probe sweep's directory (random nets at init, :mod:`jaxinit.engine.probes`) is laid out the same
way: ``spec.json`` holds its probe spec (:mod:`jaxinit.engine.probe_spec`) and identity, and its chunks
hold ``probe/<variable>`` arrays.

Every chunk (in its zip comment) and every manifest carries the sweep's identity fingerprint,
as ``spec.json`` does (``"stamped": true``), so a chunk or manifest copied in from another sweep
is refused by name (:class:`ForeignFileError`), never mixed in. Directories begun by older
versions are unstamped: their files load, and only files naming another sweep are refused.
Nothing is written into a directory without ``spec.json`` that holds anything but what a
killed new sweep leaves (:func:`preflight`): the user's files are never replaced.

Every file is written to a temporary name, fsync'd and renamed, so a SIGKILL at any moment
leaves either the old or the new file, never half of one. A chunk counts as done only once the
manifest lists it with its checksum; a chunk whose bytes no longer match is reported with its
path and recomputed on resume. Nothing here unpickles.

A checksum only proves that a file is the one the manifest vouches for, not that it belongs where
it is listed. So :func:`read_chunk` also validates a chunk's ``.npy`` headers before reading any
array data: members are uncompressed plain numeric arrays whose header size matches their stored
bytes (a header cannot make it allocate more than the file holds), and given the plan's
:class:`ChunkExpect`, the member names, shapes and dtypes are the expected ones and ``run_id``
equals the run ids the plan puts in that chunk (no overwriting other runs, no copied chunks).

Clean-up after a killed writer deletes only this module's own temporary names,
``.<file>.tmp<pid>-<host id>`` for ``spec.json``, a manifest or a chunk, matched exactly: a
user's ``.env.tmp`` is never touched (and makes a directory without ``spec.json`` foreign); and
only those of writers that are gone: a dead pid on this machine, or untouched for
:data:`jaxinit.engine.claims.STALE_S` (another machine's writer may be alive).

Shared filesystems (several machines, one directory): ``flock`` may be ignored or refused there,
so each writer also holds an ``O_EXCL`` claim on its shard (:mod:`jaxinit.engine.claims`) and checks it
before every manifest write; shards write only their own manifest; ``spec.json`` is created
with an exclusive link; chunk files are byte-identical whoever writes them and renamed into
place; temporary names carry the machine. Two writers can duplicate work at worst, never
overwrite each other's results.
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
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxinit.blocks.user_data import beside
from jaxinit.config.spec import FORMAT_VERSION, Spec, SpecError
from jaxinit.engine import claims
from jaxinit.engine.identity import differences, digest, record, spec_identity
from jaxinit.engine.plan import Group, Plan, chunk_id
from jaxinit.engine.probe_spec import probe_identity

__all__ = [
    "ChunkExpect",
    "ForeignFileError",
    "Stamp",
    "CorruptChunkError",
    "Expect",
    "StoreError",
    "claim_outputs",
    "record_outputs",
    "SweepDir",
    "iter_chunk_files",
    "parse_shard",
    "preflight",
    "iter_chunks",
    "read_chunk",
    "read_member",
    "read_spec",
]


class StoreError(RuntimeError):
    """The sweep directory cannot be used as asked (other spec, locked, unwritable, full)."""


class CorruptChunkError(StoreError):
    """A chunk file's bytes do not match the checksum recorded when it was written, or its
    contents are not what the store writes / what the sweep's plan expects in that chunk."""


MAX_MEMBER_ELEMS_PER_RUN = 2**27
"""Largest per-run size (elements after the run axis) of a member, when no member shapes are
given: 512 MiB of float32 per run, far beyond a chunk's memory budget."""

_MEMBER_NAME = re.compile(r"^(run_id|(final|curves|params0|params|probe)(/[A-Za-z0-9_.\-\[\]]+)+)$")
"""Member names the engine writes: ``run_id`` and ``<section>/<keystr path>`` (``final/x``,
``params/layers/0/w``) as built by ``jaxinit.engine.sweep._flatten``; a probe sweep's
``probe/<variable>`` (:func:`jaxinit.engine.probe_spec.probe_members`)."""


class Stamp(NamedTuple):
    """The sweep a directory holds, as its chunks and manifests must name it."""

    fingerprint: str
    """``spec.json``'s fingerprint (the SHA-256 of the run identity)."""
    required: bool
    """Whether every chunk and manifest must carry it (directories begun since chunks carry
    it); False for older ones, whose files may lack it (but never name another sweep)."""

    def foreign(self, found: str | None) -> bool:
        """Whether a file stamped ``found`` (None: unstamped) belongs to another sweep."""
        return found != self.fingerprint if found is not None or self.required else False


def stamp_of(meta: dict[str, Any]) -> Stamp:
    """The :class:`Stamp` of a directory from its ``spec.json`` (:func:`read_spec`)."""
    return Stamp(meta["fingerprint"], bool(meta.get("stamped", False)))


class ForeignFileError(CorruptChunkError):
    """A chunk or manifest of another sweep (another identity fingerprint) in this directory."""


class ChunkExpect(NamedTuple):
    """What the plan puts in one chunk; :func:`read_chunk` refuses a chunk that differs."""

    run_ids: np.ndarray
    """(n,) int64: exactly the run ids the plan puts in this chunk, ascending."""
    members: Mapping[str, tuple[tuple[int, ...], str]] | None = None
    """Member name (without ``.npy``) -> (trailing shape after the run axis, numpy dtype string
    such as ``"float32"``). None: names must match ``_MEMBER_NAME``, every member's leading dim
    must be ``len(run_ids)`` and its per-run size at most ``MAX_MEMBER_ELEMS_PER_RUN``."""
    stamp: Stamp | None = None
    """The sweep the chunk must belong to (its zip comment); None: not checked."""


Expect = Callable[[str], ChunkExpect | None]
"""Chunk id -> its :class:`ChunkExpect`; None means the id is not part of this sweep's plan."""


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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{claims.host_id()}")
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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_EPOCH = (1980, 1, 1, 0, 0, 0)


_STAMP = b"jaxinit sweep "
"""Prefix of a chunk's zip comment: ``jaxinit sweep <fingerprint>`` (the sweep it belongs to)."""


def encode_chunk(arrays: dict[str, np.ndarray], fingerprint: str | None = None) -> bytes:
    """An ``.npz`` (zip of ``.npy``) whose bytes depend only on the arrays (and the sweep's
    ``fingerprint``, kept in the zip comment; NumPy ignores it): fixed timestamps, so a chunk
    recomputed by another process or shard is byte-identical. Object arrays are refused."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        if fingerprint is not None:
            z.comment = _STAMP + fingerprint.encode()
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            a = np.asarray(a)
            a = a if a.flags.c_contiguous else a.copy(order="C")  # read_chunk refuses Fortran
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def decode_chunk(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``; never unpickles (object arrays raise ``ValueError``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_spec(path: str | Path) -> tuple[Spec, dict[str, Any]]:
    """The spec (a :class:`~jaxinit.config.spec.Spec`, of a training or a probe sweep) and
    metadata of a sweep
    directory, checked for corruption (not re-validated:
    results stay loadable when validation rules tighten). Format 1 directories (before run
    identities) load; only format 2 ones can be resumed."""
    path = Path(path)
    meta_file = path / "spec.json"
    if not meta_file.is_file():
        if not path.exists():
            broken = " (a broken symbolic link)" if path.is_symlink() else ""
            raise StoreError(f"{path} does not exist{broken}: no sweep directory there")
        if not path.is_dir():
            raise StoreError(f"{path} is not a directory, so not a jaxinit sweep directory")
        if (path / "probe.json").is_file():
            raise StoreError(
                f"{path} is a probe sweep directory written by an older jaxinit (probe.json, "
                "measured all at once, before probe directories were sweep directories); this "
                "version does not read it: run the probe spec again into a new --out directory"
            )
        raise StoreError(f"{path} is not a jaxinit sweep directory (no spec.json)")
    try:
        text = meta_file.read_text()
        meta = json.loads(text)
    except (OSError, ValueError) as e:
        raise StoreError(f"{meta_file} is unreadable or corrupt: {e}") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{meta_file} is corrupt: expected a JSON object")
    version = meta.get("format_version")
    keys = _META_KEYS.get(version)
    if keys is None:
        raise StoreError(
            f"{path} was written by jaxinit {meta.get('jaxinit_version', '?')} in format "
            f"{version!r}; this is jaxinit {_version()} (format {FORMAT_VERSION}; it reads "
            f"formats {', '.join(map(str, _META_KEYS))}). Re-run the sweep with this version, "
            "or load it with the version that wrote it."
        )
    if not keys <= meta.keys():
        raise StoreError(f"{meta_file} is corrupt: expected a JSON object with keys {sorted(keys)}")
    if _stored_digest(meta) != meta["fingerprint"]:
        raise StoreError(f"{meta_file} is corrupt: its contents do not match its fingerprint")
    try:
        spec = Spec.from_json(json.dumps(meta["spec"]))  # key order kept: axes order = dims
    except SpecError as e:
        raise StoreError(f"{meta_file} holds an unreadable spec: {e}") from None
    if version >= 2 and _spec_disagrees(spec, meta["identity"]):
        raise StoreError(f"{meta_file} is corrupt: its spec does not match its run identity")
    size = meta["chunk_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise StoreError(f"{meta_file} is corrupt: chunk_size = {size!r}")
    return beside(spec, path), meta  # a user's data: the directory's own data.npz


_META_KEYS = {
    1: frozenset({"format_version", "fingerprint", "chunk_size", "spec"}),
    2: frozenset({"format_version", "fingerprint", "chunk_size", "spec", "identity", "model"}),
}


def _spec_disagrees(spec: Spec, ident: dict[str, Any]) -> bool:
    """Whether a training field of the stored spec differs from the stored identity (an edit)."""
    if spec.is_probe:
        own = [(k, v) for k, v in probe_identity(spec).items() if not k.startswith("software.")]
    else:  # model.name is the model's own ("user" for a user's)
        own = [(k, v) for k, v in spec_identity(spec).items() if k != "model.name"]
    return any(k in ident and ident[k] != v for k, v in own)


def _stored_digest(meta: dict[str, Any]) -> str:
    """Format 1: SHA-256 of the spec; format 2: of the run identity (:mod:`jaxinit.engine.identity`)."""
    if meta["format_version"] == 1:
        blob = json.dumps(meta["spec"], sort_keys=True, separators=(",", ":"))
        return sha256_hex(blob.encode())
    return digest(meta["identity"])


class SweepDir:
    """A sweep directory opened for writing by one process (or one shard of a sweep)."""

    def __init__(
        self,
        path: str | Path,
        sweep: dict[str, Any] | Spec,
        chunk_size: int,
        shard: tuple[int, int] = (0, 1),
    ):
        """``sweep`` is :func:`jaxinit.engine.identity.record` (what ``spec.json`` records: the spec,
        its model and identity), or a spec with the built-in model."""
        self.path = Path(path)
        self.sweep = record(sweep) if isinstance(sweep, Spec) else sweep
        self.shard = parse_shard(shard)
        self.stamp = Stamp(digest(self.sweep["identity"]), True)
        self.chunk_size = chunk_size
        self._lock_files: list[Any] = []
        self._claim: claims.Holder | None = None
        self.flock_honoured = True  # False where flock failed (ENOLCK …): the claim alone guards
        self.manifest: dict[str, dict[str, Any]] = {}

    # -- opening ----------------------------------------------------------------------------------
    def open(self, explicit_chunk_size: bool) -> SweepDir:
        """Create or reopen the directory: check it holds this spec, lock it, read the manifest.

        Everything that can be checked without a lock (a dangling link, a foreign directory, a
        corrupt ``spec.json`` or another sweep's) is refused before anything is written."""
        preflight(self.path)
        if (self.path / "spec.json").exists():
            self._check_same_sweep(explicit_chunk_size, rewrite=False)  # again once locked
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
            self.manifest = read_manifests(self.path, stamp=self.stamp)
            self._own_manifest = read_manifests(self.path, self._manifest_name, self.stamp)
        except StoreError:
            self.close()
            raise
        for tmp, pid, host in temp_leftovers(self.path):  # temp files of killed writers
            if writer_gone(tmp, pid, host):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return self

    def _init_or_check(self, explicit_chunk_size: bool) -> None:
        """Write ``spec.json`` if this is a new directory, else check it holds this sweep."""
        spec_file = self.path / "spec.json"
        blob = self._meta_blob(self.chunk_size, stamped=True)
        if spec_file.exists() or not atomic_write(spec_file, blob, exclusive=True):
            self._check_same_sweep(explicit_chunk_size)

    def _meta_blob(self, chunk_size: int, stamped: bool) -> bytes:
        """``spec.json``; ``stamped``: every chunk and manifest carries the fingerprint (new
        directories; older ones stay unstamped, so that their chunks keep loading)."""
        meta = {
            "format_version": FORMAT_VERSION,
            "jaxinit_version": _version(),
            "fingerprint": digest(self.sweep["identity"]),
            "chunk_size": chunk_size,
            **({"stamped": True} if stamped else {}),
            **self.sweep,
        }
        return json.dumps(meta, indent=1).encode()

    @property
    def _is_sharded(self) -> bool:
        return self.shard[1] > 1

    @property
    def _manifest_name(self) -> str:
        i, n = self.shard
        return f"manifest.{i}-of-{n}.json"

    def _lock(self) -> None:
        """Unsharded writers lock the directory exclusively; shards share it and lock their slot.
        Then the shard's O_EXCL claim, which also holds where flock is not honoured."""
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
            except OSError as e:  # ENOLCK, EOPNOTSUPP …: a filesystem without flock
                if e.errno not in _NO_FLOCK:
                    raise
                f.close()
                self.flock_honoured = False
                continue
            self._lock_files.append(f)
        holder = claims.Holder(self.path / f"writer.{self.shard[0]}-of-{self.shard[1]}")
        try:
            holder.acquire()
        except claims.ClaimError as e:
            self.close()
            raise StoreError(
                f"{self.path} is in use by another jaxinit process (shard "
                f"{self.shard[0]}/{self.shard[1]}, {e}); wait for it, or run disjoint parts "
                "with --shard i/n"
            ) from None
        except OSError as e:
            self.close()
            raise StoreError(
                f"cannot write in output directory {self.path}: {e.strerror or e} ({holder.path})"
            ) from None
        self._claim = holder

    def _check_same_sweep(self, explicit_chunk_size: bool, rewrite: bool = True) -> None:
        """Resume only the same sweep: its identity, field by field. Descriptive fields (name,
        description, report, [basins]) may change; ``spec.json`` then records the new ones
        (with ``rewrite``: once the directory is locked)."""
        spec, meta = read_spec(self.path)
        self.stamp = stamp_of(meta)
        if meta["format_version"] != FORMAT_VERSION:
            raise StoreError(
                f"{self.path} was written in format {meta['format_version']} (before run "
                "identities): it loads, but cannot be resumed. Use a new --out directory."
            )
        diff = differences(meta["identity"], self.sweep["identity"])
        if diff:
            more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
            software = (
                " It was written by other software (a JAX version or jaxinit's layout rule: the "
                "numbers would round differently); jaxinit.load still reads it."
                if any(d.startswith("software.") for d in diff)
                else ""
            )
            raise StoreError(
                f"{self.path} holds a different sweep ({spec.name!r}): "
                + "; ".join(diff[:3])
                + more
                + "."
                + software
                + " Use another --out directory, or delete this one to start over."
            )
        if rewrite and meta["spec"] != self.sweep["spec"] and not self._is_sharded:
            blob = self._meta_blob(meta["chunk_size"], self.stamp.required)
            atomic_write(self.path / "spec.json", blob)
        if explicit_chunk_size and meta["chunk_size"] != self.chunk_size:
            raise StoreError(
                f"{self.path} was started with chunk size {meta['chunk_size']}; resuming with "
                f"{self.chunk_size} would change the compiled shape. Omit --chunk-size to resume."
            )
        self.chunk_size = meta["chunk_size"]

    def close(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None
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
    def verified_done(self, expect: Expect | None = None) -> tuple[set[str], list[str]]:
        """Chunk ids whose files match their checksums (and ``expect``), and messages for the rest.

        A listed chunk that is damaged or not what the plan expects is recomputed; one whose id
        is not in the plan at all (``expect(cid)`` is None) is reported and ignored.
        """
        done, problems = set(), []
        for cid, entry in self.manifest.items():
            try:
                want = _expect_for(self.path, cid, entry, expect)
                want = want._replace(stamp=self.stamp) if want is not None else None
                read_chunk(self.path, cid, entry, want)
                done.add(cid)
            except _NotInPlanError as e:
                problems.append(f"{e}; it is ignored")
            except StoreError as e:
                problems.append(f"{e}; it will be recomputed")
        return done, problems

    def todo(
        self, plan: Plan, members: Mapping[str, tuple] | None = None
    ) -> tuple[list[tuple[Group, int]], list[str]]:
        """The ``(group, chunk)`` pairs of ``plan`` this shard (chunks ``k % n == i``) still has
        to compute, and what :meth:`verified_done` says of the listed chunks it recomputes or
        ignores (``members``: the first group's arrays, :func:`expect_for`)."""
        done, problems = self.verified_done(expect_for(plan, members))
        i, n = self.shard
        todo = [(g, c) for k, (g, c) in enumerate(plan.chunks())
                if k % n == i and chunk_id(g, c) not in done]  # fmt: skip
        return todo, problems

    def write_chunk(self, chunk_id: str, arrays: dict[str, np.ndarray]) -> None:
        """Atomically write one chunk, then record it (and its checksum) in this shard's manifest."""
        data = encode_chunk(arrays, self.stamp.fingerprint)
        rel = f"chunks/{chunk_id}.npz"
        atomic_write(self.path / rel, data)
        entry = {"file": rel, "sha256": sha256_hex(data), "runs": int(len(arrays["run_id"])),
                 "written": round(time.time(), 3)}  # fmt: skip
        self._own_manifest[chunk_id] = entry
        self.manifest[chunk_id] = entry
        table = {"fingerprint": self.stamp.fingerprint, "chunks": self._own_manifest}
        blob = json.dumps(table, indent=0).encode()
        if self._claim is not None:
            try:
                self._claim.check()  # never overwrite the manifest of a writer that took over
            except claims.ClaimError as e:
                raise StoreError(f"{self.path}: {e}; stopping (the chunk file is kept)") from None
        atomic_write(self.path / self._manifest_name, blob)
        if self._claim is not None:
            self._claim.touch()


_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})
"""flock errors that mean "this filesystem does not do flock" (not "someone holds it")."""


_LOCK = re.compile(r"^lock(\.[0-9]+-of-[0-9]+)?$")
_WRITER = re.compile(r"^writer\.[0-9]+-of-[0-9]+$")
CHUNK_FILE = re.compile(r"^[0-9]{4}-[0-9]{6}\.npz$")

_TMP = r"\.tmp([1-9][0-9]{0,9})(?:-([0-9a-f]{12}))?$"  # pid, host id (absent in older versions)
_TMP_TOP = re.compile(r"^\.(?:spec\.json|manifest\.[0-9]+-of-[0-9]+\.json)" + _TMP)
_TMP_CHUNK = re.compile(r"^\.[0-9]{4}-[0-9]{6}\.npz" + _TMP)


def temp_leftovers(path: Path) -> list[tuple[Path, int, str | None]]:
    """``(file, writer pid, writer host id)`` of the temp files :func:`atomic_write` leaves when
    killed, matched exactly (``.<own file name>.tmp<pid>[-<host id>]``, each in its own folder):
    a user's ``.env.tmp`` or ``.gitlab-ci.tmpl`` is not ours and must never be deleted."""
    found = []
    for folder, pattern in ((path, _TMP_TOP), (path / "chunks", _TMP_CHUNK)):
        with contextlib.suppress(OSError):
            for p in folder.iterdir():
                m = pattern.match(p.name)
                if m and p.is_file() and not p.is_symlink():
                    found.append((p, int(m.group(1)), m.group(2)))
    return found


def writer_gone(tmp: Path, pid: int, host: str | None) -> bool:
    """Whether the writer of a temp file is gone: a dead pid on this machine (no host id: an
    older version's, taken as this machine's), or untouched for ``claims.STALE_S``."""
    if host in (None, claims.host_id()) and not claims.alive(pid):
        return True
    try:
        return time.time() - tmp.stat().st_mtime > claims.STALE_S
    except OSError:
        return False


def _foreign_files(path: Path) -> list[str]:
    """What in a directory without ``spec.json`` the store did not write, by relative name.

    A new sweep killed before writing ``spec.json`` leaves only its lock files (empty), its
    writer claims, an empty ``chunks/`` and temp files (:func:`temp_leftovers`): anything else is
    the user's, including a ``report/`` folder, a manifest, and a file in ``chunks/`` under a
    name the store would write (``chunks/0000-000000.npz``). Other files in ``chunks/`` (that
    the store never writes over) may stay, as the user's."""
    leftover = {p for p, *_ in temp_leftovers(path)}
    foreign = []
    for p in sorted(path.iterdir()):
        if p in leftover:
            continue
        name = p.name
        if name == "chunks" and p.is_dir() and not p.is_symlink():
            foreign += [f"chunks/{c.name}" for c in sorted(p.iterdir()) if CHUNK_FILE.match(c.name)]
        elif _LOCK.match(name) and p.is_file() and not p.is_symlink() and p.stat().st_size == 0:
            continue
        elif _WRITER.match(name) and claims.read_claim(p) is not None:
            continue
        else:
            foreign.append(name)
    return foreign


def preflight(path: str | Path) -> None:
    """Refuse, before anything is written or compiled, an output directory that cannot take a
    sweep: a broken symbolic link, a file, a directory holding the user's files
    (:func:`_foreign_files`) or a corrupt ``spec.json``. Raises :class:`StoreError`."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise StoreError(
            f"output directory {path} is a broken symbolic link (to {os.readlink(path)!r}); "
            "create its target or use another --out directory"
        )
    if path.exists() and not path.is_dir():
        raise StoreError(f"--out {path} exists and is not a directory")
    _refuse_foreign(path)
    if (path / "spec.json").exists():
        read_spec(path)


def _refuse_foreign(path: Path) -> None:
    """Refuse an existing directory that holds other things and no ``spec.json``: a sweep would
    scatter its files among the user's, or write over them. Empty directories and killed new
    sweeps are fine (:func:`_foreign_files`)."""
    if not path.is_dir() or (path / "spec.json").exists():
        return
    foreign = _foreign_files(path)
    if foreign:
        raise StoreError(
            f"{path} is not empty and not a jaxinit sweep directory (it holds {foreign[0]!r}"
            f"{' …' if len(foreign) > 1 else ''}); use a new or empty --out directory"
        )


OUTPUT_INDEX = ".jaxinit-outputs.json"
"""In a folder jaxinit writes reports into: the files it wrote there, with their SHA-256 (a
file that no longer has it was replaced by someone else, and is theirs now)."""


def _read_outputs(folder: Path) -> dict[str, str | None]:
    index = folder / OUTPUT_INDEX
    if not (index.exists() or index.is_symlink()):
        return {}
    try:
        table = json.loads(index.read_text())
        files = table["files"]
        if table.get("written_by") != "jaxinit" or not isinstance(files, dict):
            raise ValueError("not jaxinit's index")
        if not all(isinstance(v, (str, type(None))) for v in files.values()):
            raise ValueError("malformed entries")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise StoreError(
            f"{index} is not the index jaxinit keeps of its own files ({e}); move it away or "
            "write elsewhere (--out)"
        ) from None
    return files


def _write_outputs(folder: Path, files: dict[str, str | None]) -> None:
    table = {"written_by": "jaxinit", "files": dict(sorted(files.items()))}
    atomic_write(folder / OUTPUT_INDEX, json.dumps(table, indent=1).encode())


def claim_outputs(folder: str | Path, names: list[str]) -> None:
    """Make ready to write the files ``names`` into ``folder``, never over a file jaxinit did
    not write: one that exists and is not in the folder's :data:`OUTPUT_INDEX` with its current
    SHA-256 is refused (:class:`StoreError` naming it) before anything is written. Other files
    in the folder are left alone. Call :func:`record_outputs` once they are written."""
    folder = Path(folder)
    ours = _read_outputs(folder)
    for n in names:
        f = folder / n
        if not (f.exists() or f.is_symlink()) or n in ours and ours[n] is None:
            continue  # absent, or jaxinit was stopped while writing it
        if (
            n not in ours
            or f.is_symlink()
            or not f.is_file()
            or sha256_hex(f.read_bytes()) != ours[n]
        ):
            raise StoreError(
                f"{f} exists and was not written by jaxinit (or was changed since): it is left "
                "as it is. Move it away, or write the report elsewhere (jaxinit report DIR --out "
                "OTHER)"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create {folder}: {e.strerror or e}") from None
    _write_outputs(folder, ours | dict.fromkeys(names))


def record_outputs(folder: str | Path, paths: list[Path]) -> None:
    """Record the SHA-256 of the files jaxinit has just written (:func:`claim_outputs`)."""
    folder = Path(folder)
    written = {Path(p).name: sha256_hex(Path(p).read_bytes()) for p in paths}
    _write_outputs(folder, _read_outputs(folder) | written)


_SHARD = re.compile(r"^([0-9]+)/([0-9]+)$", re.ASCII)


def parse_shard(
    shard: str | tuple[int, int] | None, n_chunks: int | None = None
) -> tuple[int, int]:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)``, checked; ``None`` -> ``(0, 1)``.

    ``i`` and ``n`` are ASCII digits (``３/４`` is refused) with ``0 <= i < n``; given the plan's
    ``n_chunks``, ``n`` may exceed it only up to :data:`MAX_SHARDS` (a job array larger than
    the sweep: its extra tasks have nothing to run); more can only be a mistake.
    Raises :class:`~jaxinit.config.spec.SpecError` naming the problem, before anything is written.
    """
    if shard is None:
        return 0, 1
    if isinstance(shard, tuple):
        if len(shard) != 2 or not all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in shard
        ):
            raise SpecError(f"shard must be a pair of integers (i, n), got {shard!r}")
        i, n, text = int(shard[0]), int(shard[1]), f"({shard[0]}, {shard[1]})"
    else:
        m = _SHARD.match(str(shard).strip())
        if m is None:
            raise SpecError(
                f"--shard must look like i/n with ASCII digits (e.g. 0/4), got {shard!r}"
            )
        i, n, text = int(m.group(1)), int(m.group(2)), repr(shard)
    if not 0 <= i < n:
        raise SpecError(f"--shard i/n needs 0 <= i < n, got {text}")
    if n_chunks is not None and n > max(n_chunks, MAX_SHARDS):
        raise SpecError(
            f"--shard {i}/{n}: this sweep has only {n_chunks:,} chunk(s), so at most "
            f"{n_chunks:,} shards have work (more, up to {MAX_SHARDS:,}, are allowed for job "
            f"arrays larger than the sweep); use n <= {max(n_chunks, MAX_SHARDS):,}"
        )
    return i, n


MAX_SHARDS = 1024
"""Shard counts up to this are allowed even beyond a sweep's chunk count (a job array of a
fixed size over sweeps of any size; SLURM's default array limit is 1001)."""


_CHUNK_ID = re.compile(r"^[0-9]{4}-[0-9]{6}$")


def _valid_entry(cid: Any, entry: Any) -> bool:
    return (
        isinstance(cid, str)
        and bool(_CHUNK_ID.match(cid))
        and isinstance(entry, dict)
        and entry.get("file") == f"chunks/{cid}.npz"
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("runs"), int)
    )


def manifest_files(path: Path) -> list[Path]:
    """The shard manifests of a sweep directory, ``manifest.<i>-of-<n>.json``, sorted."""
    return sorted(p for p in Path(path).glob("manifest.*.json") if _MANIFEST.match(p.name))


_MANIFEST = re.compile(r"^manifest\.[0-9]+-of-[0-9]+\.json$")


def read_manifests(
    path: Path, only: str | None = None, stamp: Stamp | None = None
) -> dict[str, dict[str, Any]]:
    """Merge the manifests of every shard (or just ``only``) into ``chunk id -> entry``.

    Manifests are written atomically, so a malformed one was damaged from outside: it is
    reported by path rather than guessed at (its chunk files stay untouched). With ``stamp``,
    a manifest of another sweep raises :class:`ForeignFileError` naming it.
    """
    out: dict[str, dict[str, Any]] = {}
    files = sorted(Path(path).glob(only)) if only else manifest_files(path)
    for f in files:
        try:
            table = json.loads(f.read_text())
            chunks = table["chunks"]
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
        found = table.get("fingerprint")
        found = None if found is None else str(found)
        if stamp is not None and stamp.foreign(found):
            raise ForeignFileError(
                f"manifest {f} belongs to another sweep: it is stamped {_fp(found)}, this "
                f"directory holds {_fp(stamp.fingerprint)}; move it (and the chunks it lists) "
                "out of this directory"
            )
        out.update(chunks)
    return out


class _NotInPlanError(CorruptChunkError):
    """A manifest lists a chunk id that this sweep's plan does not have."""


def _expect_for(
    path: Path, chunk_id: str, entry: dict[str, Any], expect: Expect | None
) -> ChunkExpect | None:
    """``expect(chunk_id)``; raise :class:`_NotInPlanError` when the plan has no such chunk."""
    if expect is None:
        return None
    found = expect(chunk_id)
    if found is None:
        raise _NotInPlanError(
            f"chunk {chunk_id} ({Path(path) / entry['file']}) is listed in a manifest but is not "
            "in this sweep's plan"
        )
    return found


class _Header(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype


def _read_header(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Header:
    """One member's ``.npy`` header, read without its data; its declared size must be exactly
    the member's stored bytes, so no header can make a reader allocate more than the file holds.
    Raises ``ValueError`` naming the problem."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        offset = f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"dtype {dtype} is not a plain numeric dtype (object arrays are refused)")
    if dtype.kind not in "biufc":
        raise ValueError(f"dtype {dtype} is not a numeric dtype")
    if fortran:
        raise ValueError("Fortran-ordered data (the store writes C order)")
    if any(d < 0 for d in shape):
        raise ValueError(f"header declares a negative dimension {shape}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size - offset != nbytes:
        raise ValueError(
            f"header declares shape {shape} {dtype} ({nbytes} bytes) but the member holds "
            f"{info.file_size - offset} bytes of data"
        )
    return _Header(tuple(shape), dtype)


def _read_headers(data: bytes) -> dict[str, _Header]:
    """``member name (without .npy) -> header`` of an ``.npz`` as :func:`encode_chunk` writes
    it: a zip of uncompressed ``.npy`` members, no duplicates, no other files. Reads no array
    data; raises ``ValueError`` / ``zipfile.BadZipFile`` naming the problem."""
    if not data.startswith(b"PK\x03\x04"):
        raise ValueError("not a zip (.npz) file")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        if sum(i.compress_size for i in infos) > len(data):
            raise ValueError("zip members claim more bytes than the file holds")
        headers: dict[str, _Header] = {}
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or name in headers:
                raise ValueError(f"unexpected or duplicate zip member {info.filename!r}")
            if info.flag_bits & 0x1:
                raise ValueError(f"member {name!r} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ValueError(f"member {name!r} is compressed (the store writes none)")
            try:
                headers[name] = _read_header(z, info)
            except ValueError as e:
                raise ValueError(f"member {name!r}: {e}") from None
    return headers


def _check_structure(headers: dict[str, _Header]) -> None:
    """The store's own invariant: a 1-D integer ``run_id`` and every member ``(n, ...)``."""
    rid = headers.get("run_id")
    if rid is None:
        raise ValueError("it has no run_id member")
    if len(rid.shape) != 1 or rid.dtype.kind not in "iu" or not np.can_cast(rid.dtype, np.int64):
        raise ValueError(f"run_id is {rid.dtype} of shape {rid.shape}, not 1-D int64")
    n = rid.shape[0]
    for name, h in headers.items():
        if not h.shape or h.shape[0] != n:
            raise ValueError(f"member {name!r} has shape {h.shape}, not ({n}, ...) like run_id")


def _check_expected(chunk_id: str, headers: dict[str, _Header], expect: ChunkExpect) -> None:
    """Member names, shapes and dtypes against what the plan puts in ``chunk_id``; raises
    ``ValueError`` naming the first difference. Reads no array data."""
    n = len(expect.run_ids)
    if headers["run_id"].shape != (n,):
        raise ValueError(
            f"it holds {headers['run_id'].shape[0]} runs; chunk {chunk_id} of this sweep's plan "
            f"has {n}"
        )
    if expect.members is None:
        for name, h in headers.items():
            if not _MEMBER_NAME.match(name):
                raise ValueError(f"member {name!r} is not an output the engine writes")
            if int(np.prod(h.shape[1:], dtype=object)) > MAX_MEMBER_ELEMS_PER_RUN:
                raise ValueError(f"member {name!r} has shape {h.shape}: too large per run")
        return
    names, wanted = set(headers), {*expect.members, "run_id"}
    if names != wanted:
        extra, missing = sorted(names - wanted), sorted(wanted - names)
        raise ValueError(f"unexpected members {extra}, missing members {missing}")
    for name, (trailing, dtype) in expect.members.items():
        h, want = headers[name], (n, *trailing)
        if h.shape != want or h.dtype != np.dtype(dtype):
            raise ValueError(
                f"member {name!r} is {h.dtype} of shape {h.shape}; expected {dtype} of shape {want}"
            )


def _stamp_in(data: bytes) -> str | None:
    """The fingerprint in a chunk's zip comment (:func:`encode_chunk`); None when unstamped."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        comment = z.comment
    if not comment.startswith(_STAMP):
        return None
    return comment[len(_STAMP) :].decode("ascii", "replace")


def _fp(fingerprint: str | None) -> str:
    """A fingerprint as messages show it: ``sweep 1a2b3c4d5e6f``, or ``no sweep``."""
    return "no sweep fingerprint" if fingerprint is None else f"sweep {fingerprint[:12]}"


def _read_run_ids(data: bytes) -> np.ndarray:
    """Just the ``run_id`` member of a chunk whose headers were validated (a few bytes)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z, z.open("run_id.npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def validate_chunk(chunk_id: str, file: Path, data: bytes, expect: ChunkExpect | None) -> None:
    """Raise :class:`CorruptChunkError` unless the chunk's headers (and, with ``expect``, its
    run ids) are what the store writes and the plan expects; decodes no other array data."""
    try:
        headers = _read_headers(data)
        _check_structure(headers)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptChunkError(f"chunk {chunk_id} ({file}) cannot be decoded: {e}") from None
    if expect is None:
        return
    try:
        _check_expected(chunk_id, headers, expect)
        same = np.array_equal(_read_run_ids(data), expect.run_ids)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptChunkError(
            f"chunk {chunk_id} ({file}) does not match this sweep's plan: {e}"
        ) from None
    if not same:
        raise CorruptChunkError(
            f"chunk {chunk_id} ({file}) is invalid: its run ids do not match chunk {chunk_id} of "
            "this sweep's plan"
        )
    if expect.stamp is not None:
        found = _stamp_in(data)
        if expect.stamp.foreign(found):
            raise ForeignFileError(
                f"chunk {chunk_id} ({file}) belongs to another sweep: it is stamped "
                f"{_fp(found)}, this directory holds {_fp(expect.stamp.fingerprint)}"
            )


def read_chunk(
    path: Path, chunk_id: str, entry: dict[str, Any], expect: ChunkExpect | None = None
) -> dict[str, np.ndarray]:
    """Read one chunk, checking its SHA-256 first; raise :class:`CorruptChunkError` naming it.

    Then its ``.npy`` headers are validated before any array data is read (see the module
    docstring); with ``expect``, also against what the plan puts in this chunk, and ``run_id``
    must equal ``expect.run_ids``. Only then is the chunk decoded.
    """
    file = Path(path) / entry["file"]
    try:
        data = file.read_bytes()
    except OSError as e:
        raise CorruptChunkError(
            f"chunk {chunk_id} ({file}) is unreadable: {e.strerror or e}"
        ) from None
    if sha256_hex(data) != entry["sha256"]:
        raise CorruptChunkError(f"chunk {chunk_id} ({file}) is corrupt: checksum mismatch")
    validate_chunk(chunk_id, file, data, expect)
    try:
        return decode_chunk(data)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptChunkError(f"chunk {chunk_id} ({file}) cannot be decoded: {e}") from None


def iter_chunk_files(
    path: str | Path,
    on_corrupt: str = "raise",
    expect: Expect | None = None,
    stamp: Stamp | None = None,
) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
    """``(file, arrays)`` of every finished chunk of a sweep directory, verified.
    ``on_corrupt``: ``raise`` or ``skip`` (also for a manifest of another sweep, ``stamp``).

    With ``expect``, each chunk is checked against what the plan puts under its id (see
    :func:`read_chunk`); a listed id the plan does not have counts as a corrupt chunk.
    """
    import warnings

    listed: dict[str, dict[str, Any]] = {}
    for f in manifest_files(Path(path)):
        try:
            listed.update(read_manifests(Path(path), only=f.name, stamp=stamp))
        except ForeignFileError as e:
            if on_corrupt == "raise":
                raise
            warnings.warn(f"{e}; its chunks are left out", stacklevel=2)
    for cid, entry in sorted(listed.items()):
        try:
            arrays = read_chunk(Path(path), cid, entry, _expect_for(Path(path), cid, entry, expect))
            yield Path(path) / entry["file"], arrays
        except _NotInPlanError as e:
            if on_corrupt == "raise":
                raise CorruptChunkError(f"{e}; remove its manifest entry") from None
            warnings.warn(f"{e}; it is left out", stacklevel=2)
        except CorruptChunkError as e:
            if on_corrupt == "raise":
                raise CorruptChunkError(f"{e}. Run the sweep again to recompute it.") from None
            warnings.warn(f"{e}; its runs are left out", stacklevel=2)


def iter_chunks(
    path: str | Path,
    on_corrupt: str = "raise",
    expect: Expect | None = None,
    stamp: Stamp | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The arrays of every finished chunk (:func:`iter_chunk_files` without the file names)."""
    return (arrays for _, arrays in iter_chunk_files(path, on_corrupt, expect, stamp))


def read_member(file: Path, name: str) -> np.ndarray:
    """One array of a chunk file, read alone (for results loaded lazily, after the whole file
    was verified by :func:`read_chunk`): the zip's CRC-32 is checked, nothing is unpickled."""
    try:
        with zipfile.ZipFile(file) as z, z.open(f"{name}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptChunkError(
            f"chunk file {file} changed since the sweep was loaded ({type(e).__name__}: {e}); "
            "load the sweep again"
        ) from None


def expect_for(
    plan: Plan, members: Mapping[str, tuple] | None = None, stamp: Stamp | None = None
) -> Expect:
    """What :func:`read_chunk` checks a chunk id against: its run ids from the plan and, for
    group 0 when ``members`` is given (the layout traced from its program), its arrays' names,
    shapes and dtypes. Other groups' arrays are checked structurally (names, run axis, size).
    With ``stamp``, the chunk must belong to that sweep."""

    def expect(cid: str) -> ChunkExpect | None:
        where = plan.chunk_of(cid)
        if where is None:
            return None
        group = plan.group(where[0])
        own = members if where[0] == 0 else None
        return ChunkExpect(group.chunk_run_ids(where[1]), own, stamp)

    return expect
