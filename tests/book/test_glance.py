"""The claims page's first screen, the front page's count and paper.md's table: all from the ledger, never apart."""

import re
import shutil

import nbformat
import pytest

from poisoncurv.book.claims import committed_values, load_ledger
from poisoncurv.book.glance import (
    GlanceRow,
    chapter_labels,
    claim_chapters,
    committed_provenance,
    count_sentence,
    evidence_links,
    fill_scale,
    glance_markdown,
    glance_row,
    glance_rows,
    paper_claims,
    refresh_pages,
    replace_block,
    scale_cells,
    status_counts,
)
from poisoncurv.core.paths import BOOK_DIR, REPO_ROOT

LEDGER = load_ledger()
VALUES = committed_values()
PROVENANCE = committed_provenance()
ROWS = glance_rows(LEDGER, VALUES, PROVENANCE)
PAPER = paper_claims(LEDGER)


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``markdown``, as lists of cell texts."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def test_one_row_per_paper_claim_with_every_field():
    assert [r.id for r in ROWS] == [c["id"] for c in PAPER] == ["C1", "C2", "C3", "C4", "C5", "C6", "E1", "E2", "E3"]
    for row in ROWS:
        assert row.short and row.scale and row.reason and row.evidence and row.profiles, row
        assert "{" not in row.scale, f"{row.id}: a scale slot was left unfilled: {row.scale}"
    assert [r.status for r in ROWS] == [c["status"] for c in PAPER]


def test_evidence_links_point_to_labels_of_the_claims_chapters():
    labels = chapter_labels()
    for claim in PAPER:
        for label in claim["evidence"]:
            assert label in labels, f"{claim['id']}: no figure, table or target {label!r} in the chapters"
            assert labels[label] in claim_chapters(claim), f"{claim['id']}: {label} is in {labels[label]}, not a chapter of its checks"


@pytest.mark.parametrize("claim", PAPER, ids=lambda c: c["id"])
def test_reason_is_one_line_drawn_from_the_note(claim):
    reason = claim["reason"]
    assert "\n" not in reason.strip() and len(reason) <= 160, "one line, please"
    numbers = set(re.findall(r"\d+(?:\.\d+)?", reason))
    source = claim["note"] + " " + claim["claim"]
    missing = {n for n in numbers if not re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", source)}
    assert not missing, f"{claim['id']}: the reason cites numbers its note does not: {missing}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_scale_names_the_data_and_profile_of_the_results(row):
    claim = next(c for c in PAPER if c["id"] == row.id)
    for chapter in claim_chapters(claim):
        source = PROVENANCE[chapter]["data_source"].lower()
        kind = "synthetic" if source.startswith("synthetic") else "CIFAR-10" if "cifar10" in source else "MNIST"
        assert kind in row.scale, f"{row.id}: {chapter}'s results come from {source!r}, which its scale does not say"
    assert set(row.profiles) == {PROVENANCE[ch]["profile"] for ch in claim_chapters(claim)}


def test_committed_claims_page_opens_with_the_glance_of_the_ledger():
    nb = nbformat.read(BOOK_DIR / "claims.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].outputs[0]["data"]["text/markdown"]
    assert [c.cell_type for c in nb.cells[:2]] == ["markdown", "code"] and nb.cells[0].source.startswith("# ")
    expected = glance_markdown(LEDGER, VALUES, PROVENANCE)
    shown = table_rows(first)
    assert [(r[0].split("**")[1], r[1].strip("*")) for r in shown] == [(c["id"], c["status"]) for c in PAPER], \
        "the claims page's statuses differ from the ledger: re-execute it (make rerun CHAPTER=claims)"
    assert first == expected, "the claims page's opening is stale: re-execute it (make rerun CHAPTER=claims)"
    assert all(r[2] and r[3] and "{numref}" in r[4] for r in shown)


def test_paper_page_statuses_are_the_ledgers():
    text = (BOOK_DIR / "paper.md").read_text()
    block = text[text.index("% generated: claims-table"):text.index("% end generated: claims-table")]
    assert [(r[0].split("**")[1], r[1]) for r in table_rows(block)] == [(c["id"], c["status"]) for c in PAPER]


def test_front_page_states_the_count_and_links_to_the_claims_page():
    text = (BOOK_DIR / "intro.md").read_text()
    assert count_sentence(LEDGER) in text and "{doc}`claims`" in text
    # near the top: before the first section heading, so on the first screen
    assert text.index(count_sentence(LEDGER)) < text.index("\n## ")
    assert sum(status_counts(LEDGER).values()) == len(PAPER)


def test_generated_blocks_are_current():
    assert refresh_pages(write=False) == [], "run `python -m poisoncurv.book.glance` (make book does) and commit"


def test_a_changed_status_makes_the_pages_stale(tmp_path):
    for name in ("claims.yml", "CITATION.cff", "book/intro.md", "book/paper.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    assert refresh_pages(tmp_path, write=False) == []
    ledger = (tmp_path / "claims.yml").read_text()
    (tmp_path / "claims.yml").write_text(ledger.replace("status: reproduced", "status: partly", 1))
    assert refresh_pages(tmp_path, write=False) == [tmp_path / "book/intro.md", tmp_path / "book/paper.md"]
    refresh_pages(tmp_path)
    c2 = next(line for line in (tmp_path / "book/paper.md").read_text().splitlines() if line.startswith("| **C2**"))
    assert c2.split(" | ")[1] == "partly" and refresh_pages(tmp_path, write=False) == []


def test_helpers():
    assert fill_scale("{a} MNIST images, {b|seed}, {c|seed}, {d|poisoned run}", {"a": 20000, "b": 1, "c": 8, "d": 2}) \
        == "20,000 MNIST images, 1 seed, 8 seeds, 2 poisoned runs"
    with pytest.raises(KeyError, match="nope"):
        fill_scale("{nope}", {})
    assert evidence_links(["fig-ch2-a", "fig-ch2-b", "tbl-ch6-c", "sec-x"]) == \
        "{numref}`fig-ch2-a`, {numref}`fig-ch2-b` (ch. 2), {numref}`tbl-ch6-c` (ch. 6), {ref}`sec-x`"
    with pytest.raises(ValueError, match="reason"):
        glance_row({"id": "X", "status": "partly", "short": "s", "scale": "s", "evidence": ["e"], "checks": []}, {}, {})
    rows = [GlanceRow("A", "a", "partly", "s", ("cpu",), "r", ("e",)), GlanceRow("B", "b", "partly", "t", ("gpu",), "r", ("e",))]
    assert scale_cells(rows) == ("scale", ["s; cpu profile", "t; gpu profile"])
    assert scale_cells(rows[:1]) == ("scale (cpu profile)", ["s"])
    with pytest.raises(ValueError, match="no generated block"):
        replace_block("text", "cite", "x")
    assert replace_block("a\n% generated: cite (old)\nold\n% end generated: cite\nb", "cite", "new").splitlines()[2] == "new"
