"""The layout rules of the book's chapters (issue 8): short code cells, captions that name their run."""

import nbformat
import pytest

from poisoncurv.book.nbcheck import chapters
from poisoncurv.core.paths import BOOK_DIR

MAX_CELL_LINES = 25


@pytest.mark.parametrize("chapter", chapters())
def test_code_cells_are_short(chapter):
    nb = nbformat.read(BOOK_DIR / f"{chapter}.ipynb", as_version=4)
    long = [(c.get("id"), len(c.source.splitlines())) for c in nb.cells
            if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CELL_LINES]
    assert not long, f"{chapter}: code cells over {MAX_CELL_LINES} lines (id, lines): {long}"


@pytest.mark.parametrize("chapter", chapters())
def test_every_figure_caption_ends_with_the_run_label(chapter):
    nb = nbformat.read(BOOK_DIR / f"{chapter}.ipynb", as_version=4)
    figures = [c.metadata["mystnb"]["figure"] for c in nb.cells if "figure" in c.get("metadata", {}).get("mystnb", {})]
    bad = [f["name"] for f in figures if not f.get("caption", "").rstrip().endswith(f"{{glue:text}}`{chapter}_run`.")]
    assert figures and not bad, f"{chapter}: captions without the run label: {bad}"
