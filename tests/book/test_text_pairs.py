"""The MyST texts in book/text/ (poisoncurv.book.text_pairs): one per notebook, current, and lossless for inputs."""

import re

import jupytext
import nbformat
import pytest

from poisoncurv.book import text_pairs
from poisoncurv.book.nbcheck import notebooks
from poisoncurv.core.paths import BOOK_DIR, REPO_ROOT

NOTEBOOKS = notebooks()


def test_every_notebook_has_a_text_and_every_text_a_notebook():
    texts = {p.stem for p in (BOOK_DIR / "text").glob("*.md")}
    assert NOTEBOOKS and texts == {nb.stem for nb in NOTEBOOKS}, "run `make text`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_text_is_current(notebook):
    committed = text_pairs.text_path(notebook).read_text(encoding="utf-8")
    assert committed == text_pairs.notebook_text(notebook), f"{notebook.name}: its text is stale: run `make text`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_text_holds_every_cell_source_and_no_output(notebook):
    nb = nbformat.read(notebook, as_version=4)
    text = text_pairs.text_path(notebook).read_text(encoding="utf-8")
    back = jupytext.reads(text, fmt=text_pairs.TEXT_FORMAT)
    # (a markdown cell's trailing blank lines are not kept: they are not content)
    assert [(c.cell_type, c.source.rstrip()) for c in back.cells] == [(c.cell_type, c.source.rstrip()) for c in nb.cells]
    assert all(not c.get("outputs") for c in back.cells)


def test_rerun_writes_the_text_of_what_it_executes(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A page"), nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    written = text_pairs.write_text(path, root=REPO_ROOT)
    assert written == tmp_path / "text" / "page.md"
    text = written.read_text(encoding="utf-8")
    assert "# A page" in text and re.search(r"```\{code-cell\}[^\n]*\nx = 1\n```", text) and "jupytext_version" not in text
