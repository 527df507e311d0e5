"""The mutants of tools/mutation.py still apply: each one's text occurs exactly once in its module, and each names
tests that exist (the list would otherwise rot silently as the code changes)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from poisoncurv.core.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("mutation", REPO_ROOT / "tools" / "mutation.py")
mutation = importlib.util.module_from_spec(spec)
sys.modules["mutation"] = mutation      # dataclasses look their module up there
spec.loader.exec_module(mutation)


@pytest.mark.parametrize("m", mutation.MUTANTS, ids=lambda m: f"{m.path}:{m.what}")
def test_mutant_applies_once_and_names_existing_tests(m):
    text = (REPO_ROOT / mutation.PKG / m.path).read_text()
    assert text.count(m.old) == 1 and m.old != m.new
    for t in m.tests:
        assert Path(REPO_ROOT / t.split("::")[0]).exists(), t
