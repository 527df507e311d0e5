"""The chapter runtime shows a result as the contract says: every summary entry glued to its digits, then its tables."""

import sys
import types
from dataclasses import dataclass

import nbformat
import pytest
import torch

from poisoncurv.book import runtime
from poisoncurv.book.runtime import Chapter
from poisoncurv.core.contract import DEFAULT_SIG, ChapterResult, Summary
from poisoncurv.core.tables import Table


@dataclass(frozen=True)
class Toy(ChapterResult):
    sig = {"t_a": 2, "t_c": 6}

    a: float

    def summary(self) -> Summary:
        return {"t_a": self.a, "t_b": 1.23456789, "t_c": 2 / 3, "t_n": 7, "t_flag": True, "t_text": "none"}

    def tables(self) -> tuple[Table, ...]:
        return (Table("tbl-toy-first", "First.", ["x"], [[1]]), Table("tbl-toy-second", "Second.", ["y"], [[2]]))


@dataclass(frozen=True)
class ThreeDigits(ChapterResult):
    sig = 3

    def summary(self) -> Summary:
        return {"t_x": 123456.0, "t_y": 0.00123456}


@pytest.fixture
def page(monkeypatch):
    """A chapter whose glue and display are recorded (no kernel): ``(chapter, glued [(key, value)], shown [markdown])``."""
    glued, shown = [], []
    monkeypatch.setitem(sys.modules, "myst_nb", types.SimpleNamespace(
        glue=lambda key, value, display=True: glued.append((key, value.value))))
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    return Chapter("chx", "cpu", "cpu", 0, "synthetic"), glued, shown


def test_show_glues_every_entry_to_the_results_digits_then_its_tables_in_order(page):
    ch, glued, shown = page
    ch.show(Toy(0.123456))
    assert glued == [("t_a", 0.12), ("t_b", 1.235), ("t_c", 0.666667), ("t_n", 7), ("t_flag", True), ("t_text", "none")]
    assert isinstance(dict(glued)["t_n"], int)
    assert ch.values == dict(glued)
    assert [m.split(":name: ")[1].split("\n")[0] for m in shown] == ["tbl-toy-first", "tbl-toy-second"]


def test_show_with_one_digit_count_for_all_and_without_tables(page):
    ch, glued, shown = page
    ch.show(ThreeDigits())
    assert glued == [("t_x", 123000.0), ("t_y", 0.00123)] and shown == []
    ch.show(Toy(0.5), tables=False)
    assert shown == [] and ch.values["t_a"] == 0.5


def test_the_contracts_defaults():
    r = ChapterResult()
    assert r.tables() == () and r.digits("any") == DEFAULT_SIG == 4
    with pytest.raises(NotImplementedError):
        r.summary()
    assert Toy(0.1).digits("t_c") == 6 and Toy(0.1).digits("t_b") == DEFAULT_SIG and ThreeDigits().digits("t_z") == 3


def test_start_sets_threads_dtype_and_the_plot_style(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "setup_plots", lambda: calls.append("plots"))
    torch.set_num_threads(2)
    ch = Chapter.start("chx", "cpu", "cpu", 0, "synthetic", dtype="float32")
    assert isinstance(ch, Chapter) and ch.data_source == "synthetic" and ch.results_dir is None
    assert torch.get_num_threads() == 1 and torch.get_default_dtype() == torch.float32 and calls == ["plots"]
    Chapter.start("chx", "cpu", "cpu", 0, "synthetic")
    assert torch.get_default_dtype() == torch.float32 and calls == ["plots", "plots"]     # no dtype: left as it was


def test_a_chapter_glues_only_what_its_page_or_the_ledger_reads(tmp_path):
    from nbformat.v4 import new_markdown_cell, new_notebook

    from poisoncurv.book.reads import read_keys

    nbformat.write(new_notebook(cells=[new_markdown_cell("It is {glue:text}`t_shown`.")]), tmp_path / "t.ipynb")
    ledger = tmp_path / "claims.yml"
    ledger.write_text("- {id: X, claim: c, paper: p, status: reproduced, scale: '{t_scale|seed}',\n"
                      "   checks: [{chapter: t, key: t_checked, min: 0}]}\n")
    reads = read_keys("t", tmp_path, ledger)
    assert reads == {"t_shown", "t_scale", "t_checked"}
    assert read_keys("absent", tmp_path, ledger) is None
    ch = Chapter("t", "cpu", "cpu", 0, "synthetic", reads=reads)
    for key in ("t_shown", "t_checked", "t_scale", "t_unread"):
        ch.glue(key, 1.0)
    assert set(ch.values) == {"t_shown", "t_checked", "t_scale"}
