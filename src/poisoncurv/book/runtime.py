"""The chapter runtime: glued numbers, tables, the run label that captions cite, and the closing provenance cell."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisoncurv.book.figures import FIGURES_ENV, export_figures, setup_plots
from poisoncurv.book.reads import read_keys
from poisoncurv.core.contract import ChapterResult
from poisoncurv.core.profiles import device_name
from poisoncurv.core.prose import GluedText, round_sig
from poisoncurv.core.provenance import RunRecord, provenance_markdown
from poisoncurv.core.results import write_json_atomic
from poisoncurv.core.tables import Table


def quiet_library_warnings() -> None:
    """Silence deprecation notices that libraries print on stderr (they would clutter the page)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


@dataclass
class Chapter:
    """One executed chapter: parameters, glued values and provenance.

    Create it with :meth:`start` in the chapter's first code cell, before any work, so its wall time covers the chapter.
    :meth:`show` glues a driver's result (a :class:`~poisoncurv.core.contract.ChapterResult`) and displays its tables;
    ``glue`` stores a rounded number under ``key`` both for the page (``{glue:text}`key```) and for the
    machine-readable results file that :meth:`finish` writes when ``results_dir`` is set; a chapter started from a page
    of ``book/`` glues only the keys its page or the claims ledger reads (``reads``, :mod:`poisoncurv.book.reads`). The text
    ``<name>_run`` that figure and table captions cite is glued by :meth:`glue_run` ("cpu profile, device cpu
    (CPU: ...)", or who trained the chapter's lab runs), at the latest by :meth:`finish`.

    Each figure a labelled cell shows is also written as ``<figures_dir>/<label>.svg``
    (:func:`~poisoncurv.book.figures.export_figures`). ``figures_dir`` defaults to ``$POISONCURV_FIGURES_DIR``
    (``make rerun`` stages the files there and moves them to ``book/_static/figures``), else to
    ``<results_dir>/figures`` when ``results_dir`` is set; with neither (nbval's re-execution, an interactive
    session) no file is written.
    """

    name: str
    profile: str
    device: str
    seed: int
    data_source: str
    results_dir: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    figures_dir: str | None = None
    reads: frozenset[str] | None = None
    """The keys :meth:`glue` keeps (``None``: every key); :meth:`start` sets them from the page and the ledger."""
    _run_glued: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.record = RunRecord(self.profile, self.device, self.seed, self.data_source)
        quiet_library_warnings()
        if self.figures_dir is None:
            self.figures_dir = os.environ.get(FIGURES_ENV) or (
                str(Path(self.results_dir) / "figures") if self.results_dir is not None else None)
        export_figures(self.name, self.figures_dir)

    @classmethod
    def start(cls, name: str, profile: str, device: str, seed: int, data_source: str, results_dir: str | None = None,
              dtype: str | None = None) -> Chapter:
        """Create the chapter and set up its kernel: one torch thread on the CPU, torch's default ``dtype`` if given
        (``"float64"`` for the synthetic chapters) and the book's plot style (:func:`~poisoncurv.book.figures.setup_plots`)."""
        import torch

        chapter = cls(name, profile, device, seed, data_source, results_dir=results_dir, reads=read_keys(name))
        if device == "cpu":
            # One thread: floating-point reductions in a fixed order (the committed outputs are
            # reproducible bit for bit), and on a 2-core machine the small solves run faster.
            torch.set_num_threads(1)
        if dtype is not None:
            torch.set_default_dtype(getattr(torch, dtype))
        setup_plots()
        return chapter

    @property
    def run_label(self) -> str:
        """The profile and device of this run, as captions state it."""
        return f"{self.profile} profile, device {self.device} ({device_name(self.device)})"

    def glue_run(self, training: str | None = None) -> None:
        """Glue ``<name>_run``, the run label captions cite, once: :attr:`run_label`, or for a chapter that reads lab
        runs the profile, ``training`` (who trained them: :func:`~poisoncurv.core.provenance.training_summary`) and
        the machine that executed the page. :meth:`finish` glues the plain label if no cell did."""
        if self._run_glued:
            raise RuntimeError(f"{self.name}_run is glued already: call glue_run once, before finish")
        text = self.run_label if training is None else (
            f"{self.profile} profile; {training}; page executed on {device_name(self.device)}")
        self._glue_text(f"{self.name}_run", text)
        self._run_glued = True

    def _glue_text(self, key: str, text: str) -> None:
        from myst_nb import glue

        glue(key, text, display=False)

    def glue(self, key: str, value: Any, sig: int = 4) -> None:
        """Glue ``value`` (numbers rounded to ``sig`` significant digits) without displaying it; the page shows it
        through :func:`~poisoncurv.core.prose.prose_text`. A key outside :attr:`reads` is not glued: nothing reads it."""
        from myst_nb import glue

        if self.reads is not None and key not in self.reads:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
            stored = value
        else:
            stored = round_sig(float(value), sig)
            if isinstance(value, int):
                stored = int(value)
        glue(key, GluedText(stored), display=False)     # the page reads prose_text(stored); the results file the number
        self.values[key] = stored

    def show(self, result: ChapterResult, tables: bool = True) -> None:
        """Glue every entry of ``result.summary()`` (numbers to ``result.digits(key)`` significant digits), then display
        ``result.tables()`` in order (``tables=False``: glue only, for a chapter that shows the tables further down)."""
        for key, value in result.summary().items():
            self.glue(key, value, result.digits(key))
        if tables:
            for table in result.tables():
                self.show_table(table)

    def show_table(self, table: Table) -> None:
        """Display ``table`` as a numbered, captioned table (label ``table.name``): a provenance table, or a result's
        table that the chapter places after a figure."""
        from IPython.display import Markdown, display

        display(Markdown(table.markdown()))

    def finish(self) -> dict[str, Any]:
        """Display the provenance table; write ``<results_dir>/<name>.json`` if asked. Returns provenance."""
        from IPython.display import Markdown, display

        if not self._run_glued:
            self.glue_run()
        prov = self.record.finish()
        display(Markdown(provenance_markdown(prov)))
        if self.results_dir is not None:
            write_json_atomic(Path(self.results_dir) / f"{self.name}.json",
                              {"chapter": self.name, "values": self.values, "provenance": prov})
        return prov
