"""The point of every safety–efficacy frontier: one defended model as its ASR against its clean accuracy.

Chapter 5's :class:`~poisoncurv.chapters.linear_mnist.Frontier` (one model per setting, judged against the clean
model) and Chapter 8's :class:`~poisoncurv.chapters.detectors_cnn.DefenceResult` (defences judged per cell over seeds,
each seed's model against the undefended model of the same seed) both hold :class:`SafetyPoint` and draw them on the
same plane. A shared module: it imports no chapter driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from poisoncurv.core import criteria, stats


@dataclass(frozen=True)
class SafetyPoint:
    """One defended model on the safety–efficacy plane: its defence ``family`` (e.g. ``"input-gradient penalty"``,
    ``"weight decay"``, ``"early stopping"``), its ``setting`` (in words, or a number: κ_paper, weight decay or epoch),
    final ``clean_acc`` and ``asr``; filters add the ``tpr``/``fpr`` of their removals; ``n_test`` and ``n_trig`` count
    the test images behind ``clean_acc`` and ``asr``; ``seed``; ``model`` names the model where a chapter has several
    (Chapter 5: its loss), and ``clean_to_target`` is the share of clean non-target test images sent to the target."""

    family: str
    setting: str | float
    clean_acc: float
    asr: float
    tpr: float = math.nan
    fpr: float = math.nan
    n_test: int = 0       # clean test images behind clean_acc
    n_trig: int = 0       # triggered non-target test images behind asr
    seed: int = 0
    model: str = ""
    clean_to_target: float = math.nan

    def cost(self, undefended: SafetyPoint) -> tuple[float, float, float]:
        """Clean accuracy lost against ``undefended`` (the same seed's model), with Newcombe's 95 % interval over the
        test images."""
        return stats.rate_difference_ci(undefended.clean_acc, undefended.n_test, self.clean_acc, self.n_test)

    def asr_interval(self) -> tuple[float, float]:
        """Wilson's 95 % interval of the ASR over the triggered test images."""
        return stats.wilson_ci(self.asr, self.n_trig)

    def call(self, undefended: SafetyPoint) -> str:
        """:func:`~poisoncurv.core.criteria.frontier_call` against ``undefended`` from :meth:`cost` and
        :meth:`asr_interval`."""
        return criteria.frontier_call(self.cost(undefended)[1:], self.asr_interval())
