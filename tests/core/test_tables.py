import pytest

from poisoncurv.core.tables import Table, break_hints, escape_cell, format_value


def test_table_markdown_is_a_numbered_myst_table_with_escaped_cells():
    t = Table("tbl-demo", "Spike $\\Lambda = R_k|\\Delta f|^2$\nover $m$", ["m", "a|b"], [[1, 0.123456], [None, float("inf")]])
    md = t.markdown().splitlines()
    assert md[0] == ":::{table} Spike $\\Lambda = R_k|\\Delta f|^2$ over $m$"
    assert md[1] == ":name: tbl-demo"
    assert md[4] == "| m | a\\|b |"
    assert md[6] == "| 1 | 0.123 |"
    assert md[7] == "| — | inf |"
    assert md[-1] == ":::" and len(md) == 9


def test_cells_and_values():
    assert escape_cell("x | y") == "x \\| y"
    assert escape_cell("already \\| escaped") == "already \\| escaped"
    assert format_value(True) == "yes" and format_value(2.0e-12, 2) == "2e-12"


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="must start with 'tbl-'"):
        Table("demo", "c", ["a"])
    with pytest.raises(ValueError, match="row 0 has 2 cells for 1 columns"):
        Table("tbl-x", "c", ["a"], [[1, 2]])


def test_headers_may_wrap_after_a_slash_between_words_only():
    assert break_hints("later/earlier/tied") == "later/<wbr>earlier/<wbr>tied"
    for whole in ("5/2/1", "λ₁/λ₂ (trigger-free)", "R poison / R clean", "$a/\\ell$", "`a/bc/de`", "x/y"):
        assert break_hints(whole) == whole
    assert break_hints("flatter/steeper at $a/\\ell$") == "flatter/<wbr>steeper at $a/\\ell$"
    md = Table("tbl-demo", "c", ["attack", "later/earlier/tied"], [["cross", "5/2/1"]]).markdown().splitlines()
    assert md[4] == "| attack | later/<wbr>earlier/<wbr>tied |" and md[6] == "| cross | 5/2/1 |"   # cells untouched
