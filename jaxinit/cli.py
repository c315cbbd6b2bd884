"""``jaxinit`` command line: a thin shell over :mod:`jaxinit.engine.sweep` and :mod:`jaxinit.reports`.

Exit codes: 0 ok, 2 bad input (spec, override, directory, a full or unwritable disk),
1 anything else, 130 interrupted. Figures are drawn with matplotlib's Agg backend (files only);
the library itself never selects a backend.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from jaxinit import __version__
from jaxinit.config import toml_io as _toml

_BARE_WORD = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9_\-./]+")
"""Text taken as a string when it is not a TOML value: a word with a letter in it, which may hold
digits, ``-``, ``.`` and ``/`` (``he_normal``, ``2/lambda0``, ``data/mine.csv``); ``0.1.2`` is a typo."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

DESCRIPTION = (
    "Measure what happens to a network from different starting weights: run sweeps of "
    "training runs (vmapped and compiled with JAX) and report their results."
)
EPILOG = """\
examples:
  jaxinit list                                 bundled specs
  jaxinit run symmetry --set axes.seed=64      run (or resume) into results/symmetry
  jaxinit report results/symmetry              figures and a summary in results/symmetry/report
  jaxinit status results/symmetry              runs done per shard, runs/s, ETA, problems

exit status: 0 ok, 2 bad input (spec, override, directory, a full or unwritable disk),
3 the report left out a figure or table that failed (the others are written; the
tracebacks are in the report's errors.log), 1 anything else, 130 interrupted.
"""


class InputError(Exception):
    """Bad input found by the command line itself (exit status 2, message without traceback)."""


def parse_set(item: str) -> tuple[str, object]:
    """``field.path=value`` with a TOML value; a bare word (``he_normal``, ``2/lambda0``: see
    :data:`_BARE_WORD`) is taken as a string."""
    from jaxinit.config.spec import SpecError

    path, eq, text = item.partition("=")
    if not eq or not path.strip():
        raise SpecError(f"--set {item!r}: expected field.path=value")
    try:
        value = _toml.loads(f"v = {text.strip()}")["v"]
    except _toml.TOMLDecodeError:
        if not _BARE_WORD.fullmatch(text.strip()):
            raise SpecError(
                f"--set {item!r}: {text!r} is not a TOML value (numbers, true/false, "
                '"strings", [lists]) nor a bare word'
            ) from None
        value = text.strip()
    return path.strip(), value


def default_out(name: str) -> Path:
    """``results/<name>``, refusing a spec name that is not one plain path component (``../x``,
    ``/tmp/x`` or ``a/b`` would write outside ``results/``)."""
    if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise InputError(
            f"spec name {name!r} cannot name a directory under results/: use letters, digits, "
            "'_', '-' and '.' only, or pass --out DIR"
        )
    return Path("results") / name


def _use_file_backend() -> None:
    """Draw with Agg: the command line only writes files (and needs no display)."""
    import matplotlib

    matplotlib.use("Agg")


def _cmd_run(args) -> int:
    from jaxinit.config.spec import SpecError
    from jaxinit.engine.store import parse_shard, preflight
    from jaxinit.engine.sweep import prepare, run
    from jaxinit.engine.validation import resolve_spec

    # Validate everything before anything compiles or the output directory is created.
    overrides = dict(parse_set(s) for s in args.set)
    from jaxinit.engine import probes

    if probes.is_probe(args.spec):  # random nets measured at init (no training)
        return _cmd_probe(args, probes.resolve(args.spec, overrides))
    try:
        spec = resolve_spec(args.spec, overrides)
    except UnicodeDecodeError:
        raise InputError(f"spec {args.spec} is not a UTF-8 TOML file") from None
    parse_shard(args.shard)  # its form now; its count against the plan's chunks below
    if args.chunk_size is not None and args.chunk_size < 1:
        raise SpecError(f"--chunk-size must be a positive integer, got {args.chunk_size}")
    _check_distributed(args)
    out = Path(args.out) if args.out else default_out(spec.name)
    if not args.dry_run:
        preflight(out)  # a file, a broken link, a foreign or corrupt directory: before compiling
    processes = None if args.dry_run else _join_processes(args)  # before any JAX backend starts
    if processes is None:  # one process: a CPU device per core (jaxinit.engine.devices)
        from jaxinit.engine.devices import use_cpu_cores

        use_cpu_cores()
    prep = prepare(spec, chunk_size=args.chunk_size)
    shard = parse_shard(args.shard, prep.plan.n_chunks)
    print(f"{spec.name}: {prep.describe()}; {_devices()}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    with warnings.catch_warnings():
        if processes is not None:  # the other processes' runs are not done yet: no news
            warnings.filterwarnings("ignore", ".*sweep is partial")
        ds = run(prep, out, chunk_size=args.chunk_size, shard=shard, progress=not args.quiet)
    if processes is not None:
        from jaxinit.engine import distributed
        from jaxinit.engine.results import load

        p, n = processes
        print(f"process {p} of {n}: its part is done; waiting for the others", file=sys.stderr)
        distributed.shutdown()  # JAX's barrier: every process has finished its part
        if p != 0:
            print(f"results: {out} (process {p} of {n}; process 0 prints the summary)")
            return 0
        ds = load(out)
    from jaxinit.reports import summarize  # matplotlib: after training

    print(summarize(ds))
    return _results(args, ds, out)


def _results(args, ds, out: Path) -> int:
    """Where the results are, and (``--report``) the report once some runs are done."""
    print(f"results: {out}")
    if args.report and ds.attrs["n_done"]:
        return _report(ds, out / "report", "figures: ")
    elif args.report:
        print("figures: none (no finished runs in this shard's directory yet)")
    return 0


REPORT_FAILED = 3
"""Exit status of a report that left out a figure or table that failed (the rest is written)."""


def _report(ds, out: Path, prefix: str = "", sep: str = ", ") -> int:
    """Write the report into ``out``: the files written on stdout, one line per figure that
    failed on stderr (its traceback in ``out/errors.log``); exit status 0 or REPORT_FAILED."""
    from jaxinit.reports import draw_report

    _use_file_backend()
    rep = draw_report(ds, out)
    print(prefix + sep.join(str(p) for p in rep.paths))
    for f in rep.failed:
        print(f"jaxinit: error: {f.name} not written: {f.cause}", file=sys.stderr)
    if rep.failed:
        print(f"jaxinit: {len(rep.failed)} part(s) of the report failed; tracebacks in "
              f"{rep.log}", file=sys.stderr)  # fmt: skip
        return REPORT_FAILED
    return 0


def _devices() -> str:
    """``"2 cpu devices"``: what the executor will train on (this process's devices)."""
    import jax

    devices = jax.local_devices()
    return f"{len(devices)} {devices[0].platform} device{'s' * (len(devices) > 1)}"


def _cmd_probe(args, spec) -> int:
    """``jaxinit run`` of a probe spec: random nets measured at init, stored as a sweep
    directory (``--shard``, resume, ``status`` and ``load`` as for any sweep)."""
    from jaxinit.engine import probes
    from jaxinit.engine.store import parse_shard, preflight
    from jaxinit.engine.sweep import prepare, run

    prep = prepare(spec, chunk_size=args.chunk_size)  # a probe's chunks are fixed: refused
    if _distributed_asked(args):
        raise InputError(
            "--distributed: a probe sweep runs in one process; split it across processes or "
            "machines with --shard i/n instead (and drop --coordinator, --num-processes, "
            "--process-id)"
        )
    shard = parse_shard(args.shard, prep.plan.n_chunks)
    out = Path(args.out) if args.out else default_out(spec.name)
    print(f"{spec.name}: {prep.describe()}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    preflight(out)  # a file, a broken link, a foreign or corrupt directory: before measuring
    ds = run(prep, out, shard=shard, progress=False)
    print(probes.summarize(ds, title=False))  # the size line is on stderr already
    return _results(args, ds, out)


def _distributed_asked(args) -> bool:
    given = (args.coordinator, args.num_processes, args.process_id)
    return args.distributed or any(v is not None for v in given)


def _check_distributed(args) -> None:
    """Refuse out-of-range ``--distributed`` settings before anything starts."""
    from jaxinit.engine import distributed

    try:
        distributed.check_settings(args.coordinator, args.num_processes, args.process_id,
                                   args.heartbeat_timeout, args.init_timeout)  # fmt: skip
    except ValueError as e:
        raise InputError(str(e)) from None


def _join_processes(args) -> tuple[int, int] | None:
    """With ``--distributed`` (or any of its settings) join the multi-process JAX job and return
    ``(process index, process count)``; None without."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not _distributed_asked(args):
        return None
    from jaxinit.engine import distributed

    try:
        p, n = distributed.initialize(*given, heartbeat_timeout_s=args.heartbeat_timeout,
                                      init_timeout_s=args.init_timeout)  # fmt: skip
    except (ValueError, TypeError, RuntimeError) as e:  # nothing detected, bad values, no peers
        raise InputError(f"--distributed: {e}") from None
    print(f"process {p} of {n} (jax.distributed)", file=sys.stderr, flush=True)
    return p, n


def _cmd_status(args) -> int:
    from jaxinit.engine.progress import status

    print(status(args.dir, verify=not args.quick))
    return 0


def _cmd_report(args) -> int:
    from jaxinit.engine.results import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(args.dir)
    if not ds.attrs["n_done"]:
        raise InputError(
            f"{args.dir}: no finished runs yet (0/{ds.attrs['n_runs']}); "
            "compute them with: jaxinit run SPEC --out DIR"
        )
    for w in caught:
        print(f"jaxinit: warning: {w.message}", file=sys.stderr)
    return _report(ds, Path(args.out or Path(args.dir) / "report"), sep="\n")


def _cmd_list(args) -> int:
    from jaxinit.config.bundled import bundled_specs

    for name, desc in bundled_specs().items():
        print(f"{name:<20} {desc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxinit",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"jaxinit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run or resume a sweep")
    r.add_argument("spec", help="a TOML spec path or a bundled spec name (see: jaxinit list)")
    r.add_argument("--out", help="sweep directory (default: results/<spec name>)")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a spec field, e.g. --set train.steps=500 --set axes.seed=64")  # fmt: skip
    r.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call")
    r.add_argument("--shard", default=None, help="i/n: run only chunk k with k %% n == i")
    r.add_argument("--distributed", action="store_true",
                   help="join a multi-process JAX job; each process runs its part of the chunks "
                   "(coordinator, count and id from SLURM, Open MPI, Kubernetes, Cloud TPU or "
                   "JAX_COORDINATOR_ADDRESS, unless given below)")  # fmt: skip
    r.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (implies --distributed)")  # fmt: skip
    r.add_argument("--num-processes", type=int, metavar="N", help="processes in the job")
    r.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")
    r.add_argument("--heartbeat-timeout", type=int, default=100, metavar="S",
                   help="seconds after which JAX declares a silent process dead (default 100)")  # fmt: skip
    r.add_argument("--init-timeout", type=int, default=300, metavar="S",
                   help="seconds to wait for the coordinator and every process to join; then "
                   "exit 2 naming them (default 300)")  # fmt: skip
    r.add_argument("--report", action="store_true", help="also write figures into DIR/report")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--dry-run", action="store_true",
                   help="validate, plan and print the sweep's size; compile and write nothing")  # fmt: skip
    r.set_defaults(fn=_cmd_run)
    rep = sub.add_parser("report", help="write figures and a text summary of a sweep directory",
                         description="Write the spec's figures, their tables and summary.txt. "
                         "A figure that fails is named on one line and left out, the others are "
                         "written, its traceback goes to errors.log in the report folder, and "
                         f"the exit status is {REPORT_FAILED}.")  # fmt: skip
    rep.add_argument("dir")
    rep.add_argument("--out", help="where to write (default: DIR/report)")
    rep.set_defaults(fn=_cmd_report)
    st = sub.add_parser("status", help="runs done per shard, runs/s, ETA and problems of a sweep")
    st.add_argument("dir")
    st.add_argument("--quick", action="store_true", help="do not verify the chunks' checksums")
    st.set_defaults(fn=_cmd_status)
    lst = sub.add_parser("list", help="bundled specs with one-line descriptions")
    lst.set_defaults(fn=_cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    from jaxinit.config.spec import SpecError
    from jaxinit.engine.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (InputError, SpecError, StoreError) as e:
        print(f"jaxinit: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the report directory: name the path, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"jaxinit: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "jaxinit: interrupted; finished chunks are saved, run again to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
