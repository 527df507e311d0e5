"""Cloned dirty-label poisons in kernel ridge regression: closed forms and direct measurements.

Setting (Chapter 1): clean data ``(X, Y)``; ``m`` copies of one trigger point ``zeta`` (shape
``(d,)``) carrying the false target ``y_t`` (shape ``(C,)``); KRR with ``ridge = n·λ``.
If no clean point sees ``zeta`` through the kernel (``k(zeta, x_i) = 0``, the exact form of the
paper's tight-cluster assumption), the poison block of ``K + ridge·I`` decouples and, at a query
``x0`` (shape ``(B, d)``):

* prediction shift ``Δf(x0) = k(x0, zeta) · y_t · S``, ``S = m / (ridge + m·k(zeta, zeta))``;
* Gauss-Newton spike ``Λ_GN(x0) = λ_max(ΔJᵀΔJ) = R_k(x0, zeta) · |Δf(x0)|²`` with
  ``R_k = |∇_x k(x0, zeta)|² / k(x0, zeta)²``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
from torch import Tensor

from poisoncurv.krr.kernels import KRR, Kernel, fit_krr


@overload
def scalar_gain(m: float, ridge: float, k_zeta: float) -> float: ...
@overload
def scalar_gain(m: np.ndarray, ridge: float, k_zeta: float) -> np.ndarray: ...
@overload
def scalar_gain(m: float | Tensor, ridge: float, k_zeta: float | Tensor) -> float | Tensor: ...
def scalar_gain(m: float | Tensor | np.ndarray, ridge: float, k_zeta: float | Tensor) -> float | Tensor | np.ndarray:
    """``S(m) = m / (ridge + m·k_zeta)``: the summed dual weight of ``m`` decoupled clones."""
    return m / (ridge + m * k_zeta)


def curvature_ratio(kernel: Kernel, x0: Tensor, zeta: Tensor) -> Tensor:
    """``R_k(x0, zeta) = |∇_x k(x0, zeta)|² / k(x0, zeta)²`` for each query, shape ``(B,)``."""
    z = zeta.reshape(1, -1)
    k0 = kernel(x0, z)[:, 0]
    g = kernel.grad(x0, z)[:, 0, :]
    return (g**2).sum(-1) / k0**2


def predicted_shift(kernel: Kernel, x0: Tensor, zeta: Tensor, y_t: Tensor, m: float, ridge: float) -> Tensor:
    """Theorem-3.3 shift ``k(x0, zeta) · y_t · S(m)``, shape ``(B, C)``."""
    z = zeta.reshape(1, -1)
    k0 = kernel(x0, z)[:, 0]
    S = scalar_gain(m, ridge, kernel(z, z)[0, 0])
    return k0[:, None] * y_t.reshape(1, -1) * S


def predicted_spike(kernel: Kernel, x0: Tensor, zeta: Tensor, y_t: Tensor, m: float, ridge: float) -> Tensor:
    """Theorem-3.4 spike ``R_k · |Δf|²`` with the closed-form shift, shape ``(B,)``."""
    shift = predicted_shift(kernel, x0, zeta, y_t, m, ridge)
    return curvature_ratio(kernel, x0, zeta) * (shift**2).sum(-1)


def add_clones(X: Tensor, Y: Tensor, zeta: Tensor, y_t: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Training set with ``m`` copies of ``(zeta, y_t)`` appended: ``(n+m, d)`` and ``(n+m, C)``."""
    if m < 1:
        raise ValueError(f"need at least one poison copy, got m={m}")
    Xp = torch.cat([X, zeta.reshape(1, -1).expand(m, -1)], 0)
    Yp = torch.cat([Y, y_t.reshape(1, -1).expand(m, -1).to(Y.dtype)], 0)
    return Xp, Yp


@dataclass
class PoisonEffect:
    """Measured effect of poisons on a KRR model at queries ``x0``.

    ``shift``: ``(B, C)`` = f_poisoned(x0) − f_clean(x0); ``spike``: ``(B,)`` = λ_max(ΔJᵀΔJ) with
    ``ΔJ`` the change of the input Jacobian ``(C, d)`` at each query.
    """

    shift: Tensor
    spike: Tensor
    clean: KRR
    poisoned: KRR


def measure_effect(kernel: Kernel, X: Tensor, Y: Tensor, Xp: Tensor, Yp: Tensor, ridge: float, x0: Tensor) -> PoisonEffect:
    """Fit clean ``(X, Y)`` and poisoned ``(Xp, Yp)`` KRR by direct solves and measure shift and spike."""
    clean = fit_krr(kernel, X, Y, ridge)
    poisoned = fit_krr(kernel, Xp, Yp, ridge)
    shift = poisoned.predict(x0) - clean.predict(x0)
    dJ = poisoned.jacobian(x0) - clean.jacobian(x0)
    spike = torch.linalg.matrix_norm(dJ, ord=2) ** 2
    return PoisonEffect(shift=shift, spike=spike, clean=clean, poisoned=poisoned)


def ridge_weights(X: Tensor, Y: Tensor, ridge: float) -> Tensor:
    """Primal ridge regression ``W = Yᵀ X (XᵀX + ridge I)^{-1}``, shape ``(C, d)``: the linear-kernel KRR."""
    A = X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    return torch.linalg.solve(A, X.T @ Y).T


def linear_clone_update(X: Tensor, Y: Tensor, zeta: Tensor, y_t: Tensor, m: int, ridge: float) -> tuple[Tensor, Tensor]:
    """Exact Sherman-Morrison update of ridge regression ``W = Yᵀ X (XᵀX + ridge I)^{-1}`` (``(C, d)``).

    Adding ``m`` copies of ``(zeta, y_t)`` changes ``A = XᵀX + ridge I`` by ``m zeta zetaᵀ``, so with
    ``v = A^{-1} zeta``, ``s = zetaᵀ v`` and ``r = y_t − W zeta``:
    ``W' = W + m/(1 + m s) · r vᵀ`` (rank one). Returns ``(W, W')``.
    """
    A = X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    W = torch.linalg.solve(A, X.T @ Y).T
    v = torch.linalg.solve(A, zeta)
    s = zeta @ v
    r = y_t - W @ zeta
    return W, W + (m / (1 + m * s)) * torch.outer(r, v)


def effective_curvature_ratio(kernel: Kernel, X: Tensor, ridge: float, x0: Tensor, zeta: Tensor) -> Tensor:
    """``R_eff = |∇φ(x0)|² / φ(x0)²`` for exact clones that may overlap the clean inputs ``X``; ``(B,)``.

    ``φ(x) = k(x, zeta) − k(x, X)(K + ridge I)^{-1} k(X, zeta)`` is the part of the trigger's kernel
    function the clean fit cannot explain. For any ``m`` clones, ``Δf(x) = φ(x)·b(m)`` with
    ``b(m) ∈ R^C``, so ``Λ_GN = R_eff |Δf|²`` exactly; with no overlap ``φ = k(·, zeta)`` and
    ``R_eff = R_k``.
    """
    z = zeta.reshape(1, -1)
    A = kernel(X, X) + ridge * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
    w = torch.linalg.solve(A, kernel(X, z))[:, 0]                      # (n,)
    phi = kernel(x0, z)[:, 0] - kernel(x0, X) @ w                     # (B,)
    grad_phi = kernel.grad(x0, z)[:, 0, :] - torch.einsum("bnd,n->bd", kernel.grad(x0, X), w)
    return (grad_phi**2).sum(-1) / phi**2
