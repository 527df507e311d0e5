"""Drivers of the chapter on the gradient penalty as a filter (claim C6): float64, numpy outputs.

Lengths are in units of the kernel length scale ``ℓ = 1``. The penalty strength is reported as the
dimensionless ``gamma = kappa·N_ℓ/(ridge·ℓ²)`` (:func:`poisoncurv.krr.spectral_filter.gamma`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.dtypes import THEORY_DTYPE as DTYPE
from poisoncurv.core.fitting import rel_err
from poisoncurv.core.profiles import by_profile
from poisoncurv.krr.derivative_krr import equivalent_kernel, fit_derivative_krr, objective
from poisoncurv.krr.kernels import GaussianKernel, LaplaceKernel, fit_krr
from poisoncurv.krr.spectral_filter import (
    continuum_kernel_1d,
    effective_density,
    gamma,
    gaussian_density,
    laplace_density_1d,
    laplace_effective,
    laplace_grid_solve,
    peak_length_slope,
    peak_length_squared,
    window_count,
)

ELL = 1.0


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every computation of the chapter for ``profile``."""
    return {
        "ridge": 0.1,
        "spacing": 0.5,
        "fourier_kappas": [1e-3, 1e-2, 3e-2],
        "law_spacings": by_profile(profile, smoke=[0.5, 2.0], cpu=[0.25, 0.5, 1.0, 2.0],
                                   gpu=[0.25, 0.5, 1.0, 2.0], full=[0.25, 0.5, 1.0, 2.0]),
        "law_gammas": list(np.logspace(-2, 1.5, by_profile(profile, smoke=5, cpu=12, gpu=24, full=24))),
        "grid2d_half_width": by_profile(profile, smoke=4.0, cpu=4.0, gpu=5.0, full=5.0),
        "fit_kappas": by_profile(profile, smoke=[1e-3, 1e-1], cpu=[1e-3, 1e-2, 1e-1],
                                 gpu=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1], full=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1]),
        "laplace_kappas": by_profile(profile, smoke=[0.1, 1.0], cpu=[0.03, 0.1, 0.3, 1.0, 3.0],
                                     gpu=[0.03, 0.1, 0.3, 1.0, 3.0], full=[0.03, 0.1, 0.3, 1.0, 3.0]),
        "laplace_h": by_profile(profile, smoke=0.01, cpu=0.004, gpu=0.002, full=0.001),
        "aniso_kappas": list(np.logspace(-3, -0.5, by_profile(profile, smoke=3, cpu=6, gpu=10, full=10))),
        "nc_r": by_profile(profile, smoke=[0.1, 0.3, 1.0], cpu=[0.1, 0.3, 1.0, 2.0],
                           gpu=[0.1, 0.2, 0.3, 0.5, 1.0, 2.0], full=[0.1, 0.2, 0.3, 0.5, 1.0, 2.0]),
        "nc_kappas": list(np.logspace(-5, 1, by_profile(profile, smoke=7, cpu=13, gpu=25, full=25))),
        "nc_n_gauss": by_profile(profile, smoke=40, cpu=80, gpu=200, full=400),
        "nc_n_laplace": by_profile(profile, smoke=40, cpu=80, gpu=200, full=400),
        "nc_poisons": by_profile(profile, smoke=4, cpu=8, gpu=16, full=16),
        "nc_ridge": 1e-3,
    }


def _line(half_width: float, h: float) -> Tensor:
    """1-d grid ``h·k`` with ``|h·k| ≤ half_width``, shape ``(N, 1)``."""
    M = int(math.floor(half_width / h + 1e-9))
    return (h * torch.arange(-M, M + 1, dtype=DTYPE))[:, None]


def _peak_length_sq(X: Tensor, ridge: float, kappa: float, u: list[float], eps: float = 1e-3) -> float:
    """``-k̃(0,0)/∂²_u k̃(0,0)`` of the finite-sample equivalent Gaussian kernel at the origin,
    by a central second difference of step ``eps`` along ``u``."""
    d = X.shape[1]
    v = torch.tensor(u, dtype=DTYPE)[None]
    q = torch.cat([-eps * v, 0 * v, eps * v])
    kt = equivalent_kernel(GaussianKernel(ELL), X, ridge, kappa, q, torch.zeros(1, d, dtype=DTYPE))[:, 0]
    return float(-kt[1] * eps**2 / (kt[0] - 2 * kt[1] + kt[2]))


FILTER_GAMMAS = (0.3, 3.0, 30.0)   # penalty strengths of the filter-gain panel


@dataclass(frozen=True)
class Exactness(ChapterResult):
    """The solver on a random problem: stationarity of the objective and agreement with KRR on ``k̃``."""

    sig = {"ch4_stationarity": 2, "ch4_equiv_rel_err": 2}

    stationarity: float          # |∇ objective| at the solution over |Y|
    equivalent_rel_err: float    # relative gap between the solver and KRR with the equivalent kernel
    system_size: int             # n (1 + d) unknowns

    def summary(self) -> Summary:
        return {"ch4_stationarity": self.stationarity, "ch4_equiv_rel_err": self.equivalent_rel_err,
                "ch4_system_size": self.system_size}


def exactness_check(seed: int, n: int = 30, d: int = 3, ridge: float = 0.1, kappa: float = 0.5) -> Exactness:
    """:class:`Exactness` on a random problem of ``n`` points in ``d`` dimensions (gradient by autograd)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=DTYPE)
    Y = torch.randn(n, 2, generator=gen, dtype=DTYPE)
    x = torch.randn(50, d, generator=gen, dtype=DTYPE)
    k = GaussianKernel(ELL)
    m = fit_derivative_krr(k, X, Y, ridge, kappa)
    c = m.coef.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(k, X, Y, ridge, kappa, c), c)
    Kt = equivalent_kernel(k, X, ridge, kappa, X, X)
    f = equivalent_kernel(k, X, ridge, kappa, x, X) @ torch.linalg.solve(Kt + ridge * torch.eye(n, dtype=DTYPE), Y)
    return Exactness(float(g.norm() / Y.norm()), float((f - m.predict(x)).norm() / f.norm()), n * (1 + d))


@dataclass(frozen=True)
class FourierCheck(ChapterResult):
    """Finite-sample ``k̃(t, 0)`` against the continuum inverse transform of ``S_eff``, by ``kappa``, and the filter
    gains ``S_eff/S`` by ``(kernel, gamma)``; ``t`` of shape ``(T,)``, ``w`` of shape ``(W,)``."""

    sig = {"ch4_fourier_max_err": 2, "ch4_fourier_gamma_max": 2}

    t: np.ndarray
    finite: dict[float, np.ndarray]      # kappa -> k̃(t, 0), shape (T,)
    continuum: dict[float, np.ndarray]   # kappa -> continuum k̃(t, 0), shape (T,)
    gammas: dict[float, float]           # kappa -> gamma
    w: np.ndarray
    gains: dict[tuple[str, float], np.ndarray]   # ("gaussian" | "laplace", gamma) -> S_eff/S, shape (W,)
    max_err: float                       # max |finite − continuum| over every kappa and t
    spacing: float
    ridge: float

    def summary(self) -> Summary:
        return {"ch4_fourier_max_err": self.max_err, "ch4_fourier_gamma_max": max(self.gammas.values()),
                "ch4_spacing": self.spacing, "ch4_ridge": self.ridge}


def fourier_check(cfg: dict[str, Any]) -> FourierCheck:
    """:class:`FourierCheck` on 1-d grid data of step ``spacing``, with ``a = kappa·rho/ridge`` in ``S_eff``."""
    h, ridge = cfg["spacing"], cfg["ridge"]
    rho = 1 / h
    t = np.linspace(0, 6, 61)
    w = np.linspace(0, 30, 60001)
    S = gaussian_density(w, ELL)
    finite, continuum, gammas = {}, {}, {}
    for kappa in cfg["fourier_kappas"]:
        a = kappa * rho / ridge
        half = 12 + 8 * math.sqrt(peak_length_squared(ELL, a, 1))
        kt = equivalent_kernel(GaussianKernel(ELL), _line(half, h), ridge, kappa, torch.tensor(t)[:, None], torch.zeros(1, 1, dtype=DTYPE))
        finite[kappa], continuum[kappa] = kt[:, 0].numpy(), continuum_kernel_1d(effective_density(S, w, a), w, t)
        gammas[kappa] = gamma(kappa, rho, ELL, ridge, 1)
    max_err = max(float(np.abs(finite[k] - continuum[k]).max()) for k in finite)
    wf = np.linspace(0, 12, 1201)
    gains = {}
    for name, dens, N0 in (("gaussian", gaussian_density(wf, ELL), window_count(1.0, ELL, 1, "gaussian")),
                           ("laplace", laplace_density_1d(wf, ELL), window_count(1.0, ELL, 1, "laplace"))):
        for g in FILTER_GAMMAS:
            a = g * ELL**2 / N0  # a = kappa·rho/ridge with gamma = kappa·rho·S(0)/(ridge ℓ²)
            gains[name, g] = effective_density(dens, wf, a) / dens
    return FourierCheck(t, finite, continuum, gammas, wf, gains, max_err, h, ridge)


@dataclass(frozen=True)
class LengthLaw(ChapterResult):
    """``ℓ_c²/ℓ²`` of the finite-sample equivalent Gaussian kernel against ``gamma`` (shape ``(G,)``) on 1-d grids,
    by spacing, with the continuum curve and the first-order law; the first-order coefficient ``s_d`` measured."""

    sig = {"ch4_slope_2d_abs": 2, "ch4_slope_quad_max_err": 2, "ch4_slope_3d_quad": 3, "ch4_gamma_10pct": 2,
           "ch4_sparse_lc2_at_max_gamma": 3, "ch4_cont_lc2_at_max_gamma": 3, "ch4_law_gamma_max": 2}

    gammas: np.ndarray
    finite: dict[float, np.ndarray]     # spacing -> ℓ_c²/ℓ², shape (G,)
    continuum: np.ndarray
    linear_law: np.ndarray              # 1 + s_1 gamma
    gamma_10pct: float                  # gamma where the first-order law is 10 % off the continuum
    slope_1d: float                     # s_1 measured on a 1-d grid
    slope_2d: float                     # s_2 measured on a 2-d grid (theory: 0)
    slope_quadrature: dict[int, float]  # d -> s_d from the continuum quadrature
    slope_theory: dict[int, float]      # d -> s_d in closed form

    def summary(self) -> Summary:
        h_sparse = max(self.finite)
        return {"ch4_slope_1d": self.slope_1d, "ch4_slope_1d_theory": peak_length_slope(1), "ch4_slope_2d_abs": abs(self.slope_2d),
                "ch4_slope_quad_max_err": max(abs(self.slope_quadrature[d] - self.slope_theory[d]) for d in (1, 2, 3)),
                "ch4_slope_3d_quad": self.slope_quadrature[3], "ch4_gamma_10pct": self.gamma_10pct,
                "ch4_sparse_spacing": h_sparse, "ch4_sparse_lc2_at_max_gamma": self.finite[h_sparse][-1],
                "ch4_cont_lc2_at_max_gamma": self.continuum[-1], "ch4_law_gamma_max": self.gammas[-1]}


def gaussian_length_law(cfg: dict[str, Any]) -> LengthLaw:
    """:class:`LengthLaw` on grids of the spacings ``law_spacings``; ``s_1``, ``s_2`` at ``gamma = 1e-3``."""
    ridge = cfg["ridge"]
    gammas = np.array(cfg["law_gammas"])
    finite = {}
    for h in cfg["law_spacings"]:
        N = window_count(1 / h, ELL, 1)
        vals = []
        for g in gammas:
            kappa = g * ridge * ELL**2 / N
            lp = math.sqrt(1 + 2 * g)
            vals.append(_peak_length_sq(_line(10 + 6 * lp, h), ridge, kappa, [1.0]))
        finite[h] = np.array(vals)
    continuum = np.array([peak_length_squared(ELL, g * ELL**2 / window_count(1.0, ELL, 1), 1) for g in gammas])
    dev = np.abs((continuum - 1) / (peak_length_slope(1) * gammas) - 1)
    g0 = 1e-3
    h = cfg["spacing"]
    X1 = _line(12, h)
    slope_1d = (_peak_length_sq(X1, ridge, g0 * ridge / window_count(1 / h, ELL, 1), [1.0]) - 1) / g0
    g2 = np.arange(-cfg["grid2d_half_width"], cfg["grid2d_half_width"] + 1e-9, h)
    X2 = torch.cartesian_prod(torch.tensor(g2), torch.tensor(g2))
    slope_2d = (_peak_length_sq(X2, ridge, g0 * ridge / window_count(1 / h**2, ELL, 2), [1.0, 0.0]) - 1) / g0
    quad = {d: (peak_length_squared(ELL, 1e-4 * ELL**2 / (2 * math.pi * ELL**2) ** (d / 2), d) - 1) / 1e-4 for d in (1, 2, 3)}
    return LengthLaw(gammas, finite, continuum, 1 + peak_length_slope(1) * gammas, float(np.interp(0.1, dev, gammas)),
                     slope_1d, slope_2d, quad, {d: peak_length_slope(d) for d in (1, 2, 3)})


@dataclass(frozen=True)
class KrrFitLength(ChapterResult):
    """The plain Gaussian KRR closest to the penalised predictor, per ``kappa`` (arrays of shape ``(K,)``)."""

    sig = {"ch4_fit_c_fixed": 3, "ch4_fit_c_peak": 3, "ch4_fit_fixed_res_max": 2, "ch4_fit_gamma_max": 2,
           "ch4_fit_free_l2_max": 3, "ch4_fit_free_ridge_max": 3, "ch4_fit_free_res_max": 2}

    kappas: np.ndarray
    gammas: np.ndarray
    fixed_l2: np.ndarray     # best ℓ'² with the ridge held at its own value
    fixed_res: np.ndarray    # its relative residual
    free_l2: np.ndarray      # best ℓ'² with the ridge free
    free_ridge: np.ndarray   # ... and its ridge
    free_res: np.ndarray
    peak_l2: np.ndarray      # peak length ℓ_c² of the equivalent kernel

    def summary(self) -> Summary:
        """First-order coefficients of the fitted and peak lengths (at the smallest kappa) and the fits at the largest."""
        return {"ch4_fit_c_fixed": float((self.fixed_l2[0] - 1) / self.kappas[0]),
                "ch4_fit_c_peak": float((self.peak_l2[0] - 1) / self.kappas[0]), "ch4_fit_fixed_res_max": self.fixed_res[-1],
                "ch4_fit_gamma_max": self.gammas[-1], "ch4_fit_free_l2_max": self.free_l2[-1],
                "ch4_fit_free_ridge_max": self.free_ridge[-1], "ch4_fit_free_res_max": self.free_res[-1]}


def krr_fit_length(cfg: dict[str, Any], seed: int) -> KrrFitLength:
    """:class:`KrrFitLength` on 1-d grid data, 4 random target columns, relative L2 mismatch on the central half."""
    from scipy.optimize import minimize, minimize_scalar

    ridge, h = cfg["ridge"], cfg["spacing"]
    X = _line(15.0, h)
    Y = torch.randn(X.shape[0], 4, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    xt = torch.linspace(-7.5, 7.5, 301, dtype=DTYPE)[:, None]
    rows = []
    for kappa in cfg["fit_kappas"]:
        f = fit_derivative_krr(GaussianKernel(ELL), X, Y, ridge, kappa).predict(xt)

        def mismatch(log_l: float, log_ridge: float) -> float:
            g = fit_krr(GaussianKernel(math.exp(log_l)), X, Y, math.exp(log_ridge)).predict(xt)
            return float(((g - f) ** 2).sum() / (f**2).sum())

        fixed = minimize_scalar(lambda v: mismatch(v, math.log(ridge)), bounds=(math.log(0.3), math.log(10.0)), method="bounded",
                                options={"xatol": 1e-7})
        free = minimize(lambda p: mismatch(p[0], p[1]), [0.0, math.log(ridge)], method="Nelder-Mead",
                        options={"xatol": 1e-6, "fatol": 1e-14, "maxiter": 400})
        rows.append((math.exp(2 * fixed.x), math.sqrt(fixed.fun), math.exp(2 * free.x[0]), math.exp(free.x[1]), math.sqrt(free.fun),
                     _peak_length_sq(X, ridge, kappa, [1.0])))
    kappas = np.array(cfg["fit_kappas"])
    return KrrFitLength(kappas, np.array([gamma(k, 1 / h, ELL, ridge, 1) for k in kappas]), *map(np.array, zip(*rows)))


@dataclass(frozen=True)
class LaplaceLaw(ChapterResult):
    """Exponential kernel, integrated penalty: brute force against closed-form Laplace KRR, per ``kappa`` (shape ``(K,)``)."""

    sig = {"ch4_laplace_max_rel_err": 2, "ch4_laplace_c_rel_err": 2}

    kappas: np.ndarray
    le_measured: np.ndarray   # ℓ_e from the decay of the brute-force response to one point
    le_theory: np.ndarray
    max_rel_err: float        # brute force against the closed form, over every kappa
    c_measured: float         # slope of ℓ_e² against kappa
    c_theory: float           # 2ℓ/ridge
    h: float                  # grid step of the brute force

    def summary(self) -> Summary:
        return {"ch4_laplace_h": self.h, "ch4_laplace_max_rel_err": self.max_rel_err, "ch4_laplace_c_measured": self.c_measured,
                "ch4_laplace_c_theory": self.c_theory, "ch4_laplace_c_rel_err": rel_err(self.c_measured, self.c_theory),
                "ch4_laplace_kappa_max": float(self.kappas.max())}


def laplace_law(cfg: dict[str, Any]) -> LaplaceLaw:
    """:class:`LaplaceLaw`: exponential kernel on the line with the penalty ``kappa·∫f'²``, grid step ``laplace_h``."""
    ridge, h = cfg["ridge"], cfg["laplace_h"]
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(-3, 3, 12) / h) * h
    y = rng.normal(size=12)
    max_err, le_meas = 0.0, []
    for kap in cfg["laplace_kappas"]:
        le, re = laplace_effective(ELL, ridge, kap)
        grid, f = laplace_grid_solve(x, y, ELL, ridge, kap, 6.0, h)
        fc = fit_krr(LaplaceKernel(le), torch.tensor(x)[:, None], torch.tensor(y), re).predict(torch.tensor(grid)[:, None])[:, 0].numpy()
        max_err = max(max_err, float(np.abs(fc - f).max() / np.abs(fc).max()))
        g1, f1 = laplace_grid_solve(np.array([0.0]), np.array([1.0]), ELL, ridge, kap, 6.0, h)
        sel = (g1 > 0.5) & (g1 < 3.0)
        le_meas.append(-1 / np.polyfit(g1[sel], np.log(f1[sel]), 1)[0])
    kaps = np.array(cfg["laplace_kappas"])
    measured = np.array(le_meas)
    return LaplaceLaw(kaps, measured, np.array([laplace_effective(ELL, ridge, k)[0] for k in kaps]), max_err,
                      float(np.polyfit(kaps, measured**2, 1)[0]), 2 * ELL / ridge, h)


@dataclass(frozen=True)
class Anisotropy(ChapterResult):
    """Training points on the line ``x₂ = 0``: ``ℓ_c²`` along and across it per ``kappa`` (shape ``(K,)``), and
    ``k̃(x, 0)`` on a plane grid (``grid`` of shape ``(G,)``, fields ``(G, G)``) without and with ``kappa_field``."""

    sig = {"ch4_across_dev": 2, "ch4_along_vs_1d": 2, "ch4_across_profile_err": 2, "ch4_along_at_max": 3,
           "ch4_aniso_gamma_max": 2}

    kappas: np.ndarray
    gammas: np.ndarray
    along: np.ndarray
    across: np.ndarray
    one_d: np.ndarray          # ℓ_c² of the same points alone on the line
    grid: np.ndarray
    field_0: np.ndarray
    field_k: np.ndarray
    kappa_field: float
    across_profile_err: float  # largest deviation of the profile across the line from the unpenalised Gaussian

    def summary(self) -> Summary:
        return {"ch4_across_dev": float(np.abs(self.across - 1).max()), "ch4_along_vs_1d": rel_err(self.along, self.one_d),
                "ch4_across_profile_err": self.across_profile_err, "ch4_along_at_max": self.along[-1],
                "ch4_aniso_gamma_max": self.gammas[-1]}


def anisotropy(cfg: dict[str, Any]) -> Anisotropy:
    """:class:`Anisotropy` for the penalties ``aniso_kappas`` (the field at the largest)."""
    ridge, h = cfg["ridge"], cfg["spacing"]
    half = 16.0
    X1 = _line(half, h)
    X2 = torch.cat([X1, torch.zeros_like(X1)], 1)
    along, across, one_d = [], [], []
    for kappa in cfg["aniso_kappas"]:
        along.append(_peak_length_sq(X2, ridge, kappa, [1.0, 0.0]))
        across.append(_peak_length_sq(X2, ridge, kappa, [0.0, 1.0]))
        one_d.append(_peak_length_sq(X1, ridge, kappa, [1.0]))
    g = np.linspace(-4, 4, 81)
    P = torch.cartesian_prod(torch.tensor(g), torch.tensor(g))
    kmax = cfg["aniso_kappas"][-1]
    field = {k: equivalent_kernel(GaussianKernel(ELL), X2, ridge, k, P, torch.zeros(1, 2, dtype=DTYPE))[:, 0].reshape(81, 81).numpy()
             for k in (0.0, kmax)}
    prof = equivalent_kernel(GaussianKernel(ELL), X2, ridge, kmax, torch.stack([torch.zeros(81, dtype=DTYPE), torch.tensor(g)], 1),
                             torch.zeros(1, 2, dtype=DTYPE))[:, 0].numpy()
    across_profile_err = float(np.abs(prof - prof[40] * np.exp(-g**2 / (2 * ELL**2))).max() / prof[40])
    gam = np.array([gamma(k, 1 / h, ELL, ridge, 1) for k in cfg["aniso_kappas"]])
    return Anisotropy(np.array(cfg["aniso_kappas"]), gam, np.array(along), np.array(across), np.array(one_d), g,
                      field[0.0], field[kmax], kmax, across_profile_err)


def _half_point(kappas: np.ndarray, eff: np.ndarray) -> float:
    """``kappa`` where ``eff/eff[0]`` first falls to 1/2 (log-linear interpolation); ``nan`` if never."""
    rel = eff / eff[0]
    below = np.nonzero(rel <= 0.5)[0]
    if below.size == 0:
        return float("nan")
    i = below[0]
    lk = np.log(kappas)
    return float(np.exp(lk[i - 1] + (0.5 - rel[i - 1]) * (lk[i] - lk[i - 1]) / (rel[i] - rel[i - 1])))


def _near_clone_data(n: int, d: int, half: float, P: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Clean inputs uniform in ``[-half, half]^d`` with targets ``sin(x₁)cos(0.7x₂)`` (``sin(x₁)`` in 1-d),
    the indices of ``P`` interior clean points, unit directions ``(P, d)``, and test inputs."""
    gen = torch.Generator().manual_seed(seed)
    X = (torch.rand(n, d, generator=gen, dtype=DTYPE) * 2 - 1) * half
    inner = torch.nonzero((X.abs() < half - 1.5).all(1))[:P, 0]
    u = torch.randn(P, d, generator=gen, dtype=DTYPE)
    xt = (torch.rand(400, d, generator=gen, dtype=DTYPE) * 2 - 1) * (half - 1.5)
    return X, _target(X), inner, u / u.norm(dim=1, keepdim=True), xt


def _target(x: Tensor) -> Tensor:
    out = torch.sin(x[:, 0])
    if x.shape[1] > 1:
        out = out * torch.cos(0.7 * x[:, 1])
    return out[:, None]


@dataclass(frozen=True)
class NearCloneKernel:
    """One kernel's near-clone sweep: by clone distance ``r``, arrays over ``kappa`` of shape ``(K,)``."""

    eff: dict[float, np.ndarray]     # r -> mean differential shift of the poisons
    err: dict[float, np.ndarray]     # r -> relative clean test error of the poisoned model
    clean_err: np.ndarray            # relative clean test error of the clean model
    kappa_half: dict[float, float]   # r -> kappa where the efficacy halves (nan: never)

    def err_at(self, kappas: np.ndarray, kappa: float) -> float:
        """The clean model's error at ``kappa`` (log-linear interpolation)."""
        return float(np.interp(np.log(kappa), np.log(kappas), self.clean_err))


@dataclass(frozen=True)
class NearCloneSweep(ChapterResult):
    """Near clones ``x_c + r·u`` labelled ``y_c + 1``: efficacy and clean error against ``kappa`` (shape ``(K,)``), per
    kernel (``"gaussian"``: the plane, pointwise penalty; ``"laplace"``: the line, integrated penalty), and the
    efficacy of an isolated cluster of clones (Gaussian)."""

    sig = {"ch4_isolated_max_rel_dev": 2,
           **{f"ch4_nc_{name}_{q}": n for name in ("gaussian", "laplace") for q, n in
              (("half_ratio", 3), ("eff0_small", 2), ("eff0_l", 2), ("err_at_half", 2), ("err_at_0", 2))}}

    kappas: np.ndarray
    r: tuple[float, ...]
    kernels: dict[str, NearCloneKernel]
    isolated_eff: np.ndarray
    poisons: int
    ridge: float
    n: dict[str, int]   # clean training points per kernel

    def summary(self) -> Summary:
        """Ordering of ``kappa_1/2`` over ``r ≤ ℓ``, efficacies without penalty, the clean error at ``kappa_1/2(ℓ)``."""
        near = [r for r in self.r if r <= 1.0]
        out: Summary = {"ch4_nc_poisons": self.poisons, "ch4_nc_ridge": self.ridge, "ch4_nc_n_gauss": self.n["gaussian"],
                        "ch4_nc_n_laplace": self.n["laplace"], "ch4_nc_r_small": float(self.r[0]),
                        "ch4_isolated_max_rel_dev": float(np.abs(self.isolated_eff / self.isolated_eff[0] - 1).max())}
        for name, k in self.kernels.items():
            kh = np.array([k.kappa_half[r] for r in near])
            out.update({f"ch4_nc_{name}_monotone": int(bool(np.all(np.diff(kh) > 0))),
                        f"ch4_nc_{name}_half_ratio": kh[-1] / k.kappa_half[self.r[0]],
                        f"ch4_nc_{name}_eff0_small": k.eff[self.r[0]][0], f"ch4_nc_{name}_eff0_l": k.eff[1.0][0],
                        f"ch4_nc_{name}_err_at_half": k.err_at(self.kappas, k.kappa_half[1.0]),
                        f"ch4_nc_{name}_err_at_0": k.clean_err[0]})
        return out


def near_clone_sweep(cfg: dict[str, Any], seed: int) -> NearCloneSweep:
    """:class:`NearCloneSweep` for the distances ``nc_r`` and penalties ``nc_kappas``.

    Efficacy: the mean over poisons of the differential shift
    ``[f_pois(x_p) − f_clean(x_p)] − [f_pois(x_c) − f_clean(x_c)]`` (what separates the triggered input from its
    clean twin); clean error: RMS test error on clean test inputs over the target's RMS. Gaussian kernel: exact
    solver in the plane (pointwise penalty); exponential kernel: the line, integrated penalty ``kappa·rho·∫f'²``
    (exact closed form).
    """
    kappas = np.array(cfg["nc_kappas"])
    ridge = cfg["nc_ridge"]
    kernels, sizes = {}, {}
    for name, d, half, n in (("gaussian", 2, 3.0, cfg["nc_n_gauss"]), ("laplace", 1, 10.0, cfg["nc_n_laplace"])):
        X, Y, inner, u, xt = _near_clone_data(n, d, half, cfg["nc_poisons"], seed)
        rho = n / (2 * half) ** d

        def fit(Xtr: Tensor, Ytr: Tensor, kappa: float) -> Any:
            if name == "gaussian":
                return fit_derivative_krr(GaussianKernel(ELL), Xtr, Ytr, ridge, kappa)
            le, re = laplace_effective(ELL, ridge, kappa * rho)
            return fit_krr(LaplaceKernel(le), Xtr, Ytr, re)

        clean = [fit(X, Y, float(k)) for k in kappas]
        gy = _target(xt)
        clean_err = np.array([float(((m.predict(xt) - gy) ** 2).mean().sqrt() / (gy**2).mean().sqrt()) for m in clean])
        effs, errs = {}, {}
        for r in cfg["nc_r"]:
            Xp = X[inner] + r * ELL * u
            Xa, Ya = torch.cat([X, Xp]), torch.cat([Y, Y[inner] + 1.0])
            eff, err = [], []
            for k, mc in zip(kappas, clean):
                mp = fit(Xa, Ya, float(k))
                shift = (mp.predict(Xp) - mc.predict(Xp)) - (mp.predict(X[inner]) - mc.predict(X[inner]))
                eff.append(float(shift.mean()))
                err.append(float(((mp.predict(xt) - gy) ** 2).mean().sqrt() / (gy**2).mean().sqrt()))
            effs[r], errs[r] = np.array(eff), np.array(err)
        kernels[name] = NearCloneKernel(effs, errs, clean_err, {r: _half_point(kappas, e) for r, e in effs.items()})
        sizes[name] = int(n)
    # an isolated cluster of m clones far from the clean data: its efficacy does not depend on kappa
    X, Y, _, u, _ = _near_clone_data(cfg["nc_n_gauss"], 2, 3.0, 1, seed)
    zeta = torch.tensor([[12.0, 0.0]], dtype=DTYPE)
    x0 = zeta + 0.3 * u[:1]
    Xa, Ya = torch.cat([X, zeta.expand(5, -1)]), torch.cat([Y, torch.ones(5, 1, dtype=DTYPE)])
    iso = []
    for k in kappas:
        mp = fit_derivative_krr(GaussianKernel(ELL), Xa, Ya, ridge, float(k))
        mc = fit_derivative_krr(GaussianKernel(ELL), X, Y, ridge, float(k))
        iso.append(float(mp.predict(x0) - mc.predict(x0)))
    return NearCloneSweep(kappas, tuple(float(r) for r in cfg["nc_r"]), kernels, np.array(iso), int(cfg["nc_poisons"]),
                          float(ridge), sizes)
