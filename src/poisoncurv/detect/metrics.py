"""Scores of detectors: TPR and FPR at their flags, ROC-AUC of their scores (exact Mann-Whitney, ties averaged)."""

from __future__ import annotations

from typing import Any

import numpy as np

from poisoncurv.core import stats


def _truth(is_poison: Any, n: int) -> np.ndarray:
    t = np.asarray(is_poison)
    if t.shape != (n,) or t.dtype != bool:
        raise ValueError(f"is_poison must be a bool array of shape ({n},), got {t.dtype} {t.shape}")
    if t.all() or not t.any():
        raise ValueError("is_poison must mark at least one poisoned and one clean sample")
    return t


def rates(flags: Any, is_poison: Any) -> tuple[float, float]:
    """``(TPR, FPR)``: the fraction of poisons flagged and of clean samples flagged."""
    f = np.asarray(flags)
    if f.ndim != 1 or f.dtype != bool:
        raise ValueError(f"flags must be a 1-d bool array, got {f.dtype} {f.shape}")
    t = _truth(is_poison, len(f))
    return float(f[t].mean()), float(f[~t].mean())


def roc_auc(scores: Any, is_poison: Any) -> float:
    """Area under the ROC curve of ``scores`` ``(n,)`` for the positives ``is_poison``: the Mann-Whitney
    probability that a poison outscores a clean sample, ties counted one half (average ranks)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.isfinite(s).all():
        raise ValueError(f"scores must be a finite 1-d array, got shape {s.shape}")
    t = _truth(is_poison, len(s))
    return stats.auroc(s[~t], s[t])


def model_auroc(clean_scores: Any, poisoned_scores: Any) -> float:
    """ROC-AUC of a model-level score over clean models (negatives) and poisoned models (positives)."""
    c, p = np.ravel(np.asarray(clean_scores, dtype=np.float64)), np.ravel(np.asarray(poisoned_scores, dtype=np.float64))
    if c.size == 0 or p.size == 0:
        raise ValueError(f"need at least one clean and one poisoned model, got {c.size} clean_scores and {p.size} poisoned_scores")
    return roc_auc(np.concatenate([c, p]), np.concatenate([np.zeros(c.size, bool), np.ones(p.size, bool)]))
