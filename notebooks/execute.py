"""Execute the example notebooks in place, at their default settings, and stamp each one.

    python notebooks/execute.py                      # every notebooks/*.ipynb
    python notebooks/execute.py notebooks/02_*.ipynb # some of them
    python notebooks/execute.py --check              # only check the committed ones (as the tests do)

The notebooks are committed *with* their outputs, so that a code host shows their tables and
figures without running them. To keep those outputs fresh, each executed notebook records in its
metadata (``metadata.jaxinit``) the SHA-256 of its code cells (:func:`code_hash`), when and how
long it ran (wall time, and the kernel's CPU time, which other jobs on a shared machine do not
inflate) and the machine's load; ``tests/test_notebooks.py`` fails when a committed notebook's
code cells no longer hash to its stamp (a code edit without re-executing), when it has no outputs
or no figure (:func:`problems`).

Each notebook runs in a fresh kernel, in a temporary directory, with ``JAXINIT_SMALL`` unset (its
defaults; the tests set it for their smaller settings), this checkout first on ``PYTHONPATH`` and
an empty compilation cache (its time is that of a reader's first run).
Progress bars and other carriage-return updates are collapsed to their last state, so the stored
output is what the reader saw last, and the figures are stored with a 256-colour palette, a third
of the bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
STAMP = "jaxinit"  # the notebook-metadata key of the stamp
TIMEOUT_S = 1200  # per cell


def code_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of a notebook's code cells' sources, in order (markdown and outputs excluded)."""
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode()).hexdigest()


def images(nb: nbformat.NotebookNode) -> list[str]:
    """The PNG figures in a notebook's outputs (base64 text, as stored)."""
    return [
        o["data"]["image/png"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Why a committed notebook's outputs are not those of its current code ([] when fresh)."""
    stamp = nb.metadata.get(STAMP, {})
    out: list[str] = []
    if "code_sha256" not in stamp:
        out.append("it was never executed by notebooks/execute.py (no stamp in its metadata)")
    elif stamp["code_sha256"] != code_hash(nb):
        out.append("its code cells changed since it was executed (the stamp's hash differs)")
    if stamp.get("small"):
        out.append("it was executed with JAXINIT_SMALL=1, not at its defaults")
    code = [c for c in nb.cells if c.cell_type == "code"]
    unrun = [i for i, c in enumerate(code) if c.source.strip() and c.execution_count is None]
    if unrun:
        out.append(f"code cell(s) {unrun} have no execution count (not executed)")
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        out.append(f"{len(errors)} cell(s) raised: {errors[0].ename}: {errors[0].evalue}")
    if not images(nb):
        out.append("it shows no figure")
    return out


_CR = re.compile(r"[^\n]*\r(?!\n)")  # a line's text overwritten by a carriage return


def smaller_png(b64: str) -> str:
    """A PNG figure (base64) re-encoded with a 256-colour palette on white, when that is smaller
    (a third of the bytes for matplotlib's line plots and colour maps, which look the same)."""
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    if image.mode in ("RGBA", "LA", "P"):
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    buf = io.BytesIO()
    image.convert("RGB").quantize(256).save(buf, "PNG", optimize=True)
    out = base64.b64encode(buf.getvalue()).decode("ascii")
    return out if len(out) < len(b64) else b64


def clean(cell: nbformat.NotebookNode) -> None:
    """Consecutive stream outputs of one name merged, carriage-return updates collapsed to the last,
    figures made smaller (:func:`smaller_png`), and the per-cell timing metadata dropped (it
    changes on every run)."""
    outputs = []
    for o in cell.get("outputs", []):
        last = outputs[-1] if outputs else None
        if o.output_type == "stream" and last is not None and last.output_type == "stream" \
                and last.name == o.name:  # fmt: skip
            last.text += o.text
        else:
            outputs.append(o)
    for o in outputs:
        if o.output_type == "stream":
            o.text = _CR.sub("", o.text.replace("\r\n", "\n"))
        elif "image/png" in o.get("data", {}):
            o.data["image/png"] = smaller_png(o.data["image/png"])
    cell.outputs = outputs
    cell.metadata.pop("execution", None)


def cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    """How long an executed cell ran, from the timing nbclient records (before :func:`clean`)."""
    t = cell.metadata.get("execution", {})
    if "iopub.execute_input" not in t or "shell.execute_reply" not in t:
        return None
    start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))  # fmt: skip
    return (end - start).total_seconds()


def _children_cpu() -> float | None:
    """User + system CPU seconds of this process's finished children (the kernel, once shut
    down): the notebook's cost apart from other jobs on a shared machine; None where unknown."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(path: Path) -> float:
    """Execute ``path`` in place at its defaults and stamp it; returns the wall time in seconds.
    Prints the slowest cells' times."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("JAXINIT_SMALL", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    saved = dict(os.environ)
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # a cold compilation cache, as on a reader's first run (jaxinit.engine.compile_cache)
            env["JAXINIT_CACHE_DIR"] = str(Path(tmp) / "xla")
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            os.environ.clear()
            os.environ.update(env)  # the kernel inherits this process's environment
            client = NotebookClient(
                nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": tmp}}
            )
            t0, cpu0 = time.perf_counter(), _children_cpu()
            client.execute()  # starts the kernel, runs every cell, shuts the kernel down
            seconds, cpu1 = time.perf_counter() - t0, _children_cpu()
            cpu = None if cpu1 is None else cpu1 - cpu0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    code = [c for c in nb.cells if c.cell_type == "code"]
    took = sorted(((cell_seconds(c) or 0.0, i) for i, c in enumerate(code)), reverse=True)
    print(f"{path.name}: slowest code cells " + ", ".join(f"#{i} {s:.0f} s" for s, i in took[:6]))
    for cell in code:
        clean(cell)
    load_after = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    nb.metadata[STAMP] = {
        "code_sha256": code_hash(nb),
        "small": False,
        "compilation_cache": "cold",
        "executed_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "seconds": round(seconds, 1),
        "kernel_cpu_seconds": None if cpu is None else round(cpu, 1),
        "cpus": os.cpu_count(),
        "load_1min_before_after": [load, load_after],
    }
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="only check the stamps and outputs")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    bad = 0
    for path in paths:
        if not args.check:
            execute(path)
        nb = nbformat.read(path, as_version=4)
        if not args.check:
            st = nb.metadata[STAMP]
            print(f"{path.name}: executed in {st['seconds']:.0f} s (kernel CPU "
                  f"{st['kernel_cpu_seconds']} s, load {st['load_1min_before_after']}), "
                  f"{path.stat().st_size / 1024:.0f} KiB")  # fmt: skip
        issues = problems(nb)
        for why in issues:
            print(f"{path.name}: {why}", file=sys.stderr)
        bad += bool(issues)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
