"""The defence figures: the κ grid and the safety–efficacy plane of the deep chapters (6 and 7), drawn from a
:class:`~poisoncurv.chapters.deep_runs.DefenceResult`; the plane itself (:func:`safety_planes`) is shared with
Chapter 5 (:func:`poisoncurv.book.linear_figures.frontier`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisoncurv.book.figures import panels
from poisoncurv.chapters.deep_runs import DefenceCell, DefenceResult
from poisoncurv.core import criteria

KAPPA_ZERO_AT = 10.0     # where κ = 0 is drawn on the log axis
METHOD_MARKERS = (("κ", "o"), ("κ + augmentation", "s"), ("augmentation", "D"), ("none", "X"), ("weight decay", "^"),
                  ("early stopping", "."))


def _spread(cells: list[DefenceCell], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Means ``(n,)`` and the min/max distance from them ``(2, n)`` of ``field`` over each cell's seeds."""
    vals = [np.array([getattr(p, field) for p in c.points]) for c in cells]
    mean = np.array([v.mean() for v in vals])
    return mean, np.array([mean - [v.min() for v in vals], [v.max() for v in vals] - mean])


def kappa_grid(defence: DefenceResult) -> Any:
    """ASR and clean accuracy against κ_paper, augmentation off and on, per attack: mean over seeds with the range
    of the seeds as bars; a dotted line 2 points below the clean models' accuracy. Returns the figure."""
    fig, axes = panels(2 * len(defence.attacks), height_in=2.4)
    axes = np.atleast_1d(axes)
    for i, attack in enumerate(defence.attacks):
        for aug, m in ((False, "o-"), (True, "s--")):
            cells = [c for c in defence.grid(attack) if c.augment == aug]
            kx = [max(defence.kappa_paper(c.setting), KAPPA_ZERO_AT) for c in cells]
            label = f"augmentation {'on' if aug else 'off'}"
            for ax, field in ((axes[2 * i], "asr"), (axes[2 * i + 1], "clean_acc")):
                mean, err = _spread(cells, field)
                ax.errorbar(kx, mean, yerr=err, fmt=m, capsize=2, label=label)
        axes[2 * i].set(xscale="log", ylabel="ASR", title=attack, ylim=(-0.02, 1.02))
        axes[2 * i + 1].set(xscale="log", ylabel="clean accuracy", title=attack)
        line = defence.clean_acc(attack) - criteria.ACC_DROP_MAX
        axes[2 * i + 1].axhline(line, color="k", lw=0.7, ls=":")
        lo, hi = axes[2 * i + 1].get_ylim()
        axes[2 * i + 1].set_ylim(lo, max(hi, line + 0.05 * (hi - lo)))      # the dotted line clear of the frame
    for ax in axes[-2:]:
        ax.set_xlabel(rf"$\kappa_{{\mathrm{{paper}}}}$ (0 drawn at {KAPPA_ZERO_AT:g})")
    axes[0].legend(frameon=False)
    return fig


@dataclass(frozen=True)
class PlanePanel:
    """One panel of the safety–efficacy plane: its ``title``, the undefended model's ``clean_acc`` (the shaded region
    reaches :data:`~poisoncurv.core.criteria.ACC_DROP_MAX` below it) and ``series``: ``(label, fmt, asr, clean_acc)``
    per defence method, drawn in order."""

    title: str
    clean_acc: float
    series: Sequence[tuple[str, str, Sequence[float], Sequence[float]]]


def safety_planes(planes: Sequence[PlanePanel], *, height_in: float, ylabel: str = "clean accuracy",
                  ylim: tuple[float, float] | None = None, legend_loc: str = "lower left", **line_kw: Any) -> Any:
    """The safety–efficacy plane (ASR on x, clean accuracy on y), one panel per :class:`PlanePanel`: each method's
    points as ``fmt``, the region where a defence counts (ASR ≤ :data:`~poisoncurv.core.criteria.ASR_DEFENDED`,
    clean accuracy within :data:`~poisoncurv.core.criteria.ACC_DROP_MAX` of the undefended model's) shaded green; the
    legend on the first panel. ``line_kw`` goes to every ``plot`` (``ms=5``). Returns the figure."""
    fig, axes = panels(len(planes), height_in=height_in)
    axes = np.atleast_1d(axes)
    for ax, plane in zip(axes, planes):
        for label, fmt, asr, acc in plane.series:
            ax.plot(asr, acc, fmt, label=label, **line_kw)
        acc0 = plane.clean_acc
        ax.fill_between([0, criteria.ASR_DEFENDED], acc0 - criteria.ACC_DROP_MAX, 1, color="tab:green", alpha=0.2, lw=0)
        ax.set(title=plane.title, xlabel="ASR", ylabel=ylabel, xlim=(-0.02, 1.02))
        if ylim is not None:
            ax.set_ylim(ylim)
    axes[0].legend(frameon=False, loc=legend_loc)
    return fig


def safety_plane(defence: DefenceResult) -> Any:
    """Every defence cell as (mean ASR, mean clean accuracy) over its seeds, by method (methods without cells left
    out); the region where a defence counts shaded (:func:`safety_planes`). Returns the figure."""
    planes = []
    for attack in defence.attacks:
        series = []
        for method, m in METHOD_MARKERS:
            cells = [c for c in defence.cells if c.attack == attack and c.method == method]
            if cells:
                series.append((method, m, [c.asr for c in cells], [c.clean_acc for c in cells]))
        planes.append(PlanePanel(attack, defence.clean_acc(attack), series))
    return safety_planes(planes, height_in=3.0, ms=5)
