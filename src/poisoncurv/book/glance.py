"""The claims at a glance: one row per claim of the paper, generated from the ledger and the committed results.

Each paper claim of ``claims.yml`` carries four fields for this view: ``short`` (a name of a few words), ``scale``
(model, data and seeds; ``{key}`` is replaced by that glued value of the claim's chapters, ``{key|noun}`` by the value
and the noun, plural when it is not 1), ``reason`` (one line, drawn from the claim's ``note``) and ``evidence`` (the
labels of the figures or tables that decide it). The profile comes from the results files' provenance.

The same ledger fills the generated blocks of ``book/intro.md`` (the overall count, "Cite this book") and
``book/paper.md`` (its table of claims with their status), between MyST comment lines
``% generated: <name> ...`` and ``% end generated: <name>``. ``python -m poisoncurv.book.glance`` rewrites them
(``make book`` does, before building); ``--check`` only reports stale pages (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poisoncurv.book.cite import cite_markdown, load_citation
from poisoncurv.book.claims import STATUSES, load_ledger
from poisoncurv.core.paths import BOOK_DIR, CITATION_FILE, CLAIMS_FILE, REPO_ROOT, RESULTS_DIR
from poisoncurv.core.results import read_json
from poisoncurv.core.tables import escape_cell, format_value

GLANCE_FIELDS = ("short", "scale", "reason", "evidence")
GLANCE_CLASS = "claims-glance"   # styled by book/_static/claims-glance.css
STATUS_CLASS = "claims-status"   # paper.md's table, likewise


@dataclass(frozen=True)
class GlanceRow:
    """One claim on the claims page's first screen."""

    id: str
    short: str
    status: str
    scale: str
    profiles: tuple[str, ...]
    reason: str
    evidence: tuple[str, ...]


def paper_claims(claims: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's claims of the paper (not the companion's own findings), in ledger order."""
    return [c for c in claims if c.get("source", "paper") == "paper"]


def claim_chapters(claim: dict[str, Any]) -> list[str]:
    """The chapters whose values decide ``claim``, in the order its checks first name them."""
    return list(dict.fromkeys(chk["chapter"] for chk in claim["checks"]))


def committed_provenance(results_dir: str | Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """The provenance of every committed chapter results file, keyed by chapter."""
    return {p.stem: read_json(p)["provenance"] for p in sorted(Path(results_dir).glob("*.json"))}


def _count(value: Any, noun: str | None) -> str:
    """A glued value as text; with ``noun``, ``1 seed`` or ``8 seeds``. Whole numbers of 10,000 and more get commas."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        text = f"{value:,}"
    else:
        text = format_value(value)
    if noun is None:
        return text
    return f"{text} {noun}" if value == 1 else f"{text} {noun}s"


SCALE_SLOT = re.compile(r"\{(\w+)(?:\|([\w ]+))?\}")
"""A slot of a scale template: ``{key}`` or ``{key|noun}`` (group 1: the glue key, group 2: the noun)."""


def fill_scale(template: str, values: dict[str, Any]) -> str:
    """``template`` with each ``{key}`` (or ``{key|noun}``) replaced by the value ``values[key]``; raises ``KeyError``
    naming a key no results file holds."""
    def one(match: re.Match[str]) -> str:
        key, noun = match.group(1), match.group(2)
        if key not in values:
            raise KeyError(f"scale names {key!r}, which no results file of the claim's chapters holds")
        return _count(values[key], noun)

    return SCALE_SLOT.sub(one, template)


def claim_profiles(claim: dict[str, Any], provenance: dict[str, dict[str, Any]]) -> list[str]:
    """The profiles of the committed results behind ``claim`` (one per distinct profile, in chapter order)."""
    return list(dict.fromkeys(provenance[ch]["profile"] for ch in claim_chapters(claim) if ch in provenance))


def glance_row(claim: dict[str, Any], values: dict[str, dict[str, Any]], provenance: dict[str, dict[str, Any]]) -> GlanceRow:
    """The glance row of one paper claim; raises ``ValueError`` when the ledger entry lacks a glance field."""
    missing = [f for f in GLANCE_FIELDS if not claim.get(f)]
    if missing:
        raise ValueError(f"claim {claim['id']}: missing {', '.join(missing)} (the claims page's first screen needs them)")
    merged = {k: v for ch in claim_chapters(claim) for k, v in values.get(ch, {}).items()}
    scale = " ".join(fill_scale(claim["scale"], merged).split())
    evidence = claim["evidence"] if isinstance(claim["evidence"], list) else [claim["evidence"]]
    return GlanceRow(claim["id"], claim["short"], claim["status"], scale, tuple(claim_profiles(claim, provenance)),
                     " ".join(claim["reason"].split()), tuple(evidence))


def glance_rows(claims: Sequence[dict[str, Any]], values: dict[str, dict[str, Any]],
                provenance: dict[str, dict[str, Any]]) -> list[GlanceRow]:
    """One row per claim of the paper, in ledger order."""
    return [glance_row(c, values, provenance) for c in paper_claims(claims)]


def evidence_links(labels: Sequence[str]) -> str:
    """MyST links to chapters' figures or tables (``{numref}``: their numbers) or sections (``{ref}``), each run of
    labels from one chapter followed by that chapter's number, e.g. ``Fig. 4, Fig. 9 (ch. 2)``."""
    groups: list[tuple[str | None, list[str]]] = []
    for label in labels:
        match = re.match(r"(?:fig|tbl)-ch(\d+)-", label)
        link = f"{{numref}}`{label}`" if match else f"{{ref}}`{label}`"
        chapter = match.group(1) if match else None
        if groups and groups[-1][0] == chapter:
            groups[-1][1].append(link)
        else:
            groups.append((chapter, [link]))
    return ", ".join(", ".join(links) + (f" (ch. {ch})" if ch else "") for ch, links in groups)


def shared_profiles(rows: Sequence[GlanceRow]) -> tuple[str, ...] | None:
    """The profiles behind every row when all rows share them (the usual case), else ``None``."""
    shared = {r.profiles for r in rows}
    return next(iter(shared)) if len(shared) == 1 and next(iter(shared)) else None


def scale_cells(rows: Sequence[GlanceRow]) -> tuple[str, list[str]]:
    """The scale column's header and cells: a profile shared by every row is named once, in the header
    (``scale (cpu profile)``); otherwise each cell ends with its own."""
    shared = shared_profiles(rows)
    if shared:
        return f"scale ({', '.join(shared)} profile)", [r.scale for r in rows]
    return "scale", [f"{r.scale}; {', '.join(r.profiles) or 'no results'} profile" for r in rows]


def glance_table(rows: Sequence[GlanceRow]) -> str:
    """The rows as a compact Markdown table in a ``claims-glance`` container (no caption: it is the page's opening)."""
    scale_head, scales = scale_cells(rows)
    columns = ("claim", "status", scale_head, "why", "decided by")
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(escape_cell(cell) for cell in (
        f"**{r.id}** {r.short}", f"**{r.status}**", scale, r.reason, evidence_links(r.evidence))) + " |"
        for r, scale in zip(rows, scales)]
    return "\n".join([f"::::{{container}} {GLANCE_CLASS}", head, rule, *body, "::::"])


def status_counts(claims: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many of the paper's claims have each status, in the order of :data:`STATUSES`."""
    statuses = [c["status"] for c in paper_claims(claims)]
    return {s: statuses.count(s) for s in STATUSES}


def count_sentence(claims: Sequence[dict[str, Any]]) -> str:
    """The overall count, e.g. ``Of the paper's 9 claims: 1 reproduced, 8 partly, 0 not reproduced, 0 not yet run.``"""
    counts = status_counts(claims)
    return f"Of the paper's {sum(counts.values())} claims: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."


def glance_markdown(claims: Sequence[dict[str, Any]], values: dict[str, dict[str, Any]],
                    provenance: dict[str, dict[str, Any]]) -> str:
    """The claims page's opening: the overall count, then the glance table."""
    rows = glance_rows(claims, values, provenance)
    shared = shared_profiles(rows)
    then = "the checks behind each status follow the table."
    if shared:   # said here too: narrow screens hide the table's header, which names it
        lead = f"{count_sentence(claims)} Every result behind them comes from the {' and '.join(shared)} profile; {then}"
    else:
        lead = f"{count_sentence(claims)} {then.capitalize()}"
    return f"{lead}\n\n{glance_table(rows)}"


# ---- labels the links may point to ---------------------------------------------------------------------------------

_TARGET = re.compile(r"^\(([\w-]+)\)=\s*$", re.M)
_TABLE_NAME = re.compile(r"^:name: (tbl-[\w-]+)\s*$", re.M)


def chapter_labels(book_dir: str | Path = BOOK_DIR) -> dict[str, str]:
    """Every label a chapter defines (figure names, numbered tables in its outputs, ``(label)=`` targets), mapped to
    its chapter."""
    labels: dict[str, str] = {}
    for path in sorted(Path(book_dir).glob("ch*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            found = _TARGET.findall(source) if cell["cell_type"] == "markdown" else []
            fig = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            found += [fig["name"]] if "name" in fig else []
            for out in cell.get("outputs", []):
                found += _TABLE_NAME.findall("".join(out.get("data", {}).get("text/markdown", "")))
            labels |= dict.fromkeys(found, path.stem)
    return labels


# ---- generated blocks of the Markdown pages ------------------------------------------------------------------------

def paper_table(claims: Sequence[dict[str, Any]]) -> str:
    """``book/paper.md``'s table of the paper's claims: the claim (with its id), its status in this book, the chapters
    that test it (in a ``claims-status`` container, which narrow screens set in a smaller type)."""
    rows = ["| claim | status in this book | where the book tests it |", "| --- | --- | --- |"]
    for c in paper_claims(claims):
        chapters = ", ".join(f"{{doc}}`{ch}`" for ch in claim_chapters(c))
        rows.append(f"| **{c['id']}** {escape_cell(' '.join(c['claim'].split()))} | {c['status']} | {chapters} |")
    return "\n".join([f"::::{{container}} {STATUS_CLASS}", *rows, "::::"])


def intro_summary(claims: Sequence[dict[str, Any]]) -> str:
    """The front page's pointer to the claims page, with the overall count."""
    return (f"**Where the claims stand.** {count_sentence(claims)} The {{doc}}`claims` opens with each one's status, "
            "the scale of the runs behind it, the reason, and the figure or table that decides it.")


def page_blocks(claims: Sequence[dict[str, Any]], cff: dict[str, Any] | None = None) -> dict[str, dict[str, str]]:
    """The generated blocks, by page file name (in ``book/``) and block name."""
    return {"intro.md": {"claims-summary": intro_summary(claims), "cite": cite_markdown(cff)},
            "paper.md": {"claims-table": paper_table(claims)}}


def block_markers(name: str) -> tuple[str, str]:
    """The MyST comment lines that open and close the generated block ``name``."""
    return (f"% generated: {name} (python -m poisoncurv.book.glance writes it; edit claims.yml or CITATION.cff instead)",
            f"% end generated: {name}")


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``; raises ``ValueError`` when its markers are missing."""
    begin, end = block_markers(name)
    pattern = re.compile(rf"^% generated: {re.escape(name)}\b.*?^{re.escape(end)}$", re.M | re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated block {name!r} (lines {begin!r} ... {end!r})")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def refresh_pages(root: str | Path = REPO_ROOT, write: bool = True) -> list[Path]:
    """Regenerate every generated block of ``root/book`` from ``root/claims.yml`` and ``root/CITATION.cff``; returns
    the pages whose text changed (written only with ``write``)."""
    root = Path(root)
    blocks_by_page = page_blocks(load_ledger(root / CLAIMS_FILE.name), load_citation(root / CITATION_FILE.name))
    stale = []
    for page, blocks in blocks_by_page.items():
        path = root / BOOK_DIR.name / page
        old = path.read_text()
        new = old
        for name, body in blocks.items():
            new = replace_block(new, name, body)
        if new != old:
            stale.append(path)
            if write:
                path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite the generated blocks of book/intro.md and book/paper.md "
                                     "from claims.yml and CITATION.cff.")
    parser.add_argument("--root", default=str(REPO_ROOT), help="the repository whose files are read and written "
                        "(default: the one this package sits in)")
    parser.add_argument("--check", action="store_true", help="only report stale pages (exit status 1 if any)")
    args = parser.parse_args(argv)
    stale = refresh_pages(args.root, write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path}", file=sys.stderr if args.check else sys.stdout)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
