"""Sphinx extension (``_config.yml``: ``extra_extensions``): figures that can be cited as files and read aloud.

For every figure of the book with a label (``fig-...``, from a chapter cell's ``mystnb.figure.name``):

* the image's alt text becomes a sentence describing the figure, taken from its caption
  (:func:`poisoncurv.book.figures.alt_text`; glued values and cross-references as rendered), instead of the
  image's file path;
* when ``book/_static/figures/<label>.svg`` exists (``make rerun`` writes it), the caption ends with a link
  "SVG" to that file, which the build copies to ``_static/figures/``.

It runs on ``doctree-resolved``, after glued values and references are in place, and changes nothing else.
"""

from __future__ import annotations

import html
import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes

from poisoncurv.book.figures import alt_text
from poisoncurv.core.paths import BOOK_DIR, FIGURES_DIR

FIGURES_SUBDIR = FIGURES_DIR.relative_to(BOOK_DIR).as_posix()      # "_static/figures", inside the book's sources


def caption_source(node: nodes.Node) -> str:
    """A caption as MyST-like text: its words, with each maths node as ``$...$`` (so :func:`alt_text` reads it)."""
    if isinstance(node, nodes.math):
        return f"${node.astext()}$"
    if isinstance(node, nodes.Text):
        return node.astext()
    if isinstance(node, nodes.raw):
        return ""
    return "".join(caption_source(child) for child in node.children)


def svg_link(label: str, docname: str) -> nodes.raw:
    """The caption's link to ``_static/figures/<label>.svg``, relative to the page ``docname``."""
    href = posixpath.relpath(f"{FIGURES_SUBDIR}/{label}.svg", posixpath.dirname(docname) or ".")
    title = f"{label}.svg: this figure as a vector file, named after its label"
    return nodes.raw("", f' <a class="reference download figure-svg" href="{html.escape(href)}" '
                         f'download="{html.escape(label)}.svg" title="{html.escape(title)}">SVG</a>', format="html")


def figure_label(figure: nodes.figure) -> str | None:
    """The figure's ``fig-...`` label (its first name), if it has one."""
    return next((n for n in figure.get("names", []) if n.startswith("fig-")), None)


def describe_figures(app: Any, doctree: nodes.document, docname: str) -> None:
    figures_dir = Path(app.srcdir) / FIGURES_SUBDIR
    for figure in doctree.findall(nodes.figure):
        caption = next(iter(figure.findall(nodes.caption)), None)
        if caption is None:
            continue
        alt = alt_text(caption_source(caption))
        if alt:
            for image in figure.findall(nodes.image):
                image["alt"] = alt
        label = figure_label(figure)
        if label and (figures_dir / f"{label}.svg").is_file():
            caption += svg_link(label, docname)


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", describe_figures)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
