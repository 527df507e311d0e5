"""Chapter 4 driver at smoke size: every number the ledger checks (C6), and mutations that must break them."""

import numpy as np
import pytest

from poisoncurv.book.claims import check_results, load_ledger
from poisoncurv.chapters import exponential_filter as ex

CHAPTER = "ch04_exponential_filter"
CFG = ex.settings("smoke")


def ledger_failures(summary: dict) -> list[str]:
    """Keys of C6's checks that ``summary`` fails (keys it does not hold are skipped)."""
    results = check_results([c for c in load_ledger() if c["id"] == "C6"], {CHAPTER: summary})
    return [r.key for r in results if r.value is not None and not r.passed]


def test_every_ledger_key_is_produced_by_a_summary():
    import inspect

    src = inspect.getsource(ex)
    keys = {chk["key"] for c in load_ledger() for chk in c["checks"] if chk["chapter"] == CHAPTER}
    missing = [k for k in keys if f'"{k}"' not in src and not k.startswith("ch4_nc_")]
    assert keys and not missing, missing


def test_exactness_and_fourier():
    s = {**ex.exactness_check(0).summary(), **ex.fourier_check(CFG).summary()}
    assert s["ch4_stationarity"] < 1e-12 and s["ch4_fourier_max_err"] < 1e-10
    assert ledger_failures(s) == []


def test_laplace_law():
    s = ex.laplace_law(CFG).summary()
    assert s["ch4_laplace_c_theory"] == pytest.approx(2 / CFG["ridge"])
    assert ledger_failures(s) == []


def test_gaussian_length_law_and_best_plain_krr():
    s = ex.gaussian_length_law(CFG).summary() | ex.krr_fit_length(CFG, 0).summary()
    assert s["ch4_slope_1d"] == pytest.approx(s["ch4_slope_1d_theory"], abs=5e-4) and s["ch4_slope_2d_abs"] < 1e-3
    assert ledger_failures(s) == []


def test_anisotropy_and_near_clones():
    s = {**ex.anisotropy(CFG).summary(), **ex.near_clone_sweep(CFG, 0).summary()}
    assert s["ch4_nc_gaussian_monotone"] == 1 and s["ch4_nc_laplace_monotone"] == 1
    assert ledger_failures(s) == []


# ---- mutations ------------------------------------------------------------------------------------------

def test_mutation_wrong_window_count_breaks_the_first_order_coefficient(monkeypatch):
    """The coefficient s_1 is measured at gamma = 1e-3 through N_l; a 10 % error in N_l must fail the check."""
    real = ex.window_count
    monkeypatch.setattr(ex, "window_count", lambda *a, **k: 1.1 * real(*a, **k))
    law = ex.gaussian_length_law(CFG)
    s = {"ch4_slope_1d": law.slope_1d}
    assert ledger_failures(s) == ["ch4_slope_1d"]


def test_mutation_wrong_laplace_length_law_breaks_the_exact_equivalence(monkeypatch):
    """l_e^2 = l^2 + 2 l kappa / ridge; with 1.9 instead of 2 the closed form no longer matches brute force."""
    def wrong(lengthscale, ridge, kappa):
        le = (lengthscale**2 + 1.9 * lengthscale * kappa / ridge) ** 0.5
        return le, ridge * le / lengthscale

    monkeypatch.setattr(ex, "laplace_effective", wrong)
    failed = ledger_failures(ex.laplace_law(CFG).summary())
    assert "ch4_laplace_max_rel_err" in failed


def test_mutation_small_2d_grid_breaks_the_vanishing_2d_coefficient():
    """On the old smoke grid (half-width 2 l) the boundary moves s_2 to 0.02: the tightened check catches it."""
    law = ex.gaussian_length_law({**CFG, "grid2d_half_width": 2.0})
    assert "ch4_slope_2d_abs" in ledger_failures({"ch4_slope_2d_abs": abs(law.slope_2d)})


# ---- the typed results are keyed by the swept values ------------------------------------------------------

def test_fourier_check_is_keyed_by_kappa_and_gamma():
    fc = ex.fourier_check(CFG)
    assert list(fc.finite) == list(fc.continuum) == list(fc.gammas) == CFG["fourier_kappas"]
    assert fc.max_err == max(abs(fc.finite[k] - fc.continuum[k]).max() for k in fc.finite)
    assert fc.finite[CFG["fourier_kappas"][0]][0] == pytest.approx(1.0, abs=0.1)   # k̃(0, 0) ≈ k(0, 0) = 1 at small kappa
    for name in ("gaussian", "laplace"):
        gains = [fc.gains[name, g] for g in ex.FILTER_GAMMAS]
        assert all(gn[0] == 1.0 for gn in gains)                # no penalty on the constant
        for hi, lo in zip(gains, gains[1:]):      # a stronger penalty filters more (w ≤ 1/ℓ: where S is not negligible)
            assert (lo[1:101] < hi[1:101]).all()


def test_length_law_and_near_clones_are_keyed_by_spacing_and_distance():
    law = ex.gaussian_length_law(CFG)
    assert list(law.finite) == CFG["law_spacings"] and all(v.shape == law.gammas.shape for v in law.finite.values())
    nc = ex.near_clone_sweep(CFG, 0)
    assert nc.r == tuple(CFG["nc_r"])
    for k in nc.kernels.values():
        assert list(k.eff) == list(k.err) == list(k.kappa_half) == list(nc.r)
        for r, e in k.eff.items():      # the efficacy is halved at kappa_1/2 (log-linear interpolation between sweep points)
            rel = np.interp(np.log(k.kappa_half[r]), np.log(nc.kappas), e / e[0])
            assert rel == pytest.approx(0.5, abs=1e-12)
