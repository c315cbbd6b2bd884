"""jaxinit installs the way users install it: the sdist rebuilds the wheel, and the wheel carries
every bundled spec and ``py.typed``, and none of the tests, notebooks or benchmarks.
(``.ci/wheel_check`` installs that wheel into a fresh venv and runs specs from outside the checkout.)"""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import jaxinit
from jaxinit.config.bundled import bundled_specs, find_spec, sweeps_dir

ROOT = Path(__file__).resolve().parent.parent


def _names_of_specs():
    return sorted(p.name for p in (ROOT / "jaxinit" / "sweeps").glob("*.toml"))


def _bundled_files():
    """The specs and the data files they read (``sweeps/data/*.csv``)."""
    data = (ROOT / "jaxinit" / "sweeps" / "data").glob("*.csv")
    return sorted([*_names_of_specs(), *(p.name for p in data)])


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel built from it (``python -m build``'s default route), offline."""
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sdist,) = out.glob("jaxinit-*.tar.gz")
    (wheel,) = out.glob("jaxinit-*.whl")
    return sdist, wheel


@pytest.mark.slow
def test_wheel_holds_every_bundled_spec_and_nothing_else(dist):
    _, wheel = dist
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = sorted(Path(n).name for n in names if n.startswith("jaxinit/sweeps/"))
    assert in_wheel == _bundled_files()
    assert "jaxinit/py.typed" in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"jaxinit", f"{wheel.name.split('-py')[0]}.dist-info"}, tops


@pytest.mark.slow
def test_sdist_holds_the_specs(dist):
    sdist, _ = dist
    names = tarfile.open(sdist).getnames()
    in_sdist = sorted(
        Path(n).name for n in names if "/jaxinit/sweeps/" in n and not n.endswith("/data")
    )
    assert in_sdist == _bundled_files()


def test_specs_are_found_in_the_package():
    assert sweeps_dir() == Path(jaxinit.__file__).parent / "sweeps"
    assert sorted(f"{n}.toml" for n in bundled_specs()) == _names_of_specs()
    assert len(bundled_specs()) >= 18
    assert find_spec("symmetry").parent == sweeps_dir()


def test_top_level_sweeps_is_the_package_folder():
    """One copy: the repository's sweeps/ is a link to jaxinit/sweeps, not a second set of files."""
    top = ROOT / "sweeps"
    assert top.is_symlink() and top.resolve() == (ROOT / "jaxinit" / "sweeps").resolve()


@pytest.mark.slow
def test_python_dash_m_is_the_cli():
    r = subprocess.run(
        [sys.executable, "-m", "jaxinit", "--version"], capture_output=True, text=True, cwd="/"
    )
    assert r.returncode == 0 and r.stdout.strip() == f"jaxinit {jaxinit.__version__}"
    r = subprocess.run([sys.executable, "-m", "jaxinit", "list"], capture_output=True, text=True)
    assert r.returncode == 0 and "symmetry" in r.stdout
