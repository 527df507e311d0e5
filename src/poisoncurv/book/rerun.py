"""Re-execute one chapter with papermill and write it back without papermill's noise.

``python -m poisoncurv.book.rerun CHAPTER --profile cpu --device cuda`` (or ``make rerun``) runs
``book/CHAPTER.ipynb`` with the given parameters, writes its results file to ``results/``, and
replaces the chapter by the executed notebook in which

* the cell tagged ``parameters`` shows the values that ran (papermill's extra
  ``injected-parameters`` cell is folded into it and removed),
* papermill's per-cell timestamps and notebook metadata are stripped,
* the kernelspec is ``python3``.

The chapter file is replaced atomically, and only if execution succeeded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat

from poisoncurv.core.paths import BOOK_DIR, RESULTS_DIR
from poisoncurv.core.profiles import check_profile, resolve_device
from poisoncurv.core.results import atomic_target

# Parameters that steer where a run writes; injected but not shown in the rendered chapter.
HIDDEN_PARAMETERS = ("results_dir",)


def chapter_path(chapter: str, book_dir: Path = BOOK_DIR) -> Path:
    """Path of ``book/<chapter>.ipynb``; raises ``FileNotFoundError`` listing the chapters."""
    path = book_dir / f"{Path(chapter).stem}.ipynb"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in book_dir.glob("*.ipynb")))
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


def rerun_chapter(chapter: str, profile: str, device: str, seed: int | None = None,
                  book_dir: Path = BOOK_DIR, results_dir: Path = RESULTS_DIR) -> Path:
    """Re-execute ``chapter`` in place with ``profile`` and ``device``, then the claims page
    (which reads the new results); returns the chapter path."""
    check_profile(profile)
    resolve_device(device)
    path = chapter_path(chapter, book_dir)
    if path.stem != CLAIMS_PAGE:
        params: dict[str, Any] = {"profile": profile, "device": device}
        if seed is not None:
            params["seed"] = seed
        params["results_dir"] = str(results_dir.resolve())
        execute(path, path, params, cwd=path.parent)
    claims = book_dir / f"{CLAIMS_PAGE}.ipynb"
    if claims.exists():
        execute(claims, claims, {}, cwd=book_dir)
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
