"""Chapter 3 drivers: input-gradient regularisation under gradient flow (claims C4, C5).

All computations are float64 on the CPU (the problems are small). Each experiment returns a frozen
dataclass: arrays to plot (with their axis, e.g. ``kappa``, stored beside them) and a ``summary()``
whose keys are the chapter's glue keys (the numbers the text quotes and ``claims.yml`` checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.dtypes import THEORY_DTYPE as DTYPE
from poisoncurv.core.fitting import loglog_slope, rel_err, rel_norm_err
from poisoncurv.core.profiles import by_profile
from poisoncurv.core.tables import Table
from poisoncurv.krr.flow import euler_flow
from poisoncurv.krr.kernels import GaussianKernel, LinearKernel
from poisoncurv.krr.regularised import (
    effective_ridge,
    feature_coordinates,
    gradient_penalty_matrix,
    linear_flow_closed_form,
    loss_gradient_objective,
    loss_gradient_objective_multi,
    matrix_ridge,
    mean_loss,
    ridge_filter,
    ridge_solution,
    ridge_stationary_points,
    sylvester_ridge_solution,
)

RUN = "Run: {glue:text}`ch03_gradient_flow_defence_run`."     # ends every caption of the chapter


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every experiment in the chapter for ``profile``."""
    return {
        # linear model: the two penalties and the frontier
        "lin_n_clean": by_profile(profile, smoke=200, cpu=400, gpu=2000, full=5000),
        "lin_clean_eigs": by_profile(profile, smoke=8, cpu=12, gpu=24, full=48),
        "lin_patch": 4,
        "lin_m": by_profile(profile, smoke=10, cpu=20, gpu=100, full=250),
        "lin_h_poison": 0.3,
        "lin_y_target": 2.0,
        "lin_noise": 0.3,
        "lin_kappas": by_profile(profile, smoke=np.logspace(-3, 2, 11), cpu=np.logspace(-3, 2, 26),
                                 gpu=np.logspace(-3, 2, 51), full=np.logspace(-3, 2, 101)),
        "lin_loss_kappas": by_profile(profile, smoke=[0.1, 1.0, 10.0], cpu=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
                                      gpu=list(np.logspace(-1.5, 1.5, 13)), full=list(np.logspace(-1.5, 1.5, 25))),
        "lin_step": 0.009,
        "lin_time": 300.0,
        # regularised KRR
        "krr_n_clean": by_profile(profile, smoke=30, cpu=60, gpu=200, full=400),
        "krr_m": 8,
        "krr_spread": 0.3,
        "krr_lengthscale": 1.0,
        "krr_lambda": 1e-3,
        "krr_y_target": 2.0,
        "krr_kappas": by_profile(profile, smoke=np.logspace(-4, 2, 61), cpu=np.logspace(-4, 2, 601),
                                 gpu=np.logspace(-4, 2, 2001), full=np.logspace(-4, 2, 4001)),
        "flow_kappa": 1.0,
        "flow_step_fraction": 0.01,
        "flow_steps": by_profile(profile, smoke=400, cpu=2000, gpu=10000, full=20000),
        "flow_n_directions": by_profile(profile, smoke=500, cpu=4000, gpu=20000, full=20000),
        # counterexamples to the equal-eigenvalue statement
        "iso_distance": 40.0,
        "iso_kappas": np.logspace(-3, 3, 13),
        "multi_outputs": 3,
        "multi_noise": [0.05, 0.3, 1.0],
        "multi_kappas": [0.1, 1.0, 10.0],
    }


# ---------------------------------------------------------------------------------------------
# Linear model with a patch trigger
# ---------------------------------------------------------------------------------------------

def patch_data(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Clean inputs on ``q`` coordinates with an exactly prescribed second-moment spectrum, plus
    ``m`` clones of a patch trigger ``t`` on ``p`` further coordinates (zero in the clean data).

    ``XᵀX/N = diag(h_1..h_q, H_p)`` with ``H_p = (m/N) t tᵀ``, whose one non-zero eigenvalue
    ``h_p = m|t|²/N`` is ``cfg["lin_h_poison"]``; one clean eigenvalue equals ``h_p`` exactly.
    Clean targets ``y = Xw_true + noise``; poisons carry ``y_t``. Returns ``X`` ``(N, q+p)``,
    ``y`` ``(N,)``, ``h`` ``(q,)``, ``w_true`` ``(q+p,)``, ``t`` ``(q+p,)``, the index ``k_eq`` of
    the clean eigenvalue equal to ``h_p``, ``h_p`` itself, and ``noise`` (the target noise s.d.).
    """
    gen = torch.Generator().manual_seed(seed)
    q, p, m, n_c, h_p = cfg["lin_clean_eigs"], cfg["lin_patch"], cfg["lin_m"], cfg["lin_n_clean"], cfg["lin_h_poison"]
    N = n_c + m
    h = torch.logspace(-1.0, 1.0, q, dtype=DTYPE)
    k_eq = int(torch.argmin((h - h_p).abs()))
    h[k_eq] = h_p
    Q, _ = torch.linalg.qr(torch.randn(n_c, q, generator=gen, dtype=DTYPE))
    Xc = torch.cat([N**0.5 * Q * h.sqrt(), torch.zeros(n_c, p, dtype=DTYPE)], 1)
    t = torch.zeros(q + p, dtype=DTYPE)
    t[q:] = (h_p * N / m / p) ** 0.5
    w_true = torch.cat([torch.randn(q, generator=gen, dtype=DTYPE), torch.zeros(p, dtype=DTYPE)])
    yc = Xc @ w_true + cfg["lin_noise"] * torch.randn(n_c, generator=gen, dtype=DTYPE)
    X = torch.cat([Xc, t.expand(m, -1)])
    y = torch.cat([yc, torch.full((m,), cfg["lin_y_target"], dtype=DTYPE)])
    return {"X": X, "y": y, "h": h, "w_true": w_true, "t": t, "k_eq": k_eq, "noise": cfg["lin_noise"],
            "h_p": float(h_p)}


def efficacy_and_fit(w: Tensor, data: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Efficacy ``w·t`` (the prediction shift on any triggered input ``x + t``, since the clean
    inputs are zero on the patch) and clean population ``R² = 1 − E(wᵀx − y)²/E y²`` for
    ``x ~ N(0, diag(h))`` on the clean coordinates. ``w``: ``(..., D)``; returns two ``(...)`` tensors."""
    q = data["h"].shape[0]
    err = w[..., :q] - data["w_true"][:q]
    mse = (err**2 * data["h"]).sum(-1) + data["noise"] ** 2
    var = (data["w_true"][:q] ** 2 * data["h"]).sum() + data["noise"] ** 2
    return w @ data["t"], 1 - mse / var


def penalty_identities(data: dict[str, Any], kappa: float) -> dict[str, float]:
    """Autograd (double backpropagation) of the two penalties at a random ``w`` against their closed forms.

    Returns the relative errors of ``(κ/2) mean|∇_x L|² = κE[L]|w|²`` and of
    ``(κ/2) mean|∇_x f|² = (κ/2)|w|²``.
    """
    X, y = data["X"], data["y"]
    w = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    x = X.clone().requires_grad_(True)
    loss = 0.5 * ((x @ w - y) ** 2).sum()             # Σ_i L_i: its x-gradient holds every ∇_x L_i
    gx, = torch.autograd.grad(loss, x, create_graph=True)
    pen_loss = 0.5 * kappa * (gx**2).sum(1).mean().detach()
    fx, = torch.autograd.grad((x @ w).sum(), x)
    pen_f = 0.5 * kappa * (fx**2).sum(1).mean()
    closed_loss = kappa * mean_loss(w, X, y) * (w @ w)
    return {"loss_penalty_rel_err": float(abs(pen_loss / closed_loss - 1)),
            "f_penalty_rel_err": float(abs(pen_f / (0.5 * kappa * (w @ w)) - 1))}


@dataclass(frozen=True)
class TwoPenalties(ChapterResult):
    """The paper's loss-gradient penalty against the model-gradient (ridge) penalty on the patch data.

    Per ``kappa`` (``(K,)``): ``mu`` (effective ridge of the minimiser L-BFGS finds from ``w = 0``),
    ``mu_global`` (of the global minimiser), ``rel_err`` (is the minimiser found a ridge solution?),
    ``n_stationary``, ``J_gap`` (J found minus the smallest stationary J), ``efficacy``, ``r2`` and their
    ``*_global`` versions. ``ridge_kappa``, ``ridge_efficacy``: the ridge curve; ``eff_unreg``: efficacy at 0.
    """

    sig = {"ch3_loss_penalty_rel_err": 2, "ch3_loss_ridge_rel_err": 2, "ch3_loss_kappa_ref": 3,
           "ch3_loss_eff_global_ref": 3, "ch3_loss_eff_descent_ref": 3, "ch3_loss_kappa_local_branch": 3}

    kappa: np.ndarray
    mu: np.ndarray
    mu_global: np.ndarray
    rel_err: np.ndarray
    n_stationary: np.ndarray
    J_gap: np.ndarray
    efficacy: np.ndarray
    r2: np.ndarray
    efficacy_global: np.ndarray
    r2_global: np.ndarray
    ridge_kappa: np.ndarray
    ridge_efficacy: np.ndarray
    eff_unreg: float
    identity_rel_err: float

    def summary(self) -> Summary:
        i10 = int(np.argmin(np.abs(self.kappa - 10.0)))
        off = self.J_gap > 1e-9
        return {"ch3_loss_penalty_rel_err": self.identity_rel_err, "ch3_loss_ridge_rel_err": float(self.rel_err.max()),
                "ch3_loss_max_stationary": int(self.n_stationary.max()), "ch3_loss_kappa_ref": float(self.kappa[i10]),
                "ch3_loss_eff_global_ref": float(self.efficacy_global[i10] / self.eff_unreg),
                "ch3_loss_eff_descent_ref": float(self.efficacy[i10] / self.eff_unreg),
                "ch3_loss_kappa_local_branch": float(self.kappa[np.argmax(off)]) if off.any() else float("nan")}


def two_penalties(data: dict[str, Any], cfg: dict[str, Any]) -> TwoPenalties:
    """Minimise the paper's loss-gradient objective directly (L-BFGS from ``w = 0``) for each ``κ`` of
    ``cfg["lin_loss_kappas"]``, locate all its stationary points (:func:`ridge_stationary_points`), and
    check the penalty identities by double backpropagation (:func:`penalty_identities`, ``κ = 0.7``)."""
    X, y = data["X"], data["y"]
    kappas = cfg["lin_loss_kappas"]
    rows = []
    for kappa in kappas:

        def fun(v: np.ndarray, kappa: float = kappa) -> tuple[float, np.ndarray]:
            w = torch.tensor(v, dtype=DTYPE, requires_grad=True)
            J = loss_gradient_objective(w, X, y, kappa)
            g, = torch.autograd.grad(J, w)
            return float(J.detach()), g.numpy()

        res = minimize(fun, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                       options={"ftol": 1e-16, "gtol": 1e-14, "maxiter": 10000})
        w_min = torch.tensor(res.x, dtype=DTYPE)
        mu = effective_ridge(w_min, X, y, kappa)
        w_r = ridge_solution(X, y, mu)
        stat = ridge_stationary_points(X, y, kappa)
        eff, r2 = efficacy_and_fit(w_min, data)
        eff_g, r2_g = efficacy_and_fit(stat[0][1], data)
        rows.append((mu, effective_ridge(stat[0][1], X, y, kappa), float((w_min - w_r).norm() / w_r.norm()), len(stat),
                     float(loss_gradient_objective(w_min, X, y, kappa)) - stat[0][0], float(eff), float(r2),
                     float(eff_g), float(r2_g)))
    mu_c, mu_global, rel, n_stationary, J_gap, efficacy, r2_c, efficacy_global, r2_global = map(np.array, zip(*rows))
    rk = np.asarray(cfg["lin_kappas"])
    ridge_eff = np.array([float(efficacy_and_fit(ridge_solution(X, y, float(m)), data)[0]) for m in rk])
    eff0 = float(efficacy_and_fit(ridge_solution(X, y, 0.0), data)[0])
    return TwoPenalties(np.array(kappas), mu_c, mu_global, rel, n_stationary, J_gap, efficacy, r2_c, efficacy_global, r2_global,
                        ridge_kappa=rk, ridge_efficacy=ridge_eff, eff_unreg=eff0,
                        identity_rel_err=max(penalty_identities(data, kappa=0.7).values()))


def cost_of_safety(data: dict[str, Any], epsilon: float) -> dict[str, float]:
    """The smallest ``κ`` that brings the converged efficacy to ``ε`` times its unregularised value,
    ``κ_ε = h_p(1/ε − 1)``, and the clean ``R²`` before and after (converged ridge solutions)."""
    X, y = data["X"], data["y"]
    h_p = data["h_p"]
    kappa_eps = h_p * (1 / epsilon - 1)
    w0, we = ridge_solution(X, y, 0.0), ridge_solution(X, y, kappa_eps)
    e0, r0 = efficacy_and_fit(w0, data)
    ee, re = efficacy_and_fit(we, data)
    return {"h_p": h_p, "kappa_eps": kappa_eps, "eff_ratio": float(ee / e0), "r2_before": float(r0), "r2_after": float(re)}


@dataclass(frozen=True)
class RidgeFrontier(ChapterResult):
    """Safety-efficacy frontier of the model-gradient (ridge) penalty as curves over ``kappa`` ``(K,)`` (one model per
    ``κ``, simulated and in closed form, rather than the :class:`~poisoncurv.chapters.frontier.SafetyPoint` of the
    trained chapters).

    ``eff_sim``, ``r2_sim`` (Euler flow), ``eff_th``, ``r2_th`` (closed form); contraction factors
    ``factor_poison``, ``factor_clean_eq`` ``(K,)``, ``factor_clean_all`` ``(K, q)`` (clean eigenvalues ``h``)
    and ``factor_theory``; the unregularised efficacy and fit; the cost of safety at ``epsilon``
    (:func:`cost_of_safety`); the Euler step and horizon.
    """

    sig = {"ch3_frontier_eff_rel_err": 2, "ch3_frontier_r2_abs_err": 2, "ch3_factor_gap_equal_eig": 2,
           "ch3_factor_vs_theory": 2, "ch3_cost_kappa": 3, "ch3_cost_eff_ratio": 3, "ch3_cost_r2_before": 3,
           "ch3_cost_r2_after": 3, "ch3_h_p": 3}

    kappa: np.ndarray
    eff_sim: np.ndarray
    r2_sim: np.ndarray
    eff_th: np.ndarray
    r2_th: np.ndarray
    factor_poison: np.ndarray
    factor_clean_eq: np.ndarray
    factor_clean_all: np.ndarray
    factor_theory: np.ndarray
    h: np.ndarray
    k_eq: int
    eff_unreg: float
    r2_unreg: float
    cost: dict[str, float]
    step: float
    time: float

    def summary(self) -> Summary:
        return {"ch3_lin_step": self.step, "ch3_lin_time": self.time,
                "ch3_frontier_eff_rel_err": rel_err(self.eff_sim, self.eff_th),
                "ch3_frontier_r2_abs_err": float(np.abs(self.r2_sim - self.r2_th).max()),
                "ch3_factor_gap_equal_eig": float(np.abs(self.factor_poison - self.factor_clean_eq).max()),
                "ch3_factor_vs_theory": float(np.abs(self.factor_poison - self.factor_theory).max()),
                "ch3_cost_kappa": self.cost["kappa_eps"], "ch3_cost_eff_ratio": self.cost["eff_ratio"],
                "ch3_cost_r2_before": self.cost["r2_before"], "ch3_cost_r2_after": self.cost["r2_after"],
                "ch3_h_p": self.cost["h_p"], "ch3_n_kappa": len(self.kappa)}


def frontier(data: dict[str, Any], cfg: dict[str, Any], epsilon: float = 0.1) -> RidgeFrontier:
    """Safety-efficacy frontier of the f-gradient (ridge) penalty over ``cfg["lin_kappas"]``.

    *Simulation*: explicit Euler gradient flow from ``w = 0`` on the data, all ``κ`` at once.
    *Theory*: the closed-form flow (filter factors ``h/(h+κ)(1 − e^{−(h+κ)T})``).
    Also the contraction factors (simulated weight at ``κ`` over the closed-form weight at ``κ = 0``,
    same ``T``) of the poison mode ``t/|t|``, of the clean mode of equal eigenvalue and of every clean mode.
    """
    X, y, T = data["X"], data["y"], cfg["lin_time"]
    kappas = torch.tensor(cfg["lin_kappas"], dtype=DTYPE)
    N = X.shape[0]
    XtX, Xty = X.T @ X / N, X.T @ y / N
    n_steps = int(round(T / cfg["lin_step"]))
    A, c, kap = XtX.numpy(), Xty.numpy(), kappas.numpy()[:, None]
    traj = euler_flow(lambda W: W @ A - c + kap * W, np.zeros((len(kappas), X.shape[1])), cfg["lin_step"], n_steps,
                      record_every=n_steps)                  # numpy: the loop is 10^4-10^5 small steps
    W_sim = torch.from_numpy(traj[-1])
    W_th = torch.stack([linear_flow_closed_form(X, y, float(k), T) for k in kappas])
    eff_sim, r2_sim = efficacy_and_fit(W_sim, data)
    eff_th, r2_th = efficacy_and_fit(W_th, data)
    t_hat = data["t"] / data["t"].norm()
    k_eq, q = data["k_eq"], len(data["h"])
    W0 = linear_flow_closed_form(X, y, 0.0, T)               # unregularised reference at time T
    h_p = data["h_p"]
    return RidgeFrontier(
        kappa=kappas.numpy(), eff_sim=eff_sim.numpy(), r2_sim=r2_sim.numpy(), eff_th=eff_th.numpy(), r2_th=r2_th.numpy(),
        factor_poison=((W_sim @ t_hat) / (W0 @ t_hat)).numpy(), factor_clean_eq=(W_sim[:, k_eq] / W0[k_eq]).numpy(),
        factor_clean_all=(W_sim[:, :q] / W0[:q]).numpy(),
        factor_theory=cast(np.ndarray, ridge_filter(h_p, kappas.numpy(), T) / ridge_filter(h_p, 0.0, T)),  # h_p a float: numpy
        h=data["h"].numpy(), k_eq=k_eq,
        eff_unreg=float(W0 @ data["t"]), r2_unreg=float(efficacy_and_fit(W0, data)[1]),
        cost=cost_of_safety(data, epsilon), step=cfg["lin_step"], time=T)


# ---------------------------------------------------------------------------------------------
# Regularised KRR (Gaussian kernel) with a clustered poison
# ---------------------------------------------------------------------------------------------

def krr_data(cfg: dict[str, Any], seed: int) -> dict[str, Tensor]:
    """Clean inputs ``N(0, I_2)`` with targets ``sin(2x_1) + 0.1ε``, and ``m`` poisons spread
    ``spread·ℓ`` around ``ζ = (2.5ℓ, 0)`` with target ``y_t``; a triggered query ``x0`` at ``0.2ℓ``
    from ``ζ``. Returns ``X`` ``(n, 2)``, ``y`` ``(n,)``, ``is_poison`` ``(n,)``, ``x0`` ``(1, 2)``."""
    gen = torch.Generator().manual_seed(seed)
    ell, n_c, m = cfg["krr_lengthscale"], cfg["krr_n_clean"], cfg["krr_m"]
    Xc = torch.randn(n_c, 2, generator=gen, dtype=DTYPE)
    yc = torch.sin(2 * Xc[:, 0]) + 0.1 * torch.randn(n_c, generator=gen, dtype=DTYPE)
    zeta = torch.tensor([2.5 * ell, 0.0], dtype=DTYPE)
    Xp = zeta + cfg["krr_spread"] * ell * torch.randn(m, 2, generator=gen, dtype=DTYPE) / 2**0.5
    X = torch.cat([Xc, Xp])
    y = torch.cat([yc, torch.full((m,), cfg["krr_y_target"], dtype=DTYPE)])
    is_poison = torch.cat([torch.zeros(n_c, dtype=torch.bool), torch.ones(m, dtype=torch.bool)])
    return {"X": X, "y": y, "is_poison": is_poison, "x0": (zeta + torch.tensor([0.0, 0.2 * ell], dtype=DTYPE))[None]}


@dataclass(frozen=True)
class DfSweep(ChapterResult):
    """Regularised KRR over the fine grid ``kappa`` ``(K,)``: ``df``, ``residual``, ``data_term``, ``penalty``
    ``(K,)``; poison ``efficacy`` at the trigger on the coarser grid ``kappa_eff``; ``n`` training points;
    ``checks`` (steps along the grid, derivative checks; see :func:`krr_sweep`) and the three-point
    ``counter`` example (:func:`residual_counterexample`)."""

    sig = {"ch3_df_max_step": 3, "ch3_ddf_max": 3, "ch3_df_fd_rel_err": 2, "ch3_curves_vs_direct": 2,
           "ch3_linear_df_rel_err": 2, "ch3_res_min_step": 3, "ch3_data_min_step": 3, "ch3_pen_max_step": 3,
           "ch3_df_at_min": 3, "ch3_df_at_max": 3, "ch3_eff_at_min": 3, "ch3_eff_at_max": 3, "ch3_res_counter_d": 3,
           "ch3_res_counter_fd": 3, "ch3_res_counter_data": 3}

    kappa: np.ndarray
    df: np.ndarray
    residual: np.ndarray
    data_term: np.ndarray
    penalty: np.ndarray
    kappa_eff: np.ndarray
    efficacy: np.ndarray
    n: int
    checks: dict[str, float]
    counter: dict[str, float]

    def summary(self) -> Summary:
        c = self.checks
        return {"ch3_krr_n": self.n, "ch3_krr_grid": len(self.kappa), "ch3_df_max_step": c["df_max_step"],
                "ch3_ddf_max": c["ddf_max"], "ch3_df_fd_rel_err": max(c["df_fd_rel_err"], c["res_fd_rel_err"]),
                "ch3_curves_vs_direct": c["curves_vs_direct"], "ch3_linear_df_rel_err": c["linear_df_rel_err"],
                "ch3_res_min_step": c["res_min_step"], "ch3_data_min_step": c["data_min_step"],
                "ch3_pen_max_step": c["pen_max_step"], "ch3_df_at_min": float(self.df[0]), "ch3_df_at_max": float(self.df[-1]),
                "ch3_eff_at_min": float(self.efficacy[0]), "ch3_eff_at_max": float(self.efficacy[-1]),
                "ch3_res_counter_d": self.counter["d_residual"], "ch3_res_counter_fd": self.counter["fd_residual"],
                "ch3_res_counter_data": self.counter["fd_data_term"]}


def krr_sweep(cfg: dict[str, Any], data: dict[str, Tensor]) -> DfSweep:
    """df(κ), training residual, data term, penalty and poison efficacy over the fine grid ``cfg["krr_kappas"]``.

    Efficacy at the query ``x0``: poisoned fit minus the fit on the clean points alone, same ``κ``.
    Also: the largest step of df and the smallest steps of the residual and of the data term along the
    grid; the largest closed-form ``d df/dκ`` and the relative gap between the closed-form derivatives
    and central finite differences (step ``1e-4·κ``, at 20 grid points); the linear-kernel reduction
    (df equals ridge df at ``λ + κ``); and the closed-form curves against direct solves.
    """
    kernel = GaussianKernel(cfg["krr_lengthscale"])
    X, y, x0, clean = data["X"], data["y"], data["x0"], ~data["is_poison"]
    n, lam, kappas = X.shape[0], cfg["krr_lambda"], np.asarray(cfg["krr_kappas"])
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    fc_c = feature_coordinates(kernel(X[clean], X[clean]), gradient_penalty_matrix(kernel, X[clean]))
    cur = fc.curves(y, n * lam, kappas)
    sub = kappas[:: max(1, len(kappas) // 20)]
    kx, kx_c = kernel(x0, X)[0], kernel(x0, X[clean])[0]
    eff = np.array([float(kx @ fc.alpha(y, n * lam, k) - kx_c @ fc_c.alpha(y[clean], int(clean.sum()) * lam, k))
                    for k in kappas[:: max(1, len(kappas) // 60)]])
    ddf = np.array([fc.df_derivative(n * lam, k) for k in sub])
    dres = np.array([fc.residual_derivative(y, n * lam, k) for k in sub])
    fd_df = np.array([(fc.df(n * lam, k * (1 + 1e-4)) - fc.df(n * lam, k * (1 - 1e-4))) / (2e-4 * k) for k in sub])
    fd_res = np.array([(fc.residual(y, n * lam, k * (1 + 1e-4)) - fc.residual(y, n * lam, k * (1 - 1e-4))) / (2e-4 * k)
                       for k in sub])
    direct = np.array([[fc.df(n * lam, k), fc.residual(y, n * lam, k)] for k in sub])
    idx = np.searchsorted(kappas, sub)
    lin = LinearKernel()
    fl = feature_coordinates(lin(X, X), gradient_penalty_matrix(lin, X))
    sv = (torch.linalg.svdvals(X) ** 2).numpy()
    lin_df = fl.curves(y, n * lam, sub)["df"]
    ridge_df = np.array([(sv / (sv + n * (lam + k))).sum() for k in sub])
    checks = {"df_max_step": float(np.diff(cur["df"]).max()), "res_min_step": float(np.diff(cur["residual"]).min()),
              "data_min_step": float(np.diff(cur["data_term"]).min()), "pen_max_step": float(np.diff(cur["penalty"]).max()),
              "ddf_max": float(ddf.max()), "df_fd_rel_err": rel_err(fd_df, ddf), "res_fd_rel_err": rel_err(fd_res, dres),
              "curves_vs_direct": max(rel_err(cur["df"][idx], direct[:, 0]), rel_err(cur["residual"][idx], direct[:, 1])),
              "linear_df_rel_err": rel_err(lin_df, ridge_df)}
    return DfSweep(kappa=kappas, df=cur["df"], residual=cur["residual"], data_term=cur["data_term"], penalty=cur["penalty"],
                   kappa_eff=kappas[:: max(1, len(kappas) // 60)], efficacy=eff, n=n, checks=checks,
                   counter=residual_counterexample())


def residual_counterexample() -> dict[str, float]:
    """A three-point Gaussian-kernel problem (ℓ = 1) where the training residual *decreases* in κ.

    ``x = (0.46, 1.67, 0.19)``, ``y = (0.20, 1.23, 1.34)``, ridge ``nλ = 0.89``, at ``κ = 0.022``:
    returns the closed-form ``d|r|²/dκ``, its central finite difference, and the derivative of the
    data term ``|r|² + nλ|f|²_H`` (which cannot be negative).
    """
    X = torch.tensor([[0.46], [1.67], [0.19]], dtype=DTYPE)
    y = torch.tensor([0.20, 1.23, 1.34], dtype=DTYPE)
    ridge, kappa, h = 0.89, 0.022, 1e-6
    kernel = GaussianKernel(1.0)
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    c = fc.curves(y, ridge, np.array([kappa - h, kappa + h]))
    return {"d_residual": fc.residual_derivative(y, ridge, kappa),
            "fd_residual": float((c["residual"][1] - c["residual"][0]) / (2 * h)),
            "fd_data_term": float((c["data_term"][1] - c["data_term"][0]) / (2 * h))}


def bound_violations(H: Tensor, F: Tensor, e0: Tensor, kappa: float, directions: Tensor, times: np.ndarray) -> np.ndarray:
    """Which unit ``directions`` ``(r, N)`` break the reviewed bound ``E_v(t) ≤ E_v(0) e^{−2κ vᵀFv t}`` at some of ``times``.

    The flow on the quadratic ``J`` (Hessian ``H``) is exact: ``e(t) = e^{−Ht} e0``. A direction with
    ``E_v(0) = 0`` counts as a violation if ``E_v`` grows. Returns a boolean array ``(N,)``.
    """
    mu, V = torch.linalg.eigh(H)
    t = torch.as_tensor(times, dtype=H.dtype)
    et = (V * torch.exp(-t[:, None, None] * mu[None, None, :])) @ (V.T @ e0)          # (T, r)
    E = (et @ directions) ** 2                                                          # (T, N)
    E0 = (e0 @ directions) ** 2
    a = torch.einsum("rn,rs,sn->n", directions, F, directions)
    allowed = E0[None] * torch.exp(-2 * kappa * a[None] * t[:, None])
    return ((E > allowed * (1 + 1e-9) + 1e-30 * float(E0.max())).any(0)).numpy()


@dataclass(frozen=True)
class Contraction(ChapterResult):
    """Gradient flow on regularised KRR in feature coordinates (see :func:`eigenmode_contraction`).

    Per eigenvector of the Hessian ``H_J`` ``(r,)``: ``mu`` (eigenvalue), ``a`` (penalty energy ``vᵀFv``),
    ``bound`` (``λ + κa``), ``rate_meas`` (Euler), ``ok`` (``E_v(0)`` not negligible), ``poison_share``;
    ``times`` ``(T,)`` and ``E_rel`` ``(T, r)``; the growing mixture ``Eu`` ``(T,)``; the fractions of
    random unit directions and of eigenvectors of the penalty Fisher ``F`` and of the data Fisher ``Λ/n``
    that violate the reviewed bound, and the same for eigenvectors of ``H_J`` (none may).
    """

    sig = {"ch3_rate_rel_err": 2, "ch3_bound_min_gap": 2, "ch3_counter_Eu0": 2, "ch3_counter_Eu_max": 3,
           "ch3_a_poison": 3, "ch3_a_clean": 3, "ch3_viol_random": 3, "ch3_viol_fisher_penalty": 3,
           "ch3_viol_fisher_data": 3, "ch3_viol_hessian": 2}

    mu: np.ndarray
    a: np.ndarray
    bound: np.ndarray
    rate_meas: np.ndarray
    ok: np.ndarray
    poison_share: np.ndarray
    times: np.ndarray
    E_rel: np.ndarray
    Eu: np.ndarray
    a_poison: float
    a_clean: float
    lam: float
    kappa: float
    n_directions: int
    frac_random: float
    frac_fisher_penalty: float
    frac_fisher_data: float
    frac_hessian: float

    def summary(self) -> Summary:
        return {"ch3_rate_rel_err": rel_err(self.rate_meas[self.ok], self.mu[self.ok]),
                "ch3_bound_min_gap": float((self.mu - self.bound).min()), "ch3_n_modes": len(self.mu),
                "ch3_counter_Eu0": float(self.Eu[0]), "ch3_counter_Eu_max": float(self.Eu.max()),
                "ch3_a_poison": self.a_poison, "ch3_a_clean": self.a_clean, "ch3_n_directions": self.n_directions,
                "ch3_viol_random": self.frac_random, "ch3_viol_fisher_penalty": self.frac_fisher_penalty,
                "ch3_viol_fisher_data": self.frac_fisher_data, "ch3_viol_hessian": self.frac_hessian}


def eigenmode_contraction(cfg: dict[str, Any], data: dict[str, Tensor], seed: int) -> Contraction:
    """Simulated gradient flow on the regularised-KRR objective ``J`` in feature coordinates, from ``β = 0``.

    ``J(β) = (1/2n)|Bβ − y|² + (λ/2)|β|² + (κ/2n)βᵀMβ`` has Hessian ``H_J = Λ/n + λI + κF`` with
    ``F = M/n = mean_a ∂_β g_aᵀ ∂_β g_a`` (``g_a = ∇_x f(x_a)``). For each eigenvector ``v`` of ``H_J``
    (eigenvalue ``μ_v``): the measured decay rate of ``E_v(t) = (vᵀ(β(t) − β*))²`` (Euler, step
    ``flow_step_fraction/μ_max``), the bound ``λ + κ vᵀFv ≤ μ_v``, and the share of ``E_v(0)`` due
    to the poison labels; the F-energy ``vᵀFv`` averaged over modes with weights ``(vᵀβ*_p)²`` (the
    part of ``β*`` due to the poison labels) and with weights from the clean labels. Also a unit vector
    ``u`` (a mix of two eigenvectors) with ``E_u(0) = 0`` that grows, and the fraction of
    ``cfg["flow_n_directions"]`` random unit directions (and of Fisher eigenvectors) that break the
    reviewed bound on the exact flow (:func:`bound_violations`).
    """
    kernel = GaussianKernel(cfg["krr_lengthscale"])
    X, y, poison = data["X"], data["y"], data["is_poison"]
    n, lam, kappa = X.shape[0], cfg["krr_lambda"], cfg["flow_kappa"]
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    H = fc.system(n * lam, kappa) / n
    F = fc.M / n
    b = fc.B.T @ y / n
    mu, V = torch.linalg.eigh(H)
    beta_star = torch.linalg.solve(H, b)
    step = cfg["flow_step_fraction"] / float(mu.max())
    n_steps = cfg["flow_steps"]
    traj = euler_flow(lambda beta: H @ beta - b, torch.zeros_like(b), step, n_steps, record_every=max(1, n_steps // 50))
    times = step * np.arange(traj.shape[0]) * max(1, n_steps // 50)
    E = ((traj - beta_star) @ V) ** 2                                    # (records, r)
    E0 = E[0]
    ok = E0 > 1e-20 * E0.max()
    rate_meas = -torch.log(E[-1] / E0) / (2 * times[-1])
    a = torch.einsum("ik,ij,jk->k", V, F, V)
    # share of E_v(0) due to the poison labels (linearity of β* in y)
    beta_p = torch.linalg.solve(H, fc.B.T @ torch.where(poison, y, 0.0) / n)
    Ep, Ec = (V.T @ beta_p) ** 2, (V.T @ (beta_star - beta_p)) ** 2
    # counterexample: u ∝ c_j v_i − c_i v_j, so that uᵀ(β(0) − β*) = 0
    i, j = int(torch.argmax(E0 * (mu < mu.median()))), int(torch.argmax(E0 * (mu > mu.median())))
    ci, cj = float(V[:, i] @ -beta_star), float(V[:, j] @ -beta_star)
    u = cj * V[:, i] - ci * V[:, j]
    u = u / u.norm()
    Eu = ((traj - beta_star) @ u) ** 2
    # the reviewed bound on the exact flow: random directions, Fisher eigenvectors, Hessian eigenvectors
    r, n_dir = len(mu), cfg["flow_n_directions"]
    dirs = torch.randn(r, n_dir, generator=torch.Generator().manual_seed(seed + 11), dtype=DTYPE)
    dirs = dirs / dirs.norm(dim=0)
    tt = np.geomspace(1e-2 / float(mu.max()), times[-1], 200)
    frac = {name: float(bound_violations(H, F, -beta_star, kappa, D, tt).mean())
            for name, D in (("random", dirs), ("penalty", torch.linalg.eigh(F)[1]), ("data", torch.eye(r, dtype=DTYPE)),
                            ("hessian", V))}
    return Contraction(mu=mu.numpy(), a=a.numpy(), bound=(lam + kappa * a).numpy(), rate_meas=rate_meas.numpy(), ok=ok.numpy(),
                       poison_share=(Ep / (Ep + Ec)).numpy(), times=times, E_rel=(E / E0).numpy(), Eu=Eu.numpy(),
                       a_poison=float((Ep * a).sum() / Ep.sum()), a_clean=float((Ec * a).sum() / Ec.sum()), lam=lam,
                       kappa=kappa, n_directions=n_dir, frac_random=frac["random"], frac_fisher_penalty=frac["penalty"],
                       frac_fisher_data=frac["data"], frac_hessian=frac["hessian"])


@dataclass(frozen=True)
class ClusterEnergy(ChapterResult):
    """Penalty energy per unit norm of a clustered poison's function: ``ratio`` and the small-spread ``law``
    against ``spread`` ``(S,)``; the log-log ``slope`` for ``s ≤ 0.1ℓ`` and the law's error at the smallest ``s``."""

    sig = {"ch3_cluster_law_rel_err": 2, "ch3_cluster_min_s": 2}

    spread: np.ndarray
    ratio: np.ndarray
    law: np.ndarray
    slope: float
    law_rel_err_min_s: float

    def summary(self) -> Summary:
        return {"ch3_cluster_slope": self.slope, "ch3_cluster_law_rel_err": self.law_rel_err_min_s,
                "ch3_cluster_min_s": float(self.spread[0])}


def cluster_penalty_energy(cfg: dict[str, Any], seed: int) -> ClusterEnergy:
    """Penalty energy of a clustered poison's kernel function, as the cluster tightens.

    ``m`` poisons ``ζ_a = s·u_a`` (``u_a`` standard normal in 2-d, fixed), Gaussian kernel of length
    ``ℓ``; ``h = Σ_a k(·, ζ_a)`` is the function the poisons add (clean points far away see none of
    it). Returns, per spread ``s``, the ratio ``Σ_a |∇h(ζ_a)|² / |h|²_H = 1ᵀG1 / 1ᵀK1`` (the penalty
    energy ``n·vᵀFv`` of the direction of ``h``), the small-``s`` law ``s² Σ_a |u_a − ū|² / ℓ⁴``, and the
    fitted log-log slope of the ratio against ``s`` for ``s ≤ 0.1ℓ``.
    """
    ell, m = cfg["krr_lengthscale"], cfg["krr_m"]
    kernel = GaussianKernel(ell)
    u = torch.randn(m, 2, generator=torch.Generator().manual_seed(seed + 5), dtype=DTYPE)
    spreads = np.logspace(-3, -0.5, 11) * ell
    ones = torch.ones(m, dtype=DTYPE)
    ratio = np.array([float(ones @ gradient_penalty_matrix(kernel, s * u) @ ones / (ones @ kernel(s * u, s * u) @ ones))
                      for s in spreads])
    law = spreads**2 * float(((u - u.mean(0)) ** 2).sum()) / ell**4
    small = spreads <= 0.1 * ell
    return ClusterEnergy(spread=spreads, ratio=ratio, law=law, slope=loglog_slope(spreads[small], ratio[small]),
                         law_rel_err_min_s=rel_err(ratio[0], law[0]))


# ---------------------------------------------------------------------------------------------
# Where "equal eigenvalue, equal contraction" fails: Gaussian KRR and C > 1 outputs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IsolatedClones(ChapterResult):
    """Regularised Gaussian KRR with ``m`` exact clones ``iso_distance·ℓ`` from the clean data, per ``kappa`` ``(K,)``:
    the poison's prediction ``poison_factor`` (``f_κ(ζ)/f_0(ζ)``), the clean fit kept (``clean_fit_factor``,
    ``|f_κ(X_c)|/|f_0(X_c)|``) and the component of the fit along the clean kernel eigenvector whose eigenvalue is
    nearest the cluster's (``clean_eq_factor``); ``eig_ratio`` = that eigenvalue over the cluster's (``m``)."""

    sig = {"ch3_iso_poison_dev": 2, "ch3_iso_clean_fit_min": 3, "ch3_iso_clean_eq_min": 3, "ch3_iso_eig_ratio": 3}

    kappa: np.ndarray
    poison_factor: np.ndarray
    clean_fit_factor: np.ndarray
    clean_eq_factor: np.ndarray
    eig_ratio: float
    distance: float
    m: int

    def summary(self) -> Summary:
        return {"ch3_krr_m": self.m, "ch3_iso_distance": self.distance,
                "ch3_iso_poison_dev": float(np.abs(self.poison_factor - 1).max()),
                "ch3_iso_clean_fit_min": float(self.clean_fit_factor.min()),
                "ch3_iso_clean_eq_min": float(self.clean_eq_factor.min()), "ch3_iso_eig_ratio": self.eig_ratio,
                "ch3_iso_kappa_max": float(self.kappa.max())}


def isolated_clones(cfg: dict[str, Any], data: dict[str, Tensor]) -> IsolatedClones:
    """The clean data of :func:`krr_data` plus ``krr_m`` exact clones at ``ζ = (iso_distance·ℓ, 0)``, target ``y_t``.

    The clones' function ``h = Σ_a k(·, ζ)`` has zero input gradient at ``ζ`` and (to underflow) none at the
    clean points, so the penalty matrix ``G`` does not see it: its mode is untouched for every ``κ`` while
    clean modes, including one of nearly equal kernel eigenvalue, are shrunk.
    """
    kernel, ell = GaussianKernel(cfg["krr_lengthscale"]), cfg["krr_lengthscale"]
    clean = ~data["is_poison"]
    Xc, yc, m = data["X"][clean], data["y"][clean], cfg["krr_m"]
    zeta = torch.tensor([[cfg["iso_distance"] * ell, 0.0]], dtype=DTYPE)
    X = torch.cat([Xc, zeta.expand(m, -1)])
    y = torch.cat([yc, torch.full((m,), cfg["krr_y_target"], dtype=DTYPE)])
    nc, ridge = Xc.shape[0], X.shape[0] * cfg["krr_lambda"]
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    U_c = fc.U[:nc]                                                  # clean rows of the kernel eigenvectors
    is_clean_mode = (U_c**2).sum(0) > 0.5
    lam_cluster = float(fc.lam[~is_clean_mode].max())
    k_eq = int(torch.argmin(torch.where(is_clean_mode, (fc.lam - lam_cluster).abs(), torch.inf)))
    kz = kernel(zeta, X)[0]
    kappas = np.asarray(cfg["iso_kappas"])
    b0 = fc.beta(y, ridge, 0.0)
    rows = []
    for kappa in kappas:
        b = fc.beta(y, ridge, float(kappa))
        rows.append((float(kz @ fc.U @ (b / fc.lam.sqrt())) / float(kz @ fc.U @ (b0 / fc.lam.sqrt())),
                     float((fc.B[:nc] @ b).norm() / (fc.B[:nc] @ b0).norm()), float(b[k_eq] / b0[k_eq])))
    pf, cf, ce = map(np.array, zip(*rows))
    return IsolatedClones(kappa=kappas, poison_factor=pf, clean_fit_factor=cf, clean_eq_factor=ce,
                          eig_ratio=float(fc.lam[k_eq]) / lam_cluster, distance=float(cfg["iso_distance"]), m=m)


@dataclass(frozen=True)
class MatrixRidge(ChapterResult):
    """The paper's loss-gradient penalty with ``C`` outputs on the patch data, per ``kappa`` ``(K,)``: the Sylvester
    residual ``|WH + AW − B|/|B|`` at the minimiser, its gap to :func:`sylvester_ridge_solution`, the spread of the
    eigenvalues of ``A`` (``a_max/a_min``), the distance to the nearest isotropic ridge solution
    (``min_μ |W − B(H + μI)^{-1}|/|W|``), and ``factor_gap`` (largest gap between the poison mode's contraction in
    the target output and the equal-eigenvalue clean mode's contraction in any output)."""

    sig = {"ch3_multi_sylvester_res": 2, "ch3_multi_sylvester_gap": 2, "ch3_multi_a_spread_min": 3,
           "ch3_multi_isotropic_gap_max": 3, "ch3_multi_factor_gap_max": 3}

    kappa: np.ndarray
    sylvester_residual: np.ndarray
    sylvester_gap: np.ndarray
    a_spread: np.ndarray
    isotropic_gap: np.ndarray
    factor_gap: np.ndarray
    outputs: int

    def summary(self) -> Summary:
        return {"ch3_multi_outputs": self.outputs, "ch3_multi_sylvester_res": float(self.sylvester_residual.max()),
                "ch3_multi_sylvester_gap": float(self.sylvester_gap.max()), "ch3_multi_a_spread_min": float(self.a_spread.min()),
                "ch3_multi_isotropic_gap_max": float(self.isotropic_gap.max()),
                "ch3_multi_factor_gap_max": float(self.factor_gap.max()),
                "ch3_multi_kappa_min": float(self.kappa.min()), "ch3_multi_kappa_max": float(self.kappa.max())}

    def table(self) -> Table:
        """One row per ``κ``: the Sylvester checks, the spread of ``A`` and the distance to isotropic ridge."""
        return Table(
            name="tbl-ch3-matrix-ridge",
            caption=(f"The paper's loss-gradient penalty with $C = {self.outputs}$ outputs (patch data): at the minimiser "
                     "$W$ found by L-BFGS, the Sylvester residual $\\lVert WH + AW - B\\rVert/\\lVert B\\rVert$, the "
                     "eigenvalue spread $a_{\\max}/a_{\\min}$ of the matrix ridge $A$, the isotropic gap "
                     "$\\min_\\mu\\lVert W - B(H + \\mu I)^{-1}\\rVert/\\lVert W\\rVert$, and the contraction gap between "
                     "the poison mode (target output) and the clean mode of equal eigenvalue (any output). " + RUN),
            columns=["$\\kappa$", "Sylvester residual", "$a_{\\max}/a_{\\min}$", "isotropic gap", "contraction gap"],
            rows=[[float(k), float(r), float(a), float(g), float(f)] for k, r, a, g, f in
                  zip(self.kappa, self.sylvester_residual, self.a_spread, self.isotropic_gap, self.factor_gap)])

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def multi_output_data(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """:func:`patch_data` with ``C = multi_outputs`` outputs: clean targets ``W_true x + noise_c`` (noise s.d.
    ``multi_noise[c]`` per output), poisons labelled ``y_t`` on output 0 and 0 elsewhere. Adds ``Y`` ``(N, C)``."""
    data = patch_data(cfg, seed)
    C, q, p = cfg["multi_outputs"], cfg["lin_clean_eigs"], cfg["lin_patch"]
    gen = torch.Generator().manual_seed(seed + 3)
    W_true = torch.cat([torch.randn(C, q, generator=gen, dtype=DTYPE), torch.zeros(C, p, dtype=DTYPE)], 1)
    n_c, m = cfg["lin_n_clean"], cfg["lin_m"]
    noise = torch.tensor(cfg["multi_noise"], dtype=DTYPE)
    Yc = data["X"][:n_c] @ W_true.T + noise * torch.randn(n_c, C, generator=gen, dtype=DTYPE)
    Yp = torch.zeros(m, C, dtype=DTYPE)
    Yp[:, 0] = cfg["lin_y_target"]
    return {**data, "Y": torch.cat([Yc, Yp])}


def matrix_ridge_counterexample(cfg: dict[str, Any], seed: int) -> MatrixRidge:
    """Minimise the ``C``-output loss-gradient objective (L-BFGS from ``W = 0``) for each ``κ`` of
    ``cfg["multi_kappas"]`` and test its stationary point against one isotropic ridge and the matrix ridge."""
    from scipy.optimize import minimize_scalar

    data = multi_output_data(cfg, seed)
    X, Y = data["X"], data["Y"]
    N, D, C = X.shape[0], X.shape[1], Y.shape[1]
    H, B = X.T @ X / N, Y.T @ X / N
    W0 = B @ torch.linalg.pinv(H)
    t_hat, q_eq = data["t"] / data["t"].norm(), torch.eye(D, dtype=DTYPE)[data["k_eq"]]
    rows = []
    for kappa in cfg["multi_kappas"]:

        def fun(v: np.ndarray, kappa: float = kappa) -> tuple[float, np.ndarray]:
            W = torch.tensor(v.reshape(C, D), dtype=DTYPE, requires_grad=True)
            J = loss_gradient_objective_multi(W, X, Y, kappa)
            g, = torch.autograd.grad(J, W)
            return float(J.detach()), g.numpy().ravel()

        res = minimize(fun, np.zeros(C * D), jac=True, method="L-BFGS-B", options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000})
        W = torch.tensor(res.x.reshape(C, D), dtype=DTYPE)
        A = matrix_ridge(W, X, Y, kappa)
        a = torch.linalg.eigvals(A).real
        iso = minimize_scalar(lambda lm: float((W - B @ torch.linalg.inv(H + np.exp(lm) * torch.eye(D, dtype=DTYPE))).norm()),
                              bounds=(-20.0, 5.0), method="bounded", options={"xatol": 1e-10})
        fp = float((W @ t_hat)[0] / (W0 @ t_hat)[0])
        fq = (W @ q_eq) / (W0 @ q_eq)
        rows.append((float((W @ H + A @ W - B).norm() / B.norm()), rel_norm_err(sylvester_ridge_solution(H, A, B), W),
                     float(a.max() / a.min()), float(iso.fun) / float(W.norm()), float((fq - fp).abs().max())))
    residual, gap, a_spread, isotropic_gap, factor_gap = map(np.array, zip(*rows))
    return MatrixRidge(np.array(cfg["multi_kappas"]), residual, gap, a_spread, isotropic_gap, factor_gap, outputs=C)

