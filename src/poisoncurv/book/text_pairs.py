"""Each notebook of ``book/`` paired with a MyST Markdown text of its inputs in ``book/text/``.

The pairing is jupytext's (``jupytext.toml`` at the repository root), so ``jupytext --sync book/<chapter>.ipynb``
rewrites one pair and an editor with jupytext opens either file; the text holds the cells' sources and no outputs,
so a chapter's diff reads as prose and code. ``make rerun`` writes the texts of the notebooks it executes,
``python -m poisoncurv.book.text_pairs`` (``make text``) rewrites every pair, and the tests fail on a stale one.
The book is built from the notebooks (``_config.yml``: ``only_build_toc_files``), never from these texts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from poisoncurv.book.nbcheck import notebooks
from poisoncurv.core.paths import BOOK_DIR, REPO_ROOT
from poisoncurv.core.results import atomic_target

TEXT_FORMAT = "md:myst"
CONFIG_FILE = "jupytext.toml"


def text_path(notebook: Path) -> Path:
    """``<folder>/text/<name>.md`` for ``<folder>/<name>.ipynb``: where the notebook's text lives."""
    return notebook.parent / "text" / f"{notebook.stem}.md"


def is_paired(root: Path = REPO_ROOT) -> bool:
    """Whether ``root`` pairs its notebooks with texts (it has a ``jupytext.toml``)."""
    return (root / CONFIG_FILE).is_file()


def notebook_text(notebook: Path, root: Path = REPO_ROOT) -> str:
    """The MyST text of ``notebook``'s inputs, exactly as ``jupytext --sync`` writes it under ``root``'s
    ``jupytext.toml``."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(root))
    if config is None:
        raise FileNotFoundError(f"no jupytext.toml in {root}: the pairing of book/ with book/text/ is configured there")
    return jupytext.writes(jupytext.read(notebook), fmt=TEXT_FORMAT, config=config)


def write_text(notebook: Path, target: Path | None = None, root: Path = REPO_ROOT) -> Path:
    """Write :func:`notebook_text` atomically to ``target`` (default :func:`text_path`); returns the path written."""
    target = text_path(notebook) if target is None else target
    text = notebook_text(notebook, root)
    with atomic_target(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def main() -> int:
    for nb in notebooks():           # every notebook of the book is paired
        write_text(nb)
    print(f"wrote the MyST texts of {len(notebooks())} notebooks to {BOOK_DIR / 'text'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
