"""Law-against-measurement figures of the kernel chapters (1 and 2): per kernel, the direct solves as open markers and
the closed form as a thin line in the same colour (:func:`measured_and_law`). Every figure function returns the figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from numpy.typing import ArrayLike

from poisoncurv.book.figures import panel_label, panels
from poisoncurv.chapters.krr_clones import ExactSweep
from poisoncurv.chapters.near_clones import NearCloneLaws


def measured_and_law(ax: Any, x: ArrayLike, measured: ArrayLike, law: ArrayLike, marker: str,
                     label: str | None = None, law_label: str | None = None, x_law: ArrayLike | None = None) -> None:
    """``measured`` against ``x`` as open ``marker``s, then ``law`` against ``x_law`` (default ``x``) as a thin line in
    the markers' colour."""
    ax.plot(x, measured, marker, mfc="none", label=label)
    ax.plot(x if x_law is None else x_law, law, "-", lw=1, color=ax.lines[-1].get_color(), label=law_label)


def spike_vs_efficacy(exact: ExactSweep) -> Any:
    """Chapter 1: the Gauss–Newton spike against the efficacy per kernel, direct solves and the closed form
    ``R_k‖Δf‖²`` (log-log), the legend outside on the right."""
    fig, ax = panels(1, height_in=3.6)
    for (name, e), mk in zip(exact.by_kernel.items(), "osd"):
        measured_and_law(ax, e.shift_meas, e.spike_meas, e.spike_pred, mk, label=f"{name}", x_law=e.shift_pred)
    ax.plot([], [], "k-", lw=1, label=r"closed form $R_k\,\|\Delta f\|^2$")
    ax.set(xscale="log", yscale="log", xlabel=r"efficacy $\|\Delta f(x_0)\|$", ylabel=r"spike $\Lambda_{GN}(x_0)$")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def near_clone(law: NearCloneLaws) -> Any:
    """Chapter 2: (a) efficacy and (b) spike against the near-clone distance ``r/ℓ`` per kernel, direct solves and
    closed form."""
    fig, axes = panels(2, height_in=3.0)
    for (name, e), mk in zip(law.by_kernel.items(), "os"):
        for ax, meas, pred in ((axes[0], e.eff, e.eff_pred), (axes[1], e.spike, e.spike_pred)):
            measured_and_law(ax, e.r_over_ell, meas, pred, mk, label=f"{name}: direct solve", law_label=f"{name}: closed form")
    axes[0].set(xscale="log", ylim=(0, 1.05), xlabel=r"$r/\ell$", ylabel=r"efficacy $\|\Delta f(x_0)\|$")
    axes[1].set(xscale="log", yscale="log", xlabel=r"$r/\ell$", ylabel=r"spike $\Lambda_{GN}(x_0)$")
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    axes[0].legend(loc="lower left")
    return fig
