"""Which glued values of a chapter anything reads: its page (``{glue:text}`key``` in a markdown cell) or the claims
ledger (a check's ``key``, a ``{key}`` slot of a scale). :class:`~poisoncurv.book.runtime.Chapter` glues only these,
so a chapter's results file holds exactly the numbers its page shows or the ledger checks.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from poisoncurv.book.claims import load_ledger
from poisoncurv.book.glance import SCALE_SLOT
from poisoncurv.core.paths import BOOK_DIR, CLAIMS_FILE
from poisoncurv.core.prose import GLUE_ROLE


def page_keys(notebook: Path) -> set[str]:
    """The glue keys the markdown cells of ``notebook`` read."""
    nb = nbformat.read(notebook, as_version=4)
    return {key for cell in nb.cells if cell.cell_type == "markdown" for key in GLUE_ROLE.findall(cell.source)}


def ledger_keys(ledger: Path = CLAIMS_FILE) -> set[str]:
    """The glue keys the claims ledger reads: every check's ``key`` and every slot of a ``scale``."""
    keys: set[str] = set()
    for claim in load_ledger(ledger):
        keys |= {check["key"] for check in claim["checks"]}
        keys |= {m.group(1) for m in SCALE_SLOT.finditer(claim.get("scale", ""))}
    return keys


def read_keys(chapter: str, book_dir: Path = BOOK_DIR, ledger: Path = CLAIMS_FILE) -> frozenset[str] | None:
    """The keys of chapter ``chapter`` that its page or the ledger reads; ``None`` when ``book_dir`` has no such page
    (a notebook outside the book, a test's: it glues everything)."""
    notebook = book_dir / f"{chapter}.ipynb"
    if not notebook.exists():
        return None
    return frozenset(page_keys(notebook) | (ledger_keys(ledger) if ledger.exists() else set()))
