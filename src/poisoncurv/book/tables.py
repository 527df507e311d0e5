"""Tables with a number and a caption, like figures: drivers build a :class:`Table`, chapters show it.

A table is displayed as MyST Markdown (``nb_render_markdown_format: myst``) wrapped in a ``{table}``
directive, so the book numbers it and ``{numref}`\\`tbl-...\\``` links to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def format_value(value: Any, sig: int = 3) -> str:
    """A cell's text: floats to ``sig`` significant digits (``inf``/``nan`` spelled out), ``None`` as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{sig}g}"
    return str(value)


def escape_cell(text: str) -> str:
    """Escape the characters that would end a Markdown table cell (``|``) or a line."""
    return text.replace("\\|", "|").replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    """A captioned table: ``name`` (the ``tbl-...`` label), ``caption`` (MyST, maths allowed), ``columns``, ``rows``."""

    name: str
    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]] = field(default_factory=list)
    sig: int = 3

    def __post_init__(self) -> None:
        if not self.name.startswith("tbl-"):
            raise ValueError(f"table name {self.name!r} must start with 'tbl-' (the book's label convention)")
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.name}: row {i} has {len(row)} cells for {len(self.columns)} columns")

    def markdown(self) -> str:
        """The table as a MyST ``{table}`` directive (numbered, captioned, labelled)."""
        head = "| " + " | ".join(escape_cell(c) for c in self.columns) + " |"
        rule = "| " + " | ".join("---" for _ in self.columns) + " |"
        body = ["| " + " | ".join(escape_cell(format_value(v, self.sig)) for v in row) + " |" for row in self.rows]
        caption = " ".join(self.caption.split())
        return "\n".join([f":::{{table}} {caption}", f":name: {self.name}", ":align: left", "", head, rule, *body, ":::", ""])
