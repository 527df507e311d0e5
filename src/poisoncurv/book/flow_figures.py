"""The figures of Chapter 3 (input-gradient regularisation under gradient flow), one function a figure; each returns
the figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from poisoncurv.book.figures import panel_label, panels
from poisoncurv.chapters.gradient_flow_defence import ClusterEnergy, Contraction, DfSweep, IsolatedClones, RidgeFrontier, TwoPenalties


def two_penalties(tp: TwoPenalties) -> Any:
    """(a) The effective ridge of the loss-gradient minimisers against the model-gradient penalty; (b) the
    poison efficacy at those minimisers."""
    fig, axes = panels(2, height_in=3.0)
    axes[0].plot(tp.kappa, tp.kappa, "k-", lw=1)
    axes[0].plot(tp.kappa, tp.mu, "o", mfc="none")
    axes[0].plot(tp.kappa, tp.mu_global, "x")
    axes[0].set(xscale="log", yscale="log", xlabel=r"$\kappa$", ylabel=r"effective ridge $\mu$")
    axes[1].plot(tp.ridge_kappa, tp.ridge_efficacy, "k-", lw=1, label="model-gradient")
    axes[1].plot(tp.kappa, tp.efficacy, "o", mfc="none", label="loss-gradient, L-BFGS")
    axes[1].plot(tp.kappa, tp.efficacy_global, "x", label="loss-gradient, global")
    axes[1].set(xscale="log", xlabel=r"$\kappa$", ylabel=r"efficacy $w\cdot t$")
    axes[1].legend(loc="lower left")
    for ax, letter in zip(axes, "ab"):
        panel_label(ax, letter)
    return fig


def df_sweep(sw: DfSweep) -> Any:
    """Regularised KRR against κ: (a) degrees of freedom, (b) residual and data term, (c) the poisons' prediction
    shift at a triggered query."""
    fig, axes = panels(3, height_in=2.6)
    axes[0].plot(sw.kappa, sw.df, "-")
    axes[0].set(xscale="log", xlabel=r"$\kappa$", ylabel=r"$\mathrm{df}(\kappa)$")
    axes[1].plot(sw.kappa, sw.residual, "-", label=r"residual $R$")
    axes[1].plot(sw.kappa, sw.data_term, "--", label=r"$R + n\lambda\|f\|^2_{\mathcal{H}}$")
    axes[1].set(xscale="log", yscale="log", xlabel=r"$\kappa$")
    axes[1].legend()
    axes[2].plot(sw.kappa_eff, sw.efficacy, "o-", ms=3)
    axes[2].set(xscale="log", xlabel=r"$\kappa$", ylabel=r"$\Delta f(x_0)$")
    for ax, letter in zip(axes, "abc"):
        panel_label(ax, letter)
    return fig


def contraction(co: Contraction) -> Any:
    """Gradient flow in feature coordinates: (a) energy along chosen Hessian eigenvectors, simulated, exact and
    bound; (b) every eigenvector's rate against its penalty energy, coloured by its poison share."""
    fig, axes = panels(2, ncols=1, height_in=3.0)
    order = np.flatnonzero(co.ok)[np.argsort(co.mu[co.ok])]
    picks = [order[int(q * (len(order) - 1))] for q in (0.3, 0.6, 0.85, 1.0)]
    picks.append(int(np.argmax(np.where(co.ok, co.poison_share, -1))))
    for i in dict.fromkeys(picks):
        line, = axes[0].plot(co.times, np.exp(-2 * co.mu[i] * co.times), "-", lw=1)
        axes[0].plot(co.times[::5], co.E_rel[::5, i], "o", ms=3, color=line.get_color(), mfc="none",
                     label="poison-dominated mode" if i == picks[-1] else None)
        axes[0].plot(co.times, np.exp(-2 * co.bound[i] * co.times), ":", lw=1, color=line.get_color())
    axes[0].set(yscale="log", ylim=(1e-12, 2), xlabel="time $t$", ylabel=r"$E_v(t)/E_v(0)$")
    axes[0].legend(loc="lower left")
    sc = axes[1].scatter(co.a, co.mu, c=co.poison_share, cmap="coolwarm", vmin=0, vmax=1, s=14)
    aa = np.linspace(0, co.a.max(), 50)
    axes[1].plot(aa, co.lam + co.kappa * aa, "k--", lw=1, label=r"$\lambda + \kappa\,v^\top F v$")
    axes[1].set(xlabel=r"penalty energy $v^\top F v$", ylabel=r"rate $\mu_v$")
    axes[1].legend(loc="upper left")
    fig.colorbar(sc, ax=axes[1], label="poison share of $E_v(0)$")
    for ax, letter in zip(axes, "ab"):
        panel_label(ax, letter)
    return fig


def bound_violations(co: Contraction) -> Any:
    """The fraction of directions of each kind for which the reviewed bound fails."""
    fig, ax = panels(1, height_in=2.2)
    names = ["random unit directions", "eigenvectors of $F$", "eigenvectors of $H$", r"eigenvectors of $\nabla^2 J$"]
    fractions = [co.frac_random, co.frac_fisher_penalty, co.frac_fisher_data, co.frac_hessian]
    ax.barh(names[::-1], fractions[::-1], color=["C2", "C1", "C1", "C0"])
    ax.set(xlim=(0, 1), xlabel="fraction violating the reviewed bound")
    return fig


def tight_cluster(cl: ClusterEnergy) -> Any:
    """Penalty energy per unit RKHS norm of a clustered poison against its spread: exact ratio and
    small-spread law."""
    fig, ax = panels(1, height_in=3.0)
    ax.plot(cl.spread, cl.ratio, "o", mfc="none", label=r"$\mathbf{1}^\top G \mathbf{1} / \mathbf{1}^\top K \mathbf{1}$")
    ax.plot(cl.spread, cl.law, "k-", lw=1, label=r"$s^2\sum_a|u_a-\bar u|^2/\ell^4$")
    ax.set(xscale="log", yscale="log", xlabel=r"cluster spread $s/\ell$", ylabel="penalty energy per unit norm")
    ax.legend()
    return fig


def frontier(fr: RidgeFrontier, tp: TwoPenalties) -> Any:
    """(a) Poison efficacy against clean fit as κ varies (closed form, simulated flow, loss-gradient minimisers);
    (b) each mode's contraction factor against κ, the poison mode on the clean mode of equal eigenvalue."""
    fig, axes = panels(2, ncols=1, height_in=3.0)
    axes[0].plot(fr.r2_th, fr.eff_th / fr.eff_unreg, "-", color="k", lw=1, label="closed-form flow")
    axes[0].plot(fr.r2_sim, fr.eff_sim / fr.eff_unreg, "o", mfc="none", label="simulated flow")
    axes[0].plot(tp.r2, tp.efficacy / fr.eff_unreg, "s", ms=5, mfc="none", label="loss-gradient $J$: L-BFGS")
    axes[0].plot(tp.r2_global, tp.efficacy_global / fr.eff_unreg, "x", label="loss-gradient $J$: global")
    axes[0].set(xlabel="clean fit (population $R^2$)", ylabel="efficacy / unregularised")
    axes[0].legend(loc="upper left")
    colours = plt.get_cmap("viridis")(np.log(fr.h / fr.h.min()) / np.log(fr.h.max() / fr.h.min()))
    for j in range(len(fr.h)):
        if j != fr.k_eq:
            axes[1].plot(fr.kappa, fr.factor_clean_all[:, j], "-", lw=0.8, color=colours[j])
    axes[1].plot(fr.kappa, fr.factor_clean_eq, "k-", lw=2.5, alpha=0.4, label="clean mode, $h = h_p$")
    axes[1].plot(fr.kappa, fr.factor_poison, "r.", ms=6, label=r"poison mode $\hat t$")
    axes[1].set(xscale="log", xlabel=r"$\kappa$", ylabel="fit / unregularised")
    axes[1].legend(loc="lower left")
    for ax, letter in zip(axes, "ab"):
        panel_label(ax, letter)
    return fig


def isolated_clones(iso: IsolatedClones) -> Any:
    """An isolated cluster of exact clones: the poison's prediction kept for every κ while the clean mode of
    nearly equal eigenvalue and the clean fit shrink."""
    fig, ax = panels(1, height_in=3.0)
    ax.plot(iso.kappa, iso.poison_factor, "r.-", label=r"poison: $f_\kappa(\zeta)/f_0(\zeta)$")
    ax.plot(iso.kappa, iso.clean_eq_factor, "k-", label="clean mode of nearly equal eigenvalue")
    ax.plot(iso.kappa, iso.clean_fit_factor, "k--", label=r"clean fit $\|f_\kappa(X_c)\|/\|f_0(X_c)\|$")
    ax.set(xscale="log", yscale="log", xlabel=r"$\kappa$", ylabel="kept / unpenalised")
    ax.legend(loc="lower left")
    return fig
