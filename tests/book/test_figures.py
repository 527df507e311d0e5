import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from poisoncurv.book.figures import COLUMN_PX, DPI, MIN_FONT_PT, panels, setup_plots  # noqa: E402


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
    smallest = min(plt.rcParams[k] for k in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize", "font.size"))
    assert smallest >= MIN_FONT_PT and MIN_FONT_PT * DPI / 72 >= 11.0   # CSS px at 100 % display


def test_too_many_columns_refused():
    with pytest.raises(ValueError, match="at most two panels per row"):
        panels(3, ncols=3)
