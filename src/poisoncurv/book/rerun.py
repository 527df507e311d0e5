"""Re-execute one chapter with papermill and write it back without papermill's noise.

``python -m poisoncurv.book.rerun CHAPTER --profile cpu --device cuda`` (or ``make rerun``) runs
``book/CHAPTER.ipynb`` with the given parameters, writes its results file to ``results/``, and
replaces the chapter by the executed notebook in which

* the cell tagged ``parameters`` shows the values that ran (papermill's extra
  ``injected-parameters`` cell is folded into it and removed),
* papermill's per-cell timestamps and notebook metadata are stripped,
* the kernelspec is ``python3``.

Each figure the chapter shows from a labelled cell is written as ``book/_static/figures/<label>.svg``
(:mod:`poisoncurv.book.figures`), staged and moved with the rest.

All or nothing: the chapter and the claims page are executed in a private staging folder
``<repo>/.rerun-<pid>-*`` (outside ``book/``, git-ignored) against a copy-on-write view of
``results/`` (links to the committed files; new files land in the staging folder). Only when
everything succeeded are the chapter, its results JSON, new lab runs, its SVG figures, the claims page and the MyST
texts of both (:mod:`poisoncurv.book.text_pairs`) moved into place, by renames listed first in a journal. A run
killed before that leaves the old set untouched; one killed during the renames is completed by the next ``make rerun`` or ``make test``
(:func:`recover`). The staging folder is removed on every other exit path.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat

from poisoncurv.book.figures import FIGURES_ENV
from poisoncurv.book.nbcheck import notebooks
from poisoncurv.book.text_pairs import is_paired, text_path, write_text
from poisoncurv.core.paths import BOOK_DIR, FIGURES_DIR, RESULTS_DIR
from poisoncurv.core.profiles import check_profile, resolve_device
from poisoncurv.core.results import atomic_target, write_json_atomic

# Parameters that steer where a run writes; injected but not shown in the rendered chapter.
HIDDEN_PARAMETERS = ("results_dir",)


def chapter_path(chapter: str, book_dir: Path = BOOK_DIR) -> Path:
    """Path of ``book/<chapter>.ipynb``; raises ``ValueError`` for a name that is not letters, digits,
    ``_`` and ``-`` (such as one with a path or shell characters), ``FileNotFoundError`` listing the chapters."""
    name = chapter.removesuffix(".ipynb")
    known = ", ".join(p.stem for p in notebooks(book_dir))
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"chapter: {chapter!r} is not a chapter name (letters, digits, _ and -); chapters: {known}")
    path = book_dir / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no chapter {chapter!r} in {book_dir}; chapters: {known}")
    return path


def _parameters_cell(nb: nbformat.NotebookNode) -> int | None:
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def clean_executed(nb: nbformat.NotebookNode, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Fold papermill's injected cell into the ``parameters`` cell and strip papermill metadata.

    A notebook without a ``parameters`` cell (such as the claims page) takes no parameters.
    """
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    index = _parameters_cell(nb)
    if index is None and parameters:
        raise ValueError("the notebook has no cell tagged 'parameters' to hold the parameters")
    if index is not None:
        _fold_parameters(nb.cells[index], parameters)
    _strip_metadata(nb)
    return nb


def _fold_parameters(cell: nbformat.NotebookNode, parameters: dict[str, Any]) -> None:
    """Rewrite the assignments of the ``parameters`` cell to the values that ran."""
    lines, seen = [], set()
    for line in cell.source.splitlines():
        key = line.split("=")[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in parameters:
            seen.add(key)
            line = f"{key} = None" if key in HIDDEN_PARAMETERS else f"{key} = {parameters[key]!r}"
        lines.append(line)
    lines += [f"{k} = {v!r}" for k, v in parameters.items() if k not in seen and k not in HIDDEN_PARAMETERS]
    cell.source = "\n".join(lines)


def _strip_metadata(nb: nbformat.NotebookNode) -> None:
    """Remove papermill's timestamps, number code cells 1..k (deterministic, and nbval needs
    executed cells to carry a count), and normalise the kernelspec to python3."""
    count = 0
    for c in nb.cells:
        c.metadata.pop("papermill", None)
        c.metadata.pop("execution", None)
        if c.cell_type != "code":
            continue
        count += 1
        c.execution_count = count
        for out in c.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = count
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}


def execute(source: Path, target: Path, parameters: dict[str, Any], cwd: Path) -> nbformat.NotebookNode:
    """Run ``source`` with papermill into ``target`` (atomically) and return the cleaned notebook."""
    import papermill

    with atomic_target(target, suffix=".ipynb") as tmp:
        papermill.execute_notebook(str(source), str(tmp), parameters=parameters, kernel_name="python3",
                                   cwd=str(cwd), progress_bar=False, log_output=False)
        nb = clean_executed(nbformat.read(tmp, as_version=4), parameters)
        nbformat.write(nb, tmp)
    return nb


CLAIMS_PAGE = "claims"
STAGING_PREFIX = ".rerun-"
JOURNAL = "journal.json"


def _view(results_dir: Path, view: Path) -> None:
    """Make ``view`` a copy-on-write view of ``results_dir``: folders mirrored, files linked. A writer
    that replaces a link (atomic writes do) leaves the committed file as it was."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for src in results_dir.rglob("*"):
        if src.name.startswith("."):
            continue
        dst = view / src.relative_to(results_dir)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve())
    view.mkdir(parents=True, exist_ok=True)


def _written(view: Path, results_dir: Path) -> list[tuple[Path, Path]]:
    """``(staged file, its place in results_dir)`` for every file written into ``view`` (links are old files)."""
    return [(p, results_dir / p.relative_to(view)) for p in sorted(view.rglob("*")) if p.is_file() and not p.is_symlink()]


@contextmanager
def _env(name: str, value: Path) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` (the kernel papermill starts inherits it), then restore it."""
    old = os.environ.get(name)
    os.environ[name] = str(value)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextmanager
def _results_env(view: Path) -> Iterator[None]:
    """Point ``POISONCURV_RESULTS_DIR`` (read by :mod:`poisoncurv.core.paths` in the kernel) at ``view``."""
    with _env("POISONCURV_RESULTS_DIR", view):
        yield


def _apply(journal: Path) -> list[Path]:
    """Do the renames ``journal`` lists (those not done yet), then delete it; returns the targets."""
    moves = [(Path(a), Path(b)) for a, b in json.loads(journal.read_text())["moves"]]
    for src, dst in moves:
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    journal.unlink()
    return [dst for _, dst in moves]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(root: Path = BOOK_DIR.parent) -> list[Path]:
    """Finish what killed reruns left in ``root``: a staging folder with a journal has its renames
    completed, one without is dropped (the old set was never touched). Stagings of live processes
    are left alone. Returns the files moved into place."""
    done: list[Path] = []
    for stage in sorted(root.glob(f"{STAGING_PREFIX}*")):
        pid = stage.name.removeprefix(STAGING_PREFIX).split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if (stage / JOURNAL).exists():
            done += _apply(stage / JOURNAL)
        shutil.rmtree(stage, ignore_errors=True)
    return done


def rerun_chapter(chapter: str, profile: str, device: str, seed: int | None = None,
                  book_dir: Path = BOOK_DIR, results_dir: Path = RESULTS_DIR) -> Path:
    """Re-execute ``chapter`` with ``profile`` and ``device``, then the claims page (which reads the new
    results), and move them, the chapter's results JSON, new lab runs and figure files into place together
    (module docstring); returns the chapter path."""
    check_profile(profile)
    resolve_device(device)
    path = chapter_path(chapter, book_dir)
    root = book_dir.parent
    recover(root)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f"{STAGING_PREFIX}{os.getpid()}-"))
    try:
        view = stage / "results"
        _view(results_dir, view)
        moves: list[tuple[Path, Path]] = []
        if path.stem != CLAIMS_PAGE:
            params: dict[str, Any] = {"profile": profile, "device": device}
            if seed is not None:
                params["seed"] = seed
            params["results_dir"] = str(view)
            figures = stage / "figures"
            with _env(FIGURES_ENV, figures):
                execute(path, stage / path.name, params, cwd=path.parent)
            moves.append((stage / path.name, path))
            into = book_dir / FIGURES_DIR.relative_to(BOOK_DIR)
            moves += [(svg, into / svg.name) for svg in sorted(figures.glob("*.svg"))
                      if not svg.name.startswith(".")]       # never a temporary file of an atomic write
        claims = book_dir / f"{CLAIMS_PAGE}.ipynb"
        if claims.exists():
            with _results_env(view):
                execute(claims, stage / claims.name, {}, cwd=book_dir)
            moves.append((stage / claims.name, claims))
        if is_paired(root):                                                  # their MyST texts (text_pairs)
            moves += [(write_text(staged, stage / "text" / f"{target.stem}.md", root), text_path(target))
                      for staged, target in moves if target.suffix == ".ipynb"]
        moves = _written(view, results_dir) + moves
        write_json_atomic(stage / JOURNAL, {"moves": [[str(a), str(b)] for a, b in moves]})
        _apply(stage / JOURNAL)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapter", help="chapter file name without .ipynb, e.g. ch01_krr_clones")
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | full")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        path = rerun_chapter(args.chapter, args.profile, args.device, args.seed)
    except (ValueError, FileNotFoundError) as err:
        print(f"rerun: {err}", file=sys.stderr)
        return 2
    if path.stem == CLAIMS_PAGE:
        print(f"re-executed {path} from the committed results in {RESULTS_DIR}")
    else:
        print(f"re-executed {path} (profile={args.profile}, device={args.device}), its results in {RESULTS_DIR}, "
              f"and the claims page")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
