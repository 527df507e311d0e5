"""Features with a known answer for the detectors: Gaussian classes, one of which may hold a shifted sub-cluster."""

from __future__ import annotations

import numpy as np


def gaussian_mixture(seed: int, separation: float, p: int = 20, n_class: int = 300, eps: float = 0.1,
                     n_classes: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(n_classes·n_class, p)`` of ``N(0, I_p)``, labels ``(N,)`` and the poison mask ``(N,)``.

    The first ``⌊eps·n_class⌋`` samples of the last class are moved by ``separation`` along a random unit
    vector; ``separation = 0`` is an exact mixture in which the "poisons" cannot be told apart.
    """
    if separation < 0:
        raise ValueError(f"separation must be non-negative, got {separation}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n_classes * n_class, p))
    labels = np.repeat(np.arange(n_classes), n_class)
    poison = np.zeros(len(F), dtype=bool)
    start = (n_classes - 1) * n_class
    poison[start:start + int(eps * n_class)] = True
    e = rng.standard_normal(p)
    F[poison] += separation * e / np.linalg.norm(e)
    return F, labels, poison
