"""Chapter 2 drivers: the near-clone regime, the detectability boundary, the lag in time, realistic
trigger geometry and the kernel of ReLU networks.

Everything is float64. Clean data are Chapter 1's (:mod:`poisoncurv.krr.synthetic`): Gaussian clean inputs with
one-hot class targets; the closed forms the chapter checks are in :mod:`poisoncurv.krr` (the visibility and success
radii: :mod:`poisoncurv.krr.visibility`). Unless a driver says otherwise the trigger point ``zeta`` sits ``1000ℓ``
from the clean cloud, so every clean kernel value underflows to 0 (the exact tight-cluster assumption), and the
triggered query ``x0`` is at distance ``r`` from ``zeta``. Each driver returns a frozen dataclass whose
``summary()`` holds the chapter's glued numbers; tables are built here as :class:`~poisoncurv.core.tables.Table`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.dtypes import THEORY_DTYPE as DTYPE
from poisoncurv.core.fitting import loglog_slope, rel_err, rel_norm_err
from poisoncurv.core.profiles import by_profile
from poisoncurv.core.tables import Table
from poisoncurv.krr.clean_clones import crossover_eps, limit_shift, pair_effect, small_eps_coefficient
from poisoncurv.krr.clones import (
    add_clones,
    curvature_ratio,
    effective_curvature_ratio,
    measure_effect,
    predicted_shift,
    predicted_spike,
    scalar_gain,
)
from poisoncurv.krr.flow import KRRFlow, euler_alpha, euler_flow, first_crossing, krr_flow, saturation_time
from poisoncurv.krr.kernels import Kernel, LinearKernel, fit_krr, make_kernel
from poisoncurv.krr.ntk import TwoLayerReLU, empirical_ntk
from poisoncurv.krr.relu_ntk import CUSP_FACTOR, ReLUNTKKernel, curvature_ratio_closed, radial_ratio
from poisoncurv.krr.synthetic import clean_data, target_vector
from poisoncurv.krr.visibility import bulk_edge, success_radius, target_margin, top_gn_eigenvalue, visibility_radius

TARGET = 1      # the attacker's target class
RUN = "Run: {glue:text}`ch02_near_clones_run`."


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
        # triggered clean inputs x_s + a t (amplitude a in units of ell; the last value is the far setting)
        "trigger_amplitudes": by_profile(profile, smoke=[0.5, 2.0, 1000.0], cpu=[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 1000.0],
                                         gpu=[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 1000.0],
                                         full=[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 1000.0]),
        "geo_lengthscale": 3.0,     # about the radius of the clean cloud, so that one poison reaches other sources
        "n_triggered": by_profile(profile, smoke=50, cpu=200, gpu=1000, full=2000),
        # ReLU NTK: radius over |zeta| and the width of the empirical-NTK check
        "r_relu": list(np.logspace(-6, -0.5, by_profile(profile, smoke=8, cpu=23, gpu=45, full=67))),
        "relu_width": by_profile(profile, smoke=4096, cpu=32768, gpu=131072, full=131072),
    }


@dataclass(frozen=True)
class Setting(ChapterResult):
    """The sizes the chapter's text quotes, from the profile's settings ``cfg``."""

    cfg: dict[str, Any]

    def summary(self) -> Summary:
        cfg = self.cfg
        return {"ch2_n_clean": cfg["n_clean"], "ch2_n_test": cfg["n_test"], "ch2_m_near": cfg["m_near"],
                "ch2_ridge": cfg["ridge"], "ch2_ell": cfg["lengthscale"]}


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


def clean_edge(cfg: dict[str, Any], setup: dict[str, Tensor], kernel: Kernel) -> float:
    """``Λ_clean``: the ``edge_quantile`` of ``λ_max(JᵀJ)`` of the clean KRR over the clean test inputs."""
    clean = fit_krr(kernel, setup["X"], setup["Y"], cfg["ridge"])
    return float(bulk_edge(clean.jacobian(setup["Xt"]), cfg["edge_quantile"]))


# ---------------------------------------------------------------------------------------------------------
# the near-clone law


@dataclass(frozen=True)
class NearCloneLaw:
    """Efficacy ``|Δf(x0)|`` and spike against ``r/ℓ`` for ``m_near`` far clones: direct solves and closed forms."""

    r_over_ell: np.ndarray
    eff: np.ndarray
    spike: np.ndarray
    eff_pred: np.ndarray
    spike_pred: np.ndarray

    @property
    def eff_slope(self) -> float:
        return loglog_slope(self.r_over_ell, self.eff)

    @property
    def spike_slope(self) -> float:
        return loglog_slope(self.r_over_ell, self.spike)


def near_clone_law(name: str, cfg: dict[str, Any], seed: int) -> NearCloneLaw:
    """:class:`NearCloneLaw` for kernel ``name`` (``ℓ = cfg["lengthscale"]``)."""
    ell = cfg["lengthscale"]
    kernel = make_kernel(name, ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_law"]) * ell
    x0 = queries(s["zeta"], s["u"], r)
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    Xp, Yp = add_clones(s["X"], s["Y"], s["zeta"], y_t, cfg["m_near"])
    eff = measure_effect(kernel, s["X"], s["Y"], Xp, Yp, cfg["ridge"], x0)
    return NearCloneLaw(r / ell, eff.shift.norm(dim=1).numpy(), eff.spike.numpy(),
                        predicted_shift(kernel, x0, s["zeta"], y_t, cfg["m_near"], cfg["ridge"]).norm(dim=1).numpy(),
                        predicted_spike(kernel, x0, s["zeta"], y_t, cfg["m_near"], cfg["ridge"]).numpy())


@dataclass(frozen=True)
class NearCloneLaws(ChapterResult):
    """The near-clone law for the Gaussian and the Laplace kernel (``by_kernel``)."""

    sig = {"ch2_eff_slope_gaussian": 3, "ch2_spike_slope_laplace": 3, "ch2_law_max_rel_err": 2, "ch2_r_law_min": 2,
           "ch2_r_law_max": 2, "ch2_slope_bound": 2, "ch2_spike_at_min_r": 2, "ch2_spike_laplace_at_min_r": 3}

    by_kernel: dict[str, NearCloneLaw]

    def summary(self) -> Summary:
        g, lap = self.by_kernel["gaussian"], self.by_kernel["laplace"]
        return {"ch2_eff_slope_gaussian": g.eff_slope, "ch2_spike_slope_gaussian": g.spike_slope,
                "ch2_spike_slope_laplace": lap.spike_slope,
                "ch2_law_max_rel_err": max(rel_err(e.eff, e.eff_pred) for e in self.by_kernel.values())
                + max(rel_err(e.spike, e.spike_pred) for e in self.by_kernel.values()),
                "ch2_r_law_min": float(g.r_over_ell[0]), "ch2_r_law_max": float(g.r_over_ell[-1]),
                "ch2_slope_bound": float(g.r_over_ell[-1] ** 2),
                "ch2_eff_at_min_r": float(g.eff[0]), "ch2_spike_at_min_r": float(g.spike[0]),
                "ch2_spike_laplace_at_min_r": float(lap.spike[0])}


def near_clone_laws(cfg: dict[str, Any], seed: int) -> NearCloneLaws:
    """:func:`near_clone_law` for the Gaussian and the Laplace kernel."""
    return NearCloneLaws({name: near_clone_law(name, cfg, seed) for name in ("gaussian", "laplace")})


# ---------------------------------------------------------------------------------------------------------
# the phase diagram


@dataclass(frozen=True)
class PhaseDiagram(ChapterResult):
    """Success and visibility over the grid ``(m, r/ℓ)`` (arrays ``(len(m), len(r))``), Gaussian kernel.

    ``gains``: ``S(m)|y_t|`` per ``m``; ``r_vis`` and ``r_succ``: the closed-form boundaries per ``m`` (in ℓ);
    ``r_vis_limit`` and ``r_succ_limit``: their limits as ``m → ∞`` (``S → 1/k(ζ,ζ) = 1``), and
    ``r_vis_limit_root``: the same limit found by root finding on the spike law (a check of the Lambert form).
    """

    sig = 3

    r_over_ell: np.ndarray
    m: np.ndarray
    Lambda_clean: float
    eff: np.ndarray
    spike: np.ndarray
    success: np.ndarray
    visible: np.ndarray
    r_vis: np.ndarray
    r_succ: np.ndarray
    r_vis_limit: float
    r_succ_limit: float
    r_vis_limit_root: float
    direct_max_rel_gap: float
    ceiling_ratio: float
    ch1_ceiling_ratio: float
    m_check: tuple[int, ...]

    def summary(self) -> Summary:
        r, succ, vis = self.r_over_ell, self.success, self.visible
        return {"ch2_lambda_clean": self.Lambda_clean, "ch2_ceiling_ratio": self.ceiling_ratio,
                "ch2_phase_direct_max_rel_err": self.direct_max_rel_gap,
                "ch2_phase_m_checked": ", ".join(str(m) for m in self.m_check),
                "ch2_r_vis_min_grid": float(r[vis.any(0)].min()), "ch2_r_succ_max_grid": float(r[succ.any(0)].max()),
                "ch2_r_vis_limit": self.r_vis_limit, "ch2_r_succ_limit": self.r_succ_limit,
                "ch2_r_vis_over_r_succ_limit": self.r_vis_limit / self.r_succ_limit,
                "ch2_r_vis_limit_rel_err": rel_err(self.r_vis_limit_root, self.r_vis_limit),
                "ch2_visible_below_r_vis_limit": int(vis[:, r < self.r_vis_limit].sum()),
                "ch2_m_vis_min": int(self.m[vis.any(1)].min()), "ch2_m_succ_min": int(self.m[succ.any(1)].min()),
                "ch2_ch1_ceiling_ratio": self.ch1_ceiling_ratio}


def phase_diagram(cfg: dict[str, Any], seed: int) -> PhaseDiagram:
    """Closed forms on the grid (exact here), direct solves at every ``m`` of ``m_check`` and the ``m → ∞`` radii."""
    ell, tau = cfg["lengthscale"], cfg["success_margin"]
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
        gaps += [rel_err(target_margin(e.poisoned.predict(x0), TARGET), eff[row]), rel_err(e.spike, spike[row])]
    gains = scalar_gain(m_grid.astype(float), cfg["ridge"], 1.0) * float(y_t.norm())
    limit = visibility_radius(lam, ell, 1.0)
    root = brentq(lambda x: x**2 / ell**4 * np.exp(-(x**2) / ell**2) - lam, 1e-12, ell, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    ch1_edge = clean_edge({**cfg, "ridge": 0.3}, s, make_kernel("gaussian", 1.5))
    return PhaseDiagram(r / ell, m_grid, lam, eff, spike, eff >= tau, spike >= lam,
                        np.array([visibility_radius(lam, ell, g) for g in gains]) / ell,
                        np.array([success_radius(tau, ell, g) for g in gains]) / ell,
                        limit / ell, success_radius(tau, ell, 1.0) / ell, root / ell, float(max(gaps)),
                        float(1 / (np.e * ell**2) / lam), float(1 / (np.e * 1.5**2) / ch1_edge), tuple(cfg["m_check"]))


# ---------------------------------------------------------------------------------------------------------
# the lag in time


def time_grid(cfg: dict[str, Any]) -> Tensor:
    """Log-spaced training times ``(T,)`` from ``cfg["t_grid"] = (t_min, t_max, T)``."""
    lo, hi, n = cfg["t_grid"]
    return torch.logspace(np.log10(lo), np.log10(hi), n, dtype=DTYPE)


def crossing_time(level: Callable[..., float], t: np.ndarray, sampled: np.ndarray) -> float:
    """First ``t`` at which ``level(t) ≥ 0``, by Brent's method on the bracket the samples ``sampled`` (at ``t``) give.

    ``0`` if already reached at ``t[0]``, ``inf`` if never reached on the grid; the grid only brackets
    the root, which is then found to rounding error.
    """
    above = np.nonzero(np.asarray(sampled) >= 0)[0]
    if above.size == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return 0.0
    return float(brentq(level, t[i - 1], t[i], xtol=1e-300, rtol=4 * np.finfo(float).eps))


def flow_crossings(clean: KRRFlow, pois: KRRFlow, x0: Tensor, t: Tensor, tau: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query: first time the target component of ``Δf_t`` reaches ``tau``, first time ``λ_max(ΔJ_tᵀΔJ_t)`` reaches ``edge``."""
    def eff(x: Tensor, tt: Tensor) -> Tensor:
        return (pois.predict(x, tt) - clean.predict(x, tt))[..., TARGET]

    def spike(x: Tensor, tt: Tensor) -> Tensor:
        return top_gn_eigenvalue(pois.jacobian(x, tt) - clean.jacobian(x, tt))

    eff_t, spike_t, tn = eff(x0, t).numpy(), spike(x0, t).numpy(), t.numpy()
    one = lambda v: torch.tensor([v], dtype=DTYPE)  # noqa: E731
    t_succ = [crossing_time(lambda v, j=j: float(eff(x0[j:j + 1], one(v))[0, 0]) - tau, tn, eff_t[:, j] - tau)
              for j in range(len(x0))]
    t_vis = [crossing_time(lambda v, j=j: float(spike(x0[j:j + 1], one(v))[0, 0]) - edge, tn, spike_t[:, j] - edge)
             for j in range(len(x0))]
    return np.array(t_succ), np.array(t_vis)


@dataclass(frozen=True)
class LagGaussian(ChapterResult):
    """Times to success and to visibility under gradient flow (Gaussian kernel, ``m_near`` far clones), per ``r/ℓ``.

    ``eff``, ``spike``: ``(T, B)`` on the time grid ``t``; ``t_succ``, ``t_vis``: crossing times found by root
    finding on the flow; ``cf_*``: their closed forms; ``t_vis_moving``: visibility against the bulk edge of the
    clean flow at the same time (``moving_edge``, ``(T,)``), read off the grid.
    """

    sig = 3

    r_over_ell: np.ndarray
    t: np.ndarray
    Lambda_clean: float
    moving_edge: np.ndarray
    eff: np.ndarray
    spike: np.ndarray
    t_succ: np.ndarray
    t_vis: np.ndarray
    t_vis_moving: np.ndarray
    cf_t_succ: np.ndarray
    cf_t_vis: np.ndarray
    rate: float
    r_vis: float
    euler_rel_gap: float
    euler_steps: int

    @property
    def lag(self) -> np.ndarray:
        """``t_vis − t_succ`` (``inf`` where the attack succeeds and is never visible)."""
        with np.errstate(invalid="ignore"):
            return self.t_vis - self.t_succ

    @property
    def crossing_max_rel_err(self) -> float:
        """Largest relative gap of the root-found crossing times to the closed forms (``inf`` if a crossing is missed)."""
        same_inf = np.array_equal(np.isinf(self.t_succ), np.isinf(self.cf_t_succ)) and np.array_equal(np.isinf(self.t_vis),
                                                                                                    np.isinf(self.cf_t_vis))
        if not same_inf:
            return float("inf")
        fin = np.isfinite(self.cf_t_succ) & np.isfinite(self.cf_t_vis) & (self.cf_t_succ > 0)
        return max(rel_err(self.t_succ[fin], self.cf_t_succ[fin]), rel_err(self.t_vis[fin], self.cf_t_vis[fin]))

    def summary(self) -> Summary:
        lag, r = self.lag, self.r_over_ell
        both = np.isfinite(lag)
        return {"ch2_lag_crossing_max_rel_err": self.crossing_max_rel_err, "ch2_euler_rel_gap": self.euler_rel_gap,
                "ch2_euler_steps": self.euler_steps, "ch2_flow_rate": self.rate,
                "ch2_lag_monotone": bool(both.sum() >= 2 and np.all(np.diff(lag[both]) < 0)),
                "ch2_lag_max_finite": float(lag[both].max()), "ch2_lag_max_finite_r": float(r[both][np.argmax(lag[both])]),
                "ch2_lag_over_tsucc": float((lag[both] / self.t_succ[both]).max()), "ch2_lag_r_vis": self.r_vis,
                "ch2_lag_never_visible_fraction": float(np.mean(np.isinf(self.t_vis) & np.isfinite(self.t_succ))),
                "ch2_moving_visible_at_start": int(np.sum(self.t_vis_moving == 0)),
                "ch2_moving_never": int(np.sum(np.isinf(self.t_vis_moving))), "ch2_n_r_lag": len(r),
                "ch2_moving_r_first": float(r[self.t_vis_moving == 0].min())}


def lag_gaussian(cfg: dict[str, Any], seed: int) -> LagGaussian:
    """:class:`LagGaussian`; also the Euler-vs-closed-form gap of the poisoned flow's dual weights at ``euler_time``."""
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
    moving = bulk_edge(clean.jacobian(s["Xt"], t), cfg["edge_quantile"]).numpy()
    eff = (pois.predict(x0, t) - clean.predict(x0, t))[..., TARGET].numpy()
    spike = top_gn_eigenvalue(pois.jacobian(x0, t) - clean.jacobian(x0, t)).numpy()
    t_succ, t_vis = flow_crossings(clean, pois, x0, t, tau, lam)
    t_vis_moving = np.array([first_crossing(t.numpy(), spike[:, j], moving) for j in range(len(r))])
    eff_inf = predicted_shift(kernel, x0, s["zeta"], y_t, m, ridge)[:, TARGET].numpy()
    R = curvature_ratio(kernel, x0, s["zeta"]).numpy()
    rate = ridge + m * float(kernel(s["zeta"][None], s["zeta"][None]))
    a_euler = euler_alpha(kernel, Xp, Yp, ridge, cfg["euler_time"], cfg["euler_steps"])
    a_flow = pois.alpha(torch.tensor([cfg["euler_time"]], dtype=DTYPE))[0]
    return LagGaussian(r / ell, t.numpy(), lam, moving, eff, spike, t_succ, t_vis, t_vis_moving,
                       saturation_time(tau / eff_inf, rate), saturation_time(np.sqrt(lam / R) / eff_inf, rate), rate,
                       visibility_radius(lam, ell, scalar_gain(m, ridge, 1.0)) / ell, rel_norm_err(a_euler, a_flow),
                       cfg["euler_steps"])


@dataclass(frozen=True)
class LagLinear(ChapterResult):
    """The same times for the linear kernel and a patch trigger, per patch value ``a`` (dict keys).

    ``t_succ[a]``, ``t_vis[a]``: ``(n_sources,)``; ``trigger_norm[a]``; ``Lambda_clean = |W_clean|₂²``; and the
    gap between the closed-form flow and explicit primal gradient descent.
    """

    sig = 3

    t_succ: dict[float, np.ndarray]
    t_vis: dict[float, np.ndarray]
    trigger_norm: dict[float, float]
    Lambda_clean: float
    tau: float
    primal_rel_gap: float

    def lag(self, a: float) -> np.ndarray:
        return self.t_vis[a] - self.t_succ[a]

    def summary(self) -> Summary:
        out: Summary = {"ch2_linear_lag_spread": max(float(np.ptp(self.lag(a))) for a in self.t_succ),
               "ch2_linear_lambda_clean": self.Lambda_clean,
               "ch2_linear_norm_threshold": self.tau / float(np.sqrt(self.Lambda_clean)), "ch2_primal_rel_gap": self.primal_rel_gap}
        for a in self.t_succ:
            out[f"ch2_linear_lag_{a}"] = float(self.lag(a)[0])
            out[f"ch2_linear_tnorm_{a}"] = self.trigger_norm[a]
        return out


def lag_linear(cfg: dict[str, Any], seed: int, patch: int = 3, n_sources: int = 20) -> LagLinear:
    """Linear kernel, clean inputs zero on a ``patch``; triggered inputs ``x_s + t`` for ``n_sources`` clean test inputs."""
    s = far_setup(cfg, seed)
    X, Xt = s["X"].clone(), s["Xt"][:n_sources].clone()
    X[:, -patch:], Xt[:, -patch:] = 0.0, 0.0
    y_t = target_vector(cfg["n_classes"], TARGET, X)
    kernel, t = LinearKernel(), time_grid(cfg)
    clean = krr_flow(kernel, X, s["Y"], cfg["ridge"])
    lam = float(bulk_edge(fit_krr(kernel, X, s["Y"], cfg["ridge"]).jacobian(Xt), cfg["edge_quantile"]))
    t_succ, t_vis, norms = {}, {}, {}
    for a in cfg["patch_values"]:
        trig = torch.zeros(cfg["d"], dtype=DTYPE)
        trig[-patch:] = a
        Xp, Yp = add_clones(X, s["Y"], trig, y_t, cfg["m_near"])
        pois = krr_flow(kernel, Xp, Yp, cfg["ridge"])
        t_succ[a], t_vis[a] = flow_crossings(clean, pois, Xt + trig, t, cfg["success_margin"], lam)
        norms[a] = float(trig.norm())
    # primal gradient descent on the last patch value's poisoned set, against the dual closed form at euler_time
    W0 = torch.zeros(cfg["n_classes"], cfg["d"], dtype=DTYPE)
    W = euler_flow(lambda w: (w @ Xp.T - Yp.T) @ Xp + cfg["ridge"] * w, W0, cfg["euler_time"] / cfg["euler_steps"],
                   cfg["euler_steps"], record_every=cfg["euler_steps"])[-1]
    W_flow = pois.alpha(torch.tensor([cfg["euler_time"]], dtype=DTYPE))[0].T @ Xp
    return LagLinear(t_succ, t_vis, norms, lam, cfg["success_margin"], rel_norm_err(W, W_flow))


# ---------------------------------------------------------------------------------------------------------
# overlap with the clean data


@dataclass(frozen=True)
class OverlapFloor(ChapterResult):
    """Near-clone law when the clones overlap the clean data, per distance ``D/ℓ`` of ``zeta`` from the cloud (dict keys).

    ``ratio[D] = R_eff·ℓ⁴/r²`` over ``r_over_ell``; ``spike[D]``, ``eff[D]``: measured; ``floor[D] = R_eff(zeta)``.
    """

    sig = 2

    r_over_ell: np.ndarray
    ratio: dict[float, np.ndarray]
    spike: dict[float, np.ndarray]
    eff: dict[float, np.ndarray]
    floor: dict[float, float]
    ell: float
    law_max_rel_gap: float

    def r_star_over_ell(self, D: float) -> float:
        """``r*/ℓ = ℓ sqrt(R_eff(zeta))``."""
        return self.ell * math.sqrt(self.floor[D])

    def summary(self) -> Summary:
        D0 = min(self.spike)
        out: Summary = {"ch2_overlap_law_max_rel_err": self.law_max_rel_gap, "ch2_overlap_r_min": float(self.r_over_ell[0]),
               "ch2_overlap_spike_slope_small_r_D0": loglog_slope(self.r_over_ell[:5], self.spike[D0][:5])}
        for D in self.spike:
            out[f"ch2_r_star_D{D:g}"] = self.r_star_over_ell(D)
            out[f"ch2_eff_small_r_D{D:g}"] = float(self.eff[D][0])
        return out


def overlap_floor(cfg: dict[str, Any], seed: int) -> OverlapFloor:
    """``zeta`` at distance ``D·ℓ`` from the clean cloud's centre, ``m_near`` clones, queries at distance ``r``."""
    ell = cfg["lengthscale"]
    kernel = make_kernel("gaussian", ell)
    s = far_setup(cfg, seed)
    r = np.array(cfg["r_overlap"]) * ell
    y_t = target_vector(cfg["n_classes"], TARGET, s["X"])
    ratio, spikes, effs, floors, gaps = {}, {}, {}, {}, []
    for D in cfg["overlap_D"]:
        zeta = torch.zeros(cfg["d"], dtype=DTYPE)
        zeta[0] = D * ell
        x0 = queries(zeta, s["u"], r)
        R_eff = effective_curvature_ratio(kernel, s["X"], cfg["ridge"], x0, zeta).numpy()
        Xp, Yp = add_clones(s["X"], s["Y"], zeta, y_t, cfg["m_near"])
        e = measure_effect(kernel, s["X"], s["Y"], Xp, Yp, cfg["ridge"], x0)
        eff, spike = e.shift.norm(dim=1).numpy(), e.spike.numpy()
        gaps.append(rel_err(spike, R_eff * eff**2))
        ratio[D], spikes[D], effs[D] = R_eff * ell**4 / r**2, spike, eff
        floors[D] = float(effective_curvature_ratio(kernel, s["X"], cfg["ridge"], zeta[None], zeta)[0])
    return OverlapFloor(r / ell, ratio, spikes, effs, floors, ell, max(gaps))


# ---------------------------------------------------------------------------------------------------------
# a near clone of a clean training point


@dataclass(frozen=True)
class CleanClone(ChapterResult):
    """A poison ``x_c + εu`` near a clean training point, per ``eps``: closed form and direct solves (``isolated``, ``cloud``).

    ``shift_poison[where]``, ``shift_clean[where]``, ``aligned[where]`` (``|ΔJ(x_p)u|²``) and ``floor[where]`` (its value at ``ε = 0``).
    """

    sig = 3

    eps: np.ndarray
    closed_shift_poison: np.ndarray
    closed_shift_clean: np.ndarray
    closed_aligned: np.ndarray
    shift_poison: dict[str, np.ndarray]
    shift_clean: dict[str, np.ndarray]
    aligned: dict[str, np.ndarray]
    floor: dict[str, float]
    eps_star: float
    limit_shift_norm: float
    small_eps_A: float

    def summary(self) -> Summary:
        eps, iso, cloud = self.eps, self.aligned["isolated"], self.aligned["cloud"]
        small = eps < self.eps_star / 10
        return {
            "ch2_cc_closed_max_rel_err": max(rel_err(iso, self.closed_aligned),
                                             rel_err(self.shift_poison["isolated"], self.closed_shift_poison),
                                             rel_err(self.shift_clean["isolated"], self.closed_shift_clean)),
            "ch2_cc_eps_star": self.eps_star, "ch2_cc_limit_shift": self.limit_shift_norm,
            "ch2_cc_eff_small": float(self.shift_poison["isolated"][0]),
            "ch2_cc_collateral_gap": float(abs(self.shift_poison["isolated"][0] - self.shift_clean["isolated"][0])),
            "ch2_cc_slope_small_eps": loglog_slope(eps[small], iso[small]),
            "ch2_cc_A_rel_err": rel_err(self.closed_aligned[0], self.small_eps_A * eps[0] ** 2),
            "ch2_cc_peak": float(iso.max()), "ch2_cc_peak_eps": float(eps[np.argmax(iso)]), "ch2_cc_eps_min": float(eps[0]),
            "ch2_cc_isolated_at_min": float(iso[0]), "ch2_cc_cloud_floor": self.floor["cloud"],
            "ch2_cc_cloud_at_min": float(cloud[0]), "ch2_cc_cloud_eff_small": float(self.shift_poison["cloud"][0]),
            "ch2_cc_cloud_min": float(cloud.min()), "ch2_cc_cloud_min_eps": float(eps[np.argmin(cloud)])}


def clean_clone(cfg: dict[str, Any], seed: int) -> CleanClone:
    """``pair_m`` copies of ``x_c + εu`` with another label; ``x_c`` isolated (moved ``1000ℓ`` away) or the cloud point nearest 0."""
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
    sp, sc, al, fl = {}, {}, {}, {}
    for where in ("isolated", "cloud"):
        Xw = X.clone()
        if where == "isolated":
            Xw[i] = 0.0
            Xw[i, 0] = 1000.0 * ell
        rows = []
        for e in [0.0, *eps]:
            x_p = Xw[i] + float(e) * u
            Xp, Yp = add_clones(Xw, Y, x_p, y_p, m)
            eff = measure_effect(kernel, Xw, Y, Xp, Yp, ridge, torch.stack([x_p, Xw[i]]))
            dJu = (eff.poisoned.jacobian(x_p[None]) - eff.clean.jacobian(x_p[None]))[0] @ u
            rows.append((float(eff.shift[0].norm()), float(eff.shift[1].norm()), float((dJu**2).sum())))
        fl[where] = rows[0][2]
        sp[where], sc[where], al[where] = map(np.array, zip(*rows[1:]))
    return CleanClone(eps, np.linalg.norm(cf.shift_poison, axis=1), np.linalg.norm(cf.shift_clean, axis=1), cf.aligned,
                      sp, sc, al, fl, crossover_eps(m, ridge, ell), float(np.linalg.norm(limit_shift(m, ridge, y_c.numpy(), y_p.numpy()))),
                      small_eps_coefficient(m, ridge, y_c.numpy(), y_p.numpy()))


# ---------------------------------------------------------------------------------------------------------
# realistic trigger geometry: triggered clean inputs x_s + a t


@dataclass(frozen=True)
class GeometryRow:
    """One trigger: ``pixels`` ("used" or "unused" by the clean data), amplitude ``a`` (in ℓ), and fractions over triggered test inputs."""

    pixels: str
    a: float
    success: float          # fraction with target margin ≥ τ
    own_visible: float      # fraction with λ_max(ΔJᵀΔJ) ≥ Λ_clean
    whole_visible: float    # fraction with λ_max(J_poisonedᵀ J_poisoned) ≥ Λ_clean: what a defender measures
    flagged: float          # fraction flagged by a nearest-neighbour distance check (0.95-quantile of clean inputs)
    nearest_poison: float   # median distance to the nearest poison, in ℓ
    clean_curvature: float  # median λ_max(J_cleanᵀJ_clean) at the triggered inputs over Λ_clean


@dataclass(frozen=True)
class TriggerGeometry(ChapterResult):
    """Rows of :class:`GeometryRow` for each pixel set and amplitude."""

    sig = 3

    rows: tuple[GeometryRow, ...]
    m: int
    n_triggered: int
    ell: float

    def row(self, pixels: str, a: float) -> GeometryRow:
        return next(r for r in self.rows if r.pixels == pixels and r.a == a)

    def summary(self) -> Summary:
        far = max(r.a for r in self.rows)
        near = [r for r in self.rows if r.a < far]
        return {"ch2_geo_m": self.m, "ch2_geo_n": self.n_triggered, "ch2_geo_far_a": far, "ch2_geo_ell": self.ell,
                "ch2_geo_far_flagged": min(r.flagged for r in self.rows if r.a == far),
                "ch2_geo_far_clean_curvature": max(r.clean_curvature for r in self.rows if r.a == far),
                "ch2_geo_far_success": min(r.success for r in self.rows if r.a == far),
                "ch2_geo_max_success_unflagged": max((r.success for r in near if r.flagged <= 0.1), default=0.0),
                "ch2_geo_max_whole_visible": max(r.whole_visible for r in near),
                "ch2_geo_min_nearest_poison": min(r.nearest_poison for r in self.rows)}

    def table(self) -> Table:
        return Table("tbl-ch2-trigger-geometry",
                     f"Triggered clean inputs $x_s + a\\,t$ ($\\lVert t\\rVert = 1$, Gaussian kernel $\\ell = {self.ell:g}$), the poisons "
                     f"being {self.m} triggered clean training inputs relabelled to the target, measured at {self.n_triggered} "
                     "triggered test inputs: fraction of successful attacks (margin $\\ge\\tau$), of inputs where the poisons' "
                     "own spike or the poisoned model's top Gauss–Newton eigenvalue reaches $\\Lambda_{\\text{clean}}$, of inputs "
                     "a nearest-neighbour distance check flags, the median distance to the nearest poison and the clean "
                     "model's median curvature there over $\\Lambda_{\\text{clean}}$. " + RUN,
                     ["pixels", "$a/\\ell$", "success", "own spike visible", "whole GN visible", "flagged by distance",
                      "nearest poison $r/\\ell$", "clean curvature / $\\Lambda_{\\text{clean}}$"],
                     [[r.pixels, r.a, r.success, r.own_visible, r.whole_visible, r.flagged, r.nearest_poison, r.clean_curvature]
                      for r in self.rows])

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def trigger_geometry(cfg: dict[str, Any], seed: int, patch: int = 3) -> TriggerGeometry:
    """Poisons ``x_s + a t`` (``m_near`` clean training inputs, dirty label) and triggered test inputs ``x_s' + a t``.

    Clean inputs are zero on the last ``patch`` coordinates ("unused" pixels); the "used" trigger sits on
    ``patch`` coordinates that the data use but the class does not depend on (after the first ``C``).
    """
    ell, tau, m = cfg["geo_lengthscale"], cfg["success_margin"], cfg["m_near"]
    kernel = make_kernel("gaussian", ell)
    s = far_setup(cfg, seed)
    X, Xt = s["X"].clone(), s["Xt"][: cfg["n_triggered"]].clone()
    X[:, -patch:], Xt[:, -patch:] = 0.0, 0.0
    clean = fit_krr(kernel, X, s["Y"], cfg["ridge"])
    lam = float(bulk_edge(clean.jacobian(Xt), cfg["edge_quantile"]))
    nn_clean = torch.cdist(Xt, X).min(1).values
    radius = float(torch.quantile(nn_clean, 0.95))
    y_t = target_vector(cfg["n_classes"], TARGET, X)
    rows = []
    coords = {"unused": range(cfg["d"] - patch, cfg["d"]), "used": range(cfg["n_classes"], cfg["n_classes"] + patch)}
    for pixels, idx in coords.items():
        t = torch.zeros(cfg["d"], dtype=DTYPE)
        t[list(idx)] = 1.0 / math.sqrt(patch)
        for a in cfg["trigger_amplitudes"]:
            poisons = X[:m] + a * ell * t
            Xp, Yp = torch.cat([X, poisons]), torch.cat([s["Y"], y_t.expand(m, -1)])
            eff = measure_effect(kernel, X, s["Y"], Xp, Yp, cfg["ridge"], Xt + a * ell * t)
            xq = Xt + a * ell * t
            J0 = eff.clean.jacobian(xq)
            rows.append(GeometryRow(
                pixels, float(a), float((target_margin(eff.poisoned.predict(xq), TARGET) >= tau).double().mean()),
                float((eff.spike >= lam).double().mean()), float((top_gn_eigenvalue(eff.poisoned.jacobian(xq)) >= lam).double().mean()),
                float((torch.cdist(xq, X).min(1).values > radius).double().mean()),
                float(torch.cdist(xq, poisons).min(1).values.median() / ell), float(top_gn_eigenvalue(J0).median() / lam)))
    return TriggerGeometry(tuple(rows), m, len(Xt), ell)


# ---------------------------------------------------------------------------------------------------------
# the kernel of ReLU networks


@dataclass(frozen=True)
class ReLUNTKCurvature(ChapterResult):
    """``R_k(ζ + r e, ζ)·|ζ|²`` of the two-layer ReLU NTK against ``r/|ζ|``, per direction ``e`` (dict keys).

    Directions: "tangential" (``e ⊥ ζ``), "oblique" (45° from ``ζ``), "random"; closed form (``closed``) and
    autograd of the kernel's values (``autograd``). ``radial``: the radial ratio ``|ζ|²/|x0|²`` along ``e = ζ̂``,
    where the kernel has its cusp. ``gaussian``: ``r²/ℓ⁴`` with ``ℓ = |ζ|`` for comparison.
    ``ntk_rel_gap``: closed-form NTK against the empirical NTK of a network of width ``width``.
    """

    sig = {"ch2_relu_cusp_factor": 5}

    r: np.ndarray
    closed: dict[str, np.ndarray]
    autograd: dict[str, np.ndarray]
    radial: np.ndarray
    gaussian: np.ndarray
    ntk_rel_gap: float
    width: int

    def summary(self) -> Summary:
        return {"ch2_relu_autograd_max_rel_err": max(rel_err(self.autograd[k], self.closed[k]) for k in self.closed),
                "ch2_relu_cusp_factor": CUSP_FACTOR,
                "ch2_relu_tangential_limit_rel_err": rel_err(self.closed["tangential"][0], CUSP_FACTOR),
                "ch2_relu_min_Rk": float(min(v.min() for v in self.closed.values())),
                "ch2_relu_Rk_slope_small_r": loglog_slope(self.r[:5], self.closed["random"][:5]),
                "ch2_relu_r_min": float(self.r[0]), "ch2_relu_ntk_rel_gap": self.ntk_rel_gap, "ch2_relu_width": self.width}


def _autograd_ratio(kernel: ReLUNTKKernel, x0: Tensor, zeta: Tensor) -> np.ndarray:
    """``|∇_x k(x, ζ)|²/k(x, ζ)²`` at each row of ``x0`` by automatic differentiation of the kernel's values only."""
    x = x0.clone().requires_grad_(True)
    k = kernel(x, zeta[None])[:, 0]
    (grad,) = torch.autograd.grad(k.sum(), x)
    return ((grad**2).sum(-1) / k.detach() ** 2).numpy()


def relu_ntk_curvature(cfg: dict[str, Any], seed: int, d: int = 4) -> ReLUNTKCurvature:
    """:class:`ReLUNTKCurvature` at a random trigger ``ζ`` on the unit sphere in ``d`` dimensions (as Chapter 1's NTK check)."""
    gen = torch.Generator().manual_seed(seed + 5)
    zeta = torch.randn(d, generator=gen, dtype=DTYPE)
    zeta = zeta / zeta.norm()
    perp = torch.randn(d, generator=gen, dtype=DTYPE)
    perp = perp - (perp @ zeta) * zeta
    perp = perp / perp.norm()
    rand = torch.randn(d, generator=gen, dtype=DTYPE)
    dirs = {"tangential": perp, "oblique": (zeta + perp) / math.sqrt(2), "random": rand / rand.norm()}
    r = np.array(cfg["r_relu"])
    kernel = ReLUNTKKernel()
    closed, auto = {}, {}
    for name, e in dirs.items():
        x0 = queries(zeta, e, r)
        closed[name] = curvature_ratio_closed(x0, zeta).numpy()
        auto[name] = _autograd_ratio(kernel, x0, zeta)
    radial = radial_ratio(queries(zeta, zeta, r)).numpy()
    X = torch.cat([zeta[None], torch.nn.functional.normalize(torch.randn(7, d, generator=gen, dtype=DTYPE), dim=1)])
    net = TwoLayerReLU(d, cfg["relu_width"], generator=torch.Generator().manual_seed(seed))
    return ReLUNTKCurvature(r, closed, auto, radial, r**2, rel_norm_err(empirical_ntk(net, X, X), kernel(X, X)), cfg["relu_width"])
