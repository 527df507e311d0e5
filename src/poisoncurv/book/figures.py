"""Figures drawn at the width the book shows them, and written as SVG files that can be cited by their label.

The book's content column is 676 CSS px wide at a 1280 px window (sphinx-book-theme 1.3, measured with
headless Chromium). Figures are drawn :data:`COLUMN_IN` inches wide at :data:`DPI` dots per inch, so they
display at 100 % and a 9-point font shows as 12.5 CSS px. Panels are stacked two per row at most; never
widen a figure beyond the column.

Every figure a chapter shows goes through :func:`on_display` (installed by :func:`setup_plots` in the kernel):
text smaller than :data:`MIN_FONT_PT` (a legend drawn with ``fontsize=7``) is raised to it, and when the chapter
exports figures (:func:`export_figures`, called by :class:`~poisoncurv.book.runtime.Chapter`) a figure shown by a
cell labelled in its metadata (``mystnb.figure.name``, such as ``fig-ch8-frontier``) is also written, atomically,
as ``<label>.svg`` (``make rerun``: into :data:`~poisoncurv.core.paths.FIGURES_DIR`, ``book/_static/figures``).
The book links each caption to its file and describes the figure in its alt text (:func:`alt_text`;
:mod:`poisoncurv.book.sphinx_figures`).
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisoncurv.core.paths import BOOK_DIR
from poisoncurv.core.results import atomic_target

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
        "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": MIN_FONT_PT,
        "figure.titlesize": 10, "figure.labelsize": 10, "legend.frameon": False,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.markersize": 4.5,
        "svg.fonttype": "path",        # the SVG looks the same without the fonts installed
    })
    _install_display_hook()


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


# ----------------------------------------------------------------------------------------------------------------
# Readable text, whatever a chapter's cell asked for
# ----------------------------------------------------------------------------------------------------------------

def enforce_min_font(fig: Any, min_pt: float = MIN_FONT_PT) -> int:
    """Raise every text of ``fig`` smaller than ``min_pt`` points (legends, tick labels, annotations) to ``min_pt``.

    Returns how many texts (and tick-label sets) were raised. Tick labels are set through ``tick_params`` so that
    ticks created when the figure is drawn get the size too.
    """
    from matplotlib.text import Text

    raised = 0
    for ax in fig.get_axes():
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            for which, ticks in (("major", axis.get_major_ticks()), ("minor", axis.get_minor_ticks())):
                if ticks and ticks[0].label1.get_fontsize() < min_pt:
                    ax.tick_params(axis=name, which=which, labelsize=min_pt)
                    raised += 1
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < min_pt:
            text.set_fontsize(min_pt)
            raised += 1
    return raised


# ----------------------------------------------------------------------------------------------------------------
# Each labelled figure as <label>.svg
# ----------------------------------------------------------------------------------------------------------------

FIGURES_ENV = "POISONCURV_FIGURES_DIR"     # set by ``make rerun``: where the chapter's SVG files go (staged)
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _cell_key(source: str) -> str:
    """A cell's source as compared between the notebook file and the kernel (trailing spaces and blank ends off)."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def figure_labels(notebook: str | os.PathLike) -> dict[str, str]:
    """``{source of a code cell: its figure label}`` for the cells of ``notebook`` with ``mystnb.figure.name``."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    out = {}
    for cell in nb.get("cells", []):
        name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
        if cell.get("cell_type") == "code" and name:
            source = cell.get("source", "")
            out[_cell_key("".join(source) if isinstance(source, list) else source)] = name
    return out


def save_svg(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` as SVG, atomically, cropped as the page shows it and byte-stable across reruns of
    the same figure (no date; element ids salted with the file's name)."""
    import matplotlib

    path = Path(path)
    with atomic_target(path, suffix=".svg") as tmp, matplotlib.rc_context({"svg.hashsalt": path.stem}):
        fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None, "Title": path.stem})
    return path


@dataclass
class _Export:
    """What :func:`on_display` needs: the labelled cells of the running chapter, where to write, the current cell."""

    labels: dict[str, str] = field(default_factory=dict)
    out_dir: Path | None = None
    label: str | None = None          # the label of the cell now running (None: not a labelled cell)
    shown: int = 0                    # figures the current cell has shown so far
    written: list[Path] = field(default_factory=list)


_EXPORT = _Export()


def export_figures(chapter: str, out_dir: str | os.PathLike | None, notebook: str | os.PathLike | None = None) -> None:
    """From now on, write each figure a labelled cell of ``chapter`` shows to ``<out_dir>/<label>.svg``.

    The labels are read from ``notebook`` (default: ``<chapter>.ipynb`` in the kernel's working folder, which is
    the chapter's folder under papermill and nbval, else in ``book/``) and matched to the running cell by its
    source. A second figure shown by the same cell is ``<label>-2.svg``. ``out_dir=None`` stops exporting.
    """
    _EXPORT.labels, _EXPORT.out_dir, _EXPORT.label, _EXPORT.shown = {}, None, None, 0
    if out_dir is None:
        return
    if notebook is None:
        here = Path.cwd() / f"{chapter}.ipynb"
        notebook = here if here.exists() else BOOK_DIR / f"{chapter}.ipynb"
    if Path(notebook).exists():
        _EXPORT.labels = figure_labels(notebook)
    _EXPORT.out_dir = Path(out_dir)
    _install_display_hook()


def start_cell(source: str) -> None:
    """Note the cell about to run (its figure label, if any); the kernel's ``pre_run_cell`` event calls this."""
    _EXPORT.label = _EXPORT.labels.get(_cell_key(source or ""))
    _EXPORT.shown = 0


def on_display(fig: Any) -> Path | None:
    """Called with each figure about to be shown: raise small text to :data:`MIN_FONT_PT`, and write the SVG of a
    labelled cell's figure. Returns the SVG's path (``None`` when none was written)."""
    enforce_min_font(fig)
    if _EXPORT.out_dir is None or _EXPORT.label is None or not _LABEL.fullmatch(_EXPORT.label):
        return None
    _EXPORT.shown += 1
    name = _EXPORT.label if _EXPORT.shown == 1 else f"{_EXPORT.label}-{_EXPORT.shown}"
    path = save_svg(fig, _EXPORT.out_dir / f"{name}.svg")
    _EXPORT.written.append(path)
    return path


def _pre_run_cell(info: Any) -> None:
    start_cell(getattr(info, "raw_cell", "") or "")
    _wrap_png_printer()


def _install_display_hook() -> None:
    """In an IPython kernel: call :func:`start_cell` before each cell and :func:`on_display` before each figure is
    rendered for the page (the inline backend's PNG printer is wrapped). Outside IPython: nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    if _pre_run_cell not in ip.events.callbacks.get("pre_run_cell", []):
        ip.events.register("pre_run_cell", _pre_run_cell)
    _wrap_png_printer()


def _wrap_png_printer() -> None:
    """Wrap the PNG printer IPython holds for matplotlib figures (once; again if the backend replaced it)."""
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        return
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    try:
        plt._get_backend_mod()          # the inline backend registers its printers when it is first loaded
    except Exception:                   # noqa: BLE001 - no backend yet: the next cell tries again
        pass
    formatter = ip.display_formatter.formatters.get("image/png")
    if formatter is None:
        return
    try:
        printer = formatter.lookup_by_type(Figure)
    except KeyError:
        return
    if getattr(printer, "_poisoncurv_wrapped", False):
        return

    def shown(fig: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            on_display(fig)
        except Exception as err:        # noqa: BLE001 - the page keeps its figure; the failure is shown beside it
            warnings.warn(f"figure export failed: {err}", stacklevel=2)
        return printer(fig, *args, **kwargs)

    shown._poisoncurv_wrapped = True    # type: ignore[attr-defined]
    formatter.for_type(Figure, shown)


# ----------------------------------------------------------------------------------------------------------------
# Alt text: a sentence, not a file name
# ----------------------------------------------------------------------------------------------------------------

_TEX_WORDS = {
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "sim": "~", "propto": "∝",
    "to": "→", "rightarrow": "→", "times": "×", "cdot": "·", "pm": "±", "in": "∈", "infty": "∞", "sum": "Σ",
    "prod": "Π", "ell": "ℓ", "top": "ᵀ", "partial": "∂", "nabla": "∇", "lVert": "‖", "rVert": "‖", "Vert": "‖",
    "|": "‖", "langle": "⟨", "rangle": "⟩", "lvert": "|", "rvert": "|", "mid": "|", "ll": "≪", "gg": "≫",
    "ldots": "…", "dots": "…", "cdots": "…", "%": "%", "varepsilon": "ε", "epsilon": "ε", "varphi": "φ",
    "vartheta": "θ", "quad": " ", "qquad": " ", "left": "", "right": "", "big": "", "Big": "", ",": " ",
    ";": " ", ":": " ", "!": "", " ": " ", "{": "", "}": "",
}
_TEX_WRAPPERS = r"mathrm|text|textrm|textit|mathbf|mathit|mathsf|mathcal|boldsymbol|operatorname|bar|overline|tilde|" \
                r"widetilde|hat|widehat|vec|mathbb"
_SUPERSCRIPT = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")


def _greek(name: str) -> str | None:
    case = "CAPITAL" if name[0].isupper() else "SMALL"
    try:
        return unicodedata.lookup(f"GREEK {case} LETTER {name.upper().replace('LAMBDA', 'LAMDA')}")
    except KeyError:
        return None


def _power(exponent: str) -> str:
    """``2`` -> ``²``, ``-1`` -> ``⁻¹``; anything else in brackets: ``-1/2`` -> ``^(-1/2)``."""
    e = exponent.strip()
    return e.translate(_SUPERSCRIPT) if re.fullmatch(r"[+-]?[0-9]{1,3}", e) else f"^({e})"


def tex_to_text(tex: str) -> str:
    """Inline TeX as plain text for a screen reader or an alt attribute: ``R_k\\,\\lVert\\Delta f\\rVert^2`` -> ``R_k ‖Δf‖²``."""
    s = tex
    for _ in range(4):                                   # nested wrappers: \mathrm{\text{x}}
        s = re.sub(rf"\\(?:{_TEX_WRAPPERS})\s*\{{([^{{}}]*)\}}", r"\1", s)
        s = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2", s)
        s = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"√(\1)", s)
    s = re.sub(rf"\\(?:{_TEX_WRAPPERS})\s*", "", s)      # \tilde k, \bar H: the accent dropped

    def word(m: re.Match) -> str:
        name = m.group(1)
        if name in _TEX_WORDS:
            return _TEX_WORDS[name]
        return _greek(name) or name
    s = re.sub(r"\^\s*(?:\{\s*\\top\s*\}|\\top(?![A-Za-z]))", "ᵀ", s)      # u^\top -> uᵀ
    s = re.sub(r"\\([A-Za-z]+|[^A-Za-z])", word, s)
    s = re.sub(r"\^\{([^{}]*)\}", lambda m: _power(m.group(1)), s)
    s = re.sub(r"\^([0-9])", lambda m: m.group(1).translate(_SUPERSCRIPT), s)
    s = re.sub(r"_\{([^{}]*)\}", r"_\1", s)
    s = s.replace("{", "").replace("}", "").replace("~", " ")
    return " ".join(s.split())


_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
_MATH = re.compile(r"\$\$?([^$]+)\$\$?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def alt_text(caption: str, min_chars: int = 80, max_chars: int = 300) -> str:
    """A figure's alt text from its caption (MyST): its first sentences, as many as make ``min_chars`` characters
    (unless the caption is shorter), cut at a word to ``max_chars``, never the ``Run: ...`` sentence; roles and
    maths as plain text (a glued value as "…", since the caption source does not hold it).

    >>> alt_text("Spike $\\Lambda_{\\mathrm{GN}}$ against $m$. Run: {glue:text}`ch01_run`.")
    'Spike Λ_GN against m.'
    """
    def role(m: re.Match) -> str:
        if m.group(1).startswith("glue"):
            return "…"
        return re.sub(r"\s*<[^>]*>$", "", m.group(2))      # {ref}`text <label>` -> text
    text = _ROLE.sub(role, caption)
    text = _MATH.sub(lambda m: tex_to_text(m.group(1)), text)
    text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)       # emphasis
    text = " ".join(text.split())
    out = ""
    for sentence in _SENTENCE_END.split(text):
        if sentence.startswith("Run:"):
            break
        out = f"{out} {sentence}".strip()               # a short first sentence takes the next (cut below if long)
        if len(out) >= min_chars:
            break
    if len(out) > max_chars:
        out = out[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    out = out.strip()
    return out if not out or out[-1] in ".!?…" else out + "."
