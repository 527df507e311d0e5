import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from poisoncurv.book import figures  # noqa: E402
from poisoncurv.book.claims import figure_index  # noqa: E402
from poisoncurv.book.figures import (  # noqa: E402
    COLUMN_PX,
    DPI,
    MIN_FONT_PT,
    alt_text,
    enforce_min_font,
    export_figures,
    figure_labels,
    on_display,
    panels,
    save_svg,
    setup_plots,
    start_cell,
    tex_to_text,
)


def test_panels_fill_the_column_and_stack():
    setup_plots()
    fig, axes = panels(3, height_in=2.0)
    width_px, height_px = fig.get_size_inches() * fig.dpi
    assert width_px == pytest.approx(COLUMN_PX) and fig.dpi == DPI
    assert height_px == pytest.approx(2 * 2.0 * DPI)          # two rows of two, one cell removed
    assert len(axes) == 3 and len(fig.axes) == 3
    plt.close(fig)


def test_text_is_readable_at_display_size():
    setup_plots()
    keys = ("xtick.labelsize", "ytick.labelsize", "legend.fontsize", "legend.title_fontsize", "font.size",
            "axes.labelsize", "axes.titlesize", "figure.titlesize")
    smallest = min(plt.rcParams[k] for k in keys)
    assert smallest >= MIN_FONT_PT >= 9 and MIN_FONT_PT * DPI / 72 >= 12.0   # 9 CSS pt = 12 CSS px at 100 %


def test_small_text_a_cell_asked_for_is_raised_to_the_minimum():
    setup_plots()
    fig, ax = panels(1)
    ax.plot([0, 1], [0, 1], label="line")
    ax.tick_params(labelsize=6)
    ax.text(0.5, 0.5, "note", fontsize=7)
    leg = ax.legend(fontsize=7)
    assert enforce_min_font(fig) >= 3
    fig.canvas.draw()                                          # ticks made at draw time get the size too
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= MIN_FONT_PT
    assert leg.get_texts()[0].get_fontsize() == MIN_FONT_PT
    assert all(t.get_fontsize() >= MIN_FONT_PT for t in ax.get_xticklabels() + ax.get_yticklabels())
    assert enforce_min_font(fig) == 0                          # nothing left to raise
    plt.close(fig)


def test_too_many_columns_refused():
    with pytest.raises(ValueError, match="at most two panels per row"):
        panels(3, ncols=3)


def _demo_notebook(path):
    nb = new_notebook(cells=[
        new_code_cell("x = 1"),
        new_code_cell("fig, ax = panels(1)\nax.plot([0, 1])\nplt.show()  ",
                      metadata={"mystnb": {"figure": {"name": "fig-demo-line", "caption": "A line."}}}),
    ])
    path.write_text(json.dumps(nb))
    return nb


def test_a_labelled_cell_s_figure_is_written_as_svg_under_its_label(tmp_path):
    nb = _demo_notebook(tmp_path / "demo.ipynb")
    assert figure_labels(tmp_path / "demo.ipynb") == {nb.cells[1].source.strip(): "fig-demo-line"}
    out = tmp_path / "figs"
    export_figures("demo", out, notebook=tmp_path / "demo.ipynb")
    try:
        setup_plots()
        start_cell("x = 1")                                    # an unlabelled cell: nothing written
        fig, ax = panels(1)
        ax.plot([0, 1])
        assert on_display(fig) is None
        start_cell(nb.cells[1].source + "\n")                   # the kernel's copy may differ in trailing blanks
        assert on_display(fig) == out / "fig-demo-line.svg"
        assert on_display(fig) == out / "fig-demo-line-2.svg"   # a second figure of the same cell
        first = (out / "fig-demo-line.svg").read_bytes()
        assert first.startswith(b"<?xml") and b"<svg" in first and b"fig-demo-line" in first
        assert not re.search(rb"<dc:date>", first), "a date would change the file on every rerun"
        assert sorted(p.name for p in out.iterdir()) == ["fig-demo-line-2.svg", "fig-demo-line.svg"]  # no temp files
        assert save_svg(fig, tmp_path / "fig-demo-line.svg").read_bytes() == first   # the same bytes on a rerun
        plt.close(fig)
    finally:
        export_figures("demo", None)
    assert figures._EXPORT.out_dir is None and figures._EXPORT.labels == {}


def test_svg_is_written_atomically(tmp_path, monkeypatch):
    fig, ax = panels(1)
    (tmp_path / "fig-x.svg").write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_svg(fig, tmp_path / "fig-x.svg")
    assert (tmp_path / "fig-x.svg").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["fig-x.svg"]
    plt.close(fig)


def test_alt_text_is_a_sentence_from_the_caption_not_a_path():
    caption = ("Gauss–Newton spike $\\Lambda_{\\mathrm{GN}}$ against the efficacy $\\lVert\\Delta f\\rVert$ as the number "
               "of clones $m$ grows (see {numref}`fig-ch1-overlap`; {prf:ref}`the law <prop-ch1-law>`): direct "
               "solves and the closed form $R_k\\,\\lVert\\Delta f\\rVert^2$. Each line has slope 2. "
               "Run: {glue:text}`ch01_krr_clones_run`.")
    alt = alt_text(caption)
    assert alt.startswith("Gauss–Newton spike Λ_GN against the efficacy ‖Δ f‖ as the number of clones m grows")
    assert "R_k ‖Δ f‖²" in alt and "the law" in alt and "prop-ch1-law" not in alt
    assert alt.endswith("closed form R_k ‖Δ f‖².") and "slope" not in alt and "Run" not in alt   # enough said
    assert not set(alt) & set("${}\\`") and not re.search(r"\.(png|svg)\b|/", alt.replace("‖", ""))
    assert alt_text("Short. Run: {glue:text}`x_run`.") == "Short."
    long = alt_text("A " + "very " * 100 + "long caption.")
    assert len(long) <= 300 and long.endswith("…")


def test_tex_to_text():
    assert tex_to_text(r"w^{-1/2}") == "w^(-1/2)"
    assert tex_to_text(r"u^\top H u") == "uᵀ H u"
    assert tex_to_text(r"\frac{1}{2}\,\sqrt{d}\,x^{10}") == "1/2 √(d) x¹⁰"
    assert tex_to_text(r"\kappa_{\text{paper}} \le 10^4") == "κ_paper ≤ 10⁴"


def test_every_chapter_figure_gets_a_real_sentence():
    for f in figure_index():
        alt = alt_text(f["caption"])
        assert len(alt) >= 20 and not set(alt) & set("${}\\`"), (f["name"], alt)
