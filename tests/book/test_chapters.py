"""Chapters executed by papermill in the smoke profile satisfy their rows of the claims ledger.

``make test`` executes every notebook once: nbval re-executes the chapters committed from a CPU run, so only the
others (committed from a GPU run, which nbval skips) run here. ``make test-smoke`` (``POISONCURV_SMOKE_ALL=1``) runs
the smoke profile of every chapter."""

import json
import os

import pytest

from poisoncurv.book.claims import check_results, load_ledger
from poisoncurv.book.nbcheck import chapters, nbval_notebooks
from poisoncurv.book.rerun import execute
from poisoncurv.core.paths import BOOK_DIR


def smoke_chapters() -> list[str]:
    """Every chapter with ``POISONCURV_SMOKE_ALL=1``, else those nbval does not execute."""
    if os.environ.get("POISONCURV_SMOKE_ALL", "").strip().lower() in ("1", "true", "yes"):
        return chapters()
    executed = {p.stem for p in nbval_notebooks()}
    return [c for c in chapters() if c not in executed]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", smoke_chapters())
def test_smoke_run_meets_claims(chapter, tmp_path):
    out = tmp_path / f"{chapter}.ipynb"
    execute(BOOK_DIR / f"{chapter}.ipynb", out, {"profile": "smoke", "device": "cpu", "results_dir": str(tmp_path)},
            cwd=BOOK_DIR)
    data = json.loads((tmp_path / f"{chapter}.json").read_text())
    assert data["provenance"]["profile"] == "smoke"
    results = check_results(load_ledger(), {chapter: data["values"]}, chapters={chapter}, profile="smoke")
    assert results, f"{chapter} has no rows in claims.yml"
    failed = [r for r in results if not r.passed]
    assert not failed, failed
