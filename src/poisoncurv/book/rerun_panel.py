"""Sphinx extension (``_config.yml``: ``extra_extensions``): a "Rerun this chapter" panel under each chapter's title.

The panel is built when the book is built, from files the repository holds, so it always matches them:

* the commands from a clone to the re-executed page: getting the data sets the chapter's grid reads
  (``python -m poisoncurv.lab.data NAME``, which downloads a missing one), ``make rerun`` from the committed runs,
  ``FORCE=1 make rerun`` to retrain them, and the ``gpu`` profile through ``make sweep`` (:func:`commands`);
* the time per profile (:func:`times`): the page's last execution (``results/<chapter>.json``), the committed
  ``cpu`` runs' training (:func:`~poisoncurv.core.provenance.training_summary` of their provenance), and for the
  ``gpu`` and ``full`` profiles the projection of ``benchmarks/results/gpu_check.json`` where ``make gpu-check`` made
  one for the chapter's grid, labelled projected, else "not yet projected";
* the repository URL from one setting, ``repository.url`` in ``_config.yml`` (:func:`repository_url`; not the
  theme's option, which defaults to Jupyter Book's own repository): with none configured the clone line is left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from docutils import nodes

from poisoncurv.book.chapter_top import chapter_section, insert_before_first
from poisoncurv.core.paths import REPO_ROOT
from poisoncurv.core.provenance import training_summary
from poisoncurv.lab.data import DATASETS
from poisoncurv.lab.grid import load_grid

GPU_CHECK = Path("benchmarks") / "results" / "gpu_check.json"
GPU_PROFILES = ("gpu", "full")


@dataclass(frozen=True)
class Panel:
    """What the panel of one chapter says: shell ``commands`` (with ``#`` comments) and one sentence per profile."""

    chapter: str
    commands: tuple[str, ...]
    times: tuple[str, ...]


def grid_path(chapter: str, root: Path = REPO_ROOT) -> Path | None:
    """``grids/chNN.yaml`` of chapter ``chNN_...``, or ``None`` for a chapter without lab runs."""
    path = root / "grids" / f"{chapter.split('_')[0]}.yaml"
    return path if path.exists() else None


def _profile_datasets(grid: Path, profile: str) -> tuple[str, ...]:
    used = {r.config.dataset for r in load_grid(grid, profile, check_device=False).runs}
    return tuple(d for d in DATASETS if d in used)


def commands(chapter: str, repository_url: str | None, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The commands from a clone (its line only with a configured ``repository_url``) to the re-executed page, each
    after a comment line saying what it does."""
    out = []
    if repository_url:
        name = repository_url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
        out += [f"git clone {repository_url} && cd {name}"]
    out += ["# a virtual environment in .venv with the pinned packages", "make env"]
    grid = grid_path(chapter, root)
    rerun = f"make rerun CHAPTER={chapter}"
    if grid is None:
        return tuple(out + ["# the page, computed in the notebook", f"{rerun} PROFILE=cpu DEVICE=cpu"])
    cpu = _profile_datasets(grid, "cpu")
    more = [d for p in GPU_PROFILES for d in _profile_datasets(grid, p) if d not in cpu]
    out += ["# the data (downloads a missing copy)", f".venv/bin/python -m poisoncurv.lab.data {' '.join(cpu)}",
            "# the page from the committed runs; FORCE=1 retrains them first", f"{rerun} PROFILE=cpu DEVICE=cpu"]
    if more:
        out += ["# the GPU profiles' other data (needs internet)",
                f".venv/bin/python -m poisoncurv.lab.data {' '.join(dict.fromkeys(more))}"]
    out += ["# on a GPU machine (PROFILE=full likewise)", f"make sweep GRID=grids/{grid.name} PROFILE=gpu EXECUTOR=local",
            f"{rerun} PROFILE=gpu DEVICE=cuda"]
    return tuple(out)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} minutes"


def times(chapter: str, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """One sentence per profile on how long it takes, from the files the repository holds (module docstring)."""
    out = []
    page = root / "results" / f"{chapter}.json"
    if page.exists():
        prov = json.loads(page.read_text())["provenance"]
        out.append(f"The page's last execution ({prov['profile']} profile) took {_minutes(float(prov['wall_time_s']))} on "
                   f"{prov['device_name'].removeprefix('CPU: ').split(' (')[0]}.")
    grid = grid_path(chapter, root)
    if grid is None:
        return tuple(out)
    files = [root / "results" / "lab" / f"{r.config.key()}.json" for r in load_grid(grid, "cpu", check_device=False).runs]
    provs = [json.loads(f.read_text())["provenance"] for f in files if f.exists()]
    if provs:
        missing = f" ({len(files) - len(provs)} of its {len(files)} runs not committed yet)" if len(provs) < len(files) else ""
        out.append(f"Retraining the cpu profile: {training_summary(provs)}{missing}.")
    check = root / GPU_CHECK
    gpu_check = json.loads(check.read_text()) if check.exists() else {}
    projection = gpu_check.get("projection", {})
    card = gpu_check.get("provenance", {}).get("device_name", "a GPU")
    for profile in GPU_PROFILES:
        proj = projection.get(profile, {}) if grid.stem == "ch07" else {}
        if "hours" in proj:
            out.append(f"The {profile} profile: projected {proj['hours']:.2g} GPU-hours on one {card} (`make gpu-check`, runs one "
                       f"after another), not measured.")
        else:
            out.append(f"The {profile} profile: not yet projected (`make gpu-check` on a GPU times it).")
    return tuple(out)


def repository_url(root: Path = REPO_ROOT) -> str | None:
    """``repository.url`` of ``_config.yml``, or ``None`` when the book has no repository block."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    return (config.get("repository") or {}).get("url") or None


def panel(chapter: str, repository_url: str | None, root: Path = REPO_ROOT) -> Panel:
    return Panel(chapter, commands(chapter, repository_url, root), times(chapter, root))


def _sentence(text: str) -> nodes.paragraph:
    """A paragraph with the parts of ``text`` between backticks set as code."""
    para = nodes.paragraph()
    for i, part in enumerate(text.split("`")):
        if part:
            para += nodes.literal(part, part) if i % 2 else nodes.Text(part)
    return para


def admonition(p: Panel) -> nodes.admonition:
    """The panel as a docutils tip admonition titled "Rerun this chapter": the commands, then the times."""
    box = nodes.admonition(classes=["tip", "rerun-panel"])
    box += nodes.title(text="Rerun this chapter")
    box += nodes.literal_block("\n".join(p.commands), "\n".join(p.commands), language="bash")
    for sentence in p.times:
        box += _sentence(sentence)
    return box


def _is_code_cell(node: nodes.Node) -> bool:
    return isinstance(node, nodes.container) and "cell" in node.get("classes", [])


def insert_panel(app: Any, doctree: nodes.document) -> None:
    """Put the panel of chapter ``chNN_*`` under its title and opening text: before its first code cell or first
    subsection, whichever comes first."""
    found = chapter_section(app, doctree)
    if found is not None:
        docname, top = found
        insert_before_first(top, admonition(panel(docname, repository_url())),
                            lambda child: isinstance(child, nodes.section) or _is_code_cell(child))


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", insert_panel)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
