"""Which committed notebooks nbval can re-execute in CI and compare with their stored outputs.

A chapter qualifies when its ``parameters`` cell ran on the CPU with the ``smoke`` or ``cpu``
profile (CPU runs are deterministic here); notebooks without a ``parameters`` cell (such as the
claims page) always qualify. Chapters committed from a GPU run are skipped, with a note on stderr.
Dotfiles (such as temporary notebooks ``.<chapter>.*.ipynb``) are never notebooks of the book.

``python -m poisoncurv.book.nbcheck --list`` prints the qualifying paths, one per line, after
completing a ``make rerun`` that a kill interrupted while it moved its files into place
(:func:`poisoncurv.book.rerun.recover`).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat

from poisoncurv.core.paths import BOOK_DIR

NBVAL_PROFILES = ("smoke", "cpu")


def parameters(path: Path) -> dict[str, object] | None:
    """The literal assignments of the cell tagged ``parameters``, or ``None`` if there is none."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    out[node.targets[0].id] = ast.literal_eval(node.value)
            return out
    return None


def notebooks(book_dir: Path = BOOK_DIR) -> list[Path]:
    """The book's notebooks in ``book_dir``, sorted, without dotfiles."""
    return [p for p in sorted(book_dir.glob("*.ipynb")) if not p.name.startswith(".")]


def nbval_notebooks(book_dir: Path = BOOK_DIR) -> list[Path]:
    """Notebooks in ``book_dir`` that nbval should check, sorted."""
    chosen = []
    for path in notebooks(book_dir):
        params = parameters(path)
        if params is None or (params.get("device") == "cpu" and params.get("profile") in NBVAL_PROFILES):
            chosen.append(path)
        else:
            print(f"nbcheck: skipping {path.name} (profile={params.get('profile')}, device={params.get('device')})",
                  file=sys.stderr)
    return chosen


def chapters(book_dir: Path = BOOK_DIR) -> list[str]:
    """Names of the chapters (notebooks with a ``parameters`` cell), sorted."""
    return [p.stem for p in notebooks(book_dir) if parameters(p) is not None]


if __name__ == "__main__":
    if "--list" in sys.argv:
        from poisoncurv.book.rerun import recover

        for moved in recover():
            print(f"nbcheck: completed an interrupted rerun: {moved}", file=sys.stderr)
        print("\n".join(str(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p) for p in nbval_notebooks()))
