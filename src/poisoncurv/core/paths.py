"""Repository paths, defined once: every module and test takes its folders from here."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BOOK_DIR = REPO_ROOT / "book"
FIGURES_DIR = BOOK_DIR / "_static" / "figures"     # every labelled figure as <label>.svg (make rerun writes them)
RESULTS_DIR = Path(os.environ.get("POISONCURV_RESULTS_DIR") or REPO_ROOT / "results")  # set by make rerun's staging
LAB_RESULTS_DIR = RESULTS_DIR / "lab"
DERIVED_RESULTS_DIR = RESULTS_DIR / "derived"      # scalars derived from lab runs (poisoncurv.lab.derived)
CLAIMS_FILE = REPO_ROOT / "claims.yml"
CITATION_FILE = REPO_ROOT / "CITATION.cff"               # how to cite the book (and the paper it accompanies)
GRIDS_DIR = REPO_ROOT / "grids"                    # one grid file of lab runs per experiment chapter
DATA_DIR = REPO_ROOT / "data"                      # canonical copies and unpacked caches (git-ignored)
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"   # the workplace's offline copies, if present


def chapter_lab_dir(results_dir: str | os.PathLike | None) -> Path | None:
    """Where a chapter's lab runs go: ``<results_dir>/lab`` when the chapter writes its results somewhere (``make
    rerun``: ``results/``; the tests: a temporary folder), else ``None`` (the default, :data:`LAB_RESULTS_DIR`)."""
    return None if results_dir is None else Path(results_dir) / "lab"


def chapter_derived_dir(results_dir: str | os.PathLike | None) -> Path | None:
    """Where a chapter's derived results go: ``<results_dir>/derived``, beside :func:`chapter_lab_dir`'s lab runs, else
    ``None`` (the default, :data:`DERIVED_RESULTS_DIR`)."""
    return None if results_dir is None else Path(results_dir) / "derived"
