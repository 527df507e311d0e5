"""Chapter 3 drivers: input-gradient regularisation under gradient flow (claims C4, C5).

All computations are float64 on the CPU (the problems are small). Returned dictionaries hold numpy
arrays ready to plot and floats ready to glue.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from poisoncurv.core.profiles import by_profile
from poisoncurv.krr.kernels import GaussianKernel, LinearKernel
from poisoncurv.krr.regularised import (
    effective_ridge,
    euler_flow,
    feature_coordinates,
    gradient_penalty_matrix,
    linear_flow_closed_form,
    loss_gradient_objective,
    mean_loss,
    ridge_filter,
    ridge_solution,
    ridge_stationary_points,
)

DTYPE = torch.float64


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


def loss_penalty_minimisers(data: dict[str, Any], kappas: list[float]) -> dict[str, np.ndarray]:
    """Minimise the paper's loss-gradient objective directly (L-BFGS from ``w = 0``) for each ``κ``.

    Returns per ``κ``: ``mu`` (the effective ridge of the minimiser found), ``rel_err``
    (|w_min − w_ridge(μ)|/|w_ridge(μ)|: is it a ridge solution?), ``n_stationary`` (number of
    stationary points, :func:`ridge_stationary_points`), ``J_gap`` (J at the minimiser found minus
    the smallest J over the stationary points), ``efficacy`` and ``r2`` at the minimiser found and
    ``efficacy_global``, ``r2_global`` at the global minimiser.
    """
    X, y = data["X"], data["y"]
    rows = []
    for kappa in kappas:

        def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
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
        rows.append((mu, float((w_min - w_r).norm() / w_r.norm()), len(stat),
                     float(loss_gradient_objective(w_min, X, y, kappa)) - stat[0][0], float(eff), float(r2),
                     float(eff_g), float(r2_g)))
    cols = list(map(np.array, zip(*rows)))
    keys = ("mu", "rel_err", "n_stationary", "J_gap", "efficacy", "r2", "efficacy_global", "r2_global")
    return {"kappa": np.array(kappas), **dict(zip(keys, cols))}


def frontier(data: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
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
    k_eq = data["k_eq"]
    poison_mode, clean_mode = W_sim @ t_hat, W_sim[:, k_eq]
    # unregularised reference: κ = 0 closed form at time T
    W0 = linear_flow_closed_form(X, y, 0.0, T)
    h_p = data["h_p"]
    return {
        "kappa": kappas.numpy(), "eff_sim": eff_sim.numpy(), "r2_sim": r2_sim.numpy(),
        "eff_th": eff_th.numpy(), "r2_th": r2_th.numpy(),
        "eff_rel_err": float(((eff_sim - eff_th).abs() / eff_th.abs()).max()),
        "r2_abs_err": float((r2_sim - r2_th).abs().max()),
        "factor_poison": (poison_mode / (W0 @ t_hat)).numpy(),
        "factor_clean_eq": (clean_mode / W0[k_eq]).numpy(),
        "factor_clean_all": (W_sim[:, : len(data["h"])] / W0[: len(data["h"])]).numpy(), "h": data["h"].numpy(),
        "factor_theory": ridge_filter(h_p, kappas.numpy(), T) / ridge_filter(h_p, 0.0, T),
        "eff_unreg": float(W0 @ data["t"]), "r2_unreg": float(efficacy_and_fit(W0, data)[1]),
    }


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


def krr_sweep(cfg: dict[str, Any], data: dict[str, Tensor]) -> dict[str, Any]:
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
    return {"kappa": kappas, "df": cur["df"], "residual": cur["residual"], "data_term": cur["data_term"],
            "penalty": cur["penalty"], "kappa_eff": kappas[:: max(1, len(kappas) // 60)], "efficacy": eff,
            "rank": int(fc.lam.shape[0]), "n": n,
            "df_max_step": float(np.diff(cur["df"]).max()), "res_min_step": float(np.diff(cur["residual"]).min()),
            "data_min_step": float(np.diff(cur["data_term"]).min()), "pen_max_step": float(np.diff(cur["penalty"]).max()),
            "ddf_max": float(ddf.max()),
            "df_fd_rel_err": float(np.abs(fd_df / ddf - 1).max()), "res_fd_rel_err": float(np.abs(fd_res / dres - 1).max()),
            "curves_vs_direct": float(max(np.abs(cur["df"][idx] / direct[:, 0] - 1).max(),
                                          np.abs(cur["residual"][idx] / direct[:, 1] - 1).max())),
            "linear_df_rel_err": float(np.abs(lin_df / ridge_df - 1).max())}


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


def krr_flow(cfg: dict[str, Any], data: dict[str, Tensor]) -> dict[str, Any]:
    """Simulated gradient flow on the regularised-KRR objective ``J`` in feature coordinates, from ``β = 0``.

    ``J(β) = (1/2n)|Bβ − y|² + (λ/2)|β|² + (κ/2n)βᵀMβ`` has Hessian ``H_J = Λ/n + λI + κF`` with
    ``F = M/n = mean_a ∂_β g_aᵀ ∂_β g_a`` (``g_a = ∇_x f(x_a)``). For each eigenvector ``v`` of ``H_J``
    (eigenvalue ``μ_v``): the measured decay rate of ``E_v(t) = (vᵀ(β(t) − β*))²`` (Euler, step
    ``flow_step_fraction/μ_max``), the bound ``λ + κ vᵀFv ≤ μ_v``, and the share of ``E_v(0)`` due
    to the poison labels; the F-energy ``vᵀFv`` averaged over modes with weights ``(vᵀβ*_p)²`` (the
    part of ``β*`` due to the poison labels) and with weights from the clean labels. Also a unit vector ``u`` (a mix of two eigenvectors) with ``E_u(0) = 0``
    that grows, so the reviewed statement cannot hold for non-eigenvectors.
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
    bound = lam + kappa * a
    # share of E_v(0) due to the poison labels (linearity of β* in y)
    beta_p = torch.linalg.solve(H, fc.B.T @ torch.where(poison, y, 0.0) / n)
    Ep, Ec = (V.T @ beta_p) ** 2, (V.T @ (beta_star - beta_p)) ** 2
    share = (Ep / (Ep + Ec)).numpy()
    # counterexample: u = (v_i + v_j)/√2 with weights chosen so that uᵀ(β(0) − β*) = 0
    i, j = int(torch.argmax(E0 * (mu < mu.median()))), int(torch.argmax(E0 * (mu > mu.median())))
    ci, cj = float(V[:, i] @ -beta_star), float(V[:, j] @ -beta_star)
    u = cj * V[:, i] - ci * V[:, j]
    u = u / u.norm()
    Eu = ((traj - beta_star) @ u) ** 2
    return {"mu": mu.numpy(), "a": a.numpy(), "bound": bound.numpy(), "rate_meas": rate_meas.numpy(), "ok": ok.numpy(),
            "rate_rel_err": float(((rate_meas - mu).abs() / mu)[ok].max()),
            "bound_min_gap": float((mu - bound).min()), "poison_share": share, "times": times,
            "E_rel": (E / E0).numpy(), "Eu": Eu.numpy(), "Eu0": float(Eu[0]), "Eu_max": float(Eu.max()),
            "u_a": float(u @ F @ u), "kappa": kappa,
            "a_poison": float((Ep * a).sum() / Ep.sum()), "a_clean": float((Ec * a).sum() / Ec.sum()), "lam": lam, "step_mu_max": cfg["flow_step_fraction"]}


def cluster_penalty_energy(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
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
    return {"spread": spreads, "ratio": ratio, "law": law, "law_rel_err_min_s": float(abs(ratio[0] / law[0] - 1)),
            "slope": float(np.polyfit(np.log(spreads[small]), np.log(ratio[small]), 1)[0])}
