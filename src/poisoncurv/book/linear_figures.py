"""The figures of Chapter 5 (linear models on MNIST), drawn from the results of :mod:`poisoncurv.chapters.linear_mnist`:
the trigger, the training curves of the θ and amplitude sweeps, the curvature law, the κ sweep and the safety–efficacy
plane. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from poisoncurv.book.defence_figures import PlanePanel, safety_planes
from poisoncurv.book.figures import panels
from poisoncurv.chapters import linear_mnist as ex
from poisoncurv.lab.attacks import cross_pattern

FRONTIER_METHODS = (("input-gradient κ", "o-"), ("weight decay", "s-"), ("early stopping", ".:"))


def trigger(digits: Any | None) -> Any:
    """A clean test image, the same image with the cross trigger, and the trigger alone; the first two panels are empty
    without a copy of MNIST (``digits=None``)."""
    t = cross_pattern((1, 28, 28))[0].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.4))
    if digits is not None:
        x0 = digits.x_test[0, 0].numpy() / 255.0
        axes[0].imshow(x0, cmap="gray_r", vmin=0, vmax=1)
        axes[1].imshow(x0 + t, cmap="gray_r", vmin=0, vmax=1)
    axes[2].imshow(t, cmap="gray_r", vmin=0, vmax=1)
    for ax, title in zip(axes, ["clean test image", "with the trigger", "trigger $t$ (9 pixels)"]):
        ax.set(title=title, xticks=[], yticks=[])
        ax.grid(False)
    return fig


def dynamics(runs: dict[str, list[dict[str, Any]]], thetas: Sequence[float], asr_success: float) -> Any:
    """A row per loss: ASR (left, a dotted line at ``asr_success``) and the top-1 overlap with the trigger (right, a
    dotted line at ½) over the epochs of each run of the θ sweep, coloured by θ (viridis over ``thetas``)."""
    fig, axes = panels(4, height_in=2.5)
    axes = axes.reshape(2, 2)
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(thetas)))
    for row, loss in enumerate(ex.LOSSES):
        for r, c in zip(runs[loss], colors):
            ep = ex.series(r, "epoch")
            lab = f"θ = {r['config']['theta']:g}"
            axes[row, 0].plot(ep, ex.series(r, "asr"), color=c, label=lab)
            axes[row, 1].plot(ep, ex.series(r, "overlap"), color=c, label=lab)
        axes[row, 0].axhline(asr_success, color="k", lw=0.8, ls=":")
        axes[row, 1].axhline(0.5, color="k", lw=0.8, ls=":")
        axes[row, 0].set(ylabel=f"{loss}\nASR", ylim=(-0.02, 1.02))
        axes[row, 1].set(ylabel=r"$\langle v_1, u\rangle^2$", ylim=(-0.02, 1.02))
    axes[0, 0].set_title("attack success rate")
    axes[0, 1].set_title("top-1 overlap with the trigger")
    axes[1, 0].set_xlabel("epoch")
    axes[1, 1].set_xlabel("epoch")
    axes[0, 1].legend(*axes[0, 0].get_legend_handles_labels(), frameon=False, fontsize=9, loc="upper right")
    return fig


def amplitude(amp_runs: dict[str, list[tuple[Any, dict[str, Any]]]]) -> Any:
    """A panel per loss: the top-1 overlap (solid) and ASR (dotted) over the epochs of each run of the amplitude
    sweep, coloured by the amplitude ``a`` (plasma); a dashed line at ½."""
    fig, axes = panels(2, height_in=3.0)
    for ax, loss in zip(axes, ex.LOSSES):
        for (_, r), col in zip(amp_runs[loss], plt.cm.plasma(np.linspace(0, 0.8, len(amp_runs[loss])))):
            ax.plot(ex.series(r, "epoch"), ex.series(r, "overlap"), color=col, label=f"a = {r['config']['amplitude']:g}")
            ax.plot(ex.series(r, "epoch"), ex.series(r, "asr"), color=col, ls=":", lw=1)
        ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.set(title=ex.LOSS_NAMES[loss], xlabel="epoch", ylabel=r"overlap (solid), ASR (dotted)", ylim=(-0.02, 1.02))
    axes[0].legend(frameon=False, fontsize=9)
    return fig


def law(law: ex.LawPoints) -> Any:
    """A panel per loss: measured curvature along the trigger against the law's prediction (both over λ_clean, log-log),
    visible runs in red; the identity as a dashed line, 1 as a dotted one."""
    fig, axes = panels(2, height_in=3.0)
    for ax, loss in zip(axes, ex.LOSSES):
        xs, ys, vis = law.predicted[loss], law.measured[loss], law.visible[loss]
        ax.scatter(xs[~vis], ys[~vis], s=10, c="tab:blue", label="not visible")
        ax.scatter(xs[vis], ys[vis], s=10, c="tab:red", label="visible")
        lim = np.array([min(xs.min(), ys.min()), max(xs.max(), ys.max())])
        ax.plot(lim, lim, "k--", lw=0.8, label="curvature = $R_k|\\Delta f|^2$")
        ax.axhline(1, color="gray", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", title=ex.LOSS_NAMES[loss],
               xlabel=r"$R_k\|\Delta f\|^2 / \lambda_{\mathrm{clean}}$", ylabel=r"$u^\top H u / \lambda_{\mathrm{clean}}$")
    axes[0].legend(frameon=False, fontsize=9)
    return fig


def kappa(kappa: ex.KappaResult) -> Any:
    """Backdoor margin, clean accuracy and input curvature (along the trigger; top eigenvalue faint) against κ_paper, a
    line per loss; κ = 0 drawn one decade left of the smallest penalty."""
    kp = kappa.curves[ex.LOSSES[0]].kappa_paper
    kx = np.where(kp == 0, kp[1] / 10, kp)   # kappa = 0 drawn one decade left of the smallest penalty
    fig, axes = panels(3, height_in=2.9)
    for (loss, c), m, col in zip(kappa.curves.items(), ("o-", "s--"), ("C0", "C1")):
        axes[0].plot(kx, c.margin, m, color=col, label=loss)
        axes[1].plot(kx, c.clean_acc, m, color=col, label=loss)
        axes[2].plot(kx, np.maximum(c.curv_along, 1e-6), m, color=col, label=f"{loss}: along trigger")
        axes[2].plot(kx, c.hess_top, m, color=col, alpha=0.35, label=f"{loss}: top eigenvalue")
    axes[0].set(xscale="log", xlabel=r"$\kappa_{\mathrm{paper}}$ (leftmost point: $\kappa = 0$)",
                ylabel="backdoor margin", title="(a)", ylim=(-0.05, 1.05))
    axes[1].set(xscale="log", xlabel=r"$\kappa_{\mathrm{paper}}$", ylabel="clean test accuracy", title="(b)", ylim=(0, 1))
    axes[2].set(xscale="log", yscale="log", xlabel=r"$\kappa_{\mathrm{paper}}$", ylabel="input curvature", title="(c)")
    axes[0].legend(frameon=False, fontsize=9)
    axes[2].legend(frameon=False, fontsize=9, loc="lower left")
    return fig


def frontier(front: ex.Frontier) -> Any:
    """The safety–efficacy plane (:func:`~poisoncurv.book.defence_figures.safety_planes`), a panel per loss: every
    defended model of each method (a line through a method's settings)."""
    planes = [PlanePanel(loss, front.clean_acc[loss],
                         [(method, m, [p.asr for p in pts], [p.clean_acc for p in pts])
                          for method, m in FRONTIER_METHODS
                          for pts in [[p for p in front.points if p.model == loss and p.family == method]]])
              for loss in ex.LOSSES]
    return safety_planes(planes, height_in=3.0, ylabel="clean test accuracy", ylim=(0, 1), legend_loc="lower right")
