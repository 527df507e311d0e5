"""Gradient flow on the KRR objective, in closed form, and first-crossing times.

A model linear in fixed features, ``f(x) = φ(x)ᵀθ`` with kernel ``k(x, x') = φ(x)ᵀφ(x')`` (a wide
network in the NTK regime), trained from ``θ = 0`` by gradient flow on
``½|Φθ − Y|² + (ridge/2)|θ|²`` stays in the span of the training features, ``θ(t) = Φᵀα(t)``, with

    dα/dt = Y − (K + ridge·I) α,   α(0) = 0,

whose solution in the eigenbasis ``K + ridge·I = V diag(μ) Vᵀ`` is
``α(t) = V diag((1 − e^{−μt})/μ) Vᵀ Y``; as ``t → ∞`` it tends to the KRR weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from poisoncurv.krr.kernels import Kernel


@dataclass
class KRRFlow:
    """Closed-form gradient flow of KRR. ``X`` ``(n, d)``, ``mu`` ``(n,)``, ``V`` ``(n, n)``, ``VtY`` ``(n, C)``."""

    kernel: Kernel
    X: Tensor
    mu: Tensor
    V: Tensor
    VtY: Tensor

    def alpha(self, t: Tensor) -> Tensor:
        """Dual weights at times ``t`` ``(T,)``: shape ``(T, n, C)``."""
        gain = -torch.expm1(-t[:, None] * self.mu[None, :]) / self.mu[None, :]     # (T, n)
        return torch.einsum("ij,tjc->tic", self.V, gain[:, :, None] * self.VtY[None, :, :])

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """Predictions at queries ``x`` ``(B, d)`` and times ``t`` ``(T,)``: ``(T, B, C)``."""
        return torch.einsum("bn,tnc->tbc", self.kernel(x, self.X), self.alpha(t))

    def jacobian(self, x: Tensor, t: Tensor) -> Tensor:
        """Input Jacobians at queries ``x`` ``(B, d)`` and times ``t`` ``(T,)``: ``(T, B, C, d)``."""
        return torch.einsum("bnd,tnc->tbcd", self.kernel.grad(x, self.X), self.alpha(t))


def krr_flow(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float) -> KRRFlow:
    """Diagonalise ``K + ridge·I`` once; returns the :class:`KRRFlow` of ``(X, Y)``."""
    if not ridge > 0:
        raise ValueError(f"ridge must be positive, got {ridge}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"need X (n, d) and Y (n, C) with the same n; got {tuple(X.shape)} and {tuple(Y.shape)}")
    K = kernel(X, X)
    mu, V = torch.linalg.eigh(K + ridge * torch.eye(X.shape[0], dtype=K.dtype, device=K.device))
    return KRRFlow(kernel=kernel, X=X, mu=mu, V=V, VtY=V.T @ Y.to(K.dtype))


def euler_alpha(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float, t_end: float, n_steps: int) -> Tensor:
    """Explicit Euler integration of ``dα/dt = Y − (K + ridge·I)α`` from 0 to ``t_end``; ``(n, C)``."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    if Y.ndim == 1:
        Y = Y[:, None]
    A = kernel(X, X) + ridge * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
    h = t_end / n_steps
    alpha = torch.zeros_like(Y, dtype=A.dtype)
    for _ in range(n_steps):
        alpha = alpha + h * (Y - A @ alpha)
    return alpha


def first_crossing(t: np.ndarray, values: np.ndarray, threshold: np.ndarray | float) -> float:
    """First time at which ``values`` reaches ``threshold`` (both sampled at increasing ``t``).

    Linear interpolation in ``log t`` between the bracketing samples; ``0`` if already reached at
    ``t[0]``, ``inf`` if never reached on the grid.
    """
    gap = np.asarray(values, dtype=float) - np.broadcast_to(np.asarray(threshold, dtype=float), np.shape(values))
    above = np.nonzero(gap >= 0)[0]
    if above.size == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return 0.0
    w = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(np.exp(np.log(t[i - 1]) + w * (np.log(t[i]) - np.log(t[i - 1]))))


def saturation_time(level: np.ndarray | float, rate: float) -> np.ndarray:
    """Time at which ``1 − e^{−rate·t}`` first reaches ``level``: ``−log(1 − level)/rate``.

    ``0`` where ``level ≤ 0`` and ``inf`` where ``level ≥ 1`` (never reached). Far clones grow as
    ``Δf_t = Δf_∞ (1 − e^{−(c + m k_ζ) t})`` under the flow, so this gives their crossing times.
    """
    level = np.asarray(level, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.log1p(-np.clip(level, 0.0, 1.0)) / rate
    return np.where(level >= 1, np.inf, out)
