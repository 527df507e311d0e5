"""What a spectral defender sees, and when an attack counts as a success.

* Input curvature at a query: the top eigenvalue ``λ_max(JᵀJ)`` of the input Gauss-Newton
  matrix of the squared loss, ``J = ∂f/∂x`` ``(C, d)``. It needs no label (it is the input
  Fisher of a unit-variance Gaussian likelihood).
* Clean bulk edge ``Λ_clean``: the ``q``-quantile of that top eigenvalue over clean test inputs.
  A spike above it is flagged at a false-alarm rate of about ``1 − q`` on clean inputs.
* Attack success at a triggered input: the target margin ``f_t − max_{c≠t} f_c`` reaches ``τ``.
* For far Gaussian clones, the two in closed form (Chapter 2): the radius below which the spike stays under the edge
  (:func:`visibility_radius`, Lambert W) and the radius within which the attack succeeds (:func:`success_radius`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import lambertw
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


def visibility_radius(lam: float, ell: float, gain: float) -> float:
    """Smallest ``r`` at which far Gaussian clones with ``|Δf_∞| = gain·e^{−r²/2ℓ²}`` leave a spike ``≥ lam``.

    The spike is ``gain² (r²/ℓ⁴) e^{−r²/ℓ²}``; with ``x = r²/ℓ²`` the condition ``x e^{−x} = lam ℓ²/gain²``
    has its smaller root ``x = −W₀(−lam ℓ²/gain²)``. ``inf`` when ``lam ℓ²/gain² > 1/e`` (never visible).
    """
    z = lam * ell**2 / gain**2
    if z > np.exp(-1):
        return float("inf")
    return float(ell * np.sqrt(-lambertw(-z, 0).real))


def success_radius(tau: float, ell: float, gain: float) -> float:
    """Largest ``r`` with ``gain·e^{−r²/2ℓ²} ≥ tau``: ``ℓ sqrt(2 ln(gain/tau))`` (0 if ``gain < tau``)."""
    return float(ell * np.sqrt(2 * np.log(max(gain / tau, 1.0))))
