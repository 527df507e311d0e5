"""Sphinx extension (``_config.yml``: ``extra_extensions``): under each chapter's title, a box saying where the claims
this chapter checks stand.

The box is generated when the book is built, from the same sources as the claims page's first screen
(:mod:`poisoncurv.book.glance`): the ledger ``claims.yml`` and the committed results. A claim belongs to a chapter when
one of its checks names that chapter. For a claim of the paper the box gives its status, its scale (with this book's
glued values) and its one-line reason; for one of the companion's own findings, its statement and status. The chapter
and the claims page cannot disagree: both read the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes

from poisoncurv.book.chapter_top import chapter_section, insert_before_first
from poisoncurv.book.claims import committed_values, load_ledger
from poisoncurv.book.glance import claim_chapters, committed_provenance, glance_row
from poisoncurv.core.paths import CLAIMS_FILE, RESULTS_DIR

TITLE = "Where this chapter's claims stand"


@dataclass(frozen=True)
class ChapterClaim:
    """One line of the box: the claim's id, its words (short name or statement), status, scale and reason
    (``None`` for the companion's own findings, which the ledger states in full)."""

    id: str
    text: str
    status: str
    scale: str | None
    reason: str | None


def chapter_claims(chapter: str, claims: list[dict[str, Any]], values: dict[str, dict[str, Any]],
                   provenance: dict[str, dict[str, Any]]) -> list[ChapterClaim]:
    """The ledger's claims with a check in ``chapter``, in ledger order."""
    out = []
    for c in claims:
        if chapter not in claim_chapters(c):
            continue
        if c.get("source", "paper") == "paper":
            row = glance_row(c, values, provenance)
            profiles = f"; {', '.join(row.profiles)} profile" if row.profiles else ""
            out.append(ChapterClaim(c["id"], row.short, row.status, row.scale + profiles, row.reason))
        else:
            out.append(ChapterClaim(c["id"], " ".join(c["claim"].split()), c["status"], None, None))
    return out


def _inline(text: str) -> list[nodes.Node]:
    """``text`` with ``$...$`` spans as inline maths (MathJax renders them), the rest as text."""
    parts = text.split("$")
    return [nodes.math(p, p) if i % 2 else nodes.Text(p) for i, p in enumerate(parts) if p]


def _claims_page_link(docname: str) -> nodes.Node:
    """A cross-reference to the claims page (``claims``), resolved when Sphinx resolves references."""
    from sphinx import addnodes

    ref = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/claims", refexplicit=True, refdoc=docname)
    ref += nodes.inline("", "the claims page")
    return ref


def box(items: list[ChapterClaim], docname: str = "") -> nodes.admonition:
    """The claims as a bullet list in an ``important`` admonition, each: id and words, status in bold, then the
    scale and the reason."""
    adm = nodes.admonition(classes=["important", "chapter-claims"])
    adm += nodes.title(text=TITLE)
    bullets = nodes.bullet_list()
    for c in items:
        para = nodes.paragraph()
        para += nodes.strong(text=f"{c.id} ")
        para += _inline(c.text)
        para += nodes.Text(": ")
        para += nodes.strong(text=c.status)
        para += nodes.Text(".")
        if c.scale:
            para += nodes.Text(f" Scale: {c.scale}.")
        if c.reason:
            para += nodes.Text(" ")
            para += _inline(c.reason)
        bullets += nodes.list_item("", para)
    adm += bullets
    foot = nodes.paragraph(text="Statuses from the claims ledger (claims.yml), checked against this chapter's committed "
                                "results by the test suite; ")
    foot += _claims_page_link(docname)
    foot += nodes.Text(" has every check.")
    adm += foot
    return adm


def insert_box(app: Any, doctree: nodes.document, ledger: Path = CLAIMS_FILE, results: Path = RESULTS_DIR) -> None:
    """Put the box of chapter ``chNN_*`` after the title's opening paragraphs: before the first admonition, code cell or
    subsection (so the chapter's own findings and the rerun panel follow it)."""
    found = chapter_section(app, doctree)
    if found is None:
        return
    docname, top = found
    items = chapter_claims(docname, load_ledger(ledger), committed_values(results), committed_provenance(results))
    if items:
        insert_before_first(top, box(items, app.env.docname),
                            lambda child: isinstance(child, (nodes.section, nodes.Admonition, nodes.container)))


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", insert_box)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
