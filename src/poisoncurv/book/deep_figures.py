"""The training-curve figures of the deep chapters (6 and 7): one panel per attack at its lag θ, each line the mean over
the seed runs of :func:`poisoncurv.chapters.deep_runs.band` with its spread as a band. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from poisoncurv.book.figures import panels, plot_band
from poisoncurv.chapters import deep_runs as dr
from poisoncurv.chapters.gallery import Gallery

HEIGHT_IN = 2.4


def _attack_panels(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> tuple[Any, list[tuple[Any, str, float]]]:
    """The figure and ``(axes, attack, lag θ)`` per attack, each panel titled and with epochs on x."""
    fig, axes = panels(len(attacks), height_in=HEIGHT_IN)
    out = []
    for ax, attack in zip(np.atleast_1d(axes), attacks):
        th = dr.lag_theta(runs, groups, attack)
        ax.set_title(f"{attack}, θ = {th:g}", fontsize=10)
        ax.set_xlabel("epoch")
        out.append((ax, attack, th))
    return fig, out


def _finish(fig: Any, panels_: list[tuple[Any, str, float]]) -> Any:
    panels_[0][0].legend(frameon=False, fontsize=8)
    return fig


def success(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> Any:
    """ASR, clean and robust accuracy over training; a dotted line at the ASR that counts as success."""
    fig, ps = _attack_panels(runs, groups, attacks)
    for ax, attack, th in ps:
        for key, label in (("asr", "ASR"), ("clean_acc", "clean acc."), ("robust_acc", "robust acc.")):
            b = dr.band(runs, groups, attack, th, dr.metric(key))
            plot_band(ax, b.t, b.mean, b.lo, b.hi, label=label)
        ax.axhline(dr.ASR_SUCCESS, color="k", lw=0.7, ls=":")
        ax.set_ylim(-0.02, 1.02)
    return _finish(fig, ps)


def top_eigen(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> Any:
    """λ₁ of the input Hessian at triggered (solid) and clean (dashed) inputs, poisoned model against clean model (log y)."""
    fig, ps = _attack_panels(runs, groups, attacks)
    for ax, attack, th in ps:
        for probe, ls in (("trig", "-"), ("clean", "--")):
            for theta, col in ((th, "C3"), (0.0, "C0")):
                b = dr.band(runs, groups, attack, theta, dr.metric(f"{probe}_top", 0))
                plot_band(ax, b.t, b.mean, b.lo, b.hi, color=col, ls=ls,
                          label=f"{'poisoned' if theta else 'clean model'}, {dr.PROBE_SETS[probe]}")
        ax.set_yscale("log")
    return _finish(fig, ps)


def alignment(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> Any:
    """Overlap of the top eigenvector and top-k mass along the poison direction, at triggered and clean inputs; a dotted
    line at ½."""
    fig, ps = _attack_panels(runs, groups, attacks)
    for ax, attack, th in ps:
        for key, label in (("trig_overlap", "overlap (trig)"), ("trig_mass", "mass (trig)"),
                           ("clean_overlap", "overlap (clean)"), ("clean_mass", "mass (clean)")):
            b = dr.band(runs, groups, attack, th, dr.metric(key))
            plot_band(ax, b.t, b.mean, b.lo, b.hi, label=label, ls="-" if "trig" in key else "--")
        ax.axhline(0.5, color="k", lw=0.7, ls=":")
        ax.set_ylim(-0.02, 1.02)
    return _finish(fig, ps)


def curvature_ratio(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> Any:
    """``uᵀHu`` of the poisoned model over the clean model's, at triggered and clean inputs (log y); a dotted line at the
    ratio that counts as visible."""
    fig, ps = _attack_panels(runs, groups, attacks)
    for ax, attack, th in ps:
        for probe, ls in (("trig", "-"), ("clean", "--")):
            b = dr.band(runs, groups, attack, th, dr.ratio_metric(probe))
            plot_band(ax, b.t, b.mean, b.lo, b.hi, ls=ls, label=dr.PROBE_SETS[probe])
        ax.axhline(dr.CURV_RATIO_VISIBLE, color="k", lw=0.7, ls=":")
        ax.set_yscale("log")
    return _finish(fig, ps)


def feature_distances(runs: dr.ChapterRuns, groups: Sequence[str], attacks: Sequence[str]) -> Any:
    """Penultimate-feature distances in units of the within-class spread σ_w: triggered inputs to the poisons' mean and
    to the target class's mean, target images to their own mean, and (dotted) triggered inputs to the target mean in
    the clean model."""
    fig, ps = _attack_panels(runs, groups, attacks)
    for ax, attack, th in ps:
        for key, label in (("feat_trig_to_poison", "trig → poison mean"), ("feat_trig_to_target", "trig → target mean"),
                           ("feat_target_to_target", "target → target mean")):
            b = dr.band(runs, groups, attack, th, dr.metric(key))
            plot_band(ax, b.t, b.mean, b.lo, b.hi, label=label)
        b = dr.band(runs, groups, attack, 0.0, dr.metric("feat_trig_to_target"))
        ax.plot(b.t, b.mean, "k:", label="clean model: trig → target")
        ax.set_ylabel(r"distance / $\sigma_w$")
    return _finish(fig, ps)


def triggers(gal: Gallery | None, attacks: Sequence[str]) -> Any:
    """Top: one test image with each attack's trigger (grey for one channel); bottom: the poison direction ``u``
    (red positive, blue negative). Empty panels without a copy of the data set."""
    fig, axes = plt.subplots(2, len(attacks), figsize=(6.7, 3.7), squeeze=False)
    for j, attack in enumerate(attacks):
        if gal is not None:
            img = gal.triggered[attack]
            axes[0, j].imshow(img, **({"cmap": "gray_r", "vmin": 0, "vmax": 1} if img.ndim == 2 else {}))
            lim = np.abs(gal.direction[attack]).max()
            axes[1, j].imshow(gal.direction[attack], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, j].set_title(attack, fontsize=9)
    for ax in axes.ravel():
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
    axes[0, 0].set_ylabel("triggered")
    axes[1, 0].set_ylabel("direction $u$")
    return fig
