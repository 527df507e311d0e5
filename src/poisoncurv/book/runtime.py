"""Helpers the chapters call: glued numbers, plotting defaults, and the closing provenance cell."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisoncurv.core.provenance import RunRecord, provenance_markdown
from poisoncurv.core.results import write_json_atomic


def round_sig(value: float, sig: int = 4) -> float:
    """``value`` rounded to ``sig`` significant digits (so glued text is stable across machines)."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, sig - 1 - int(math.floor(math.log10(abs(value)))))


def quiet_library_warnings() -> None:
    """Silence deprecation notices that libraries print on stderr (they would clutter the page)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


def setup_plots() -> None:
    """Matplotlib defaults shared by every chapter."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False, "font.size": 10})


@dataclass
class Chapter:
    """One executed chapter: parameters, glued values and provenance.

    ``glue`` stores a rounded number under ``key`` both for the page (``{glue:text}`key```) and
    for the machine-readable results file that :meth:`finish` writes when ``results_dir`` is set.
    """

    name: str
    profile: str
    device: str
    seed: int
    data_source: str
    results_dir: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.record = RunRecord(self.profile, self.device, self.seed, self.data_source)
        quiet_library_warnings()
        if self.device == "cpu":
            # One thread: floating-point reductions in a fixed order (the committed outputs are
            # reproducible bit for bit), and on a 2-core machine the small solves run faster.
            import torch

            torch.set_num_threads(1)

    def glue(self, key: str, value: Any, sig: int = 4) -> None:
        """Glue ``value`` (numbers rounded to ``sig`` significant digits) without displaying it."""
        from myst_nb import glue

        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
            stored = value
        else:
            stored = round_sig(float(value), sig)
            if isinstance(value, int):
                stored = int(value)
        glue(key, stored, display=False)
        self.values[key] = stored

    def finish(self) -> dict[str, Any]:
        """Display the provenance table; write ``<results_dir>/<name>.json`` if asked. Returns provenance."""
        from IPython.display import Markdown, display

        prov = self.record.finish()
        display(Markdown(provenance_markdown(prov)))
        if self.results_dir is not None:
            write_json_atomic(Path(self.results_dir) / f"{self.name}.json",
                              {"chapter": self.name, "values": self.values, "provenance": prov})
        return prov
