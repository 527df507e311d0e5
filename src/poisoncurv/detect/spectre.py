"""SPECTRE (Hayase, Kong, Somani and Oh, ICML 2021), with a FastMCD robust covariance.

Per class: project the centred features on their top ``dim`` principal directions (at most a quarter of the
class size, so that the covariance has four samples per dimension); estimate mean ``μ`` and
covariance ``Σ`` robustly by the minimum covariance determinant over ``h = ⌈(1 − 1.5·eps)·n_c⌉`` samples,
found by FastMCD (Rousseeuw and Van Driessen 1999: random starts, concentration steps that keep the ``h``
samples of smallest Mahalanobis distance and refit), then rescale ``Σ`` so that the median squared distance
is the χ²_k median (consistency at the Gaussian). Whiten, ``z_i = Σ^{-1/2}(x_i − μ)``, and score by quantum
entropy (QUE, Dong, Hopkins and Li 2019): with ``S = (1/n_c) Σ_i z_i z_iᵀ`` and
``Q = exp(α (S − I)/(‖S‖₂ − 1))``, ``τ_i = z_iᵀ Q z_i / tr Q``. The ``⌈1.5·eps·n_c⌉`` largest scores are flagged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import chi2

from poisoncurv.detect.base import Detection, as_inputs, check_eps, classes, pca, top_fraction


def _mahalanobis2(Z: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, covariance of ``Z[keep]`` and every sample's squared Mahalanobis distance to them."""
    mu = Z[keep].mean(0)
    cov = np.atleast_2d(np.cov(Z[keep], rowvar=False))
    d2 = np.einsum("ij,ij->i", (Z - mu) @ np.linalg.pinv(cov), Z - mu)
    return mu, cov, d2


def _concentrate(Z: np.ndarray, keep: np.ndarray, h: int, steps: int) -> tuple[np.ndarray, float]:
    """``steps`` concentration steps (keep the ``h`` closest, refit) from ``keep``; the kept mask and log det."""
    for _ in range(steps):
        d2 = _mahalanobis2(Z, keep)[2]
        new = np.zeros(len(Z), dtype=bool)
        new[np.argsort(d2, kind="stable")[:h]] = True
        if np.array_equal(new, keep):
            break
        keep = new
    return keep, float(np.linalg.slogdet(np.atleast_2d(np.cov(Z[keep], rowvar=False)))[1])


def robust_mean_cov(Z: np.ndarray, eps: float, starts: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FastMCD estimate of the mean ``(k,)`` and covariance ``(k, k)`` of ``Z`` ``(n, k)``, keeping ``⌈(1 − 1.5 eps) n⌉``.

    ``starts`` random ``(k+1)``-subsets and the full sample, two concentration steps each; the ten of smallest
    covariance determinant are iterated to convergence and the best is kept, then rescaled for consistency.
    """
    n, k = Z.shape
    h = max(k + 1, math.ceil((1 - 1.5 * check_eps(eps)) * n))
    if h >= n:
        raise ValueError(f"need more than dim + 1 = {k + 1} samples per class for the robust covariance, got {n}")
    rng = np.random.default_rng(seed)
    masks = [np.ones(n, dtype=bool)]
    for _ in range(starts):
        m = np.zeros(n, dtype=bool)
        m[rng.choice(n, k + 1, replace=False)] = True
        masks.append(m)
    trials = sorted((_concentrate(Z, m, h, 2) for m in masks), key=lambda t: t[1])[:10]
    keep = min((_concentrate(Z, m, h, 100) for m, _ in trials), key=lambda t: t[1])[0]
    mu, cov, d2 = _mahalanobis2(Z, keep)
    return mu, cov * np.median(d2) / chi2.ppf(0.5, k)


def que_scores(W: np.ndarray, alpha: float) -> np.ndarray:
    """QUE scores ``(n,)`` of whitened samples ``W`` ``(n, k)``: ``wᵢᵀ Q wᵢ / tr Q``, ``Q = exp(α(S − I)/(‖S‖ − 1))``."""
    S = W.T @ W / len(W)
    evals, evecs = np.linalg.eigh(S)
    spread = max(evals[-1] - 1.0, 1e-12)
    q = np.exp(alpha * (evals - 1.0) / spread - alpha)       # shifted by exp(−α): the ratio is unchanged
    proj = W @ evecs
    return (proj**2 @ q) / q.sum()


def spectre(features: Any, labels: Any, eps: float, alpha: float = 4.0, dim: int = 32, multiplier: float = 1.5) -> Detection:
    """Scores ``(N,)`` and flags of SPECTRE with the known poison fraction ``eps`` and QUE parameter ``alpha``."""
    F, y = as_inputs(features, labels)
    check_eps(eps)
    if alpha <= 0:
        raise ValueError(f"alpha (the QUE parameter) must be positive, got {alpha}")
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    scores, flags = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    for idx in classes(y, min_size=4):
        Z = pca(F[idx], max(1, min(dim, len(idx) // 4)))
        mu, cov = robust_mean_cov(Z, eps)
        evals, evecs = np.linalg.eigh(cov)
        inv_sqrt = evecs / np.sqrt(np.maximum(evals, 1e-12 * evals[-1]))
        s = que_scores((Z - mu) @ inv_sqrt, alpha)
        scores[idx] = s
        flags[idx] = top_fraction(s, min(1.0, multiplier * eps))
    return Detection(scores, flags, f"SPECTRE (FastMCD covariance, QUE alpha = {alpha:g}, eps = {eps:g})")
