"""How to cite the book: BibTeX generated from ``CITATION.cff``, so the two cannot drift apart.

``book_bibtex`` gives the entry for the companion itself (the CFF's top level), ``paper_bibtex`` the entry for the
paper it accompanies (the CFF's ``preferred-citation``), and ``cite_markdown`` both as one MyST block, shown on the
introduction and on the claims page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from poisoncurv.core.paths import CITATION_FILE

CITE_CLASS = "cite-this-book"   # the block's CSS class (book/_static/claims-glance.css wraps its long lines)


def load_citation(path: str | Path = CITATION_FILE) -> dict[str, Any]:
    """The parsed ``CITATION.cff``; raises ``ValueError`` when it lacks a title, authors or a year."""
    cff = yaml.safe_load(Path(path).read_text())
    if not cff.get("title") or not cff.get("authors") or not (cff.get("year") or cff.get("date-released")):
        raise ValueError(f"{path}: CITATION.cff needs title, authors and date-released (or year)")
    return cff


def year(entry: dict[str, Any]) -> int:
    """The entry's year: ``year`` if given, else the year of ``date-released``."""
    if entry.get("year"):
        return int(entry["year"])
    return int(str(entry["date-released"])[:4])


def bibtex_name(person: dict[str, Any]) -> str:
    """One CFF author as BibTeX: ``Family, Given`` for a person, ``{Name}`` (kept whole) for an entity."""
    if "family-names" in person:
        given = person.get("given-names")
        return f"{person['family-names']}, {given}" if given else person["family-names"]
    return "{" + person["name"] + "}"


def bibtex_entry(kind: str, key: str, fields: dict[str, str]) -> str:
    """``@kind{key, field = {value}, ...}`` with one field a line, in the order given."""
    width = max(len(name) for name in fields)
    lines = [f"  {name.ljust(width)} = {{{value}}}" for name, value in fields.items()]
    return f"@{kind}{{{key},\n" + ",\n".join(lines) + "\n}"


def _key(entry: dict[str, Any], first: str) -> str:
    """A citation key: ``first`` (lower case, letters only), the year and the title's first word."""
    word = re.findall(r"[A-Za-z]+", entry["title"])[0].lower()
    stem = re.sub(r"[^a-z]", "", first.lower())
    return stem + str(year(entry)) + ("" if stem == word else word)


def book_bibtex(cff: dict[str, Any]) -> str:
    """The companion's own entry (``@misc``: software, as the CFF says), keyed ``<first title word><year>``."""
    fields = {"author": " and ".join(bibtex_name(a) for a in cff["authors"]), "title": cff["title"],
              "year": str(year(cff))}
    if cff.get("version"):
        fields["note"] = f"Version {cff['version']}"
    if cff.get("repository-code") or cff.get("url"):
        fields["url"] = cff.get("repository-code") or cff["url"]
    first = re.findall(r"[A-Za-z]+", cff["title"])[0]
    return bibtex_entry("misc", _key(cff, first), fields)


def _arxiv_id(entry: dict[str, Any]) -> str | None:
    """The arXiv identifier among the entry's ``identifiers`` (``arXiv:2602.00822`` gives ``2602.00822``)."""
    for ident in entry.get("identifiers", []):
        match = re.fullmatch(r"(?i)arxiv:\s*(\S+)", str(ident.get("value", "")))
        if match:
            return match.group(1)
    return None


def paper_bibtex(cff: dict[str, Any]) -> str | None:
    """The paper's entry from ``preferred-citation`` (``@misc`` with its arXiv eprint), keyed as in
    ``book/references.bib`` (``<family name><year><first title word>``); ``None`` when the CFF names no paper."""
    paper = cff.get("preferred-citation")
    if not paper:
        return None
    fields = {"author": " and ".join(bibtex_name(a) for a in paper["authors"]), "title": paper["title"],
              "year": str(year(paper))}
    arxiv = _arxiv_id(paper)
    if arxiv:
        fields |= {"eprint": arxiv, "archivePrefix": "arXiv"}
    if paper.get("url"):
        fields["url"] = paper["url"]
    first = paper["authors"][0]
    return bibtex_entry("misc", _key(paper, first.get("family-names") or first.get("name", "")), fields)


def cite_markdown(cff: dict[str, Any] | None = None) -> str:
    """The "Cite this book" block: a sentence and the BibTeX of the book and of the paper, as MyST."""
    cff = load_citation() if cff is None else cff
    entries = [book_bibtex(cff)] + [e for e in [paper_bibtex(cff)] if e]
    lead = ("Cite the book, and the paper it accompanies, as below (generated from the repository's `CITATION.cff`); "
            "cite a figure by its label, such as `fig-ch1-spike-vs-efficacy`, which stays fixed when chapters are "
            "renumbered.")
    return "\n".join([lead, "", f"::::{{container}} {CITE_CLASS}", "```bibtex", "\n\n".join(entries), "```", "::::"])
