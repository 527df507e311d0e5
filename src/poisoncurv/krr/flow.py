"""Gradient flow on quadratic objectives: ONE closed form, ONE explicit Euler integrator, crossing times.

Every flow in the book is gradient flow from zero on a quadratic objective, ``dw/dt = b − A w``,
``w(0) = 0``, with ``A`` symmetric positive semi-definite. In the eigenbasis ``A = V diag(μ) Vᵀ`` its
solution is ``w(t) = V diag(g(μ, t)) Vᵀ b`` with the *flow gain* ``g(μ, t) = (1 − e^{−μt})/μ``
(:func:`flow_gain`; ``g(0, t) = t``), and as ``t → ∞`` it tends to ``A^+ b``. Two instances:

* KRR in dual weights (a wide network in the NTK regime): ``A = K + ridge·I``, ``b = Y``
  (:func:`krr_flow`, :class:`KRRFlow`);
* a linear model on ``E[L] + (κ/2)|w|²`` (the model-gradient penalty): ``A = XᵀX/n + κI``,
  ``b = Xᵀy/n`` (:func:`poisoncurv.krr.regularised.linear_flow_closed_form`).

The simulated flow is :func:`euler_flow` (``w ← w − η ∇J(w)``); :func:`euler_alpha` is its KRR instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from poisoncurv.krr.kernels import Kernel

Array = Tensor | np.ndarray


def flow_gain(mu: Tensor, t: Tensor | float) -> Tensor:
    """``(1 − e^{−μt})/μ`` elementwise (broadcast), with its limit ``t`` where ``μ = 0``."""
    t = torch.as_tensor(t, dtype=mu.dtype, device=mu.device)
    live = mu != 0
    safe = torch.where(live, mu, torch.ones_like(mu))
    return torch.where(live, -torch.expm1(-safe * t) / safe, t * torch.ones_like(mu))


def quadratic_flow(A: Tensor, b: Tensor, t: float) -> Tensor:
    """Closed-form gradient flow ``dw/dt = b − A w`` from ``w = 0`` at time ``t``: shape of ``b`` (``(n,)`` or ``(n, C)``)."""
    mu, V = torch.linalg.eigh(0.5 * (A + A.T))
    Vb = V.T @ b
    gain = flow_gain(mu, t)
    return V @ (gain[:, None] * Vb if Vb.ndim == 2 else gain * Vb)


def euler_flow(grad: Callable[[Array], Array], w0: Array, step: float, n_steps: int, record_every: int = 1) -> Array:
    """Explicit Euler ``w ← w − step·grad(w)``: the simulated gradient flow (torch or numpy arrays).

    Returns the trajectory ``(n_records, *w0.shape)`` at steps ``0, record_every, 2·record_every, …``
    (times ``step·k``).
    """
    if not step > 0 or n_steps < 1 or record_every < 1:
        raise ValueError(f"need step > 0, n_steps ≥ 1, record_every ≥ 1; got {step}, {n_steps}, {record_every}")
    ops: tuple[Callable[..., Any], Callable[..., Any]] = (torch.clone, torch.stack) if isinstance(w0, Tensor) else (np.copy, np.stack)
    copy, stack = ops  # torch's or numpy's, after w0
    w, out = copy(w0), [copy(w0)]
    for k in range(1, n_steps + 1):
        w = w - step * grad(w)
        if k % record_every == 0:
            out.append(copy(w))
    return stack(out)


@dataclass
class KRRFlow:
    """Closed-form gradient flow of KRR. ``X`` ``(n, d)``, ``mu`` ``(n,)`` (eigenvalues of ``K + ridge·I``),
    ``V`` ``(n, n)``, ``VtY`` ``(n, C)``."""

    kernel: Kernel
    X: Tensor
    mu: Tensor
    V: Tensor
    VtY: Tensor

    def alpha(self, t: Tensor) -> Tensor:
        """Dual weights at times ``t`` ``(T,)``: shape ``(T, n, C)``."""
        gain = flow_gain(self.mu[None, :], t[:, None])                               # (T, n)
        return torch.einsum("ij,tjc->tic", self.V, gain[:, :, None] * self.VtY[None, :, :])

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """Predictions at queries ``x`` ``(B, d)`` and times ``t`` ``(T,)``: ``(T, B, C)``."""
        return torch.einsum("bn,tnc->tbc", self.kernel(x, self.X), self.alpha(t))

    def jacobian(self, x: Tensor, t: Tensor) -> Tensor:
        """Input Jacobians at queries ``x`` ``(B, d)`` and times ``t`` ``(T,)``: ``(T, B, C, d)``."""
        return torch.einsum("bnd,tnc->tbcd", self.kernel.grad(x, self.X), self.alpha(t))


def _krr_system(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """``(K + ridge·I, Y)`` with ``Y`` as ``(n, C)``; raises on a bad ridge or mismatched shapes."""
    if not ridge > 0:
        raise ValueError(f"ridge must be positive, got {ridge}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"need X (n, d) and Y (n, C) with the same n; got {tuple(X.shape)} and {tuple(Y.shape)}")
    K = kernel(X, X)
    return K + ridge * torch.eye(X.shape[0], dtype=K.dtype, device=K.device), Y.to(K.dtype)


def krr_flow(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float) -> KRRFlow:
    """Diagonalise ``K + ridge·I`` once; returns the :class:`KRRFlow` of ``(X, Y)``."""
    A, Y = _krr_system(kernel, X, Y, ridge)
    mu, V = torch.linalg.eigh(A)
    return KRRFlow(kernel=kernel, X=X, mu=mu, V=V, VtY=V.T @ Y)


def euler_alpha(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float, t_end: float, n_steps: int) -> Tensor:
    """:func:`euler_flow` of ``dα/dt = Y − (K + ridge·I)α`` from 0 to ``t_end`` in ``n_steps``; ``(n, C)``."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    A, Y = _krr_system(kernel, X, Y, ridge)
    return euler_flow(lambda a: A @ a - Y, torch.zeros_like(Y), t_end / n_steps, n_steps, record_every=n_steps)[-1]


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
