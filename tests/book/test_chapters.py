"""Every chapter, executed by papermill in the smoke profile, satisfies its rows of the claims ledger."""

import json

import pytest

from poisoncurv.book.claims import check_results, load_ledger
from poisoncurv.book.nbcheck import chapters
from poisoncurv.book.rerun import execute
from poisoncurv.core.paths import BOOK_DIR


@pytest.mark.parametrize("chapter", chapters())
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
