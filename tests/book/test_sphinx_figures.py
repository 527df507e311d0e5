"""The book's figure extension on a two-figure MyST project: alt text from the caption, an SVG link only where the
file exists, the file copied into the build."""

import html
import re
import subprocess
import sys

import pytest

from poisoncurv.book.sphinx_figures import svg_link
from poisoncurv.core.paths import REPO_ROOT

pytest.importorskip("myst_parser")

PAGE = """# Figures

:::{figure} one.png
:name: fig-demo-one

Spike $\\Lambda_{\\mathrm{GN}}$ against the efficacy $\\lVert\\Delta f\\rVert$ for three kernels, as the number of
clones grows. Run: cpu profile.
:::

:::{figure} one.png
:name: fig-demo-two

A second figure whose SVG has not been written, drawn here only to check that it gets no link at all.
:::
"""

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def test_alt_text_and_svg_link(tmp_path):
    src = tmp_path / "src"
    (src / "_static" / "figures").mkdir(parents=True)
    (src / "conf.py").write_text("extensions = ['myst_parser', 'poisoncurv.book.sphinx_figures']\n"
                                 "myst_enable_extensions = ['colon_fence', 'dollarmath']\n"
                                 "html_static_path = ['_static']\n")
    (src / "index.md").write_text(PAGE)
    (src / "one.png").write_bytes(PNG)
    (src / "_static" / "figures" / "fig-demo-one.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    out = tmp_path / "html"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "-b", "html", str(src), str(out)],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": ""})
    assert run.returncode == 0, run.stderr
    page = (out / "index.html").read_text()
    alts = [html.unescape(a) for a in re.findall(r'<img alt="([^"]*)"', page)]
    assert alts[0] == ("Spike Λ_GN against the efficacy ‖Δ f‖ for three kernels, as the number of clones grows.")
    assert alts[1].startswith("A second figure whose SVG has not been written")
    assert not any(a.endswith(".png") for a in alts)
    links = re.findall(r'<a class="reference download figure-svg" href="([^"]+)"', page)
    assert links == ["_static/figures/fig-demo-one.svg"], "one link, for the figure whose SVG exists"
    assert (out / "_static" / "figures" / "fig-demo-one.svg").is_file()


def test_the_link_is_relative_to_the_page():
    assert 'href="../_static/figures/fig-a.svg"' in svg_link("fig-a", "part/page").astext()
    assert 'href="_static/figures/fig-a.svg"' in svg_link("fig-a", "page").astext()
