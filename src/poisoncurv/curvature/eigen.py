"""Eigen routines for symmetric curvature operators: top eigenpairs by Lanczos, spectral densities
by stochastic Lanczos quadrature (SLQ), and the squared-cosine overlap.

Every tolerance is relative: to an eigenvalue, or to the running estimate ``‖T‖`` of the operator
norm (never an absolute epsilon), so eigenvalues of any scale (1e-7 included) are resolved to the
precision of the operator's products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor


class Operator(Protocol):
    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def __matmul__(self, v: Tensor) -> Tensor: ...


@dataclass
class EigenResult:
    """Top eigenpairs: ``values`` ``(k,)`` descending, ``vectors`` ``(d, k)`` orthonormal columns,
    ``residuals`` ``(k,)`` = ``‖A u − θ u‖`` (an upper bound on each eigenvalue's error),
    ``n_products`` operator-vector products used, ``converged``."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    n_products: int
    converged: bool


def _check_op(op: Any) -> int:
    shape = tuple(getattr(op, "shape", ()))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"operator must be square (d, d), got shape {shape}")
    return int(shape[0])


def _unit_random(d: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device, rademacher: bool) -> Tensor:
    v = torch.randint(0, 2, (d,), generator=gen).double() * 2 - 1 if rademacher else torch.randn(d, generator=gen,
                                                                                                    dtype=torch.float64)
    v = v.to(device=device, dtype=dtype)
    return v / v.norm()


def _orthogonalise(w: Tensor, Q: Tensor) -> Tensor:
    """``w`` minus its projection on the rows of ``Q``, applied twice ("twice is enough")."""
    for _ in range(2):
        w = w - Q.T @ (Q @ w)
    return w


def _breakdown_tol(d: int, dtype: torch.dtype) -> float:
    """Relative size (to ‖A‖) below which a Lanczos residual counts as zero: ``sqrt(d)·eps``."""
    return d**0.5 * torch.finfo(dtype).eps


def _tridiag_eigh(alpha: list[float], beta: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal matrix, in float64."""
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if len(alpha) > 1:
        off = torch.tensor(beta[: len(alpha) - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    return theta.numpy(), S.numpy()


def top_eigen(op: Operator, k: int, *, tol: float = 1e-6, max_steps: int | None = None, seed: int = 0,
              check_every: int = 5) -> EigenResult:
    """The ``k`` largest (algebraic) eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation.

    Convergence: every one of the top ``k`` Ritz pairs has residual ``≤ tol·|θ_i|`` or
    ``≤ sqrt(d)·eps·‖T‖`` (the precision of the products); at most ``max_steps`` products
    (default ``min(d, max(20k, 100))``). Relative breakdown (a Lanczos residual
    ``≤ sqrt(d)·eps·‖T‖``: an invariant subspace was found, e.g. for a rank-deficient operator)
    restarts from a random vector orthogonal to the basis; after a restart the run stops only once
    the new block adds nothing above the current ``k``-th Ritz value. This probe of the complement
    is what finds repeated eigenvalues; without a breakdown a single Krylov sequence sees one copy
    of each eigenvalue.
    """
    d = _check_op(op)
    if not 1 <= k <= d:
        raise ValueError(f"k must be between 1 and d = {d}, got k = {k}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    steps = min(d, max_steps or max(20 * k, 100))
    if steps < k:
        raise ValueError(f"max_steps = {max_steps} is smaller than k = {k}")
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(steps, d, dtype=op.dtype, device=op.device)
    alpha: list[float] = []
    beta: list[float] = []
    q = _unit_random(d, gen, op.dtype, op.device, rademacher=False)
    floor = _breakdown_tol(d, op.dtype)
    anorm, b_prev, n_products, block_start = 0.0, 0.0, 0, 0
    theta = S = resid = None
    for j in range(steps):
        Q[j] = q
        w = op @ q
        n_products += 1
        a = float(q @ w)
        w = _orthogonalise(w, Q[: j + 1])
        b = float(w.norm())
        alpha.append(a)
        beta.append(b)
        anorm = max(anorm, float(np.sqrt(a * a + b * b + b_prev * b_prev)))
        broke = b <= floor * anorm
        last = j + 1 == steps
        if j + 1 >= k and ((j + 1 - k) % check_every == 0 or broke or last):
            theta, S = _tridiag_eigh(alpha, beta)
            top = np.argsort(theta)[::-1][:k]
            theta, S = theta[top], S[:, top]
            resid = np.abs(b * S[-1])
            converged = bool(np.all((resid <= tol * np.abs(theta)) | (resid <= floor * anorm)))
            if block_start == 0:
                done = converged and not broke  # at a first breakdown, probe the complement once
            else:
                block_top = _tridiag_eigh(alpha[block_start:], beta[block_start:])[0][-1]
                done = converged and (broke or j + 1 - block_start >= k) and block_top <= theta[-1] + floor * anorm
            if done:
                break
        if last:
            break
        if broke:
            q = _orthogonalise(_unit_random(d, gen, op.dtype, op.device, rademacher=False), Q[: j + 1])
            if float(q.norm()) <= 0.5:  # the basis already spans the space
                break
            q, b, beta[-1], block_start = q / q.norm(), 0.0, 0.0, j + 1
        else:
            q = w / b
        b_prev = b
    m = len(alpha)
    vectors = Q[:m].T @ torch.as_tensor(S, dtype=op.dtype, device=op.device)
    residuals = torch.as_tensor(resid, dtype=torch.float64)
    converged = bool(np.all((resid <= tol * np.abs(theta)) | (resid <= floor * anorm)))
    return EigenResult(torch.as_tensor(theta.copy(), dtype=torch.float64), vectors, residuals, n_products, converged)


@dataclass
class SpectralMeasure:
    """The SLQ estimate of the spectral measure ``(1/d) Σ_i δ(λ_i)``: a weighted sum of point
    masses at ``nodes`` ``(n_probes, m)`` with ``weights`` ``(n_probes, m)`` summing to one."""

    nodes: np.ndarray
    weights: np.ndarray

    def density(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """Gaussian-smoothed density (width ``sigma``) on ``grid``; integrates to one over the line."""
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        g = np.asarray(grid, dtype=np.float64)[:, None]
        kern = np.exp(-0.5 * ((g - self.nodes.ravel()[None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return kern @ self.weights.ravel()

    def wasserstein1(self, eigenvalues: np.ndarray) -> float:
        """Wasserstein-1 distance to the uniform measure on ``eigenvalues`` (``(d,)``)."""
        from scipy.stats import wasserstein_distance

        return float(wasserstein_distance(self.nodes.ravel(), np.asarray(eigenvalues, dtype=np.float64),
                                          u_weights=self.weights.ravel()))


def spectral_density(op: Operator, *, n_probes: int = 10, n_steps: int = 50, seed: int = 0) -> SpectralMeasure:
    """Stochastic Lanczos quadrature: for each Rademacher probe ``v`` (normalised), ``n_steps`` of
    Lanczos with full reorthogonalisation give nodes ``θ_j`` and weights ``τ_j² / n_probes``
    (``τ_j`` the first components of the eigenvectors of the tridiagonal matrix). A probe stops
    early at a relative breakdown (its Krylov space is then exact)."""
    d = _check_op(op)
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be >= 1, got {n_probes} and {n_steps}")
    gen = torch.Generator().manual_seed(seed)
    floor = _breakdown_tol(d, op.dtype)
    m = min(n_steps, d)
    nodes, weights = np.zeros((n_probes, m)), np.zeros((n_probes, m))
    for p in range(n_probes):
        Q = torch.zeros(m, d, dtype=op.dtype, device=op.device)
        q = _unit_random(d, gen, op.dtype, op.device, rademacher=True)
        alpha: list[float] = []
        beta: list[float] = []
        anorm = 0.0
        for j in range(m):
            Q[j] = q
            w = op @ q
            a = float(q @ w)
            w = _orthogonalise(w, Q[: j + 1])
            b = float(w.norm())
            alpha.append(a)
            beta.append(b)
            anorm = max(anorm, float(np.sqrt(a * a + b * b)))
            if b <= floor * anorm or j + 1 == m:
                break
            q = w / b
        theta, S = _tridiag_eigh(alpha, beta)
        nodes[p, : len(theta)], weights[p, : len(theta)] = theta, S[0] ** 2 / n_probes
    return SpectralMeasure(nodes, weights)


def overlap(v: Tensor, direction: Tensor) -> Tensor:
    """Squared cosine between ``direction`` (any shape with ``d`` entries) and ``v``: ``(d,)`` gives
    a scalar, ``(d, k)`` (eigenvectors as columns) gives ``(k,)``."""
    u = direction.reshape(-1).to(v.dtype)
    if v.ndim not in (1, 2) or v.shape[0] != u.numel():
        raise ValueError(f"v must be (d,) or (d, k) with d = {u.numel()} (the direction's size), got {tuple(v.shape)}")
    un, vn = u.norm(), v.norm(dim=0)
    if float(un) == 0 or bool((vn == 0).any()):
        raise ValueError("overlap of a zero vector is undefined")
    return ((u @ v) / (un * vn)) ** 2
