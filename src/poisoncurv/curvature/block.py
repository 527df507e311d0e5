"""Block Krylov eigen solvers on batched products: the top ``k`` of one operator from products
with a block of tangents at once (``op @ V``, one backward for the block), and the top ``k`` of
every example's own input Hessian, one Krylov basis per example advanced in lockstep with one
batched product per step (the batching of GPyTorch's ``lanczos_tridiag``).

Both run one routine, :func:`block_krylov`: block Lanczos with full reorthogonalisation (twice
against the whole basis), where the Rayleigh-Ritz projection ``Qᵀ (A Q)`` is formed from the
stored products, so the residuals ``‖A u − θ u‖`` it reports are computed from actual products
(not estimated from the recurrence). A block of ``p`` columns resolves eigenvalues of multiplicity
up to ``p`` without restarts; a column that vanishes on reorthogonalisation (an invariant subspace:
rank-deficient operators, e.g. ReLU networks whose per-example Hessians have rank ``≤ C − 1``) is
replaced by a random vector orthogonal to the basis.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from poisoncurv.curvature.base import Operator
from poisoncurv.curvature.eigen import EigenResult, check_k_tol
from poisoncurv.curvature.hessian import PerExampleInputHessian
from poisoncurv.curvature.lanczos import breakdown_tol, check_square, unit_random


def _project_out(W: Tensor, Q: Tensor) -> Tensor:
    """``W`` ``(B, d, p)`` minus its projection on the columns of ``Q`` ``(B, d, m)``, twice."""
    for _ in range(2):
        W = W - Q @ (Q.transpose(1, 2) @ W)
    return W


def _next_block(W: Tensor, Q: Tensor, floor: Tensor, gen: torch.Generator) -> Tensor:
    """An orthonormal block ``(B, d, p)`` orthogonal to ``Q``: ``W`` projected and orthonormalised
    twice (a column that lost over half its norm on the second pass was noise amplified by the
    first), with columns below ``floor`` ``(B,)`` (relative breakdown) replaced by random ones."""
    for _ in range(4):
        X, R = torch.linalg.qr(_project_out(W, Q))
        small = R.diagonal(dim1=1, dim2=2).abs() <= floor[:, None]
        if not bool(small.any()):
            X, R = torch.linalg.qr(_project_out(X, Q))
            small = R.diagonal(dim1=1, dim2=2).abs() <= 0.5
            if not bool(small.any()):
                return X
        W = torch.where(small[:, None, :], unit_random(W.shape, gen, W.dtype, W.device), X)
    return torch.linalg.qr(_project_out(W, Q))[0]


def block_krylov(apply: Callable[[Tensor], Tensor], B: int, d: int, k: int, p: int, *, dtype: torch.dtype,
                 device: torch.device, tol: float, max_products: int, seed: int) -> EigenResult:
    """Top ``k`` eigenpairs of ``B`` symmetric ``d × d`` problems given ``apply(V)`` ``(B, d, p) -> (B, d, p)``.

    Returns values ``(B, k)`` descending, vectors ``(B, d, k)``, residuals ``(B, k)`` (float64),
    ``n_products`` per problem (columns applied), ``converged`` for all problems. A problem has
    converged when each of its top ``k`` residuals is ``≤ tol·|θ_i|`` or ``≤ sqrt(d)·eps·‖A‖``
    (``‖A‖`` estimated by the largest ``|θ|``); the run stops when all have, or after
    ``max_products`` columns per problem (or when the basis fills the space).
    """
    gen = torch.Generator().manual_seed(seed)
    m_max = min(d, max(max_products, k))
    Q = torch.zeros(B, d, m_max, dtype=dtype, device=device)
    AQ = torch.zeros_like(Q)
    X = torch.linalg.qr(unit_random((B, d, p), gen, dtype, device))[0]
    eps_d = breakdown_tol(d, dtype)
    m = 0
    while True:
        q = min(p, m_max - m)
        X = X[..., :q]
        Q[..., m:m + q], AQ[..., m:m + q] = X, apply(X).to(dtype)
        m += q
        Qm, AQm = Q[..., :m], AQ[..., :m]
        T = (Qm.transpose(1, 2) @ AQm).double()
        theta, S = torch.linalg.eigh(0.5 * (T + T.transpose(1, 2)))
        anorm = theta.abs().amax(-1)
        kk = min(k, m)
        theta, S = theta.flip(-1)[:, :kk], S.flip(-1)[..., :kk].to(dtype)
        U = Qm @ S
        resid = (AQm @ S - U * theta.to(dtype)[:, None, :]).norm(dim=1).double()
        ok = (resid <= tol * theta.abs()) | (resid <= eps_d * anorm[:, None])
        converged = kk == k and bool(ok.all())
        if converged or m >= m_max:
            return EigenResult(theta, U, resid, m, converged)
        X = _next_block(AQ[..., m - q:m], Qm, (eps_d * anorm).to(dtype), gen)


def top_eigen_block(op: Operator, k: int, *, block_size: int | None = None, tol: float = 1e-6,
                    max_products: int | None = None, seed: int = 0) -> EigenResult:
    """The ``k`` largest (algebraic) eigenpairs of a symmetric operator by block Lanczos, each step
    one batched product ``op @ V`` with ``V`` ``(d, p)`` (``p = block_size``, default ``k``).

    Accuracy contract (as :func:`~poisoncurv.curvature.eigen.top_eigen`): on return with
    ``converged``, every residual ``‖A u_i − θ_i u_i‖ ≤ tol·|θ_i|`` or ``≤ sqrt(d)·eps·‖A‖`` (the
    precision of the products), computed from actual products; for a symmetric operator each
    ``θ_i`` is then within that residual of an eigenvalue. ``vectors`` ``(d, k)`` orthonormal,
    ``values`` ``(k,)`` float64 descending, ``n_products`` columns applied (default cap
    ``min(d, max(20k, 100 + p))``). Faster than one vector per step when the operator's batched
    product costs less than ``p`` single ones. On CPU a vectorised double backward through
    ``input_hessian`` costs more per vector than a single one (measured in ``benchmarks/``); for
    piecewise-linear models pass :func:`~poisoncurv.curvature.exact.exact_input_hessian` (the same
    matrix through its exact factors, premise checked), whose block products are matrix products.
    """
    d = check_square(op)
    check_k_tol(d, k, tol)
    p = k if block_size is None else block_size
    if not 1 <= p <= d:
        raise ValueError(f"block_size must be between 1 and d = {d}, got {p}")
    cap = max_products or max(20 * k, 100 + p)
    if cap < k:
        raise ValueError(f"max_products = {max_products} is smaller than k = {k}")
    res = block_krylov(lambda V: (op @ V[0])[None], 1, d, k, p, dtype=op.dtype, device=op.device, tol=tol,
                       max_products=cap, seed=seed)
    return EigenResult(res.values[0], res.vectors[0], res.residuals[0], res.n_products, res.converged)


def per_example_top_eigen(op: PerExampleInputHessian, k: int, *, block_size: int = 1, tol: float = 1e-6,
                          max_products: int | None = None, seed: int = 0) -> EigenResult:
    """The top ``k`` eigenpairs of every example's own input Hessian at once: one Krylov basis per
    example, all advanced together by one batched product ``op @ V`` with ``V`` ``(B, d, p)`` per step.

    ``op`` from :func:`~poisoncurv.curvature.hessian.per_example_input_hessian`. Returns values
    ``(B, k)``, vectors ``(B, d, k)``, residuals ``(B, k)``; ``converged`` when every example
    meets the contract of :func:`top_eigen_block` (residual ``≤ tol·|θ_i|`` or
    ``≤ sqrt(d)·eps·‖H_b‖``). The run continues until the slowest example has converged (default
    cap ``min(d, max(20k, 100))`` columns per example). For piecewise-linear models
    :func:`~poisoncurv.curvature.exact.exact_input_curvature` gives the same spectra exactly.
    """
    if not isinstance(op, PerExampleInputHessian):
        raise ValueError(f"op must come from per_example_input_hessian, got {type(op).__name__}")
    B, d, _ = op.shape
    check_k_tol(d, k, tol)
    if not 1 <= block_size <= d:
        raise ValueError(f"block_size must be between 1 and d = {d}, got {block_size}")
    cap = max_products or max(20 * k, 100)
    return block_krylov(op.__matmul__, B, d, k, block_size, dtype=op.dtype, device=op.device, tol=tol,
                        max_products=cap, seed=seed)
