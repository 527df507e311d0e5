"""The claims ledger: ``claims.yml`` maps each claim of the paper to the chapter value that tests it.

Each claim has ``id``, ``claim``, ``paper`` (where it sits in the paper, as far as known),
``status`` (one of :data:`STATUSES`) and ``checks``. A check names a ``chapter`` and a glued
``key`` and one rule: ``expect`` with ``tol`` (|value − expect| ≤ tol), ``max`` (value ≤ max),
``min`` (value ≥ min) or ``equals``. An optional ``source`` says whose claim it is: ``paper`` (the default)
or ``companion`` (a finding of this book's own, not a claim of the paper; shown as such in the ledger).
An optional ``profiles`` list on a check (e.g. ``[cpu]``) marks a finding that only runs of that size can show:
the smoke-profile chapter runs (``make test-smoke``) skip it; the committed results are always checked against every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from poisoncurv.core.paths import BOOK_DIR, CLAIMS_FILE, RESULTS_DIR
from poisoncurv.core.profiles import PROFILES
from poisoncurv.core.prose import GLUE_ROLE, prose_text
from poisoncurv.core.results import read_json
from poisoncurv.core.tables import Table

STATUSES = ("reproduced", "partly", "not reproduced", "not yet run")
RULES = ("expect", "max", "min", "equals")
SOURCES = ("paper", "companion")


@dataclass
class CheckResult:
    claim: str
    chapter: str
    key: str
    rule: str
    value: Any
    passed: bool


def load_ledger(path: str | Path = CLAIMS_FILE) -> list[dict[str, Any]]:
    """Read and validate the ledger; raises ``ValueError`` naming the bad entry."""
    claims = yaml.safe_load(Path(path).read_text())
    for c in claims:
        for field_ in ("id", "claim", "paper", "status", "checks"):
            if field_ not in c:
                raise ValueError(f"claim {c.get('id', '?')}: missing field {field_!r}")
        if c["status"] not in STATUSES:
            raise ValueError(f"claim {c['id']}: status {c['status']!r} not in {STATUSES}")
        if c.setdefault("source", "paper") not in SOURCES:
            raise ValueError(f"claim {c['id']}: source {c['source']!r} not in {SOURCES}")
        for chk in c["checks"]:
            rules = [r for r in RULES if r in chk]
            if len(rules) != 1 or "chapter" not in chk or "key" not in chk:
                raise ValueError(f"claim {c['id']}: each check needs chapter, key and exactly one of {RULES}: {chk}")
            if "expect" in chk and "tol" not in chk:
                raise ValueError(f"claim {c['id']}: 'expect' needs 'tol': {chk}")
            bad = [p for p in chk.get("profiles", []) if p not in PROFILES]
            if bad or ("profiles" in chk and not chk["profiles"]):
                raise ValueError(f"claim {c['id']}: check {chk['key']}: profiles must be a non-empty list of {list(PROFILES)}")
    return claims


def rule_text(check: dict[str, Any]) -> str:
    """The rule of a check as prose writes it (:func:`~poisoncurv.core.prose.prose_text`), e.g. ``= 2 ± 0.01`` or ``≤ 10⁻⁸``."""
    if "expect" in check:
        return f"= {prose_text(check['expect'])} ± {prose_text(check['tol'])}"
    if "max" in check:
        return f"≤ {prose_text(check['max'])}"
    if "min" in check:
        return f"≥ {prose_text(check['min'])}"
    return f"== {prose_text(check['equals'])}"


def evaluate(check: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` satisfies the check's rule."""
    if value is None:
        return False
    if "expect" in check:
        return abs(float(value) - float(check["expect"])) <= float(check["tol"])
    if "max" in check:
        return float(value) <= float(check["max"])
    if "min" in check:
        return float(value) >= float(check["min"])
    return value == check["equals"]


def check_results(claims: list[dict[str, Any]], values_by_chapter: dict[str, dict[str, Any]],
                  chapters: set[str] | None = None, profile: str | None = None) -> list[CheckResult]:
    """Evaluate every check (optionally only those of ``chapters``) against chapter values. With ``profile``,
    checks whose ``profiles`` list (a finding only that run size can show, e.g. ``[cpu]``) leaves it out are
    skipped; without it every check is evaluated (the committed results)."""
    out = []
    for c in claims:
        for chk in c["checks"]:
            if chapters is not None and chk["chapter"] not in chapters:
                continue
            if profile is not None and profile not in chk.get("profiles", [profile]):
                continue
            value = values_by_chapter.get(chk["chapter"], {}).get(chk["key"])
            out.append(CheckResult(c["id"], chk["chapter"], chk["key"], rule_text(chk), value, evaluate(chk, value)))
    return out


def committed_values(results_dir: str | Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Values of every committed chapter results file ``results/<chapter>.json``, keyed by chapter."""
    return {p.stem: read_json(p)["values"] for p in sorted(Path(results_dir).glob("*.json"))}


def ledger_table(claims: list[dict[str, Any]], values_by_chapter: dict[str, dict[str, Any]]) -> Table:
    """The ledger as a numbered table: claim, where in the paper, status, and each check with its measured value."""
    rows = []
    for c in claims:
        ev, last_chapter = [], None
        for r in check_results([c], values_by_chapter):
            if r.chapter != last_chapter:
                ev.append(f"{{doc}}`{r.chapter}`:")
                last_chapter = r.chapter
            shown = "not run" if r.value is None else prose_text(r.value)
            ev.append(f"{'✓' if r.passed else '✗'} `{r.key}` = {shown} ({r.rule})")
        own = "**companion's claim, not the paper's.** " if c.get("source") == "companion" else ""
        rows.append([c["id"], f"{own}{c['claim']}<br>*{c['paper']}*", c["status"], "<br>".join(ev) or None])
    return Table("tbl-claims-ledger", "The claims of the paper (and, marked, the companion's own findings), their status in "
                 "this book, and the checks that decide it (✓ passes on the committed results, ✗ fails or has not run).",
                 ["id", "claim (where in the paper)", "status", "evidence (chapter, key: measured, rule)"], rows)


def caption_summary(caption: str) -> str:
    """The first sentence of a figure caption, without glued values (they belong to the chapter's page)."""
    first = caption.split(". ")[0].rstrip(".")
    return " ".join(GLUE_ROLE.sub("…", first).split())


def figure_index(book_dir: str | Path = BOOK_DIR) -> list[dict[str, str]]:
    """Every labelled figure of the chapters, in book order of files: ``{"chapter", "name", "caption"}``."""
    import json

    rows = []
    for path in sorted(Path(book_dir).glob("ch*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            fig = cell.get("metadata", {}).get("mystnb", {}).get("figure")
            if fig and "name" in fig:
                rows.append({"chapter": path.stem, "name": fig["name"], "caption": fig.get("caption", "")})
    return rows


def figure_table(book_dir: str | Path = BOOK_DIR) -> Table:
    """The figure index as a numbered table: a link to each figure with its current number, its label, chapter and
    the caption's first sentence."""
    rows = [[f"{{numref}}`{f['name']}`", f"`{f['name']}`", f"{{doc}}`{f['chapter']}`", caption_summary(f["caption"])]
            for f in figure_index(book_dir)]
    return Table("tbl-claims-figures", "Every figure of the chapters, by label (cite figures by label: numbers follow "
                 "the table of contents and change when chapters are added).",
                 ["figure", "label", "chapter", "what it shows"], rows)


def notes_markdown(claims: list[dict[str, Any]]) -> str:
    """A bullet per claim with its status and note; notes are MyST (maths in ``$...$``), shown as written."""
    return "\n".join(f"* **{c['id']}** ({c['status']}{', companion' if c.get('source') == 'companion' else ''}): "
                     f"{' '.join(c.get('note', '').split())}" for c in claims)
