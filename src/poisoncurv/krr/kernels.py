"""Kernels and kernel ridge regression (KRR) with closed-form input derivatives, in torch.

Shapes: query points ``x`` are ``(B, d)``, centres ``z`` are ``(N, d)``. A kernel returns the Gram
block ``(B, N)``; ``grad`` returns the input gradients ``∇_x k(x_b, z_n)`` as ``(B, N, d)``;
``hess`` returns the input Hessians ``∇²_x k(x_b, z_n)`` as ``(B, N, d, d)``.

KRR convention used throughout the book: ``alpha = (K + ridge·I)^{-1} Y`` with ``ridge = n·λ``
(the paper's ``c = nλ``), and ``f(x) = k(x, X) alpha``. Everything runs on the device and dtype
of its inputs, so the same code runs on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _check_pair(x: Tensor, z: Tensor) -> None:
    if x.ndim != 2 or z.ndim != 2:
        raise ValueError(f"kernels take 2-d inputs (B, d) and (N, d); got {tuple(x.shape)} and {tuple(z.shape)}")
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"feature dimensions differ: x has d={x.shape[1]}, z has d={z.shape[1]}")


def _sqdist(x: Tensor, z: Tensor) -> Tensor:
    """Squared distances ``(B, N)``, computed from differences (exact near zero, unlike the
    ``|x|² + |z|² - 2 x·z`` expansion that loses all digits for near clones)."""
    return ((x[:, None, :] - z[None, :, :]) ** 2).sum(-1)


@dataclass(frozen=True)
class LinearKernel:
    """``k(x, z) = x·z``. Input gradient ``z``, input Hessian 0."""

    name: str = "linear"

    def __call__(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        return x @ z.T

    def grad(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        return z[None, :, :].expand(x.shape[0], -1, -1)

    def hess(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        d = x.shape[1]
        return x.new_zeros(x.shape[0], z.shape[0], d, d)


@dataclass(frozen=True)
class GaussianKernel:
    """``k(x, z) = exp(-|x-z|² / (2ℓ²))``. ``∇k = -k (x-z)/ℓ²``; ``∇²k = k[(x-z)(x-z)ᵀ/ℓ⁴ - I/ℓ²]``."""

    lengthscale: float = 1.0
    name: str = "gaussian"

    def __post_init__(self) -> None:
        if not self.lengthscale > 0:
            raise ValueError(f"lengthscale must be positive, got {self.lengthscale}")

    def __call__(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        return torch.exp(-_sqdist(x, z) / (2 * self.lengthscale**2))

    def grad(self, x: Tensor, z: Tensor) -> Tensor:
        diff = x[:, None, :] - z[None, :, :]
        return -self(x, z)[..., None] * diff / self.lengthscale**2

    def hess(self, x: Tensor, z: Tensor) -> Tensor:
        ell2 = self.lengthscale**2
        diff = x[:, None, :] - z[None, :, :]
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        outer = diff[..., :, None] * diff[..., None, :] / ell2**2
        return self(x, z)[..., None, None] * (outer - eye / ell2)


@dataclass(frozen=True)
class LaplaceKernel:
    """``k(x, z) = exp(-|x-z| / ℓ)`` (the exponential kernel).

    With ``r = |x-z|`` and ``u = (x-z)/r``: ``∇k = -(k/ℓ) u`` and
    ``∇²k = k[u uᵀ/ℓ² - (I - u uᵀ)/(ℓ r)]``. Not differentiable at ``x = z``: ``grad``/``hess``
    raise there rather than return a made-up value.
    """

    lengthscale: float = 1.0
    name: str = "laplace"

    def __post_init__(self) -> None:
        if not self.lengthscale > 0:
            raise ValueError(f"lengthscale must be positive, got {self.lengthscale}")

    def __call__(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        return torch.exp(-_sqdist(x, z).sqrt() / self.lengthscale)

    def _unit(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        _check_pair(x, z)
        diff = x[:, None, :] - z[None, :, :]
        r = diff.norm(dim=-1)
        if bool((r == 0).any()):
            raise ValueError("the Laplace kernel has no input derivative at x = z (a query equals a centre)")
        return diff / r[..., None], r

    def grad(self, x: Tensor, z: Tensor) -> Tensor:
        u, _ = self._unit(x, z)
        return -(self(x, z) / self.lengthscale)[..., None] * u

    def hess(self, x: Tensor, z: Tensor) -> Tensor:
        u, r = self._unit(x, z)
        ell = self.lengthscale
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        uu = u[..., :, None] * u[..., None, :]
        return self(x, z)[..., None, None] * (uu / ell**2 - (eye - uu) / (ell * r[..., None, None]))


Kernel = LinearKernel | GaussianKernel | LaplaceKernel


def make_kernel(name: str, lengthscale: float = 1.0) -> Kernel:
    """Kernel by name: ``"linear"``, ``"gaussian"`` (alias ``"rbf"``) or ``"laplace"`` (alias ``"exponential"``)."""
    key = name.lower()
    if key == "linear":
        return LinearKernel()
    if key in ("gaussian", "rbf"):
        return GaussianKernel(lengthscale)
    if key in ("laplace", "exponential"):
        return LaplaceKernel(lengthscale)
    raise ValueError(f"unknown kernel {name!r}: use 'linear', 'gaussian' or 'laplace'")


@dataclass
class KRR:
    """A fitted kernel ridge regressor ``f(x) = k(x, X) alpha``, ``alpha = (K + ridge I)^{-1} Y``.

    ``X`` is ``(n, d)``, ``Y`` is ``(n, C)``, ``alpha`` is ``(n, C)``.
    """

    kernel: Kernel
    X: Tensor
    alpha: Tensor
    ridge: float

    def predict(self, x: Tensor) -> Tensor:
        """Predictions ``(B, C)``."""
        return self.kernel(x, self.X) @ self.alpha

    def jacobian(self, x: Tensor) -> Tensor:
        """Input Jacobians ``∂f_c/∂x`` as ``(B, C, d)``."""
        return torch.einsum("bnd,nc->bcd", self.kernel.grad(x, self.X), self.alpha)

    def hessian(self, x: Tensor) -> Tensor:
        """Input Hessians of each output ``∂²f_c/∂x²`` as ``(B, C, d, d)``."""
        return torch.einsum("bnde,nc->bcde", self.kernel.hess(x, self.X), self.alpha)

    def loss_input_hessian(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Input Hessian of the squared loss ``½|f(x) - y|²`` at each query, split into parts.

        Returns ``(gauss_newton, residual)``, each ``(B, d, d)``: ``JᵀJ`` and
        ``Σ_c (f_c(x) - y_c) ∇²f_c(x)``. Their sum is the full Hessian.
        """
        if y.shape != (x.shape[0], self.alpha.shape[1]):
            raise ValueError(f"targets must be (B, C) = {(x.shape[0], self.alpha.shape[1])}, got {tuple(y.shape)}")
        J = self.jacobian(x)
        gn = J.transpose(1, 2) @ J
        res = torch.einsum("bc,bcde->bde", self.predict(x) - y, self.hessian(x))
        return gn, res


def fit_krr(kernel: Kernel, X: Tensor, Y: Tensor, ridge: float) -> KRR:
    """Fit KRR by a Cholesky solve of ``(K + ridge I) alpha = Y``.

    ``X``: ``(n, d)``; ``Y``: ``(n,)`` or ``(n, C)``; ``ridge > 0`` is ``n·λ``.
    """
    if not ridge > 0:
        raise ValueError(f"ridge (n·λ) must be positive, got {ridge}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"need X (n, d) and Y (n, C) with the same n; got {tuple(X.shape)} and {tuple(Y.shape)}")
    if not (torch.isfinite(X).all() and torch.isfinite(Y).all()):
        raise ValueError("X and Y must be finite")
    K = kernel(X, X)
    K = K + ridge * torch.eye(X.shape[0], dtype=K.dtype, device=K.device)
    L = torch.linalg.cholesky(K)
    alpha = torch.cholesky_solve(Y.to(K.dtype), L)
    return KRR(kernel=kernel, X=X, alpha=alpha, ridge=float(ridge))
