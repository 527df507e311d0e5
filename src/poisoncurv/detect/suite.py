"""All sample-level detectors on one set of features, scored against the known poisons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisoncurv.detect.base import Detection, as_inputs
from poisoncurv.detect.clustering import activation_clustering
from poisoncurv.detect.metrics import rates, roc_auc
from poisoncurv.detect.spectral import spectral_signatures
from poisoncurv.detect.spectre import spectre

SPECTRE_ALPHA = 4.0     # the QUE parameter (Hayase et al. used 4)

DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray, float], Detection]] = {
    "spectral signatures": lambda F, y, eps: spectral_signatures(F, y, eps=eps),
    "spectral (uncentred)": lambda F, y, eps: spectral_signatures(F, y, eps=eps, centred=False),
    "activation clustering": lambda F, y, eps: activation_clustering(F, y),
    "SPECTRE": lambda F, y, eps: spectre(F, y, eps=eps, alpha=SPECTRE_ALPHA),
}


@dataclass(frozen=True)
class DetectorScore:
    """One detector on one training set: ROC-AUC of its scores within ``scored_class``, TPR and FPR of its flags."""

    auroc: float
    tpr: float
    fpr: float


def score_detectors(features: Any, labels: Any, is_poison: Any, eps: float, scored_class: int) -> dict[str, DetectorScore]:
    """Run every detector of :data:`DETECTORS` (each with the known ``eps``) and score it.

    The AUROC is taken within ``scored_class`` (the poisons' label; scores are only comparable within a
    class), TPR and FPR over the whole training set. Returns ``{name: DetectorScore}``.
    """
    F, y = as_inputs(features, labels)
    truth = np.asarray(is_poison, dtype=bool)
    if truth.shape != y.shape:
        raise ValueError(f"is_poison must have shape {y.shape}, got {truth.shape}")
    if not (y[truth] == scored_class).all():
        raise ValueError(f"scored_class {scored_class} must be the label of every poison")
    inside = y == scored_class
    out = {}
    for name, detect in DETECTORS.items():
        det = detect(F, y, eps)
        out[name] = DetectorScore(roc_auc(det.scores[inside], truth[inside]), *rates(det.flags, truth))
    return out
