"""``report/index.html`` (issue 27): one self-contained page per report, opened in a real
headless browser (Debian's Chromium, driven by Playwright): every figure loads, nothing is
requested from outside the file, and every text from a spec is escaped. The figure guide's
text lives in the registry (jaxinit.plots.names.GUIDE) and docs/figures.md is generated from it.

The browser tests need ``/usr/bin/chromium`` (``apt-get install -y chromium``; .ci/run installs
it) and the ``playwright`` package (the test extra); they fail, never skip, without them."""

import html
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (the figures draw off screen here)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_report import CHUNK, _broken, _with_report, bundled_overrides  # noqa: E402

import jaxinit  # noqa: E402
from jaxinit import cli  # noqa: E402
from jaxinit.plots import FIGURES  # noqa: E402
from jaxinit.plots import names as registry  # noqa: E402
from jaxinit.report_html import HTML_FILE, render_page, run_facts, table_html  # noqa: E402
from jaxinit.reports import draw_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip


# -- the page in a real browser -------------------------------------------------------------------
def open_in_chromium(page_file: Path) -> dict:
    """Open ``page_file`` in headless Chromium and return what it saw: ``images`` (``complete``,
    ``naturalWidth``, the start of ``src``, per ``<img>``), ``requests`` (every URL the page
    asked for, the file itself included), ``figures`` (the ids of the figure sections) and
    ``errors`` (uncaught page errors)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y "
                    "chromium), as .ci/run does")  # fmt: skip
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]' (never run "
                    "`playwright install`: the test drives the system's Chromium)")  # fmt: skip
    seen: dict = {"requests": [], "errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            seen["images"] = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.src.slice(0, 22)])"
            )
            seen["figures"] = page.eval_on_selector_all(
                "section.figure", "els => els.map(e => e.id)"
            )
        finally:
            browser.close()
    return seen


def assert_renders(page_file: Path, names: list[str]) -> dict:
    """Every figure of ``names`` is on the page, in order, as an image that loaded from a
    ``data:`` URI; nothing was requested but the file itself."""
    seen = open_in_chromium(page_file)
    assert seen["figures"] == [f"fig-{n}" for n in names]
    assert len(seen["images"]) == len(names), seen["images"]
    broken = [img for img in seen["images"] if not (img[0] and img[1] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert all(src.startswith("data:image/png;base64") for _, _, src in seen["images"])
    outside = [u for u in seen["requests"] if u != page_file.resolve().as_uri() and not u.startswith("data:")]  # fmt: skip
    assert not outside, f"requests outside the file: {outside}"
    assert not seen["errors"]
    return seen


def test_the_browser_check_sees_a_broken_image_and_a_request_outside(tmp_path):
    """The check itself can fail: a page with a missing image and one from the network."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><section class="figure" id="fig-a">'
                    '<img src="missing.png"></section><section class="figure" id="fig-b">'
                    '<img src="http://127.0.0.1:9/x.png"></section></body></html>')  # fmt: skip
    seen = open_in_chromium(page)
    assert [img[1] for img in seen["images"]] == [0, 0]
    assert any(u.endswith("/missing.png") for u in seen["requests"])
    assert "http://127.0.0.1:9/x.png" in seen["requests"]
    with pytest.raises(AssertionError, match="did not load"):
        assert_renders(page, ["a", "b"])


def test_without_chromium_the_browser_tests_fail_naming_the_install(monkeypatch, tmp_path):
    """Never a skip: a machine without Chromium fails them, saying what to install."""
    monkeypatch.setitem(globals(), "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        open_in_chromium(tmp_path / "page.html")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["symmetry", "basin_map"])
def test_bundled_report_page_renders_in_chromium(name, tmp_path):
    """`jaxinit run NAME --report` at a tiny size: report/index.html shows every figure of the
    spec (each image decoded by the browser), requests nothing outside the file, and holds the
    guide's question for each figure, the run counts and the spec."""
    kw = bundled_overrides(name, 3)
    ds = jaxinit.run(name, tmp_path / name, progress=False, chunk_size=CHUNK, **kw)
    rep = draw_report(ds, tmp_path / name / "report")
    assert rep.failed == [], rep.failed
    page_file = tmp_path / name / "report" / HTML_FILE
    names = json.loads(ds.attrs["spec"])["report"]
    assert_renders(page_file, names)
    text = page_file.read_text()
    for n in names:
        assert html.escape(registry.GUIDE[n].question.split("`")[0]) in text
    assert f"{ds.attrs['n_done']} of {ds.attrs['n_runs']}" in text
    assert "chunks written from" in text or "one chunk, written at" in text  # DIR's manifests
    assert '"report": ' + json.dumps(names) in text.replace("&quot;", '"')
    pngs = sum(p.stat().st_size for p in rep.paths if p.suffix == ".png")
    assert len(text.encode()) < pngs * 4 / 3 + 200_000  # the figures, base64, and some text


# -- what the page holds ----------------------------------------------------------------------------
def test_text_from_the_spec_is_escaped(tiny_sweep):
    """A description or figure name with markup shows as text, never as markup."""
    ds = tiny_sweep.copy()
    ds.attrs["description"] = "<script>alert(1)</script> & <img src=http://x/y.png>"
    page = render_page(ds, ["<b>x</b>"], {}, "a < b", [("t <i>", pd.DataFrame({"<c>": ["<d>"]}))],
                       facts=run_facts(ds), spec={"name": "<s>"})  # fmt: skip
    assert "<script" not in page.lower() and "<img src=http" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in page
    assert "&lt;c&gt;" in page and "&lt;d&gt;" in page and "t &lt;i&gt;" in page
    assert "default-src 'none'" in page  # and the browser would load nothing anyway


def test_a_long_table_is_cut_with_a_count():
    df = pd.DataFrame({"a": np.arange(100), "b": np.linspace(0, 1, 100)})
    text = table_html(df, max_rows=40)
    assert text.count("<tr>") == 1 + 40  # the header and 40 rows
    assert "… 60 more row(s) of 100" in text
    assert table_html(df.head(40), max_rows=40).count("more row") == 0


def test_a_failed_figure_is_a_note_and_the_page_is_still_written(tiny_sweep, tmp_path, monkeypatch):
    """A figure that fails in a rerun: its section says why, and the PNG of the earlier report
    (still on disk) is not shown as if it were this report's."""
    ds = _with_report(tiny_sweep, ["final_loss", "loss_curves"])
    first = draw_report(ds, tmp_path)
    assert first.failed == [] and (tmp_path / "final_loss.png").exists()
    monkeypatch.setitem(FIGURES, "final_loss", _broken)
    rep = draw_report(ds, tmp_path)
    page = (tmp_path / HTML_FILE).read_text()
    assert [f.name for f in rep.failed] == ["final_loss"] and tmp_path / HTML_FILE in rep.paths
    section = page[page.index('id="fig-final_loss"') : page.index('id="fig-loss_curves"')]
    assert "<img" not in section and "Not drawn: RuntimeError: boom: a figure bug" in section
    assert page.count("<img ") == 1
    assert "Left out of this report" in page


def test_a_page_that_fails_leaves_no_stale_page(tiny_sweep, tmp_path, monkeypatch):
    """The page itself failing is a failure like a figure's (exit 3 from the CLI), and an
    earlier report's index.html, which would show other results, is removed."""
    import jaxinit.report_html as report_html

    ds = _with_report(tiny_sweep, ["loss_curves"])
    draw_report(ds, tmp_path)
    assert (tmp_path / HTML_FILE).exists()

    def boom(*a, **k):
        raise RuntimeError("page bug")

    monkeypatch.setattr(report_html, "render_page", boom)
    rep = draw_report(ds, tmp_path)
    assert [(f.name, f.cause) for f in rep.failed] == [(HTML_FILE, "RuntimeError: page bug")]
    assert not (tmp_path / HTML_FILE).exists() and (tmp_path / "loss_curves.png").exists()
    assert f"{HTML_FILE}: RuntimeError: page bug" in (tmp_path / "summary.txt").read_text()


def test_a_rerun_replaces_the_page_atomically(tiny_sweep, tmp_path, monkeypatch):
    """index.html is written to a temporary file and renamed over the old one (os.replace): a
    reader sees the old page or the new one, whole; no temporary file is left."""
    import os

    ds = _with_report(tiny_sweep, ["loss_curves"])
    draw_report(ds, tmp_path)
    old = (tmp_path / HTML_FILE).read_text()
    replaced = []
    real = os.replace

    def spy(src, dst):
        replaced.append((Path(src).name, Path(dst).name))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    draw_report(_with_report(tiny_sweep, ["loss_curves", "final_loss"]), tmp_path)
    assert [d for s, d in replaced if d == HTML_FILE] == [HTML_FILE]
    assert [s for s, d in replaced if d == HTML_FILE][0].startswith(f".{HTML_FILE}.tmp")
    new = (tmp_path / HTML_FILE).read_text()
    assert new != old and new.count("<img ") == 2
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []


def test_an_index_html_jaxinit_did_not_write_is_left_alone(tiny_sweep, tmp_path):
    from jaxinit.engine.store import StoreError

    (tmp_path / HTML_FILE).write_text("my own page")
    with pytest.raises(StoreError, match="was not written by jaxinit"):
        draw_report(_with_report(tiny_sweep, ["loss_curves"]), tmp_path)
    assert (tmp_path / HTML_FILE).read_text() == "my own page"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from conftest import TINY

    out = tmp_path_factory.mktemp("html") / "tiny"
    jaxinit.run({**TINY, "report": ["final_loss", "loss_curves"]}, out, progress=False)
    return out


def test_cli_report_writes_the_page_with_counts_and_chunk_times(tiny_dir, capsys):
    """`jaxinit report DIR`: DIR/report/index.html with the runs done, diverged, the time its
    chunks were written (DIR's manifests), and the guide's paragraph for each figure."""
    assert cli.main(["report", str(tiny_dir)]) == 0
    page_file = tiny_dir / "report" / HTML_FILE
    assert str(page_file) in capsys.readouterr().out.splitlines()
    text = page_file.read_text()
    assert "<dt>runs done</dt><dd>12 of 12</dd>" in text
    assert "<dt>diverged</dt><dd>0 of the 12 finished runs</dd>" in text
    when = re.search(r"<dt>computed</dt><dd>(\d+) chunks written from (\S+ \S+) UTC", text)
    assert when and int(when.group(1)) >= 1
    for n in ("final_loss", "loss_curves"):
        assert html.escape(registry.GUIDE[n].about.split("`")[0][:60]) in text


def test_a_report_elsewhere_has_no_chunk_times_of_another_directory(tiny_dir, tmp_path):
    """--out elsewhere: the folder above is not the sweep's, so no chunk times are claimed;
    a folder above that holds another sweep is not read as this one's either."""
    assert cli.main(["report", str(tiny_dir), "--out", str(tmp_path / "r")]) == 0
    assert "<dt>computed</dt>" not in (tmp_path / "r" / HTML_FILE).read_text()
    from conftest import TINY

    other = tmp_path / "other"  # another sweep (its name differs), compiled like tiny_dir's
    jaxinit.run({**TINY, "name": "other"}, other, progress=False)
    assert cli.main(["report", str(tiny_dir), "--out", str(other / "report")]) == 0
    assert "<dt>computed</dt>" not in (other / "report" / HTML_FILE).read_text()


# -- the figure guide: one text per figure, in the registry ----------------------------------------
def test_every_figure_has_a_guide_entry_and_every_entry_a_figure():
    declared = [n for n, _ in registry.declared()]
    assert sorted(registry.GUIDE) == sorted(declared)
    assert set(registry.FAMILY_GUIDE) == set(registry.FAMILIES)
    for name, text in registry.GUIDE.items():
        assert text.question.endswith("?") and len(text.about) > 40, name
        assert text.about.count("`") % 2 == 0 and text.question.count("`") % 2 == 0, name


def test_docs_figures_md_is_generated_from_the_registry():
    """docs/figures.md cannot drift from the registry (regenerate it with the command below)."""
    page = ROOT / "docs" / "figures.md"
    regen = ('python -c "from jaxinit.plots.names import figure_guide_markdown as g; '
             "open('docs/figures.md', 'w').write(g())\"")  # fmt: skip
    assert page.read_text() == registry.figure_guide_markdown(), f"regenerate: {regen}"
    for name in registry.FIGURE_NAMES:
        assert f"### `{name}`" in page.read_text()


def test_a_figure_registered_outside_the_package_brings_its_own_text(monkeypatch):
    monkeypatch.setattr(registry, "GUIDE", dict(registry.GUIDE))
    monkeypatch.setattr(registry, "ENTRIES", dict(registry.ENTRIES))
    monkeypatch.setattr(registry, "FIGURES", dict(registry.FIGURES))

    def mine(ds):
        """My figure: the loss of run 0.

        More detail."""

    registry.figure("my_fig", question="Is run 0 fine?", about="Its loss, drawn.")(mine)
    assert registry.figure_text("my_fig") == ("Is run 0 fine?", "Its loss, drawn.")
    registry.figure("my_other")(mine)  # no text: its docstring's first paragraph
    assert registry.figure_text("my_other").about == "My figure: the loss of run 0."
    with pytest.raises(ValueError, match="both question= and about="):
        registry.figure("half", question="Why?")
