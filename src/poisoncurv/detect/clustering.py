"""Activation clustering (Chen et al., 2018).

Per class: reduce the features to ``dim`` (10) dimensions by PCA (the paper used ICA; PCA is used here
because it is deterministic), split them by 2-means (:func:`kmeans2`, seeded k-means++ with restarts), and
flag the smaller cluster when it holds less than ``max_fraction`` (0.35) of the class. The score of a sample
is ``‖z − c_large‖ − ‖z − c_small‖`` in the reduced space: positive exactly on the smaller cluster's side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisoncurv.detect.base import Detection, as_inputs, classes, pca


def kmeans2(Z: np.ndarray, seed: int = 0, restarts: int = 10, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Two-means of ``Z`` ``(n, k)``: labels ``(n,)`` in {0, 1} and centres ``(2, k)``, best of ``restarts`` by inertia."""
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must be (n, k) with n >= 2, got shape {Z.shape}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(restarts):
        first = Z[rng.integers(len(Z))]
        d2 = ((Z - first) ** 2).sum(1)
        second = Z[rng.choice(len(Z), p=d2 / d2.sum())] if d2.sum() > 0 else first
        centres = np.stack([first, second])
        for _ in range(max_iter):
            lab = ((Z[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
            new = np.stack([Z[lab == j].mean(0) if (lab == j).any() else centres[j] for j in range(2)])
            if np.array_equal(new, centres):
                break
            centres = new
        inertia = float(((Z - centres[lab]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, lab, centres)
    assert best is not None  # restarts >= 1
    return best[1], best[2]


def activation_clustering(features: Any, labels: Any, dim: int = 10, max_fraction: float = 0.35, seed: int = 0) -> Detection:
    """Scores ``(N,)`` and flags of activation clustering (flags: the smaller 2-means cluster if under ``max_fraction``)."""
    F, y = as_inputs(features, labels)
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    if not 0 < max_fraction <= 0.5:
        raise ValueError(f"max_fraction must lie in (0, 0.5], got {max_fraction}")
    scores, flags = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    for idx in classes(y, min_size=3):
        Z = pca(F[idx], dim)
        lab, centres = kmeans2(Z, seed)
        small = int(np.sum(lab == 1) < np.sum(lab == 0))
        scores[idx] = np.linalg.norm(Z - centres[1 - small], axis=1) - np.linalg.norm(Z - centres[small], axis=1)
        if np.mean(lab == small) < max_fraction:
            flags[idx] = lab == small
    return Detection(scores, flags, f"activation clustering (PCA to {dim}, 2-means, < {max_fraction:g} of the class)")
