"""Tables with a number and a caption, like figures: drivers build a :class:`Table`, chapters show it.

A table is displayed as MyST Markdown (``nb_render_markdown_format: myst``) wrapped in a ``{table}``
directive, so the book numbers it and ``{numref}`\\`tbl-...\\``` links to it. Its width on the page is the
stylesheet's business (``book/_static/companion.css``: every table fits the column at 1280 px); the only help
given here is a line-break opportunity after a slash between words in a header ("later/earlier/tied"), which
would otherwise set its column's least width.
"""

from __future__ import annotations

import math
import re
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


# maths, inline code and HTML tags are left as they are; a slash between two words (letters, two or more each side)
# gets a <wbr> after it, so "later/earlier/tied" may wrap but "5/2/1", "λ₁/λ₂" and "$a/\ell$" stay whole
_PROTECTED = re.compile(r"(\$[^$]*\$|`[^`]*`|<[^>]*>)")
_LETTER = r"[^\W\d_\u00b2\u00b3\u00b9\u2070-\u209f]"      # a letter: not a digit, nor a super- or subscript one
_WORD_SLASH = re.compile(rf"(?<={_LETTER}{_LETTER})/(?={_LETTER}{_LETTER})")


def break_hints(text: str) -> str:
    """``text`` with a line-break opportunity (``<wbr>``) after each slash between words, outside maths and code."""
    parts = _PROTECTED.split(text)
    return "".join(p if i % 2 else _WORD_SLASH.sub("/<wbr>", p) for i, p in enumerate(parts))


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
        head = "| " + " | ".join(break_hints(escape_cell(c)) for c in self.columns) + " |"
        rule = "| " + " | ".join("---" for _ in self.columns) + " |"
        body = ["| " + " | ".join(escape_cell(format_value(v, self.sig)) for v in row) + " |" for row in self.rows]
        caption = " ".join(self.caption.split())
        return "\n".join([f":::{{table}} {caption}", f":name: {self.name}", ":align: left", "", head, rule, *body, ":::", ""])
