"""The one Lanczos step and the small helpers every eigen solver of the package shares: random
starts, reorthogonalisation, the relative breakdown floor, the tridiagonal eigenproblem."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from poisoncurv.curvature.base import Operator


def check_square(op: Any) -> int:
    """``d`` for an operator of shape ``(d, d)``; ``ValueError`` otherwise."""
    shape = tuple(getattr(op, "shape", ()))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"operator must be square (d, d), got shape {shape}")
    return int(shape[0])


def unit_random(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype, device: torch.device,
                rademacher: bool = False) -> Tensor:
    """Random unit vectors, Gaussian or Rademacher signs: one vector for ``shape = (d,)``, or a block
    ``(..., d, p)`` whose columns each have unit norm."""
    if rademacher:
        v = torch.randint(0, 2, shape, generator=gen).double() * 2 - 1
    else:
        v = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = v.to(device=device, dtype=dtype)
    return v / v.norm(dim=0 if v.ndim == 1 else -2, keepdim=v.ndim > 1)


def orthogonalise(w: Tensor, Q: Tensor) -> Tensor:
    """``w`` ``(d,)`` minus its projection on the rows of ``Q`` ``(m, d)``, applied twice ("twice is enough")."""
    for _ in range(2):
        w = w - Q.T @ (Q @ w)
    return w


def breakdown_tol(d: int, dtype: torch.dtype) -> float:
    """Relative size (to ‖A‖) below which a residual counts as zero: ``sqrt(d)·eps`` of ``dtype``."""
    return d**0.5 * torch.finfo(dtype).eps


def tridiag_eigh(alpha: list[float], beta: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal matrix, in float64."""
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if len(alpha) > 1:
        off = torch.tensor(beta[: len(alpha) - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    return theta.numpy(), S.numpy()


def lanczos_step(op: Operator, Q: Tensor, j: int) -> tuple[Tensor, float, float]:
    """One Lanczos step with full reorthogonalisation from the basis rows ``Q[: j + 1]`` ``(d,)``
    each: the new residual ``w`` ``(d,)`` (orthogonal to the basis), ``α_j = q_jᵀ A q_j`` and
    ``β_j = ‖w‖``."""
    q = Q[j]
    w = op @ q
    a = float(q @ w)
    w = orthogonalise(w, Q[: j + 1])
    return w, a, float(w.norm())
