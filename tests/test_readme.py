"""The README's Python examples run as written, each in a fresh interpreter (issue 20)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
CLUSTER_ONLY = "import submitit"
"""The one example that needs a Slurm cluster (submitit): checked to compile, not run."""


def test_the_readme_has_python_examples_and_one_needs_a_cluster():
    assert len(BLOCKS) >= 4
    assert sum(CLUSTER_ONLY in b for b in BLOCKS) == 1
    for block in BLOCKS:
        compile(block, "README.md", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("k", [k for k, b in enumerate(BLOCKS) if CLUSTER_ONLY not in b])
def test_readme_example_runs_as_written(k, tmp_path):
    """In a folder that has the bundled ``sweeps/`` and, for the examples that load it, the
    README's main job's ``results/symmetry`` (made smaller here: 8 seeds)."""
    (tmp_path / "sweeps").symlink_to(ROOT / "jaxinit" / "sweeps")
    if "results/symmetry" in BLOCKS[k]:
        setup = "import jaxinit; jaxinit.run('symmetry', out='results/symmetry', axes__seed=8)"
        subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, check=True, timeout=600)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKS[k]], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
