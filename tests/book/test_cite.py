"""The "Cite this book" BibTeX against CITATION.cff, and where it is shown."""

import re

import nbformat
import pytest
import yaml

from poisoncurv.book.cite import bibtex_name, book_bibtex, cite_markdown, load_citation, paper_bibtex
from poisoncurv.core.paths import BOOK_DIR, CITATION_FILE

CFF = load_citation()


def fields(entry: str) -> tuple[str, str, dict[str, str]]:
    """``(type, key, {field: value})`` of one generated BibTeX entry (one field a line)."""
    head = re.match(r"@(\w+)\{([^,]+),", entry)
    assert head, entry
    body = dict(re.findall(r"^\s+(\w+)\s*=\s*\{(.*)\},?$", entry, re.M))
    assert entry.count("{") == entry.count("}"), "unbalanced braces"
    return head.group(1), head.group(2), body


def test_book_entry_has_title_authors_and_year_of_the_cff():
    kind, key, f = fields(book_bibtex(CFF))
    assert kind == "misc" and key == "poisoncurv2026"
    assert f["title"] == CFF["title"]
    assert f["author"] == " and ".join("{" + a["name"] + "}" for a in CFF["authors"])   # an entity stays whole
    assert f["year"] == str(CFF["date-released"])[:4]
    assert f["note"] == f"Version {CFF['version']}"
    assert "url" not in f, "no URL in CITATION.cff, so none may be made up"


def test_paper_entry_matches_the_cff_and_the_books_bibliography():
    kind, key, f = fields(paper_bibtex(CFF))
    paper = CFF["preferred-citation"]
    assert f["title"] == paper["title"] and f["year"] == str(paper["year"])
    assert f["author"] == "Granziol, Diego" and f["eprint"] == "2602.00822" and f["url"] == paper["url"]
    bib = (BOOK_DIR / "references.bib").read_text()
    assert f"@{kind}{{{key}," in bib, "the paper's key differs from the one the chapters cite"
    own = bib[bib.index(f"{{{key},"):]
    own = own[:own.index("\n}")]
    for name in ("title", "year", "eprint"):
        assert re.search(rf"{name}\s*=\s*\{{{re.escape(f[name])}\}}", own), name


def test_names_and_a_cff_without_what_a_citation_needs(tmp_path):
    assert bibtex_name({"family-names": "Granziol", "given-names": "Diego"}) == "Granziol, Diego"
    assert bibtex_name({"name": "poisoncurv contributors"}) == "{poisoncurv contributors}"
    cff = {"title": "T: x", "authors": [{"family-names": "A", "given-names": "B"}, {"name": "C D"}], "year": 2030,
           "repository-code": "https://example.org/r"}
    _, key, f = fields(book_bibtex(cff))
    assert key == "t2030" and f["author"] == "A, B and {C D}" and f["url"] == "https://example.org/r"
    assert paper_bibtex(cff) is None
    bad = tmp_path / "CITATION.cff"
    bad.write_text(yaml.safe_dump({"title": "T", "authors": []}))
    with pytest.raises(ValueError, match="authors"):
        load_citation(bad)


def test_the_block_is_on_the_introduction_and_the_claims_page():
    block = cite_markdown()
    assert book_bibtex(CFF) in block and paper_bibtex(CFF) in block and "CITATION.cff" in block
    assert block in (BOOK_DIR / "intro.md").read_text()
    nb = nbformat.read(BOOK_DIR / "claims.ipynb", as_version=4)
    shown = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "text/markdown" in o.get("data", {})]
    assert block in shown, "the claims page's Cite block is stale: re-execute it (make rerun CHAPTER=claims)"
    assert CITATION_FILE.exists()
