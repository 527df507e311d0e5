"""Kernel ridge regression with an input-gradient penalty, solved exactly (Chapter on exponential kernels).

Problem, for training inputs ``X`` ``(n, d)`` and targets ``Y`` ``(n, C)``:

    min_f  Σ_i |f(x_i) − y_i|² + ridge·‖f‖²_H + kappa·Σ_i ‖∇f(x_i)‖²_F .

Values and input gradients at the training points are bounded linear functionals on the RKHS of a
twice-differentiable kernel, with representers ``k(·, x_i)`` and ``∂_{z_j} k(·, z)|_{z=x_i}``. By the
representer theorem the minimiser is ``f = Σ_i a_i k(·, x_i) + Σ_{i,j} b_ij ∂_{z_j}k(·, x_i)``, and its
coefficients solve one linear system of size ``n(1+d)``. Equivalently (Gaussian-process reading) the
problem is KRR with the *equivalent kernel* ``k̃``: the prior ``k`` conditioned on noisy observations
``∇f(x_i) = 0`` with noise variance ``ridge/kappa`` (:func:`equivalent_kernel`).

Only stationary kernels are supported (``∂_z k = −∇_x k`` and ``∂_x∂_z k = −∇²_x k``), through the
closed-form ``grad`` and ``hess`` of :mod:`poisoncurv.krr.kernels`. The Laplace kernel has no gradient at
``x = z``, so the pointwise penalty is undefined for it: use :mod:`poisoncurv.krr.spectral_filter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from poisoncurv.krr.kernels import GaussianKernel, Kernel


def _check_kernel(kernel: Kernel) -> None:
    if not isinstance(kernel, GaussianKernel):
        raise ValueError(f"kernel: the pointwise gradient penalty needs a kernel differentiable at x = z "
                         f"with closed-form mixed derivatives; got {kernel.name!r} (use 'gaussian')")


def gram_blocks(kernel: Kernel, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Covariances between values and gradients at ``x`` ``(B, d)`` and ``z`` ``(N, d)``.

    Returns ``(k, k_vg, k_gg)``: ``k(x, z)`` ``(B, N)``; ``k_vg[b, n, j] = ∂_{z_j} k(x_b, z_n)``
    ``(B, N, d)``; ``k_gg[b, n, i, j] = ∂_{x_i} ∂_{z_j} k(x_b, z_n)`` ``(B, N, d, d)``.
    """
    _check_kernel(kernel)
    return kernel(x, z), -kernel.grad(x, z), -kernel.hess(x, z)


def full_gram(kernel: Kernel, X: Tensor) -> Tensor:
    """Gram matrix of the ``n(1+d)`` representers, ordered values first, then gradients ``(i, j)``
    row-major. Shape ``(n(1+d), n(1+d))``."""
    n, d = X.shape
    k, k_vg, k_gg = gram_blocks(kernel, X, X)
    top = torch.cat([k, k_vg.reshape(n, n * d)], 1)
    bottom = torch.cat([k_vg.permute(1, 2, 0).reshape(n * d, n), k_gg.permute(0, 2, 1, 3).reshape(n * d, n * d)], 1)
    return torch.cat([top, bottom], 0)


@dataclass
class DerivativeKRR:
    """Fitted gradient-penalised KRR ``f(x) = k(x, X) a + Σ_{i,j} ∂_{z_j}k(x, x_i) b_ij``.

    ``a``: ``(n, C)``; ``b``: ``(n, d, C)``; ``ridge`` and ``kappa`` as in the module docstring.
    """

    kernel: Kernel
    X: Tensor
    a: Tensor
    b: Tensor
    ridge: float
    kappa: float

    @property
    def coef(self) -> Tensor:
        """All coefficients stacked as in :func:`full_gram`, shape ``(n(1+d), C)``."""
        return torch.cat([self.a, self.b.reshape(-1, self.a.shape[1])], 0)

    def predict(self, x: Tensor) -> Tensor:
        """Predictions ``(B, C)``."""
        k, k_vg, _ = gram_blocks(self.kernel, x, self.X)
        return k @ self.a + torch.einsum("bnj,njc->bc", k_vg, self.b)

    def jacobian(self, x: Tensor) -> Tensor:
        """Input Jacobians ``∂f_c/∂x`` as ``(B, C, d)``."""
        _, k_vg, k_gg = gram_blocks(self.kernel, x, self.X)
        # ∂_x k(x, z) = -k_vg (stationary kernel)
        return -torch.einsum("bni,nc->bci", k_vg, self.a) + torch.einsum("bnij,njc->bci", k_gg, self.b)

    def objective(self, Y: Tensor) -> float:
        """The penalised objective at this solution (for checks)."""
        return float(objective(self.kernel, self.X, Y, self.ridge, self.kappa, self.coef))


def _prepare(X: Tensor, Y: Tensor, ridge: float, kappa: float) -> Tensor:
    if not ridge > 0:
        raise ValueError(f"ridge must be positive, got {ridge}")
    if not kappa >= 0:
        raise ValueError(f"kappa (gradient-penalty weight) must be non-negative, got {kappa}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"need X (n, d) and Y (n, C) with the same n; got {tuple(X.shape)} and {tuple(Y.shape)}")
    return Y


def fit_derivative_krr(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float, kappa: float) -> DerivativeKRR:
    """Exact minimiser of the gradient-penalised objective.

    With ``G`` the :func:`full_gram`, ``W = diag(I_n, kappa·I_{nd})`` and ``Ỹ = (Y; 0)``, stationarity
    reads ``(W G + ridge I) c = W Ỹ``; it is solved in the symmetric form
    ``(W½ G W½ + ridge I) u = W½ Ỹ``, ``c = W½ u`` (a Cholesky solve, valid also at ``kappa = 0``).
    """
    _check_kernel(kernel)
    Y = _prepare(X, Y, ridge, kappa)
    n, d = X.shape
    G = full_gram(kernel, X)
    w = torch.cat([X.new_ones(n), X.new_full((n * d,), kappa**0.5)])
    A = w[:, None] * G * w[None, :] + ridge * torch.eye(n * (1 + d), dtype=G.dtype, device=G.device)
    rhs = torch.cat([Y.to(G.dtype), Y.new_zeros(n * d, Y.shape[1])], 0)
    c = w[:, None] * torch.cholesky_solve(rhs, torch.linalg.cholesky(A))
    return DerivativeKRR(kernel, X, c[:n], c[n:].reshape(n, d, -1), float(ridge), float(kappa))


def objective(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float, kappa: float, coef: Tensor) -> Tensor:
    """``Σ|f(x_i) − y_i|² + ridge·cᵀGc + kappa·Σ‖∇f(x_i)‖²`` for ``f`` with coefficients ``coef`` ``(n(1+d), C)``."""
    Y = _prepare(X, Y, ridge, kappa)
    n = X.shape[0]
    Gc = full_gram(kernel, X) @ coef
    return ((Gc[:n] - Y) ** 2).sum() + ridge * (coef * Gc).sum() + kappa * (Gc[n:] ** 2).sum()


def equivalent_kernel(kernel: Kernel, X: Tensor, ridge: float, kappa: float, x: Tensor, z: Tensor) -> Tensor:
    """``k̃(x, z) = k(x, z) − A(x) (K_gg + (ridge/kappa) I)^{-1} A(z)ᵀ``, ``A(x) = Cov(f(x), ∇f(X))``.

    The prior conditioned on the pseudo-observations ``∇f(x_i) = 0`` with noise ``ridge/kappa``.
    KRR with ``k̃`` and ridge ``ridge`` has the same predictor as :func:`fit_derivative_krr`.
    Shape ``(B, N)``; equals ``k(x, z)`` when ``kappa = 0``.
    """
    _check_kernel(kernel)
    k_xz = kernel(x, z)
    if kappa == 0:
        return k_xz
    n, d = X.shape
    Kgg = full_gram(kernel, X)[n:, n:]
    Ax = gram_blocks(kernel, x, X)[1].reshape(x.shape[0], n * d)  # Cov(f(x), ∂_j f(x_i)) = ∂_{z_j}k(x, x_i)
    Az = gram_blocks(kernel, z, X)[1].reshape(z.shape[0], n * d)
    L = torch.linalg.cholesky(Kgg + (ridge / kappa) * torch.eye(n * d, dtype=Kgg.dtype, device=Kgg.device))
    return k_xz - Ax @ torch.cholesky_solve(Az.T, L)
