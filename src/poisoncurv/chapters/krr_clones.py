"""Chapter 1 drivers: cloned poisons in kernel ridge regression.

All computations are float64. Each driver returns a frozen dataclass keyed by the swept value; its
``summary()`` holds every number the chapter quotes and the ledger checks (the glue keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.dtypes import THEORY_DTYPE as DTYPE
from poisoncurv.core.fitting import loglog_slope, rel_err, rel_norm_err
from poisoncurv.core.profiles import by_profile
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
from poisoncurv.krr.kernels import KRR, Kernel, LinearKernel, fit_krr, make_kernel
from poisoncurv.krr.ntk import train_vs_kernel
from poisoncurv.krr.synthetic import clean_data, target_vector
from poisoncurv.krr.visibility import bulk_edge, top_gn_eigenvalue

KERNELS = ("linear", "gaussian", "laplace")
FAR_D = 5.0          # distances D/ℓ ≥ FAR_D count as "far from the clean cloud" in the overlap sweep


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every sweep in the chapter for ``profile``."""
    return {
        "n_clean": by_profile(profile, smoke=120, cpu=400, gpu=2000, full=5000),
        "d": 10,
        "n_classes": 3,
        "lengthscale": 1.5,
        "ridge": 0.3,
        "success_margin": 0.5,
        "edge_quantile": 0.95,
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


def trigger_query(zeta: Tensor, r: float, seed: int) -> Tensor:
    """A triggered query at distance ``r`` from ``zeta`` in a random direction, shape ``(1, d)``."""
    gen = torch.Generator().manual_seed(seed + 1)
    u = torch.randn(zeta.shape[0], generator=gen, dtype=zeta.dtype).to(zeta.device)
    return (zeta + r * u / u.norm()).reshape(1, -1)


def autograd_check(clean: KRR, poisoned: KRR, x0: Tensor, y0: Tensor) -> dict[str, float]:
    """Input derivatives at one query ``x0`` (``(1, d)``) by automatic differentiation of ``predict``.

    Uses only kernel *values* (through :mod:`poisoncurv.curvature`). Returns the spike ``λ_max(ΔJᵀΔJ)``
    and the relative gap between the autograd input Hessian of ``½|f_poisoned(x) − y0|²`` and the
    closed form ``JᵀJ + Σ_c (f_c − y0_c) ∇²f_c`` of :meth:`KRR.loss_input_hessian`.
    """
    n_out = y0.shape[0]
    # torch's MSELoss (mean) on one example with C outputs is (2/C)·½|f − y|²: rescale to the book's loss.
    H_auto = (n_out / 2) * input_hessian(poisoned.predict, nn.MSELoss(), x0, y0[None]).dense()[None]
    _, dJ = input_jacobian(lambda x: poisoned.predict(x) - clean.predict(x), x0)
    gn, res = poisoned.loss_input_hessian(x0, y0[None])
    return {"spike": float(torch.linalg.eigvalsh(dJ[0].T @ dJ[0])[-1]), "hessian_rel_gap": rel_norm_err(H_auto, gn + res)}


def exact_setup(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clean data, trigger point ``zeta`` and triggered query ``x0`` with ``k(zeta, x_i) = 0`` exactly.

    Linear kernel: clean inputs are zero on the last 3 coordinates and ``zeta`` is that patch; ``x0`` is a
    clean input plus the patch. Other kernels: ``zeta`` sits ``1000ℓ`` from the clean cloud (kernel values
    underflow to 0) and ``x0`` is at distance ``r_over_ell·ℓ`` from it. Returns ``(X, Y, zeta, x0)``.
    """
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    zeta = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
    if isinstance(kernel, LinearKernel):
        X[:, -3:] = 0.0
        zeta[-3:] = 1.0
        return X, Y, zeta, (X[:1] + zeta)
    zeta[0] = 1000.0 * cfg["lengthscale"]
    return X, Y, zeta, trigger_query(zeta, cfg["r_over_ell"] * cfg["lengthscale"], seed)


@dataclass(frozen=True)
class ExactRegime:
    """One kernel in the exact setting: per ``m`` (array ``m``), measured and closed-form shift norms and spikes."""

    kernel: str
    m: np.ndarray
    shift_meas: np.ndarray
    shift_pred: np.ndarray
    spike_meas: np.ndarray
    spike_pred: np.ndarray
    R_k: float
    autograd_spike_rel_err: float
    autograd_hessian_rel_gap: float

    @property
    def slope(self) -> float:
        """Fitted exponent of the spike against the efficacy over the ``m`` sweep."""
        return loglog_slope(self.shift_meas, self.spike_meas)


def exact_regime(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> ExactRegime:
    """Sweep the number of clones ``m`` in the exact setting of :func:`exact_setup` (autograd check at the largest ``m``)."""
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
    return ExactRegime(kernel.name, np.array(cfg["m_values"]), shift_meas, shift_pred, spike_meas, spike_pred,
                       float(curvature_ratio(kernel, x0, zeta)[0]), rel_err(auto["spike"], spike_pred[-1]), auto["hessian_rel_gap"])


@dataclass(frozen=True)
class ExactSweep(ChapterResult):
    """The exact regime for each kernel of :data:`KERNELS` (``by_kernel``), and the Gaussian ``R_k`` against ``r²/ℓ⁴``."""

    sig = {f"ch1_slope_{k}": 6 for k in KERNELS}

    by_kernel: dict[str, ExactRegime]
    gaussian_Rk_closed: float

    def summary(self) -> Summary:
        e = self.by_kernel.values()
        out: Summary = {
            "ch1_shift_max_rel_err": max(rel_err(r.shift_meas, r.shift_pred) for r in e),
            "ch1_spike_max_rel_err": max(rel_err(r.spike_meas, r.spike_pred) for r in e),
            "ch1_autograd_max_rel_err": max(max(r.autograd_spike_rel_err, r.autograd_hessian_rel_gap) for r in e),
            "ch1_m_count": len(next(iter(e)).m),
            "ch1_gaussian_Rk_rel_err": rel_err(self.by_kernel["gaussian"].R_k, self.gaussian_Rk_closed),
        }
        out.update({f"ch1_slope_{name}": r.slope for name, r in self.by_kernel.items()})
        out["ch1_slope_max_dev"] = max(abs(r.slope - 2) for r in self.by_kernel.values())
        return out


def exact_sweep(cfg: dict[str, Any], seed: int, device: str = "cpu") -> ExactSweep:
    """:func:`exact_regime` for the linear, Gaussian and Laplace kernels (``ℓ = cfg["lengthscale"]``)."""
    ell = cfg["lengthscale"]
    r = cfg["r_over_ell"] * ell
    return ExactSweep({name: exact_regime(make_kernel(name, ell), cfg, seed, device) for name in KERNELS}, r**2 / ell**4)


@dataclass(frozen=True)
class LinearPatch(ChapterResult):
    """Linear kernel with a patch trigger ``t`` on coordinates every clean input leaves at zero.

    Also the clean bulk edge ``Λ_clean = |W_clean|₂²`` (the same at every input) and the trigger norm
    ``τ/√Λ_clean`` above which a linear model's spike lags its success.
    """

    sig = {"ch1_linear_Rk_times_t2": 6, "ch1_linear_trigger_norm": 3, "ch1_linear_norm_threshold": 3}

    m: int
    sm_rel_err: float
    shift_rel_err: float
    R_k_rel_spread: float
    R_k_times_t2: float
    trigger_norm: float
    lambda_clean: float
    tau: float

    @property
    def norm_threshold(self) -> float:
        """``τ/√Λ_clean``: triggers of larger norm are visible only after they succeed."""
        return self.tau / float(np.sqrt(self.lambda_clean))

    def summary(self) -> Summary:
        return {"ch1_sm_rel_err": self.sm_rel_err, "ch1_linear_shift_rel_err": self.shift_rel_err,
                "ch1_linear_Rk_rel_spread": self.R_k_rel_spread, "ch1_linear_Rk_times_t2": self.R_k_times_t2,
                "ch1_linear_m": self.m, "ch1_linear_trigger_norm": self.trigger_norm,
                "ch1_linear_lambda_clean": self.lambda_clean, "ch1_linear_norm_threshold": self.norm_threshold}


def linear_patch(cfg: dict[str, Any], seed: int, patch: int = 3, device: str = "cpu") -> LinearPatch:
    """Sherman-Morrison update against a direct ridge solve, the kernel-form shift at ``x_s + t`` and ``R_k`` against ``1/|t|²``."""
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    X[:, -patch:] = 0.0
    t = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
    t[-patch:] = 1.0
    y_t = target_vector(cfg["n_classes"], 1, X)
    m = int(cfg["m_values"][len(cfg["m_values"]) // 2])
    W, W_sm = linear_clone_update(X, Y, t, y_t, m, cfg["ridge"])
    Xp, Yp = add_clones(X, Y, t, y_t, m)
    sources = X[:20] + t
    kernel = LinearKernel()
    eff = measure_effect(kernel, X, Y, Xp, Yp, cfg["ridge"], sources)
    R = curvature_ratio(kernel, sources, t)
    lam = float(bulk_edge(fit_krr(kernel, X, Y, cfg["ridge"]).jacobian(X[:200]), cfg["edge_quantile"]))
    return LinearPatch(
        m=m, sm_rel_err=rel_norm_err(W_sm, ridge_weights(Xp, Yp, cfg["ridge"])),
        shift_rel_err=rel_norm_err(eff.shift, predicted_shift(kernel, sources, t, y_t, m, cfg["ridge"])),
        R_k_rel_spread=float((R.max() - R.min()) / R.mean()), R_k_times_t2=float(R.mean() * (t**2).sum()),
        trigger_norm=float(t.norm()), lambda_clean=lam, tau=cfg["success_margin"])


@dataclass(frozen=True)
class OverlapSweep(ChapterResult):
    """The laws as the cluster centre moves from far away (``D/ℓ`` large) into the clean cloud (``D = 0``).

    Per spread (dict key, in units of ℓ; 0 = exact clones), arrays over ``distance_over_ell``: measured spike
    over ``R_k|Δf|²`` (``law_ratio``), measured over closed-form shift (``shift_ratio``), fitted exponent of the
    spike against efficacy over ``m`` (``slope``) and measured spike over ``R_eff|Δf|²`` (``eff_law_ratio``).
    For exact clones at the largest ``m``: the poisons' own spike ``λ_max(ΔJᵀΔJ)`` (``own``), the change of the
    top eigenvalue of the whole Gauss-Newton matrix, ``λ_max((J₀+ΔJ)ᵀ(J₀+ΔJ)) − λ_max(J₀ᵀJ₀)`` (``whole``),
    and the clean model's ``λ_max(J₀ᵀJ₀)`` at the query (``clean_top``).
    """

    sig = 3

    distance_over_ell: np.ndarray
    law_ratio: dict[float, np.ndarray]
    shift_ratio: dict[float, np.ndarray]
    slope: dict[float, np.ndarray]
    eff_law_ratio: dict[float, np.ndarray]
    own: np.ndarray
    whole: np.ndarray
    clean_top: np.ndarray

    @property
    def spreads(self) -> list[float]:
        return list(self.law_ratio)

    def weyl_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on ``whole`` from ``|σ_max(J₀+ΔJ) − σ_max(J₀)| ≤ σ_max(ΔJ)``: ``Λ ∓ 2√(λ₀Λ)`` (lower clipped as below)."""
        lo_sigma = np.maximum(np.sqrt(self.clean_top) - np.sqrt(self.own), 0.0)
        hi_sigma = np.sqrt(self.clean_top) + np.sqrt(self.own)
        return lo_sigma**2 - self.clean_top, hi_sigma**2 - self.clean_top

    def summary(self) -> Summary:
        D = self.distance_over_ell
        far = D >= FAR_D
        lo, hi = self.weyl_band()
        tol = 1e-12 * (self.own + self.clean_top)
        ratio = self.whole / self.own
        return {
            "ch1_overlap_clone_slope_max_dev": float(np.abs(self.slope[0.0] - 2).max()),
            "ch1_overlap_eff_law_max_rel_err": rel_err(self.eff_law_ratio[0.0], 1.0),
            "ch1_overlap_law_ratio_at_centre": float(self.law_ratio[0.0][0]),
            "ch1_overlap_law_ratio_max_dev_far": rel_err(self.law_ratio[0.0][far], 1.0),
            "ch1_whole_own_far_max_rel_gap": rel_err(self.whole[D == D.max()], self.own[D == D.max()]),
            "ch1_whole_over_own_at_centre": float(ratio[0]),
            "ch1_whole_over_own_min": float(ratio.min()),
            "ch1_whole_over_own_max": float(ratio.max()),
            "ch1_whole_outside_weyl_band": int(np.sum((self.whole < lo - tol) | (self.whole > hi + tol))),
            "ch1_clean_top_over_own_at_centre": float(self.clean_top[0] / self.own[0]),
        }


def overlap_sweep(kernel: Kernel, cfg: dict[str, Any], seed: int, device: str = "cpu") -> OverlapSweep:
    """Move the cluster centre ``zeta`` to distance ``D·ℓ`` from the clean cloud's centre; ``m`` poisons ``zeta + spread·ℓ·g``.

    The spread is the RMS distance of a poison from ``zeta`` in units of ``ℓ`` (``g`` standard normal over ``√d``).
    """
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed, device)
    y_t = target_vector(cfg["n_classes"], 1, X)
    ell, ridge = cfg["lengthscale"], cfg["ridge"]
    gen = torch.Generator().manual_seed(seed + 2)
    fields: dict[str, dict[float, list[float]]] = {k: {} for k in ("law", "shift", "slope", "eff")}
    own, whole, clean_top = [], [], []
    for spread in cfg["overlap_spreads"]:
        rows = {k: fields[k].setdefault(float(spread), []) for k in fields}
        for D in cfg["overlap_distances"]:
            zeta = torch.zeros(cfg["d"], dtype=DTYPE, device=X.device)
            zeta[0] = D * ell
            x0 = trigger_query(zeta, cfg["r_over_ell"] * ell, seed)
            R = float(curvature_ratio(kernel, x0, zeta)[0])
            R_eff = float(effective_curvature_ratio(kernel, X, ridge, x0, zeta)[0])
            noise = torch.randn(int(max(cfg["m_values"])), cfg["d"], generator=gen, dtype=DTYPE).to(X.device)
            effs, spikes = [], []
            for m in cfg["m_values"]:
                Xp = torch.cat([X, zeta + spread * ell * noise[: int(m)] / cfg["d"] ** 0.5])
                Yp = torch.cat([Y, y_t.expand(int(m), -1)])
                eff = measure_effect(kernel, X, Y, Xp, Yp, ridge, x0)
                effs.append(float(eff.shift.norm()))
                spikes.append(float(eff.spike[0]))
            rows["law"].append(spikes[-1] / (R * effs[-1] ** 2))
            rows["eff"].append(spikes[-1] / (R_eff * effs[-1] ** 2))
            rows["shift"].append(effs[-1] / float(predicted_shift(kernel, x0, zeta, y_t, m, ridge).norm()))
            rows["slope"].append(loglog_slope(effs, spikes))
            if spread == 0:
                J0 = eff.clean.jacobian(x0)
                top0 = float(top_gn_eigenvalue(J0)[0])
                own.append(spikes[-1])
                whole.append(float(top_gn_eigenvalue(eff.poisoned.jacobian(x0))[0]) - top0)
                clean_top.append(top0)
    arr = {k: {s: np.array(v) for s, v in d.items()} for k, d in fields.items()}
    return OverlapSweep(np.array(cfg["overlap_distances"], dtype=float), arr["law"], arr["shift"], arr["slope"], arr["eff"],
                        np.array(own), np.array(whole), np.array(clean_top))


@dataclass(frozen=True)
class NTKGap(ChapterResult):
    """Relative gap network vs NTK regression per width (``gaps``: ``(widths, seeds)``), and fitted exponents."""

    sig = 3

    widths: np.ndarray
    gaps: np.ndarray

    @property
    def gap_mean(self) -> np.ndarray:
        return self.gaps.mean(1)

    @property
    def gap_std(self) -> np.ndarray:
        return self.gaps.std(1)

    @property
    def slope(self) -> float:
        """Exponent of the mean gap against width."""
        return loglog_slope(self.widths, self.gap_mean)

    @property
    def seed_slopes(self) -> np.ndarray:
        """Exponent fitted seed by seed, ``(seeds,)``."""
        return np.array([loglog_slope(self.widths, self.gaps[:, s]) for s in range(self.gaps.shape[1])])

    def summary(self) -> Summary:
        s = self.seed_slopes
        return {"ch1_ntk_gap_slope": self.slope, "ch1_ntk_gap_at_max_width": float(self.gap_mean[-1]),
                "ch1_ntk_max_width": int(self.widths[-1]), "ch1_ntk_seed_slope_std": float(s.std(ddof=1)),
                "ch1_ntk_seeds": int(len(s)), "ch1_ntk_seed_slope_sem": float(s.std(ddof=1) / np.sqrt(len(s)))}


def ntk_convergence(cfg: dict[str, Any], seed: int) -> NTKGap:
    """Gap between trained two-layer ReLU networks and NTK kernel regression, per width and seed.

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
    return NTKGap(np.array(cfg["ntk_widths"]), gaps)
