import subprocess

import pytest
import torch

from poisoncurv.core.paths import REPO_ROOT


def _tree_status() -> set[str] | None:
    """``git status --porcelain`` lines of the repository (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def _tree_untouched():
    """The suite fails if it changed what ``git status`` shows: tests write into temporary folders, never into the
    committed tree (results, chapters, caches)."""
    before = _tree_status()
    yield
    after = _tree_status()
    if before is not None and after is not None and after - before:
        pytest.fail("the tests changed the working tree: " + "; ".join(sorted(after - before)[:10]), pytrace=False)


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test runs in float64 with a fixed seed, and restores the default dtype."""
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # small problems: faster (15-50x on a busy 2-core machine) and reproducible
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)
