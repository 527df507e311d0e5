"""The figures of Chapter 8 (detectors across the near-clone boundary), drawn from the results of
:mod:`poisoncurv.chapters.detectors` and :mod:`poisoncurv.chapters.detectors_cnn`: the known-answer check, the kernel
boundary sweep, the detectors on Chapter 6's CNNs, the CNN amplitude sweep, every defence on one frontier and the
adaptive attacker. The ROC-AUC of each sample-level detector against a sweep's axis is one shared panel
(:func:`auroc_per_detector`). Every figure function returns the figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poisoncurv.book.figures import panel_label, panels
from poisoncurv.chapters import detectors_cnn as cx
from poisoncurv.chapters.detectors import BoundarySweep, SyntheticCheck
from poisoncurv.chapters.detectors_cnn import Adaptive, CNNBoundary, CNNDetection, DefenceResult
from poisoncurv.core import criteria
from poisoncurv.detect.suite import DETECTORS
from poisoncurv.lab.attacks import cross_pattern

DETECTOR_MARKERS = "osd^"      # one per sample-level detector, in the order of DETECTORS
FRONTIER_MARKERS = "vo^sDP*"   # one per defence family of the frontier, in order of appearance
CROSS_RGB = (0.84, 0.15, 0.16)      # the cross: red
LOWCURV_RGB = (0.12, 0.47, 0.71)    # the low-curvature trigger: blue


def auroc_per_detector(ax: Any, x: Sequence[float] | np.ndarray, auroc: Mapping[str, np.ndarray]) -> None:
    """Each detector's ROC-AUC ``(len(x), seeds)`` against ``x``: the mean over seeds with ± one standard deviation as
    error bars, open markers :data:`DETECTOR_MARKERS` in the order of ``auroc``, labelled by the detector's name."""
    for (name, v), mk in zip(auroc.items(), DETECTOR_MARKERS):
        ax.errorbar(x, v.mean(1), yerr=v.std(1), fmt=mk + "-", mfc="none", capsize=2, label=name)


def synthetic(syn: SyntheticCheck) -> Any:
    """The known-answer check: each detector's ROC-AUC against the sub-cluster's separation, the QUE score with the
    true clean law (dotted), the null band ½ ± 2 s.d. (grey) and the found threshold (dashed)."""
    fig, ax = panels(1, height_in=3.2)
    auroc_per_detector(ax, syn.separation, syn.auroc)
    ax.plot(syn.separation, syn.oracle_que.mean(1), "k:", label="QUE, true clean law (oracle)")
    ax.axhspan(0.5 - 2 * syn.null_sd, 0.5 + 2 * syn.null_sd, color="0.85", label="null: 1/2 ± 2 s.d. (one seed)")
    ax.axhline(criteria.AUROC_FOUND, color="0.4", ls="--", lw=0.8)
    ax.set(xlabel=r"separation $\Delta$ of the sub-cluster", ylabel="ROC-AUC within the class", ylim=(0.3, 1.02))
    ax.legend(loc="lower right")
    return fig


def boundary(bnd: BoundarySweep) -> Any:
    """Across the near-clone boundary of the kernel model, against the trigger amplitude: (a) each detector's ROC-AUC
    and the input curvature's; (b) the attack's success and the fraction of triggered inputs whose curvature reaches
    the clean bulk edge."""
    fig, axes = panels(2, ncols=1, height_in=2.7, sharex=True)
    auroc_per_detector(axes[0], bnd.a, bnd.auroc)
    axes[0].plot(bnd.a, bnd.curvature_auroc.mean(1), "kx--", label="input curvature (triggered vs clean)")
    axes[0].axhline(0.5, color="0.6", lw=0.8)
    axes[0].set(ylabel="ROC-AUC", ylim=(-0.02, 1.02))
    axes[0].legend(loc="center right", bbox_to_anchor=(1.0, 0.62))
    axes[1].errorbar(bnd.a, bnd.success.mean(1), yerr=bnd.success.std(1), fmt="o-", color="C3", capsize=2,
                     label="attack success")
    axes[1].plot(bnd.a, bnd.visible.mean(1), "kx--", label=r"curvature $\geq\Lambda_{clean}$")
    axes[1].set(xscale="log", xlabel=r"trigger amplitude $a/\ell$ (= poison's distance to its clean source)", ylabel="fraction")
    axes[1].legend(loc="center right")
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig


def cnn(cnn: CNNDetection) -> Any:
    """Each detector's ROC-AUC on Chapter 6's CNNs, a group of bars per attack (mean ± s.d. over the poisoned runs);
    dotted at ½, dashed at the found threshold."""
    fig, ax = panels(1, height_in=3.0)
    attacks, names = list(cnn.runs), list(DETECTORS)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        for i, attack in enumerate(attacks):
            v = cx.sample_auroc(cnn.runs[attack][1], name)
            ax.bar(i + (j - (len(names) - 1) / 2) * width, v.mean(), width, yerr=v.std(), capsize=2,
                   color=f"C{j}", label=name if i == 0 else None)
    ax.axhline(0.5, color="k", lw=0.7, ls=":")
    ax.axhline(criteria.AUROC_FOUND, color="k", lw=0.7, ls="--")
    ax.set(xticks=range(len(attacks)), xticklabels=attacks, ylabel="ROC-AUC (target class)", ylim=(0, 1.05))
    ax.legend(frameon=False, fontsize=8, ncols=2, loc="lower left")
    return fig


def amplitude(amp: CNNBoundary) -> Any:
    """The cross's amplitude on the CNN: (a) the ASR of the poisoned models (mean ± s.d.) and of the clean ones;
    (b) each detector's ROC-AUC and two model-level AUROCs, the legend below."""
    fig, axes = panels(2, ncols=1, height_in=2.6, sharex=True)
    asr = amp.asr()
    axes[0].errorbar(amp.a, asr.mean(1), yerr=asr.std(1), fmt="o-", color="C3", capsize=2, label="ASR, poisoned models")
    axes[0].plot(amp.a, amp.clean_asr().mean(1), "k:", label="ASR, clean models")
    axes[0].axhline(criteria.ASR_SUCCESS, color="0.6", lw=0.8, ls="--")
    axes[0].set(ylabel="ASR", ylim=(-0.02, 1.02))
    axes[0].legend(loc="upper left")
    auroc_per_detector(axes[1], amp.a, {name: amp.auroc(name) for name in DETECTORS})
    axes[1].plot(amp.a, amp.model_auroc("trig_curv_u"), "kx--", label=r"model level: $u^\top Hu$ (known trigger)")
    axes[1].plot(amp.a, amp.model_auroc("clean_outlier"), "k+:", label=r"model level: $\lambda_1/\lambda_2$ (trigger-free)")
    axes[1].axhline(0.5, color="0.6", lw=0.8)
    axes[1].set(xscale="log", xlabel=r"trigger amplitude $a$ (the poison lies $3a$ from its source)", ylabel="ROC-AUC",
                ylim=(-0.02, 1.02))
    axes[1].set_xticks(amp.a, [f"{a:g}" for a in amp.a])
    axes[1].minorticks_off()
    axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2, fontsize=7)
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig


def frontier(fr: DefenceResult) -> Any:
    """Every defence on one (clean accuracy, ASR) plane, (a) whole and (b) zoomed: the undefended models (a star with
    the seeds' range), each family's cells with enough seeds (mean with the seeds' range; early stopping joined by a
    line), the defended ASR (dashed) and the accuracy budget (dotted)."""
    fig, axes = panels(2, ncols=1, height_in=2.7)
    marks = dict(zip(fr.families(), FRONTIER_MARKERS))
    u_acc, u_asr = [u.clean_acc for u in fr.undefended], [u.asr for u in fr.undefended]
    for ax in axes:
        ax.errorbar(fr.clean_acc, fr.asr, xerr=[[fr.clean_acc - min(u_acc)], [max(u_acc) - fr.clean_acc]],
                    yerr=[[fr.asr - min(u_asr)], [max(u_asr) - fr.asr]], fmt="k*", ms=11, elinewidth=0.6, label="undefended")
        for i, fam in enumerate(fr.families()):
            cells = [c for c in fr.cells(fam) if c.n >= criteria.MIN_SEEDS]
            ax.errorbar([c.clean_acc for c in cells], [c.asr for c in cells],
                        xerr=np.array([c.spread("clean_acc") for c in cells]).T,
                        yerr=np.array([c.spread("asr") for c in cells]).T,
                        fmt=marks[fam], color=f"C{i}", mfc="none", ms=7, elinewidth=0.6,
                        ls="-" if fam == "early stopping" else "none", lw=0.6, label=fam)
        ax.axhline(criteria.ASR_DEFENDED, color="0.6", lw=0.8, ls="--")
        ax.axvline(fr.clean_acc - criteria.ACC_BUDGET, color="0.6", lw=0.8, ls=":")
        ax.set(ylabel="ASR", ylim=(-0.03, 1.03))
    axes[0].set(xlabel="clean test accuracy")
    axes[1].set(xlabel="clean test accuracy (zoom)", xlim=(0.935, 0.992))
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=3, fontsize=7)
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig


def adaptive(adv: Adaptive) -> Any:
    """The adaptive attacker: (a) the cross (red) and the low-curvature trigger (blue) on one 28×28 image; (b) per run
    label, the median over seeds of the poisoned model's curvature along the trigger over the clean model's, at
    triggered and at clean inputs (log scale, a line at 1)."""
    fig, axes = panels(2, height_in=2.6)
    img = np.ones((28, 28, 3))
    img[cross_pattern((1, 28, 28))[0].numpy() > 0] = CROSS_RGB
    img[adv.pattern > 0] = LOWCURV_RGB
    axes[0].imshow(img)
    axes[0].set(xticks=[0, 27], yticks=[0, 27])
    labels = list(adv.runs)
    x = np.arange(len(labels))
    axes[1].bar(x - 0.2, [np.median(adv.curv_ratio(k, "trig")) for k in labels], 0.4, label="triggered inputs")
    axes[1].bar(x + 0.2, [np.median(adv.curv_ratio(k, "clean")) for k in labels], 0.4, label="clean inputs")
    axes[1].axhline(1, color="k", lw=0.7)
    axes[1].set(yscale="log", xticks=x, ylabel=r"$u^\top Hu$ / clean model's")
    axes[1].set_xticklabels([k.replace(" θ=", "\n") for k in labels], fontsize=7)
    axes[1].legend(fontsize=7)
    panel_label(axes[0], "a")
    panel_label(axes[1], "b")
    return fig
