"""Sphinx extension (``_config.yml``: ``extra_extensions``): wide tables that a phone can read.

A table of at least :data:`STACK_FROM` columns may not fit a phone's column. This extension marks such a table with
the class ``stack-narrow`` and puts its column's name, hidden on wider screens, before the value of every body cell;
the book's stylesheet (``book/_static/companion.css``) then shows each row on a phone as a block of "name: value"
lines instead of a row that scrolls sideways. Nothing changes on wider screens or in print.
"""

from __future__ import annotations

import html
from typing import Any

from docutils import nodes

STACK_FROM = 4   # columns from which a table is stacked on a phone (fewer fit the column as they are)


def visible_text(node: nodes.Node) -> str:
    """The text of ``node`` without raw HTML (a ``<wbr>`` break hint in a header, say)."""
    return "".join(t.astext() for t in node.findall(nodes.Text) if not isinstance(t.parent, nodes.raw))


def header_names(table: nodes.table) -> list[str]:
    """The text of the last header row's cells, one per column (empty without a header)."""
    heads = list(table.findall(nodes.thead))
    if not heads:
        return []
    rows = list(heads[0].findall(nodes.row))
    return [visible_text(entry).strip() for entry in rows[-1].children] if rows else []


def label_cells(table: nodes.table) -> bool:
    """Mark ``table`` and label its body cells if it has at least :data:`STACK_FROM` named columns; returns whether
    it did."""
    names = header_names(table)
    if len(names) < STACK_FROM:
        return False
    table["classes"].append("stack-narrow")
    for body in table.findall(nodes.tbody):
        for row in body.findall(nodes.row):
            for name, entry in zip(names, row.children):
                label = nodes.raw("", f'<span class="cell-label">{html.escape(name)}: </span>', format="html")
                target = entry.children[0] if entry.children and isinstance(entry.children[0], nodes.paragraph) else entry
                target.insert(0, label)
    return True


def stack_tables(app: Any, doctree: nodes.document, docname: str) -> None:
    for table in list(doctree.findall(nodes.table)):
        label_cells(table)


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", stack_tables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
