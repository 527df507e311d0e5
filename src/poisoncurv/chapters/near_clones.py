"""Chapter 2 drivers: the near-clone regime, the detectability boundary and the lag in time.

Everything is float64. Clean data and clone geometry follow Chapter 1 (:mod:`.krr_clones`):
Gaussian clean inputs with one-hot class targets, and a trigger point ``zeta`` far enough from
the clean cloud that every clean kernel value underflows to 0 (the exact tight-cluster
assumption); the triggered query ``x0`` sits at distance ``r`` from ``zeta``.
Returned dictionaries hold numpy arrays ready to plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import lambertw
from torch import Tensor

from poisoncurv.chapters.krr_clones import DTYPE, clean_data, target_vector
from poisoncurv.core.fitting import loglog_slope
from poisoncurv.core.profiles import by_profile
from poisoncurv.krr.clean_clones import pair_effect
from poisoncurv.krr.clones import (
    add_clones,
    curvature_ratio,
    effective_curvature_ratio,
    measure_effect,
    predicted_shift,
    predicted_spike,
)
from poisoncurv.krr.flow import euler_alpha, first_crossing, krr_flow, saturation_time
from poisoncurv.krr.kernels import Kernel, LinearKernel, fit_krr, make_kernel
from poisoncurv.krr.visibility import bulk_edge, target_margin, top_gn_eigenvalue

TARGET = 1      # the attacker's target class


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every sweep in the chapter for ``profile``."""
    return {
        "n_clean": by_profile(profile, smoke=100, cpu=400, gpu=2000, full=5000),
        "n_test": by_profile(profile, smoke=100, cpu=500, gpu=2000, full=5000),
        "d": 10,
        "n_classes": 3,
        "lengthscale": 1.0,
        "ridge": 3.0,
        "edge_quantile": 0.95,
        "success_margin": 0.5,
        "m_near": 30,
        # near-clone law: r/ell log-spaced over [1e-3, 0.1]
        "r_law": list(np.logspace(-3, -1, by_profile(profile, smoke=5, cpu=11, gpu=21, full=41))),
        # phase diagram over (r/ell, m)
        "r_phase": list(np.logspace(-2, np.log10(3.0), by_profile(profile, smoke=25, cpu=121, gpu=241, full=361))),
        "m_phase": list(np.unique(np.concatenate([np.logspace(0, 3, by_profile(profile, smoke=13, cpu=61, gpu=121, full=181)).round(),
                                                  [1, 10, 100]]).astype(int))),
        "m_check": by_profile(profile, smoke=[1, 10], cpu=[1, 10, 100], gpu=[1, 10, 100], full=[1, 10, 100]),
        # lag in time
        "r_lag": list(np.logspace(-1, np.log10(2.0), by_profile(profile, smoke=10, cpu=40, gpu=80, full=120))),
        "t_grid": (1e-3, 1e2, by_profile(profile, smoke=80, cpu=200, gpu=1000, full=3000)),
        "euler_time": 0.05,
        "euler_steps": by_profile(profile, smoke=200, cpu=500, gpu=5000, full=5000),
        "patch_values": [0.2, 0.5, 1.0],
        # overlap
        "overlap_D": by_profile(profile, smoke=[0.0, 3.0, 6.0], cpu=[0.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                                gpu=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0], full=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]),
        "r_overlap": list(np.logspace(-4, 0, by_profile(profile, smoke=9, cpu=25, gpu=41, full=61))),
        # near clone of a clean point
        "pair_m": 5,
        "pair_ridge": 0.01,
        "pair_d": 5,
        "pair_n": by_profile(profile, smoke=100, cpu=200, gpu=1000, full=2000),
        "eps": list(np.logspace(-3, 0, by_profile(profile, smoke=10, cpu=31, gpu=61, full=91))),
    }


def far_setup(cfg: dict[str, Any], seed: int) -> dict[str, Tensor]:
    """Clean train/test data, a far trigger ``zeta`` (at ``1000ℓ``) and a unit direction ``u`` for the queries."""
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed)
    Xt, Yt = clean_data(cfg["n_test"], cfg["d"], cfg["n_classes"], seed + 10)
    zeta = torch.zeros(cfg["d"], dtype=DTYPE)
    zeta[0] = 1000.0 * cfg["lengthscale"]
    u = torch.randn(cfg["d"], generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
    return {"X": X, "Y": Y, "Xt": Xt, "Yt": Yt, "zeta": zeta, "u": u / u.norm()}


def queries(zeta: Tensor, u: Tensor, r: np.ndarray) -> Tensor:
    """Triggered queries ``zeta + r_i u``, shape ``(len(r), d)``."""
    return zeta[None, :] + torch.as_tensor(np.asarray(r), dtype=DTYPE)[:, None] * u[None, :]


def visibility_radius(lam: float, ell: float, gain: float) -> float:
    """Smallest ``r`` at which far Gaussian clones with ``|Δf_∞| = gain·e^{−r²/2ℓ²}`` leave a spike ``≥ lam``.

    The spike is ``gain² (r²/ℓ⁴) e^{−r²/ℓ²}``; with ``x = r²/ℓ²`` the condition ``x e^{−x} = lam ℓ²/gain²``
    has its smaller root ``x = −W₀(−lam ℓ²/gain²)`` (principal Lambert branch). ``inf`` when
    ``lam ℓ²/gain² > 1/e``: then the spike never reaches ``lam`` at any ``r``.
    """
    z = lam * ell**2 / gain**2
    if z > np.exp(-1):
        return float("inf")
    return float(ell * np.sqrt(-lambertw(-z, 0).real))


def clean_edge(cfg: dict[str, Any], setup: dict[str, Tensor], kernel: Kernel) -> float:
    """``Λ_clean``: the ``edge_quantile`` of ``λ_max(JᵀJ)`` of the clean KRR over the clean test inputs."""
    clean = fit_krr(kernel, setup["X"], setup["Y"], cfg["ridge"])
    return float(bulk_edge(clean.jacobian(setup["Xt"]), cfg["edge_quantile"]))


def near_clone_law(name: str, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Efficacy ``|Δf(x0)|`` and spike against ``r`` for ``m_near`` clones (direct solves and closed forms).

    Returns ``r_over_ell``, measured and closed-form efficacy and spike, and the fitted log-log slopes
    of measured efficacy and spike against ``r``.
    """
    ell = cfg["lengthscale"]
    kernel = make_kernel(name, ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_law"]) * ell
    x0 = queries(s["zeta"], s["u"], r)
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    Xp, Yp = add_clones(s["X"], s["Y"], s["zeta"], y_t, cfg["m_near"])
    eff = measure_effect(kernel, s["X"], s["Y"], Xp, Yp, cfg["ridge"], x0)
    out = {"r_over_ell": r / ell, "eff": eff.shift.norm(dim=1).numpy(), "spike": eff.spike.numpy(),
           "eff_pred": predicted_shift(kernel, x0, s["zeta"], y_t, cfg["m_near"], cfg["ridge"]).norm(dim=1).numpy(),
           "spike_pred": predicted_spike(kernel, x0, s["zeta"], y_t, cfg["m_near"], cfg["ridge"]).numpy()}
    out["eff_slope"] = loglog_slope(r, out["eff"])
    out["spike_slope"] = loglog_slope(r, out["spike"])
    return out


def phase_diagram(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Attack success and spectral visibility over the grid ``(r/ℓ, m)``, Gaussian kernel.

    On the grid: the closed forms (exact here, :mod:`poisoncurv.krr.clones`) for the efficacy
    ``|Δf| = k0 S(m)``, the target margin (the clean model predicts 0 at the far trigger, so the
    margin is ``|Δf|``) and the spike ``R_k |Δf|²``. ``success``: margin ≥ ``success_margin``;
    ``visible``: spike ≥ ``Λ_clean``; arrays ``(len(m), len(r))``. For every ``m`` in
    ``m_check`` the same quantities from direct solves, and the largest relative gap to the grid.
    """
    ell = cfg["lengthscale"]
    kernel = make_kernel("gaussian", ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_phase"]) * ell
    x0 = queries(s["zeta"], s["u"], r)
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    lam = clean_edge(cfg, s, kernel)
    R = curvature_ratio(kernel, x0, s["zeta"]).numpy()
    m_grid = np.array(cfg["m_phase"])
    eff = np.array([predicted_shift(kernel, x0, s["zeta"], y_t, float(m), cfg["ridge"]).norm(dim=1).numpy() for m in m_grid])
    spike = R[None, :] * eff**2
    gaps = []
    for m in cfg["m_check"]:
        Xp, Yp = add_clones(s["X"], s["Y"], s["zeta"], y_t, int(m))
        e = measure_effect(kernel, s["X"], s["Y"], Xp, Yp, cfg["ridge"], x0)
        row = int(np.nonzero(m_grid == m)[0][0])
        margin = target_margin(e.poisoned.predict(x0), TARGET).numpy()
        gaps += [np.abs(margin / eff[row] - 1).max(), np.abs(e.spike.numpy() / spike[row] - 1).max()]
    return {"r_over_ell": r / ell, "m": m_grid, "Lambda_clean": lam, "R_k": R, "eff": eff, "spike": spike,
            "success": eff >= cfg["success_margin"], "visible": spike >= lam, "direct_max_rel_gap": float(max(gaps)),
            "ceiling_ratio": float(1 / (np.e * ell**2) / lam)}


def time_grid(cfg: dict[str, Any]) -> Tensor:
    """Log-spaced training times ``(T,)`` from ``cfg["t_grid"] = (t_min, t_max, T)``."""
    lo, hi, n = cfg["t_grid"]
    return torch.logspace(np.log10(lo), np.log10(hi), n, dtype=DTYPE)


def _crossings(t: np.ndarray, eff: np.ndarray, spike: np.ndarray, edge: np.ndarray | float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query (columns): first time the efficacy reaches ``tau`` and first time the spike reaches ``edge``."""
    t_succ = np.array([first_crossing(t, eff[:, j], tau) for j in range(eff.shape[1])])
    t_vis = np.array([first_crossing(t, spike[:, j], edge) for j in range(spike.shape[1])])
    return t_succ, t_vis


def lag_gaussian(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Times to attack success and to spectral visibility under gradient flow, Gaussian kernel, ``m_near`` clones.

    Success: the target component of ``Δf_t(x0) = f_t^poisoned(x0) − f_t^clean(x0)`` reaches
    ``success_margin``. Visibility: the spike of ``Δf_t`` reaches ``Λ_clean``, the bulk edge of the
    converged clean model (``t_vis``), or the bulk edge of the clean flow at the same time ``t``
    (``t_vis_moving``; the poisons do not move the model at clean inputs, so this is also the
    poisoned model's edge). Crossing times are read off the flow on the time grid and compared
    with their closed forms (:func:`poisoncurv.krr.flow.saturation_time`). Also the Euler-vs-closed-form
    relative gap of the poisoned flow's dual weights at ``t = euler_time``.
    """
    ell, ridge, m, tau = cfg["lengthscale"], cfg["ridge"], cfg["m_near"], cfg["success_margin"]
    kernel = make_kernel("gaussian", ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_lag"]) * ell
    x0 = queries(s["zeta"], s["u"], r)
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    Xp, Yp = add_clones(s["X"], s["Y"], s["zeta"], y_t, m)
    t = time_grid(cfg)
    clean, pois = krr_flow(kernel, s["X"], s["Y"], ridge), krr_flow(kernel, Xp, Yp, ridge)
    lam = clean_edge(cfg, s, kernel)
    moving = bulk_edge(clean.jacobian(s["Xt"], t), cfg["edge_quantile"]).numpy()                 # (T,)
    eff = (pois.predict(x0, t) - clean.predict(x0, t))[..., TARGET].numpy()                     # (T, B)
    spike = top_gn_eigenvalue(pois.jacobian(x0, t) - clean.jacobian(x0, t)).numpy()            # (T, B)
    t_succ, t_vis = _crossings(t.numpy(), eff, spike, lam, tau)
    _, t_vis_moving = _crossings(t.numpy(), eff, spike, moving, tau)
    eff_inf = predicted_shift(kernel, x0, s["zeta"], y_t, m, ridge)[:, TARGET].numpy()
    R = curvature_ratio(kernel, x0, s["zeta"]).numpy()
    rate = ridge + m * float(kernel(s["zeta"][None], s["zeta"][None]))
    cf_succ, cf_vis = saturation_time(tau / eff_inf, rate), saturation_time(np.sqrt(lam / R) / eff_inf, rate)
    finite = np.isfinite(cf_succ) & np.isfinite(cf_vis)
    same_inf = np.array_equal(np.isinf(t_succ), np.isinf(cf_succ)) and np.array_equal(np.isinf(t_vis), np.isinf(cf_vis))
    t_check = cfg["euler_time"]
    a_euler = euler_alpha(kernel, Xp, Yp, ridge, t_check, cfg["euler_steps"])
    a_flow = pois.alpha(torch.tensor([t_check], dtype=DTYPE))[0]
    with np.errstate(invalid="ignore"):
        lag = t_vis - t_succ                       # nan where neither happens
    return {"r_over_ell": r / ell, "t": t.numpy(), "Lambda_clean": lam, "moving_edge": moving, "eff": eff, "spike": spike,
            "t_succ": t_succ, "t_vis": t_vis, "lag": lag, "t_vis_moving": t_vis_moving,
            "cf_t_succ": cf_succ, "cf_t_vis": cf_vis, "rate": rate,
            "crossing_max_rel_err": float(max(np.abs(t_succ[finite] / cf_succ[finite] - 1).max(),
                                              np.abs(t_vis[finite] / cf_vis[finite] - 1).max())) if same_inf else float("inf"),
            "euler_rel_gap": float((a_euler - a_flow).norm() / a_flow.norm())}


def lag_linear(cfg: dict[str, Any], seed: int, patch: int = 3, n_sources: int = 20) -> dict[str, Any]:
    """The same times for the linear kernel and a patch trigger (clean inputs zero on the patch).

    Triggered inputs are ``x_s + t`` for ``n_sources`` clean test inputs ``x_s``; one patch value
    per entry of ``patch_values``. Returns, per patch value, the times at every source (they agree:
    ``R_k = 1/|t|²`` for every source), ``Λ_clean`` (here ``|W_clean|²``, the same at every input),
    and the gap between the closed-form flow and explicit primal gradient descent on
    ``½|XWᵀ − Y|² + (ridge/2)|W|²``.
    """
    s = far_setup(cfg, seed)
    X, Xt = s["X"].clone(), s["Xt"][:n_sources].clone()
    X[:, -patch:], Xt[:, -patch:] = 0.0, 0.0
    y_t = target_vector(cfg["n_classes"], TARGET, X)
    kernel, t = LinearKernel(), time_grid(cfg)
    clean = krr_flow(kernel, X, s["Y"], cfg["ridge"])
    lam = float(bulk_edge(fit_krr(kernel, X, s["Y"], cfg["ridge"]).jacobian(Xt), cfg["edge_quantile"]))
    out: dict[str, Any] = {"patch_values": list(cfg["patch_values"]), "Lambda_clean": lam}
    for a in cfg["patch_values"]:
        trig = torch.zeros(cfg["d"], dtype=DTYPE)
        trig[-patch:] = a
        Xp, Yp = add_clones(X, s["Y"], trig, y_t, cfg["m_near"])
        pois = krr_flow(kernel, Xp, Yp, cfg["ridge"])
        x0 = Xt + trig
        eff = (pois.predict(x0, t) - clean.predict(x0, t))[..., TARGET].numpy()
        spike = top_gn_eigenvalue(pois.jacobian(x0, t) - clean.jacobian(x0, t)).numpy()
        out[f"t_succ_{a}"], out[f"t_vis_{a}"] = _crossings(t.numpy(), eff, spike, lam, cfg["success_margin"])
        out[f"trigger_norm_{a}"] = float(trig.norm())
    # primal gradient descent on the linear model (the literal objective) against the closed-form flow
    W = torch.zeros(cfg["n_classes"], cfg["d"], dtype=DTYPE)
    h = cfg["euler_time"] / cfg["euler_steps"]
    for _ in range(cfg["euler_steps"]):
        W = W - h * ((W @ Xp.T - Yp.T) @ Xp + cfg["ridge"] * W)
    W_flow = pois.alpha(torch.tensor([cfg["euler_time"]], dtype=DTYPE))[0].T @ Xp
    out["primal_rel_gap"] = float((W - W_flow).norm() / W_flow.norm())
    return out


def overlap_floor(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Near-clone law when the clones overlap the clean data (Gaussian kernel).

    ``zeta`` at distance ``D·ℓ`` from the centre of the clean cloud; queries at distance ``r`` from
    it. Returns ``R_eff(x0)·ℓ⁴/r²`` (1 without overlap), the floor ``R_eff(zeta)``, the crossover
    radius ``r* = ℓ² sqrt(R_eff(zeta))``, efficacy ``|Δf(x0)|`` for ``m_near`` clones, and the largest
    relative gap between the measured spike and ``R_eff |Δf|²``.
    """
    ell = cfg["lengthscale"]
    kernel = make_kernel("gaussian", ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_overlap"]) * ell
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    out: dict[str, Any] = {"D": list(cfg["overlap_D"]), "r_over_ell": r / ell}
    gaps, floors, eff0 = [], [], []
    for D in cfg["overlap_D"]:
        zeta = torch.zeros(cfg["d"], dtype=DTYPE)
        zeta[0] = D * ell
        x0 = queries(zeta, s["u"], r)
        R_eff = effective_curvature_ratio(kernel, s["X"], cfg["ridge"], x0, zeta).numpy()
        floor = float(effective_curvature_ratio(kernel, s["X"], cfg["ridge"], zeta[None], zeta)[0])
        Xp, Yp = add_clones(s["X"], s["Y"], zeta, y_t, cfg["m_near"])
        e = measure_effect(kernel, s["X"], s["Y"], Xp, Yp, cfg["ridge"], x0)
        eff, spike = e.shift.norm(dim=1).numpy(), e.spike.numpy()
        gaps.append(float(np.abs(spike / (R_eff * eff**2) - 1).max()))
        out[f"ratio_{D}"] = R_eff * ell**4 / r**2
        out[f"spike_{D}"], out[f"eff_{D}"] = spike, eff
        floors.append(floor)
        eff0.append(eff[0])
    out["floor"], out["r_star_over_ell"] = np.array(floors), ell * np.sqrt(np.array(floors))
    out["eff_at_smallest_r"], out["law_max_rel_gap"] = np.array(eff0), max(gaps)
    return out


def clean_clone(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """A poison ``x_p = x_c + ε u`` near a clean training point ``x_c``, ``pair_m`` copies, other label.

    Two settings, direct KRR solves against the two-cluster closed form of
    :mod:`poisoncurv.krr.clean_clones`: *isolated* (``x_c`` is moved ``1000ℓ`` from the rest of the
    clean data) and *in the cloud* (``x_c`` is the clean training point nearest the origin).
    Returns shifts at ``x_p`` and ``x_c`` and the poison-aligned curvature ``|ΔJ(x_p) u|²`` per ``ε``,
    and for each setting the value of that curvature at ``ε = 0`` exactly (``m`` copies of ``x_c``
    relabelled): the floor the curvature tends to as ``ε → 0``.
    """
    ell, ridge, m = 1.0, cfg["pair_ridge"], cfg["pair_m"]
    kernel = make_kernel("gaussian", ell)
    X, Y = clean_data(cfg["pair_n"], cfg["pair_d"], cfg["n_classes"], seed)
    i = int(X.norm(dim=1).argmin())
    u = torch.randn(cfg["pair_d"], generator=torch.Generator().manual_seed(seed + 3), dtype=DTYPE)
    u = u / u.norm()
    y_c = Y[i]
    y_p = target_vector(cfg["n_classes"], (int(y_c.argmax()) + 1) % cfg["n_classes"], X)
    eps = np.array(cfg["eps"])
    cf = pair_effect(eps, m, ridge, ell, y_c.numpy(), y_p.numpy())
    out: dict[str, Any] = {"eps": eps, "closed_shift_poison": np.linalg.norm(cf.shift_poison, axis=1),
                           "closed_shift_clean": np.linalg.norm(cf.shift_clean, axis=1), "closed_aligned": cf.aligned,
                           "y_c": y_c.numpy(), "y_p": y_p.numpy()}
    for where in ("isolated", "cloud"):
        Xw = X.clone()
        if where == "isolated":
            Xw[i] = 0.0
            Xw[i, 0] = 1000.0 * ell
        x_c = Xw[i]
        sp, sc, al = [], [], []
        for e in [0.0, *eps]:
            x_p = x_c + float(e) * u
            Xp, Yp = add_clones(Xw, Y, x_p, y_p, m)
            eff = measure_effect(kernel, Xw, Y, Xp, Yp, ridge, torch.stack([x_p, x_c]))
            dJu = (eff.poisoned.jacobian(x_p[None]) - eff.clean.jacobian(x_p[None]))[0] @ u
            sp.append(float(eff.shift[0].norm()))
            sc.append(float(eff.shift[1].norm()))
            al.append(float((dJu**2).sum()))
        out[f"{where}_floor"] = al.pop(0)
        sp.pop(0), sc.pop(0)
        out[f"{where}_shift_poison"], out[f"{where}_shift_clean"], out[f"{where}_aligned"] = map(np.array, (sp, sc, al))
    return out
