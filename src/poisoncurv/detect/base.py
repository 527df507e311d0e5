"""What every detector shares: input checks, per-class index sets and the result type."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A detector's verdict: ``scores`` ``(N,)`` (larger is more suspicious; comparable within a class) and
    ``flags`` ``(N,)`` bool (the samples it removes); ``method`` names the detector and its options."""

    scores: np.ndarray
    flags: np.ndarray
    method: str


def as_inputs(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``features`` as float64 ``(N, p)`` and ``labels`` as int64 ``(N,)``; ``ValueError`` naming the bad argument."""
    F = features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if F.ndim != 2 or F.shape[0] == 0 or F.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, p) array, got shape {F.shape}")
    if y.shape != (F.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({F.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    F = F.astype(np.float64)
    if not np.isfinite(F).all():
        raise ValueError("features must be finite")
    return F, y.astype(np.int64)


def check_eps(eps: float) -> float:
    """The poison fraction ``eps`` in ``(0, 2/3]`` (so that ``1.5·eps`` of a class is at most the class)."""
    if not 0 < eps <= 2 / 3:
        raise ValueError(f"eps (the poison fraction) must lie in (0, 2/3], got {eps}")
    return float(eps)


def classes(labels: np.ndarray, min_size: int = 2) -> Iterator[np.ndarray]:
    """Indices of each class with at least ``min_size`` members (smaller classes are left unscored)."""
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if idx.size >= min_size:
            yield idx


def top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Bool mask of the ``⌈fraction·n⌉`` largest of ``scores`` ``(n,)`` (ties broken by position)."""
    k = min(scores.size, math.ceil(fraction * scores.size - 1e-9))
    mask = np.zeros(scores.size, dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def pca(F: np.ndarray, dim: int) -> np.ndarray:
    """Centred ``F`` ``(n, p)`` projected on its top ``min(dim, n−1, p)`` principal directions: ``(n, k)``."""
    R = F - F.mean(0)
    _, _, Vt = np.linalg.svd(R, full_matrices=False)
    k = max(1, min(dim, F.shape[0] - 1, F.shape[1]))
    return R @ Vt[:k].T
