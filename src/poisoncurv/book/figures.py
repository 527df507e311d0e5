"""Figures drawn at the width the book shows them.

The book's content column is 676 CSS px wide at a 1280 px window (sphinx-book-theme 1.3, measured with
headless Chromium). Figures are drawn :data:`COLUMN_IN` inches wide at :data:`DPI` dots per inch, so they
display at 100 % and a 9-point font shows as 12.5 CSS px. Panels are stacked two per row at most; never
widen a figure beyond the column.
"""

from __future__ import annotations

import math
from typing import Any

DPI = 100
COLUMN_PX = 670
COLUMN_IN = COLUMN_PX / DPI
MIN_FONT_PT = 9.0      # 9 pt at 100 dpi = 12.5 CSS px; the smallest text any figure may use


def setup_plots() -> None:
    """Matplotlib defaults shared by every chapter: the column's DPI, readable fonts, constrained layout."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (COLUMN_IN, 0.62 * COLUMN_IN),
        "figure.constrained_layout.use": True,
        "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": MIN_FONT_PT,
        "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "legend.frameon": False,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.markersize": 4.5,
    })


def panels(n: int = 1, ncols: int | None = None, height_in: float = 2.6, **subplot_kw: Any) -> tuple[Any, Any]:
    """A figure one column wide with ``n`` panels, at most two per row (rows stack downwards).

    Returns ``(fig, axes)``: one ``Axes`` for ``n == 1``, else a flat array of ``n`` axes (unused cells removed).
    ``height_in`` is the height of one row in inches.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if n < 1:
        raise ValueError(f"panels needs n >= 1, got {n}")
    ncols = ncols or (1 if n == 1 else 2)
    if ncols > 2:
        raise ValueError(f"at most two panels per row fit the column (got ncols={ncols}); stack them instead")
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_IN, height_in * nrows), squeeze=False, **subplot_kw)
    flat = np.asarray(axes).ravel()
    for ax in flat[n:]:
        ax.remove()
    return fig, (flat[0] if n == 1 else flat[:n])


def panel_label(ax: Any, letter: str) -> None:
    """Write ``(a)``, ``(b)``, ... in the top-left corner of ``ax``, as captions refer to them."""
    ax.set_title(f"({letter})", loc="left", fontsize=10)


def plot_band(ax: Any, t: Any, mean: Any, lo: Any, hi: Any, label: str | None = None, **line_kw: Any) -> None:
    """A mean curve over ``t`` with its min-max band across seeds shaded in the line's colour."""
    (line,) = ax.plot(t, mean, label=label, **line_kw)
    ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
