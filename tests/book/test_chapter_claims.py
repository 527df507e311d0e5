"""The box under each chapter's title: the ledger's claims with a check in that chapter, as the claims page states them."""

from chapter_doctree import chapter_doctree
from docutils import nodes

from poisoncurv.book import chapter_claims as cc
from poisoncurv.book.chapter_top import chapter_section
from poisoncurv.book.claims import committed_values, load_ledger
from poisoncurv.book.glance import committed_provenance, glance_rows


def test_each_chapter_gets_the_claims_it_checks_with_the_glance_fields():
    ledger, values, prov = load_ledger(), committed_values(), committed_provenance()
    glance = {r.id: r for r in glance_rows(ledger, values, prov)}
    for claim in ledger:
        for chapter in {chk["chapter"] for chk in claim["checks"]}:
            items = {c.id: c for c in cc.chapter_claims(chapter, ledger, values, prov)}
            got = items[claim["id"]]
            assert got.status == claim["status"]
            if claim["id"] in glance:           # a claim of the paper: the claims page's words, scale and reason
                row = glance[claim["id"]]
                assert (got.text, got.reason) == (row.short, row.reason) and got.scale.startswith(row.scale)
            else:                               # the companion's own: its statement
                assert got.scale is None and got.text == " ".join(claim["claim"].split())
    assert cc.chapter_claims("ch99_none", ledger, values, prov) == []


def test_the_box_goes_before_the_first_admonition_with_maths_as_maths():
    app, doc = chapter_doctree("ch01_krr_clones", "Title\n=====\n\nIntro.\n\n.. note::\n\n   Own box.\n\nPart\n----\n\nText.\n")
    cc.insert_box(app, doc)
    top = next(iter(doc.findall(nodes.section)))
    assert [type(c).__name__ for c in top.children] == ["title", "paragraph", "admonition", "note", "section"]
    box = top.children[2]
    assert box.children[0].astext() == cc.TITLE and "C1 KRR models wide networks (NTK): partly." in box.astext()
    assert any(isinstance(n, nodes.math) for n in box.findall(nodes.math))      # width$^{-1/2}$ in C1's reason


def test_chapter_pages_are_ch_two_digits_underscore():
    rst = "Title\n=====\n\nIntro.\n"
    for name in ("ch01_krr_clones", "ch10_x", "sub/ch10_x"):
        app, doc = chapter_doctree(name, rst)
        found = chapter_section(app, doc)
        assert found is not None and found[0] == name.split("/")[-1]
    for name in ("claims", "chapter", "ch1_x", "ch100_x", "intro"):
        app, doc = chapter_doctree(name, rst)
        assert chapter_section(app, doc) is None
    app, doc = chapter_doctree("ch10_x", "Just text, no section.\n")
    assert chapter_section(app, doc) is None
