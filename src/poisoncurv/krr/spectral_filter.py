"""The Fourier picture of the input-gradient penalty, and the exact one-dimensional exponential-kernel case.

Continuum version of the penalised problem: training inputs with local density ``rho`` (points per
unit volume) and the penalty ``kappa·Σ_i ‖∇f(x_i)‖² ≈ kappa·rho·∫‖∇f‖²``. In Fourier terms
(``f̂(w) = ∫ f e^{-iw·x} dx``, measure ``dw/(2π)^d``) the RKHS norm is ``∫|f̂|²/S`` and the penalty
``∫‖w‖²|f̂|²``, so the prior spectral density ``S`` is replaced by

    S_eff(w) = S(w) / (1 + a ‖w‖² S(w)),   a = kappa·rho / ridge.

Dimensionless strength: ``gamma = kappa·N_ℓ / (ridge·ℓ²)`` with ``N_ℓ = rho·S(0)`` the number of
training points in one kernel window (``S(0) = ∫k``).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def gaussian_density(w: np.ndarray, lengthscale: float, d: int = 1) -> np.ndarray:
    """Spectral density of ``exp(-|x|²/(2ℓ²))`` in ``d`` dimensions at frequency norms ``w``."""
    return (2 * math.pi * lengthscale**2) ** (d / 2) * np.exp(-(lengthscale**2) * np.asarray(w) ** 2 / 2)


def laplace_density_1d(w: np.ndarray, lengthscale: float) -> np.ndarray:
    """Spectral density ``2ℓ / (1 + ℓ²w²)`` of ``exp(-|x|/ℓ)`` on the line."""
    return 2 * lengthscale / (1 + lengthscale**2 * np.asarray(w) ** 2)


def effective_density(S: np.ndarray, w: np.ndarray, a: float) -> np.ndarray:
    """``S_eff = S / (1 + a w² S)`` (isotropic penalty, ``M = I``)."""
    return S / (1 + a * np.asarray(w) ** 2 * S)


def window_count(rho: float, lengthscale: float, d: int, kernel: str = "gaussian") -> float:
    """``N_ℓ = rho·∫k``: training points per kernel window (Gaussian in ``d`` dims, or Laplace on the line)."""
    if kernel == "gaussian":
        return rho * (2 * math.pi * lengthscale**2) ** (d / 2)
    if kernel == "laplace" and d == 1:
        return rho * 2 * lengthscale
    raise ValueError(f"kernel: window_count knows 'gaussian' (any d) and 'laplace' (d = 1); got {kernel!r}, d={d}")


def gamma(kappa: float, rho: float, lengthscale: float, ridge: float, d: int, kernel: str = "gaussian") -> float:
    """Dimensionless penalty strength ``kappa·N_ℓ / (ridge·ℓ²)``."""
    return kappa * window_count(rho, lengthscale, d, kernel) / (ridge * lengthscale**2)


def continuum_kernel_1d(S_eff: np.ndarray, w: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Inverse Fourier transform ``(1/π)∫_0^∞ S_eff(w) cos(wt) dw`` of an even density sampled on ``w ≥ 0``."""
    return np.array([np.trapezoid(S_eff * np.cos(w * ti), w) for ti in np.atleast_1d(t)]) / math.pi


def peak_length_squared(lengthscale: float, a: float, d: int, n_w: int = 200001) -> float:
    """``ℓ_c² = -k_eff(0)/∂²_u k_eff(0)`` of the continuum equivalent Gaussian kernel in ``d`` dims.

    Computed by radial quadrature: ``ℓ_c² = d·∫S_eff s^{d-1} ds / ∫S_eff s^{d+1} ds``.
    """
    s = np.linspace(0, 40 / lengthscale, n_w)
    Se = effective_density(gaussian_density(s, lengthscale, d), s, a)
    # np.trapezoid of 1-D samples is one np.float64 (a float); its stub also allows an array
    return cast(float, d * np.trapezoid(Se * s ** (d - 1), s) / np.trapezoid(Se * s ** (d + 1), s))


def peak_length_slope(d: int) -> float:
    """First-order law ``ℓ_c²/ℓ² = 1 + slope·gamma + O(gamma²)`` for the Gaussian kernel: ``(2-d)/2^{d/2+2}``."""
    return (2 - d) / 2 ** (d / 2 + 2)


def laplace_effective(lengthscale: float, ridge: float, kappa: float) -> tuple[float, float]:
    """Exact 1-d result: ``ridge·‖f‖² + kappa·∫f'²`` for the kernel ``exp(-|x|/ℓ)`` equals
    ``ridge_e·‖f‖²`` for ``exp(-|x|/ℓ_e)``. Returns ``(ℓ_e, ridge_e)``,
    ``ℓ_e² = ℓ² + 2ℓ·kappa/ridge``, ``ridge_e = ridge·ℓ_e/ℓ``."""
    if not (lengthscale > 0 and ridge > 0 and kappa >= 0):
        raise ValueError(f"need lengthscale > 0, ridge > 0, kappa >= 0; got {lengthscale}, {ridge}, {kappa}")
    le = math.sqrt(lengthscale**2 + 2 * lengthscale * kappa / ridge)
    return le, ridge * le / lengthscale


def laplace_grid_solve(x_train: np.ndarray, y: np.ndarray, lengthscale: float, ridge: float, kappa: float,
                       half_width: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: minimise ``Σ(f(x_i)-y_i)² + ridge·(1/2ℓ)(∫f² + ℓ²∫f'²) + kappa·∫f'²`` over
    functions sampled on the grid ``h·k``, ``|h·k| ≤ half_width`` (about) (forward differences,
    training points snapped to the nearest node). Returns ``(grid, f)`` (each ``(N,)``).

    ``(1/2ℓ)(∫f² + ℓ²∫f'²)`` is the RKHS norm of ``exp(-|x|/ℓ)`` on the line (its spectral density is
    ``2ℓ/(1+ℓ²w²)``). Beyond the window the optimal extension is ``f(end)·e^{-|x-end|/ℓ_e}``; its
    cost ``ridge·ℓ_e/(2ℓ)·f(end)²`` is added, so the window need not be wide.
    """
    M = int(math.ceil(half_width / h))
    grid = h * np.arange(-M, M + 1)
    N = grid.size
    idx = np.rint(np.asarray(x_train) / h).astype(int) + M
    if idx.min() < 0 or idx.max() >= N:
        raise ValueError("x_train: training points must lie inside the grid window")
    D = sp.diags([-np.ones(N - 1), np.ones(N - 1)], [0, 1], shape=(N - 1, N)) / h
    grad_w = ridge * lengthscale / 2 + kappa
    A = (ridge / (2 * lengthscale)) * h * sp.identity(N) + grad_w * h * (D.T @ D)
    ends = np.zeros(N)
    ends[[0, -1]] = ridge * laplace_effective(lengthscale, ridge, kappa)[0] / (2 * lengthscale)
    A = A + sp.diags(ends)  # exact cost of the optimal decaying extension beyond the window
    P = sp.csr_matrix((np.ones(idx.size), (np.arange(idx.size), idx)), shape=(idx.size, N))
    A = (A + P.T @ P).tocsc()
    return grid, spla.spsolve(A, P.T @ np.asarray(y, dtype=float))
