"""A chapter page as the book's Sphinx extensions see it, for their tests: a parsed doctree and the app they read."""

from types import SimpleNamespace

from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document


def chapter_doctree(docname: str, rst: str):
    """``(app, doctree)``: ``rst`` parsed as the page ``docname``, and a stand-in for the Sphinx app with that docname."""
    doc = new_document(docname, get_default_settings(Parser))
    Parser().parse(rst, doc)
    return SimpleNamespace(env=SimpleNamespace(docname=docname)), doc
