"""tools/pages_check.py: the text rules on hand-written HTML (no Chromium), and the layout measurement on a tiny
built book (slow; skipped without Chromium)."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from poisoncurv.core.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("pages_check", REPO_ROOT / "tools" / "pages_check.py")
pages_check = importlib.util.module_from_spec(spec)
sys.modules["pages_check"] = pages_check        # dataclasses look their module up there
spec.loader.exec_module(pages_check)


def page(body: str) -> str:
    """A page shaped like sphinx-book-theme's: navigation outside the column, the chapter inside it."""
    return ("<html><head><title>True</title><script>var x = None;</script></head><body>"
            "<nav class='bd-sidebar'><p>None nan {ref}`nav`</p></nav>"
            f"<main id='main-content'><article class='bd-article'>{body}</article></main></body></html>")


def kinds(body: str) -> list[str]:
    return [k for k, _ in pages_check.text_findings(page(body))]


@pytest.mark.parametrize("body", [
    "<p>See {numref}`fig-ch1-spike` for the spike.</p>",
    "<p>The slope is {glue:text}`ch1_slope`.</p>",
    "<p>As shown by {cite:p}`granziol2026`.</p>",
    "<p>Depth 8 (<code class='docutils literal'><span class='pre'>{glue:text}</span></code>ch7_model``).</p>",
    "<p>Section {ref}`sec-lag` and {doc}`claims`.</p>",
    "<div class='cell_output'><div class='output text_plain'><pre>{glue:md}`x`</pre></div></div>",
])
def test_unrendered_roles_are_found(body):
    assert "raw-role" in kinds(body)


@pytest.mark.parametrize("body, n", [
    ("<p>The trend is monotone: True, and the gap stays open.</p>", 1),
    ("<table><tr><td>converged</td><td>False</td></tr></table>", 1),
    ("<p>The threshold is None when the run diverged.</p>", 1),
    ("<p>The ratio is nan at <span class='math'>\\(\\kappa=0\\)</span>.</p>", 1),
    ("<p><strong>True</strong></p>", 1),
    ("<p>ok = <em>False</em>, err = None; loss nan</p>", 3),
])
def test_python_literals_in_prose_are_found(body, n):
    assert kinds(body).count("python-literal") == n


@pytest.mark.parametrize("body", [
    "<p>None of the detectors flags the near clones.</p>",                      # English at a sentence start
    "<h2>False positives</h2><p>True positives are rare. Again: None of them.</p>",
    "<p>Call it with <code class='literal'>augment=True</code> or <code>None</code>.</p>",
    "<div class='highlight'><pre>if x is None:\n    return False</pre></div>",
    "<div class='cell_input'><pre>y = float('nan')</pre></div>",
    "<p>The key <span>defence/kappa=0.1,augment=False</span> is cached.</p>",   # part of a key, not prose
    "<p>Inside math: <span class='math'>\\(\\text{None} = \\text{True}\\)</span>; nanoseconds; Nonetheless.</p>",
    "<p>A NaN is not a number; TrueType fonts; <span hidden>True</span></p>",
    "<p style='display:none'>False</p><script>True</script>",
])
def test_code_english_and_hidden_text_are_not_python_literals(body):
    assert kinds(body) == []


def test_text_outside_the_column_is_ignored():
    assert pages_check.text_findings(page("<p>Clean prose.</p>")) == []


@pytest.mark.parametrize("body, found", [
    ("<p>The curvature is 817.0 times the clean model's.</p>", ["817.0 'times'"]),
    ("<p>It removes 1.0 of the poisons and 1,200.0 samples.</p>", ["1.0 'of'", "1,200.0 'samples'"]),
    ("<p>AUROC <b>1.0</b> at 5 %.</p>", ["1.0 'at'"]),
    ("<p>The ratio is 817 times, 817.5 times, 1.0.</p>", []),                   # no artefact
    ("<p>torch 2.5.0 and v1.0 release; Python 3.10 is used.</p>", []),         # versions
    ("<table><tr><td>1.0</td><td>times</td></tr></table>", []),                 # separate cells
    ("<p>Run <code>lr=1.0 times</code> here.</p>", []),                         # inline code
])
def test_float_artefacts(body, found):
    got = [w for k, w in pages_check.text_findings(page(body)) if k == "float-artefact"]
    assert [g.split(" in ")[0] for g in got] == found


def test_findings_name_their_section():
    (kind, what), = pages_check.text_findings(page("<section id='lag'><h2>The lag</h2><p>It is None.</p></section>"))
    assert kind == "python-literal" and what.endswith("[The lag]") and "It is None." in what


def test_report_lists_at_most_max_per_kind_and_counts():
    F = pages_check.Finding
    findings = [F("a.html", "-", "python-literal", f"'None' {i}") for i in range(5)] + [F("b.html", "390", "table", "t")]
    text = pages_check.report(findings, [], 2, [1280, 390], 2, 1.5, True)
    assert sum(l.startswith("a.html") for l in text.splitlines()) == 2 and "and 3 more python-literal" in text
    assert "by kind: table 1, python-literal 5" in text and "6 findings on 2 pages" in text and "1.5 s" in text


def test_no_built_book_is_refused(tmp_path, capsys):
    assert pages_check.main(["--html", str(tmp_path / "missing")]) == 2
    assert "make book" in capsys.readouterr().err


CHROMIUM = "/usr/bin/chromium"
WIDE = """
<section id="wide"><h1>Wide things</h1>
<p>Text that wraps normally in the column.</p>
<div class="pst-scrollable-table-container" style="overflow-x:auto">
<table id="tbl-wide"><tr><td style="white-space:nowrap">{cells}</td></tr></table></div>
<div class="math notranslate" style="overflow-x:auto"><span style="display:inline-block;width:900px">x</span></div>
<div class="highlight"><pre style="overflow-x:auto">{line}</pre></div>
<figure><img id="big" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" style="width:1500px;height:10px"></figure>
<p>Fine: <code>short</code></p>
</section>"""


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install chromium)")
def test_layout_overflow_is_measured_at_each_width(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    narrow = page("<section id='ok'><h1>Fits</h1><p>Short text.</p><pre>x = 1</pre></section>")
    style = "<style>article.bd-article{max-width:600px;margin:0 auto;padding:0 10px}img{display:block}</style>"
    (html / "index.html").write_text(narrow.replace("<head>", "<head>" + style))
    wide = page(WIDE.format(cells="cell " * 300, line="y = " + "1 + " * 300))
    (html / "wide.html").write_text(wide.replace("<head>", "<head>" + style))
    if not shutil.which(CHROMIUM):
        pytest.skip("Chromium not runnable")
    rc = pages_check.main(["--html", str(html), "--widths", "1280,390", "--chromium", CHROMIUM,
                           "--report", str(tmp_path / "report.txt")])
    text = (tmp_path / "report.txt").read_text()
    assert rc == 1, text
    for width in ("1280", "390"):
        for kind in ("table", "math", "code", "figure", "page-scroll"):
            assert any(l.startswith("wide.html") and f" {width}  {kind} " in l for l in text.splitlines()), (kind, width, text)
    assert "index.html" not in text.split("\n\n")[0] and "on 2 pages at 1280, 390 px" in text
    assert "python-literal" not in text      # <title>True</title> and the script are not prose
