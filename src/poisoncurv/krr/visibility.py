"""What a spectral defender sees, and when an attack counts as a success.

* Input curvature at a query: the top eigenvalue ``λ_max(JᵀJ)`` of the input Gauss-Newton
  matrix of the squared loss, ``J = ∂f/∂x`` ``(C, d)``. It needs no label (it is the input
  Fisher of a unit-variance Gaussian likelihood).
* Clean bulk edge ``Λ_clean``: the ``q``-quantile of that top eigenvalue over clean test inputs.
  A spike above it is flagged at a false-alarm rate of about ``1 − q`` on clean inputs.
* Attack success at a triggered input: the target margin ``f_t − max_{c≠t} f_c`` reaches ``τ``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_gn_eigenvalue(J: Tensor) -> Tensor:
    """``λ_max(JᵀJ) = σ_max(J)²`` for Jacobians ``(..., C, d)``; returns shape ``(...)``."""
    if J.ndim < 2:
        raise ValueError(f"J must be (..., C, d), got shape {tuple(J.shape)}")
    return torch.linalg.matrix_norm(J, ord=2) ** 2


def bulk_edge(J: Tensor, q: float = 0.95) -> Tensor:
    """``Λ_clean``: the ``q``-quantile over the query axis (second-to-last-but-one) of ``λ_max(JᵀJ)``.

    ``J`` is ``(..., B, C, d)`` (``B`` clean test inputs); returns shape ``(...)``.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile q must lie in (0, 1], got {q}")
    return torch.quantile(top_gn_eigenvalue(J), q, dim=-1)


def target_margin(f: Tensor, target: int) -> Tensor:
    """``f_t − max_{c≠t} f_c`` for predictions ``(..., C)``; returns shape ``(...)``."""
    C = f.shape[-1]
    if not 0 <= target < C:
        raise ValueError(f"target class {target} out of range for C={C} outputs")
    others = torch.cat([f[..., :target], f[..., target + 1:]], -1)
    return f[..., target] - others.max(-1).values
