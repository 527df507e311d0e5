"""Eigen routines for symmetric curvature operators, one vector at a time: top eigenpairs by
Lanczos, spectral densities by stochastic Lanczos quadrature (SLQ), and the squared-cosine overlap.
Both solvers run the same step, :func:`poisoncurv.curvature.lanczos.lanczos_step`. A formed matrix has
its top eigenpairs from LAPACK (:func:`dense_top_eigen`).

Every tolerance is relative: to an eigenvalue, or to the running estimate ``‖T‖`` of the operator
norm (never an absolute epsilon), so eigenvalues of any scale (1e-7 included) are resolved to the
precision of the operator's products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from poisoncurv.curvature.base import Operator
from poisoncurv.curvature.lanczos import breakdown_tol, check_square, lanczos_step, orthogonalise, tridiag_eigh, unit_random


@dataclass
class EigenResult:
    """Top eigenpairs: ``values`` ``(k,)`` descending, ``vectors`` ``(d, k)`` orthonormal columns,
    ``residuals`` ``(k,)`` = ``‖A u − θ u‖`` (an upper bound on each eigenvalue's error),
    ``n_products`` operator-vector products used, ``converged``. Batched solvers add a leading
    batch dim ``B`` to ``values``, ``vectors`` and ``residuals`` and count products per example."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    n_products: int
    converged: bool


def check_k(d: int, k: int) -> None:
    """``ValueError`` unless ``1 <= k <= d``."""
    if not 1 <= k <= d:
        raise ValueError(f"k must be between 1 and d = {d}, got k = {k}")


def check_k_tol(d: int, k: int, tol: float) -> None:
    """``ValueError`` unless ``1 <= k <= d`` and ``tol > 0``."""
    check_k(d, k)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")


def top_eigen(op: Operator, k: int, *, tol: float = 1e-6, max_steps: int | None = None, seed: int = 0,
              check_every: int = 5) -> EigenResult:
    """The ``k`` largest (algebraic) eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation, one product ``op @ v`` per step.

    Convergence: every one of the top ``k`` Ritz pairs has residual ``≤ tol·|θ_i|`` or
    ``≤ sqrt(d)·eps·‖T‖`` (the precision of the products); at most ``max_steps`` products
    (default ``min(d, max(20k, 100))``). Relative breakdown (a Lanczos residual
    ``≤ sqrt(d)·eps·‖T‖``: an invariant subspace was found, e.g. for a rank-deficient operator)
    restarts from a random vector orthogonal to the basis; after a restart the run stops only once
    the new block adds nothing above the current ``k``-th Ritz value. This probe of the complement
    is what finds repeated eigenvalues; without a breakdown a single Krylov sequence sees one copy
    of each eigenvalue (use :func:`~poisoncurv.curvature.block.top_eigen_block` for clusters).
    """
    d = check_square(op)
    check_k_tol(d, k, tol)
    steps = min(d, max_steps or max(20 * k, 100))
    if steps < k:
        raise ValueError(f"max_steps = {max_steps} is smaller than k = {k}")
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(steps, d, dtype=op.dtype, device=op.device)
    alpha: list[float] = []
    beta: list[float] = []
    Q[0] = unit_random((d,), gen, op.dtype, op.device)
    floor = breakdown_tol(d, op.dtype)
    anorm, b_prev, block_start = 0.0, 0.0, 0
    theta = S = resid = None
    for j in range(steps):
        w, a, b = lanczos_step(op, Q, j)
        alpha.append(a)
        beta.append(b)
        anorm = max(anorm, float(np.sqrt(a * a + b * b + b_prev * b_prev)))
        broke = b <= floor * anorm
        last = j + 1 == steps
        if j + 1 >= k and ((j + 1 - k) % check_every == 0 or broke or last):
            theta, S = tridiag_eigh(alpha, beta)
            top = np.argsort(theta)[::-1][:k]
            theta, S = theta[top], S[:, top]
            resid = np.abs(b * S[-1])
            converged = bool(np.all((resid <= tol * np.abs(theta)) | (resid <= floor * anorm)))
            if block_start == 0:
                done = converged and not broke  # at a first breakdown, probe the complement once
            else:
                block_top = tridiag_eigh(alpha[block_start:], beta[block_start:])[0][-1]
                done = converged and (broke or j + 1 - block_start >= k) and block_top <= theta[-1] + floor * anorm
            if done:
                break
        if last:
            break
        if broke:
            q = orthogonalise(unit_random((d,), gen, op.dtype, op.device), Q[: j + 1])
            if float(q.norm()) <= 0.5:  # the basis already spans the space
                break
            q, b, beta[-1], block_start = q / q.norm(), 0.0, 0.0, j + 1
        else:
            q = w / b
        Q[j + 1] = q
        b_prev = b
    assert theta is not None and S is not None and resid is not None  # the last step (steps >= k) sets them
    m = len(alpha)
    vectors = Q[:m].T @ torch.as_tensor(S, dtype=op.dtype, device=op.device)
    residuals = torch.as_tensor(resid, dtype=torch.float64)
    converged = bool(np.all((resid <= tol * np.abs(theta)) | (resid <= floor * anorm)))
    return EigenResult(torch.as_tensor(theta.copy(), dtype=torch.float64), vectors, residuals, m, converged)


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
    d = check_square(op)
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be >= 1, got {n_probes} and {n_steps}")
    gen = torch.Generator().manual_seed(seed)
    floor = breakdown_tol(d, op.dtype)
    m = min(n_steps, d)
    nodes, weights = np.zeros((n_probes, m)), np.zeros((n_probes, m))
    for p in range(n_probes):
        Q = torch.zeros(m, d, dtype=op.dtype, device=op.device)
        Q[0] = unit_random((d,), gen, op.dtype, op.device, rademacher=True)
        alpha: list[float] = []
        beta: list[float] = []
        anorm = 0.0
        for j in range(m):
            w, a, b = lanczos_step(op, Q, j)
            alpha.append(a)
            beta.append(b)
            anorm = max(anorm, float(np.sqrt(a * a + b * b)))
            if b <= floor * anorm or j + 1 == m:
                break
            Q[j + 1] = w / b
        theta, S = tridiag_eigh(alpha, beta)
        nodes[p, : len(theta)], weights[p, : len(theta)] = theta, S[0] ** 2 / n_probes
    return SpectralMeasure(nodes, weights)


def dense_top_eigen(A: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest eigenvalues ``(k,)``, descending, and unit eigenvectors ``(d, k)`` of a symmetric ``(d, d)``
    matrix (its lower triangle is read), on ``A``'s device and dtype. LAPACK's ``syevr`` on the CPU: it reduces ``A``
    to tridiagonal form and computes only the ``k`` wanted pairs, which is several times faster than a full ``eigh``
    (784 × 784 in float64, one thread: 0.02 s against 0.07 s) and agrees with it to rounding (tested)."""
    d = check_square(A)
    check_k(d, k)
    vals, vecs = scipy.linalg.eigh(A.detach().cpu().numpy(), subset_by_index=[d - k, d - 1], driver="evr")
    return (torch.from_numpy(vals[::-1].copy()).to(A.device, A.dtype),
            torch.from_numpy(vecs[:, ::-1].copy()).to(A.device, A.dtype))


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
