"""Every committed chapter and every cached lab run it loads was produced from one clean commit."""

import json

import pytest

from poisoncurv.book.nbcheck import chapters
from poisoncurv.core.paths import BOOK_DIR, LAB_RESULTS_DIR, RESULTS_DIR


def _clean(commit: str) -> bool:
    return len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)


@pytest.mark.parametrize("chapter", chapters())
def test_committed_chapter_provenance_is_clean(chapter):
    prov = json.loads((RESULTS_DIR / f"{chapter}.json").read_text())["provenance"]
    assert _clean(prov["git_commit"]), f"{chapter} was executed from {prov['git_commit']}: commit first, then make rerun"
    notebook = (BOOK_DIR / f"{chapter}.ipynb").read_text()
    assert f"| git_commit | {prov['git_commit']} |" in notebook, f"{chapter}: the notebook's provenance table differs from its results file"


@pytest.mark.parametrize("path", sorted(LAB_RESULTS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_cached_lab_runs_come_from_clean_commits(path):
    commit = json.loads(path.read_text())["provenance"]["git_commit"]
    assert _clean(commit), f"{path.name} was trained from {commit}: retrain with --force from a clean commit"
