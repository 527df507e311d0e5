"""Input-gradient regularisation: the regularised linear model and regularised KRR (Chapter 3).

Conventions. Training inputs ``X`` ``(n, d)``, scalar targets ``y`` ``(n,)``, mean squared loss
``E[L] = (1/2n) Σ_i (f(x_i) − y_i)²``. ``κ`` (``kappa``) is always the penalty weight, against the mean loss.
One ridge convention for kernel models: ``ridge`` is the weight of ``|f|²_H`` against the *summed* loss, as in
:mod:`poisoncurv.krr.derivative_krr`, :mod:`poisoncurv.krr.flow` and :mod:`poisoncurv.krr.clones`; a weight ``λ``
against the mean loss (the chapter's ``krr_lambda``) enters every function here as ``ridge = nλ``. The linear
model is written against ``E[L]``, as the paper writes it: there ``μ`` (``mu``) is always a *ridge* on ``|w|²``
against ``E[L]``, the effective ridge a penalty amounts to, which is the linear kernel's ``ridge`` per example,
``μ = ridge/n`` (``X.T @ feature_coordinates(...).alpha(y, n·λ, κ)`` equals :func:`ridge_solution` at ``μ = λ + κ``).

* **Linear model** ``f(x) = wᵀx``. The *f-gradient* penalty ``(κ/2) mean_i |∇_x f(x_i)|² = (κ/2)|w|²``
  is ridge. The paper's *loss-gradient* penalty ``(κ/2) mean_i |∇_x L_i|²`` has ``∇_x L_i = r_i w``
  (``r_i = wᵀx_i − y_i``), so it equals ``κ E[L] |w|²`` and ``J(w) = E[L] (1 + κ|w|²)``
  (:func:`loss_gradient_objective`); its stationary points are ridge solutions with the
  self-consistent ridge ``μ = 2κE[L] / (1 + κ|w|²)`` (:func:`ridge_stationary_points`).
* **Regularised KRR** over ``f = k(·, X) α``:
  ``J(α) = (1/2n)(|Kα − y|² + ridge·αᵀKα + κ αᵀGα)`` (:func:`regularised_krr_objective`) with the penalty
  matrix ``G = Σ_a D_aᵀ D_a``, ``D_a[:, j] = ∇_x k(a, x_j)`` (:func:`gradient_penalty_matrix`), so that
  ``αᵀGα = Σ_a |∇f(a)|²``. Normal equations: ``(K² + ridge·K + κG) α = K y``. In the coordinates
  ``β = Λ^{1/2}Uᵀα`` of the feature space (``K = UΛUᵀ``), ``f`` is linear in ``β``, ``αᵀKα = |β|²``,
  ``αᵀGα = βᵀMβ`` with ``M = Λ^{-1/2}UᵀGUΛ^{-1/2}``, and ``df(κ) = tr[Λ(Λ + ridge·I + κM)^{-1}]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from poisoncurv.krr.flow import flow_gain
from poisoncurv.krr.kernels import Kernel


def _check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if not v >= 0:
            raise ValueError(f"{name} must be non-negative, got {v}")


# ---------------------------------------------------------------------------------------------
# Linear model
# ---------------------------------------------------------------------------------------------

def mean_loss(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """``E[L] = (1/2n) |Xw − y|²`` (scalar tensor)."""
    return 0.5 * ((X @ w - y) ** 2).mean()


def loss_gradient_objective(w: Tensor, X: Tensor, y: Tensor, kappa: float) -> Tensor:
    """The paper's ``J(w) = E[L] + (κ/2) mean_i |∇_x L_i|²`` for ``f(x) = wᵀx``, in the closed
    form ``E[L](1 + κ|w|²)`` (scalar tensor)."""
    return mean_loss(w, X, y) * (1 + kappa * (w @ w))


def ridge_solution(X: Tensor, y: Tensor, mu: float) -> Tensor:
    """Minimiser ``(XᵀX/n + μI)^{-1} Xᵀy/n`` of ``E[L] + (μ/2)|w|²``, shape ``(d,)``; at ``μ = 0``
    the minimum-norm least-squares solution. ``μ`` is a ridge (for the model-gradient penalty
    ``μ = κ``; for the loss-gradient penalty the *effective* ridge of :func:`effective_ridge`)."""
    n, d = X.shape
    if mu == 0:
        return torch.linalg.pinv(X) @ y
    return torch.linalg.solve(X.T @ X / n + mu * torch.eye(d, dtype=X.dtype, device=X.device), X.T @ y / n)


def effective_ridge(w: Tensor, X: Tensor, y: Tensor, kappa: float) -> float:
    """``μ(w) = 2κE[L](w) / (1 + κ|w|²)``: the ridge at which a stationary point ``w`` of the
    loss-gradient objective is a ridge solution."""
    return float(2 * kappa * mean_loss(w, X, y) / (1 + kappa * (w @ w)))


def ridge_stationary_points(X: Tensor, y: Tensor, kappa: float, grid: int = 400) -> list[tuple[float, Tensor, float]]:
    """Every stationary point of the loss-gradient objective ``J = E[L](1 + κ|w|²)``, as ridge solutions.

    ``∇J = ∇E[L](1 + κ|w|²) + 2κE[L] w = 0`` holds exactly when ``w = w_μ`` (the ridge solution) with
    ``μ = T(μ) := μ(w_μ)`` (:func:`effective_ridge`). ``0 ≤ T(μ) ≤ 2κE[L](0)``, so every root lies in
    ``[0, 2κE[L](0)]``; roots are bracketed on a ``grid`` of that interval (log-spaced, plus 0) and
    refined by Brent's method. Returns ``(J, w, μ)`` per root, sorted by ``J`` (global minimiser first).
    """
    _check_nonneg(kappa=kappa)
    n = X.shape[0]
    h, Q = torch.linalg.eigh(X.T @ X / n)
    b = Q.T @ (X.T @ y / n)
    live = h > 1e-12 * h.max()

    def ridge(mu: float) -> Tensor:                  # w_μ from the eigenbasis (minimum norm at μ = 0)
        return Q @ torch.where(live, b / torch.where(live, h + mu, 1.0), 0.0)

    def gap(mu: float) -> float:
        return mu - effective_ridge(ridge(mu), X, y, kappa)

    hi = float(2 * kappa * 0.5 * (y**2).mean())
    if hi == 0.0:
        return [(float(loss_gradient_objective(ridge(0.0), X, y, kappa)), ridge(0.0), 0.0)]
    mus = np.concatenate([[0.0], np.logspace(np.log10(hi) - 12, np.log10(hi), grid)])
    gaps = np.array([gap(m) for m in mus])
    roots = [0.0] if gaps[0] == 0 else []
    for lo_, hi_, g_lo, g_hi in zip(mus[:-1], mus[1:], gaps[:-1], gaps[1:]):
        if g_lo < 0 <= g_hi or g_lo > 0 >= g_hi:
            roots.append(brentq(gap, lo_, hi_, xtol=1e-15, rtol=1e-14))
    out = [(float(loss_gradient_objective(ridge(mu), X, y, kappa)), ridge(mu), float(mu)) for mu in roots]
    return sorted(out, key=lambda r: r[0])


def loss_gradient_objective_multi(W: Tensor, X: Tensor, Y: Tensor, kappa: float) -> Tensor:
    """The paper's ``J(W) = E[L] + (κ/2) mean_i |∇_x L_i|²`` for ``f(x) = Wx`` with ``C`` outputs
    (``W`` ``(C, d)``, ``Y`` ``(n, C)``): ``∇_x L_i = Wᵀr_i``, so ``J = ½ tr R + (κ/2) tr(WWᵀR)`` with the
    residual second moment ``R = mean_i r_i r_iᵀ`` (scalar tensor)."""
    r = X @ W.T - Y
    R = r.T @ r / X.shape[0]
    return 0.5 * torch.trace(R) + 0.5 * kappa * torch.trace(W @ W.T @ R)


def matrix_ridge(W: Tensor, X: Tensor, Y: Tensor, kappa: float) -> Tensor:
    """``A = κ(I + κWWᵀ)^{-1}R`` ``(C, C)``: a stationary point of :func:`loss_gradient_objective_multi` solves
    the Sylvester equation ``W H + A W = B`` (``H = XᵀX/n``, ``B = YᵀX/n``), a ridge that acts on the
    outputs through the matrix ``A`` (for ``C = 1``, ``A`` is the scalar :func:`effective_ridge`)."""
    r = X @ W.T - Y
    R = r.T @ r / X.shape[0]
    C = W.shape[0]
    return kappa * torch.linalg.solve(torch.eye(C, dtype=W.dtype) + kappa * W @ W.T, R)


def sylvester_ridge_solution(H: Tensor, A: Tensor, B: Tensor) -> Tensor:
    """The solution ``W`` ``(C, d)`` of ``W H + A W = B`` for symmetric ``H`` ``(d, d)`` and diagonalisable ``A``
    ``(C, C)`` (``A = P diag(a) P^{-1}``, ``H = Q diag(h) Qᵀ``): ``(P^{-1}WQ)_{ck} = (P^{-1}BQ)_{ck}/(a_c + h_k)``."""
    h, Q = torch.linalg.eigh(H)
    a, P = torch.linalg.eig(A)
    Bt = torch.linalg.solve(P, B.to(P.dtype)) @ Q.to(P.dtype)
    return (P @ (Bt / (a[:, None] + h.to(P.dtype)[None, :])) @ Q.T.to(P.dtype)).real


def ridge_filter(h: Tensor | np.ndarray, kappa: float | np.ndarray, t: float = np.inf) -> Tensor | np.ndarray:
    """Fraction of the unregularised, converged fit that gradient flow from 0 reaches in a mode of
    data eigenvalue ``h`` at time ``t`` on ``E[L] + (κ/2)|w|²``: ``h/(h+κ) · (1 − e^{−(h+κ)t})``."""
    if np.any(np.asarray(kappa) < 0):
        raise ValueError(f"kappa must be non-negative, got {kappa}")
    lib = torch if isinstance(h, Tensor) else np
    rate = h + kappa
    return h / rate * (1 - lib.exp(-rate * t)) if np.isfinite(t) else h / rate


def linear_flow_closed_form(X: Tensor, y: Tensor, kappa: float, t: float) -> Tensor:
    """Gradient flow from ``w = 0`` on ``E[L] + (κ/2)|w|²`` at time ``t`` (``(d,)``), from the
    eigenbasis ``(h_k, q_k)`` of ``XᵀX/n``: ``w(t) = Σ_k g(h_k + κ, t) q_k q_kᵀ Xᵀy/n`` with the
    flow gain ``g`` of :func:`poisoncurv.krr.flow.flow_gain` (the module's one closed form)."""
    n = X.shape[0]
    h, Q = torch.linalg.eigh(X.T @ X / n)
    return Q @ (flow_gain(h + kappa, t) * (Q.T @ (X.T @ y / n)))


# ---------------------------------------------------------------------------------------------
# Regularised KRR
# ---------------------------------------------------------------------------------------------

def gradient_penalty_matrix(kernel: Kernel, X: Tensor, at: Tensor | None = None) -> Tensor:
    """Penalty matrix ``G`` ``(n, n)`` with ``αᵀGα = Σ_a |∇_x f(a)|²`` for ``f = k(·, X) α``.

    ``X``: centres ``(n, d)``; ``at``: points ``(A, d)`` where the input gradient is penalised
    (default: the training points ``X``). ``G = Σ_a D_aᵀ D_a`` with ``D_a[:, j] = ∇_x k(a, x_j)``;
    symmetric positive semi-definite. For the linear kernel and ``at = X``, ``G = n·K``.
    (The Laplace kernel has no gradient at ``a = x_j`` and raises there.)
    """
    at = X if at is None else at
    D = kernel.grad(at, X)                       # (A, n, d): D[a, j] = ∇_x k(a, x_j)
    G = torch.einsum("ajd,akd->jk", D, D)
    return 0.5 * (G + G.T)


@dataclass
class FeatureCoordinates:
    """Regularised KRR in feature coordinates ``β = Λ^{1/2}Uᵀα`` (rank ``r`` of ``K``).

    ``U`` ``(n, r)``, ``lam`` ``(r,)``: the eigenpairs of ``K`` kept; ``M`` ``(r, r)``: the penalty
    ``Λ^{-1/2}UᵀGUΛ^{-1/2}``; ``n`` the number of training points. Fitted values are ``Bβ`` with
    ``B = UΛ^{1/2}``.
    """

    U: Tensor
    lam: Tensor
    M: Tensor
    n: int

    @property
    def B(self) -> Tensor:
        """``UΛ^{1/2}``, ``(n, r)``: fitted values are ``Bβ``."""
        return self.U * self.lam.sqrt()

    def system(self, ridge: float, kappa: float) -> Tensor:
        """``A = Λ + ridge·I + κM`` ``(r, r)``, with ``ridge = nλ``: ``n`` times the Hessian of ``J`` in ``β``."""
        _check_nonneg(ridge=ridge, kappa=kappa)
        return torch.diag(self.lam + ridge) + kappa * self.M

    def beta(self, y: Tensor, ridge: float, kappa: float) -> Tensor:
        """The minimiser ``β = A^{-1} Bᵀy`` ``(r,)``."""
        return torch.linalg.solve(self.system(ridge, kappa), self.B.T @ y)

    def alpha(self, y: Tensor, ridge: float, kappa: float) -> Tensor:
        """Dual weights ``α = UΛ^{-1/2}β`` ``(n,)`` (the minimum-norm solution of the normal equations)."""
        return self.U @ (self.beta(y, ridge, kappa) / self.lam.sqrt())

    def df(self, ridge: float, kappa: float) -> float:
        """Effective degrees of freedom ``tr[Λ A^{-1}]`` (trace of the smoother ``B A^{-1} Bᵀ``)."""
        return float(torch.trace(torch.linalg.solve(self.system(ridge, kappa), torch.diag(self.lam))))

    def df_derivative(self, ridge: float, kappa: float) -> float:
        """``d df/dκ = −tr[Λ A^{-1} M A^{-1}] ≤ 0``."""
        Ainv = torch.linalg.inv(self.system(ridge, kappa))
        return float(-torch.trace(torch.diag(self.lam) @ Ainv @ self.M @ Ainv))

    def residual(self, y: Tensor, ridge: float, kappa: float) -> float:
        """Training residual ``|y − Bβ|²``."""
        return float(((y - self.B @ self.beta(y, ridge, kappa)) ** 2).sum())

    def residual_derivative(self, y: Tensor, ridge: float, kappa: float) -> float:
        """``d|y − Bβ|²/dκ = 2 βᵀ(ridge·I + κM) A^{-1} M β`` (no fixed sign when ``ridge > 0``)."""
        A = self.system(ridge, kappa)
        b = torch.linalg.solve(A, self.B.T @ y)
        P = ridge * torch.eye(len(b), dtype=b.dtype, device=b.device) + kappa * self.M
        return float(2 * b @ P @ torch.linalg.solve(A, self.M @ b))

    def curves(self, y: Tensor, ridge: float, kappas: np.ndarray) -> dict[str, np.ndarray]:
        """df, residual ``|y − f|²``, data term ``|y − f|² + ridge·|f|²_H`` and penalty ``Σ_a|∇f(x_a)|²``
        over an array of ``κ``, from the generalised eigenproblem of ``(M, Λ + ridge·I)``.

        With ``Λ_c = Λ + ridge·I`` and ``Λ_c^{-1/2} M Λ_c^{-1/2} = W diag(p) Wᵀ``:
        ``A^{-1} = Λ_c^{-1/2} W diag(1/(1 + κp)) Wᵀ Λ_c^{-1/2}``, so ``df(κ) = Σ_k s_k / (1 + κ p_k)`` with
        ``s_k = Σ_j W_jk² λ_j/(λ_j + ridge) > 0``. Each array has the shape of ``kappas``.
        """
        _check_nonneg(ridge=ridge)
        kap = torch.as_tensor(np.asarray(kappas, dtype=float), dtype=self.lam.dtype)
        if bool((kap < 0).any()):
            raise ValueError("kappas must be non-negative")
        isq = (self.lam + ridge).rsqrt()
        p, W = torch.linalg.eigh(isq[:, None] * self.M * isq[None, :])
        p = p.clamp_min(0)
        s = (W**2 * (self.lam / (self.lam + ridge))[:, None]).sum(0)
        g = 1 / (1 + p[:, None] * kap[None, :])                       # (r, K)
        z = W.T @ (isq * (self.B.T @ y))
        beta = isq[:, None] * (W @ (g * z[:, None]))                  # (r, K)
        fit = self.B @ beta
        res = ((y[:, None] - fit) ** 2).sum(0)
        return {"df": (s[:, None] * g).sum(0).numpy(), "residual": res.numpy(),
                "data_term": (res + ridge * (beta**2).sum(0)).numpy(),
                "penalty": torch.einsum("rk,rs,sk->k", beta, self.M, beta).numpy(),
                "p": p.numpy(), "s": s.numpy()}


def feature_coordinates(K: Tensor, G: Tensor, rtol: float = 1e-12) -> FeatureCoordinates:
    """Diagonalise ``K`` ``(n, n)`` keeping eigenvalues above ``rtol·λ_max`` and express ``G`` there.

    Functions in the null space of ``K`` vanish identically, so their gradients do too: nothing of
    ``G`` is lost by the truncation beyond rounding.
    """
    if K.shape != G.shape or K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K and G must be square and of equal shape; got {tuple(K.shape)} and {tuple(G.shape)}")
    lam, U = torch.linalg.eigh(0.5 * (K + K.T))
    keep = lam > rtol * lam.max()
    lam, U = lam[keep], U[:, keep]
    S = U / lam.sqrt()
    M = S.T @ G @ S
    return FeatureCoordinates(U=U, lam=lam, M=0.5 * (M + M.T), n=K.shape[0])


def regularised_krr_objective(alpha: Tensor, K: Tensor, G: Tensor, y: Tensor, ridge: float, kappa: float) -> Tensor:
    """``J(α) = (1/2n)(|Kα − y|² + ridge·αᵀKα + κ αᵀGα)`` (scalar tensor), with ``ridge = nλ`` as everywhere in this
    module: :class:`FeatureCoordinates` minimises it (its :meth:`~FeatureCoordinates.system` is ``n`` times its
    Hessian in ``β``)."""
    n = K.shape[0]
    return 0.5 / n * (((K @ alpha - y) ** 2).sum() + ridge * alpha @ K @ alpha + kappa * alpha @ G @ alpha)
