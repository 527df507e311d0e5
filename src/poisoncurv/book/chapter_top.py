"""Where the Sphinx extensions that add a box under a chapter's title put it: the chapter's name and opening section,
and the place before the first child of a given kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from docutils import nodes

CHAPTER_PAGE = re.compile(r"ch\d{2}_")   # a chapter page's name: ch01_..., ch10_...


def chapter_section(app: Any, doctree: nodes.document) -> tuple[str, nodes.section] | None:
    """``(chapter name, its opening section)`` for a chapter page ``chNN_*``; ``None`` for any other page."""
    docname = app.env.docname.split("/")[-1]
    top = next(iter(doctree.findall(nodes.section)), None)
    return (docname, top) if CHAPTER_PAGE.match(docname) and top is not None else None


def insert_before_first(section: nodes.section, node: nodes.Node, stop: Callable[[nodes.Node], bool]) -> None:
    """Insert ``node`` into ``section`` before its first child for which ``stop`` holds (at the end if none does)."""
    at = next((i for i, child in enumerate(section.children) if stop(child)), len(section.children))
    section.insert(at, node)
