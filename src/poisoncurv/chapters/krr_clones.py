"""Chapter 1 drivers: cloned poisons in kernel ridge regression.

All computations are float64. Returned dictionaries hold numpy arrays ready to plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from poisoncurv.core.fitting import loglog_slope
from poisoncurv.core.profiles import by_profile, resolve_device
from poisoncurv.curvature import input_hessian, input_jacobian
from poisoncurv.krr.clones import (
    add_clones,
    curvature_ratio,
    effective_curvature_ratio,
    linear_clone_update,
    measure_effect,
    predicted_shift,
    predicted_spike,
    ridge_weights,
)
from poisoncurv.krr.kernels import KRR, Kernel, LinearKernel
from poisoncurv.krr.ntk import train_vs_kernel

DTYPE = torch.float64


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every sweep in the chapter for ``profile``."""
    return {
        "n_clean": by_profile(profile, smoke=120, cpu=400, gpu=2000, full=5000),
        "d": 10,
        "n_classes": 3,
        "lengthscale": 1.5,
        "ridge": 0.3,
        "m_values": by_profile(profile, smoke=[1, 3, 10, 30, 100], cpu=list(np.unique(np.logspace(0, 3, 13).round().astype(int))),
                               gpu=list(np.unique(np.logspace(0, 3.5, 25).round().astype(int))),
                               full=list(np.unique(np.logspace(0, 4, 33).round().astype(int)))),
        "r_over_ell": 0.5,
        "overlap_distances": by_profile(profile, smoke=[0.0, 2.0, 4.0, 8.0, 60.0],
                                        cpu=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 60.0],
                                        gpu=list(np.linspace(0, 10, 21)) + [60.0], full=list(np.linspace(0, 10, 41)) + [60.0]),
        "overlap_spreads": by_profile(profile, smoke=[0.0, 0.3], cpu=[0.0, 0.1, 0.3], gpu=[0.0, 0.1, 0.3, 0.5], full=[0.0, 0.1, 0.3, 0.5]),
        "ntk_widths": by_profile(profile, smoke=[128, 512, 2048], cpu=[128, 256, 512, 1024, 2048, 4096, 8192],
                                 gpu=[128, 512, 2048, 8192, 32768], full=[128, 512, 2048, 8192, 32768, 131072]),
        "ntk_seeds": by_profile(profile, smoke=3, cpu=8, gpu=16, full=32),
        "ntk_steps": 300,
    }


def clean_data(n: int, d: int, n_classes: int, seed: int, device: str = "cpu") -> tuple[Tensor, Tensor]:
    """Clean inputs ``X ~ N(0, I_d)`` ``(n, d)`` and one-hot targets ``(n, C)`` from the sign pattern of
    the first coordinates (class = argmax of the first ``C`` coordinates)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=DTYPE).to(resolve_device(device))
    labels = X[:, :n_classes].argmax(1)
    return X, torch.nn.functional.one_hot(labels, n_classes).to(DTYPE)


def target_vector(n_classes: int, target: int, like: Tensor) -> Tensor:
    """The dirty label: one-hot of ``target``, shape ``(C,)``."""
    y = torch.zeros(n_classes, dtype=like.dtype, device=like.device)
    y[target] = 1.0
    return y


def trigger_query(zeta: Tensor, r: float, seed: int) -> Tensor:
    """A triggered query at distance ``r`` from ``zeta`` in a random direction, shape ``(1, d)``."""
    gen = torch.Generator().manual_seed(seed + 1)
    u = torch.randn(zeta.shape[0], generator=gen, dtype=zeta.dtype).to(zeta.device)
    return (zeta + r * u / u.norm()).reshape(1, -1)


def autograd_check(clean: KRR, poisoned: KRR, x0: Tensor, y0: Tensor) -> dict[str, float]:
    """Input derivatives at one query ``x0`` (``(1, d)``) by automatic differentiation of ``predict``,
    through the curvature core (:mod:`poisoncurv.curvature`).

    Uses only kernel *values*, none of the closed-form kernel derivatives. Returns the spike
    ``λ_max(ΔJᵀΔJ)`` with ``ΔJ`` the input Jacobian of ``f_poisoned − f_clean`` (``C`` backward
    passes), and the relative gap between the input Hessian of ``½|f_poisoned(x) − y0|²`` from
    :func:`~poisoncurv.curvature.input_hessian` and the closed form ``JᵀJ + Σ_c (f_c − y0_c) ∇²f_c``
    of :meth:`KRR.loss_input_hessian`.
    """
    n_out = y0.shape[0]
    # torch's MSELoss (mean reduction) on one example with C outputs is |f − y|²/C = (2/C)·½|f − y|²,
    # so the Hessian of the book's loss ½|f − y|² is (C/2) times the operator's.
    H_auto = (n_out / 2) * input_hessian(poisoned.predict, nn.MSELoss(), x0, y0[None]).dense()[None]
    _, dJ = input_jacobian(lambda x: poisoned.predict(x) - clean.predict(x), x0)
    gn, res = poisoned.loss_input_hessian(x0, y0[None])
    return {
        "spike": float(torch.linalg.eigvalsh(dJ[0].T @ dJ[0])[-1]),
        "hessian_rel_gap": float((H_auto - (gn + res)).norm() / H_auto.norm()),
    }


def exact_setup(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clean data, trigger point ``zeta`` and triggered query ``x0`` with ``k(zeta, x_i) = 0`` exactly.

    Linear kernel: clean inputs are zero on the last 3 coordinates (a corner patch) and ``zeta`` is
    the patch itself; ``x0`` is a clean input plus the patch. Other kernels: ``zeta`` sits ``1000ℓ``
    from the clean cloud (kernel values underflow to 0 in float64) and ``x0`` is at distance
    ``r_over_ell·ℓ`` from ``zeta``. Returns ``(X, Y, zeta, x0)``.
    """
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    zeta = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
    if isinstance(kernel, LinearKernel):
        X[:, -3:] = 0.0
        zeta[-3:] = 1.0
        return X, Y, zeta, (X[:1] + zeta)
    zeta[0] = 1000.0 * cfg["lengthscale"]
    return X, Y, zeta, trigger_query(zeta, cfg["r_over_ell"] * cfg["lengthscale"], seed)


def exact_regime(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> dict[str, Any]:
    """Sweep the number of clones ``m`` in the exact setting of :func:`exact_setup`.

    Returns measured and closed-form shifts ``|Δf(x0)|`` and spikes per ``m``, ``R_k(x0, zeta)``,
    and the autograd check (spike and loss Hessian) at the largest ``m``.
    """
    X, Y, zeta, x0 = exact_setup(kernel, cfg, seed, device)
    y_t = target_vector(cfg["n_classes"], 1, X)
    rows = []
    for m in cfg["m_values"]:
        Xp, Yp = add_clones(X, Y, zeta, y_t, int(m))
        eff = measure_effect(kernel, X, Y, Xp, Yp, cfg["ridge"], x0)
        rows.append((float(eff.shift.norm()), float(predicted_shift(kernel, x0, zeta, y_t, m, cfg["ridge"]).norm()),
                     float(eff.spike[0]), float(predicted_spike(kernel, x0, zeta, y_t, m, cfg["ridge"])[0])))
    shift_meas, shift_pred, spike_meas, spike_pred = map(np.array, zip(*rows))
    auto = autograd_check(eff.clean, eff.poisoned, x0, target_vector(cfg["n_classes"], 0, X))
    return {"m": np.array(cfg["m_values"]), "shift_meas": shift_meas, "shift_pred": shift_pred,
            "spike_meas": spike_meas, "spike_pred": spike_pred, "R_k": float(curvature_ratio(kernel, x0, zeta)[0]),
            "autograd_spike_rel_err": abs(auto["spike"] / spike_pred[-1] - 1),
            "autograd_hessian_rel_gap": auto["hessian_rel_gap"]}


def linear_patch(cfg: dict[str, Any], seed: int, patch: int = 3, device: str = "cpu") -> dict[str, float]:
    """Linear kernel with a trigger patch on ``patch`` coordinates where every clean input is zero.

    Compares the Sherman-Morrison update with a direct ridge solve, the kernel-form shift at
    triggered inputs ``x_s + t`` with the closed form, and ``R_k`` with ``1/|t|²``.
    """
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    X[:, -patch:] = 0.0
    t = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
    t[-patch:] = 1.0
    y_t = target_vector(cfg["n_classes"], 1, X)
    m = int(cfg["m_values"][len(cfg["m_values"]) // 2])
    W, W_sm = linear_clone_update(X, Y, t, y_t, m, cfg["ridge"])
    Xp, Yp = add_clones(X, Y, t, y_t, m)
    W_direct = ridge_weights(Xp, Yp, cfg["ridge"])
    sources = X[:20] + t
    kernel = LinearKernel()
    eff = measure_effect(kernel, X, Y, Xp, Yp, cfg["ridge"], sources)
    pred = predicted_shift(kernel, sources, t, y_t, m, cfg["ridge"])
    R = curvature_ratio(kernel, sources, t)
    return {
        "sm_rel_err": float((W_sm - W_direct).norm() / W_direct.norm()),
        "shift_rel_err": float((eff.shift - pred).norm() / pred.norm()),
        "R_k_rel_spread": float((R.max() - R.min()) / R.mean()),
        "R_k_times_t2": float(R.mean() * (t**2).sum()),
        "spike_rel_err": float(((eff.spike - R * (eff.shift**2).sum(-1)).abs() / eff.spike).max()),
        "m": m,
    }


def overlap_sweep(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> dict[str, Any]:
    """How the law bends when the poisons overlap the clean data.

    The cluster centre ``zeta`` sits at distance ``D·ℓ`` from the centre of the clean cloud (which
    has radius about ``sqrt(d)``); the ``m`` poisons are ``zeta + spread·ℓ·g`` (``g`` standard
    normal). For each ``(spread, D)``: the ratio of the measured spike to ``R_k(x0, zeta)·|Δf|²``
    (measured shift), the ratio of the measured to the closed-form shift (both at the largest ``m``),
    the fitted slope of log spike against log efficacy over the ``m`` sweep (nested poison sets), and
    the ratio of the measured spike to ``R_eff·|Δf|²`` (:func:`effective_curvature_ratio`).
    The spread is the RMS distance of a poison from ``zeta``, in units of ``ℓ``.
    """
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    y_t = target_vector(cfg["n_classes"], 1, X)
    ell = cfg["lengthscale"]
    gen = torch.Generator().manual_seed(seed + 2)
    out: dict[str, Any] = {"distance_over_ell": np.array(cfg["overlap_distances"]), "spreads": list(cfg["overlap_spreads"])}
    for spread in cfg["overlap_spreads"]:
        law_ratio, shift_ratio, slopes, eff_ratio = [], [], [], []
        for D in cfg["overlap_distances"]:
            zeta = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
            zeta[0] = D * ell
            x0 = trigger_query(zeta, cfg["r_over_ell"] * ell, seed)
            R = curvature_ratio(kernel, x0, zeta)[0]
            R_eff = effective_curvature_ratio(kernel, X, cfg["ridge"], x0, zeta)[0]
            effs, spikes, ratios_at_m = [], [], []
            noise = torch.randn(int(max(cfg["m_values"])), cfg["d"], generator=gen, dtype=DTYPE).to(X.device)
            for m in cfg["m_values"]:
                Xp = torch.cat([X, zeta + spread * ell * noise[: int(m)] / cfg["d"] ** 0.5])
                Yp = torch.cat([Y, y_t.expand(int(m), -1)])
                eff = measure_effect(kernel, X, Y, Xp, Yp, cfg["ridge"], x0)
                effs.append(float(eff.shift.norm()))
                spikes.append(float(eff.spike[0]))
                ratios_at_m.append(float(eff.shift.norm() / predicted_shift(kernel, x0, zeta, y_t, m, cfg["ridge"]).norm()))
            law_ratio.append(spikes[-1] / float(R * effs[-1] ** 2))
            eff_ratio.append(spikes[-1] / float(R_eff * effs[-1] ** 2))
            shift_ratio.append(ratios_at_m[-1])
            slopes.append(loglog_slope(np.array(effs), np.array(spikes)))
        out[f"law_ratio_{spread}"] = np.array(law_ratio)
        out[f"shift_ratio_{spread}"] = np.array(shift_ratio)
        out[f"slope_{spread}"] = np.array(slopes)
        out[f"eff_law_ratio_{spread}"] = np.array(eff_ratio)
    return out


def ntk_convergence(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Gap between trained two-layer ReLU networks and NTK kernel regression, per width (mean over seeds).

    Inputs on the unit sphere in 4 dimensions, 16 training points, target ``sin(3 x_1)``.
    """
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 4, generator=gen, dtype=DTYPE)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.sin(3 * X[:, 0])
    xt = torch.randn(32, 4, generator=gen, dtype=DTYPE)
    xt = xt / xt.norm(dim=1, keepdim=True)
    gaps = np.array([[train_vs_kernel(X, y, xt, w, cfg["ntk_steps"], seed + 100 * s)["rel_gap"]
                      for s in range(cfg["ntk_seeds"])] for w in cfg["ntk_widths"]])
    widths = np.array(cfg["ntk_widths"])
    return {"widths": widths, "gap_mean": gaps.mean(1), "gap_std": gaps.std(1),
            "slope": loglog_slope(widths, gaps.mean(1))}
