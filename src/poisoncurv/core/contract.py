"""The chapter contract: what every result a chapter glues or shows provides.

A chapter driver (:mod:`poisoncurv.chapters`) returns results that derive from :class:`ChapterResult`; the chapter's
runtime (:meth:`poisoncurv.book.runtime.Chapter.show`) glues every entry of :meth:`~ChapterResult.summary`, each number
rounded to the significant digits :meth:`~ChapterResult.digits` gives, and displays :meth:`~ChapterResult.tables` in
order. The digits belong to the result, not to the notebook that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from poisoncurv.core.tables import Table

Summary = dict[str, float | int | str]
"""Glue key (``ch<n>_...``) -> the number or text the chapter's prose reads as ``{glue:text}`key```."""

DEFAULT_SIG = 4


def glue_key(name: str) -> str:
    """A glue-key fragment for a name (a detector, an attack, a setting): ``"spectral (uncentred)"`` → ``"spectral_uncentred"``."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


class ChapterResult:
    """A chapter's result: its glue values (:meth:`summary`), their significant digits (:attr:`sig`) and its tables
    (:meth:`tables`). Frozen dataclasses derive from it; it has no fields of its own."""

    sig: ClassVar[int | Mapping[str, int]] = DEFAULT_SIG
    """Significant digits of the glued numbers: one for all, or per key (keys not listed: :data:`DEFAULT_SIG`)."""

    def summary(self) -> Summary:
        """Every value the chapter glues, by glue key (numbers, yes/no, or text)."""
        raise NotImplementedError(f"{type(self).__name__} has no summary()")

    def tables(self) -> tuple[Table, ...]:
        """The result's tables in the order the chapter shows them (none by default)."""
        return ()

    def digits(self, key: str) -> int:
        """The significant digits of the glued number ``key`` (from :attr:`sig`)."""
        sig = self.sig
        return sig if isinstance(sig, int) else sig.get(key, DEFAULT_SIG)
