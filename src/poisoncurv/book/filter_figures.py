"""The figures of Chapter 4 (exponential kernels: the gradient penalty as a filter), one function a figure; each
returns the figure."""

from __future__ import annotations

from typing import Any

import numpy as np

from poisoncurv.book.figures import panel_label, panels
from poisoncurv.chapters.exponential_filter import FILTER_GAMMAS, Anisotropy, FourierCheck, LengthLaw, NearCloneSweep
from poisoncurv.krr.spectral_filter import peak_length_slope


def fourier(fc: FourierCheck) -> Any:
    """(a) The filter's gain against frequency per kernel; (b) the effective kernel on finite data against the
    continuum law."""
    fig, axes = panels(2, ncols=1, height_in=2.8)
    for (name, g), gain in fc.gains.items():
        axes[0].plot(fc.w, gain, "-" if name == "gaussian" else "--", color=f"C{FILTER_GAMMAS.index(g)}", label=f"{name}, γ = {g}")
    axes[0].set(xlabel=r"frequency $w\ell$", ylabel=r"gain $S_{\rm eff}/S$", ylim=(0, 1.05))
    axes[0].legend(ncol=2)
    for (k, kt), col in zip(fc.finite.items(), ("C0", "C1", "C2")):
        axes[1].plot(fc.t, fc.continuum[k], color=col, label=f"continuum, γ = {fc.gammas[k]:.2g}")
        axes[1].plot(fc.t[::4], kt[::4], "o", ms=3, color=col)
    axes[1].plot(fc.t, np.exp(-fc.t ** 2 / 2), "k:", lw=1, label="k (no penalty)")
    axes[1].set(xlabel=r"$t/\ell$", ylabel=r"$\tilde k(t, 0)$")
    axes[1].legend()
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig


def length_law(law: LengthLaw) -> Any:
    """The effective length scale against the penalty strength γ: continuum, first order and finite data."""
    fig, ax = panels(1, height_in=3.6)
    g = law.gammas
    ax.plot(g, law.continuum, "k-", lw=1.5, label="continuum (exact $S_{\\rm eff}$)")
    ax.plot(g, law.linear_law, "k--", lw=1, label=r"first order $1 + s_1\gamma$")
    for (h, lc2), mk, ms in zip(law.finite.items(), "osD^", (8, 5, 4, 4)):
        ax.plot(g, lc2, mk, ms=ms, mfc="none", label=f"finite sample, spacing {h}ℓ")
    ax.axvline(law.gamma_10pct, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel=r"penalty strength $\gamma = \kappa N_\ell/(\lambda\ell^2)$",
           ylabel=r"$\ell_c^2/\ell^2$ (d = 1)")
    ax.legend()
    return fig


def anisotropy(an: Anisotropy) -> Any:
    """(a) The effective kernel's contours without and with the penalty around data on a line; (b) the length
    scale along and across the data against γ."""
    fig, axes = panels(2, height_in=3.2)
    gg = an.grid
    for field, ls in ((an.field_0, ":"), (an.field_k, "-")):   # dotted: κ = 0; solid: the largest γ
        axes[0].contour(gg, gg, (field / field.max()).T, levels=[0.25, 0.5, 0.75], linestyles=ls, colors="C0" if ls == ":" else "C3")
    axes[0].plot(gg, 0 * gg, "k.", ms=2)
    axes[0].set(aspect="equal", xlabel=r"$x_1/\ell$", ylabel=r"$x_2/\ell$")
    axes[1].plot(an.gammas, an.along, "o-", label="along the data")
    axes[1].plot(an.gammas, an.across, "s-", label="across the data")
    axes[1].plot(an.gammas, 1 + peak_length_slope(1) * an.gammas, "k--", lw=1, label=r"$1 + s_1\gamma$")
    axes[1].set(xscale="log", xlabel=r"$\gamma$ (line density)", ylabel=r"$\ell_c^2/\ell^2$")
    axes[1].legend()
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig


def near_clones(nc: NearCloneSweep) -> Any:
    """Per kernel (a: Gaussian, b: Laplace), the poison efficacy against κ for each near-clone distance, relative
    to κ = 0 (with the isolated clones for the Gaussian kernel), and the clean error on a twin axis (dashed)."""
    fig, axes = panels(2, ncols=1, height_in=3.0)
    for ax, name, title in ((axes[0], "gaussian", "a"), (axes[1], "laplace", "b")):
        k = nc.kernels[name]
        for i, (rr, e) in enumerate(k.eff.items()):
            ax.plot(nc.kappas, e / e[0], "o-", ms=3, color=f"C{i}", label=f"r = {rr}ℓ")
        if name == "gaussian":
            ax.plot(nc.kappas, nc.isolated_eff / nc.isolated_eff[0], "k:", lw=1.5, label="isolated clones")
        ax.set(xscale="log", xlabel=r"penalty weight $\kappa$", ylabel=r"efficacy $E(\kappa)/E(0)$", ylim=(0, 1.1))
        panel_label(ax, title)
        tw = ax.twinx()
        tw.plot(nc.kappas, k.clean_err, "k--", lw=1.2)
        tw.set_ylabel("clean error (dashed)")
        tw.set_ylim(0, max(1.0, 1.05 * k.clean_err.max()))
        tw.grid(False)
    axes[0].legend(loc="lower left", ncol=2)
    return fig
