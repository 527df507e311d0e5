"""A poison that is a near clone of a *clean* training point: the two-cluster closed form.

Gaussian kernel with length scale ``ℓ``, ridge ``c`` (``α = (K + cI)^{-1}Y``). One clean point
``x_c`` with target ``y_c`` and ``m`` copies of ``x_p = x_c + ε u`` (``|u| = 1``) with target
``y_p``; nothing else sees them through the kernel. With ``ρ = e^{−ε²/(2ℓ²)}`` the copies share one
dual weight ``β`` and

    (1 + c) a + m ρ β = y_c,    ρ a + (m + c) β = y_p,    D = (1 + c)(m + c) − m ρ².

Without the poisons ``a = y_c/(1 + c)``. The change of the predictor is
``Δf(x) = (a − y_c/(1+c)) k(x, x_c) + m β k(x, x_p)``, so at the poison ``∇Δf(x_p) ∥ u``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairEffect:
    """Closed-form effect for each ``ε``: shifts ``(E, C)`` at ``x_p`` and at ``x_c``; ``aligned``
    ``(E,)`` = ``|ΔJ(x_p) u|²`` (the poison-aligned Gauss-Newton curvature, equal to the whole spike
    ``λ_max(ΔJᵀΔJ)`` at ``x_p`` because ``ΔJ(x_p)`` is ``g uᵀ``)."""

    shift_poison: np.ndarray
    shift_clean: np.ndarray
    aligned: np.ndarray


def pair_effect(eps: np.ndarray, m: int, ridge: float, ell: float, y_c: np.ndarray, y_p: np.ndarray) -> PairEffect:
    """Solve the two-cluster system above for each ``ε`` in ``eps`` ``(E,)``; ``y_c``, ``y_p`` ``(C,)``."""
    if m < 1 or not ridge > 0 or not ell > 0:
        raise ValueError(f"need m >= 1, ridge > 0 and ell > 0; got m={m}, ridge={ridge}, ell={ell}")
    eps = np.asarray(eps, dtype=float)[:, None]
    rho = np.exp(-eps**2 / (2 * ell**2))
    D = (1 + ridge) * (m + ridge) - m * rho**2
    a = ((m + ridge) * y_c - m * rho * y_p) / D
    beta = ((1 + ridge) * y_p - rho * y_c) / D
    da = a - y_c / (1 + ridge)
    shift_p = rho * da + m * beta
    shift_c = da + m * rho * beta
    grad = da * rho * eps / ell**2             # ∇Δf(x_p) = −da ρ ε u / ℓ²: coefficient of u (sign dropped)
    return PairEffect(shift_poison=shift_p, shift_clean=shift_c, aligned=(grad**2).sum(-1))


def limit_shift(m: int, ridge: float, y_c: np.ndarray, y_p: np.ndarray) -> np.ndarray:
    """``lim_{ε→0} Δf(x_p) = (y_c + m y_p)/(1 + m + c) − y_c/(1 + c)`` ``(C,)``: bounded for every m."""
    return (y_c + m * y_p) / (1 + m + ridge) - y_c / (1 + ridge)


def small_eps_coefficient(m: int, ridge: float, y_c: np.ndarray, y_p: np.ndarray) -> float:
    """``A`` in ``|ΔJ(x_p) u|² ≈ A ε²/ℓ⁴`` as ``ε → 0``: ``A = |m((1+c) y_p − y_c)|² / ((1+c) c (1+m+c))²``."""
    return float(np.sum((m * ((1 + ridge) * y_p - y_c)) ** 2) / ((1 + ridge) * ridge * (1 + m + ridge)) ** 2)


def crossover_eps(m: int, ridge: float, ell: float) -> float:
    """``ε* = ℓ sqrt(c(1+m+c)/m)``: below it the aligned curvature falls like ``ε²``, above it like ``1/ε²``.

    From ``D ≈ c(1+m+c) + m ε²/ℓ²`` for ``ε ≪ ℓ``: the two terms of ``D`` are equal at ``ε*``.
    """
    return float(ell * np.sqrt(ridge * (1 + m + ridge) / m))
