"""The cloned-poison laws of Chapter 1 against direct KRR solves (float64)."""

import numpy as np
import pytest
import torch

from poisoncurv.chapters import krr_clones as ex
from poisoncurv.chapters.krr_clones import exact_regime, settings
from poisoncurv.core.fitting import loglog_slope
from poisoncurv.krr.clones import (
    add_clones,
    curvature_ratio,
    effective_curvature_ratio,
    linear_clone_update,
    measure_effect,
    predicted_shift,
    predicted_spike,
    ridge_weights,
    scalar_gain,
)
from poisoncurv.krr.kernels import GaussianKernel, LaplaceKernel


@pytest.fixture
def far_setup():
    X, Y = torch.randn(60, 6), torch.nn.functional.one_hot(torch.randint(0, 3, (60,)), 3).double()
    zeta = torch.zeros(6)
    zeta[0] = 2000.0
    x0 = zeta[None] + 0.4 * torch.randn(2, 6)
    return X, Y, zeta, x0, torch.tensor([0.0, 1.0, 0.0])


@pytest.mark.parametrize("kernel", [GaussianKernel(1.5), LaplaceKernel(1.5)], ids=lambda k: k.name)
@pytest.mark.parametrize("m", [1, 7, 300])
def test_shift_and_spike_closed_forms(far_setup, kernel, m):
    X, Y, zeta, x0, y_t = far_setup
    assert float(kernel(X, zeta[None]).max()) == 0.0  # the exact tight-cluster assumption
    Xp, Yp = add_clones(X, Y, zeta, y_t, m)
    eff = measure_effect(kernel, X, Y, Xp, Yp, 0.2, x0)
    torch.testing.assert_close(eff.shift, predicted_shift(kernel, x0, zeta, y_t, m, 0.2), rtol=1e-10, atol=0)
    torch.testing.assert_close(eff.spike, predicted_spike(kernel, x0, zeta, y_t, m, 0.2), rtol=1e-10, atol=0)
    # The law is quadratic: spike = R_k |shift|^2, not R_k |shift| or R_k |shift|^3.
    R = curvature_ratio(kernel, x0, zeta)
    torch.testing.assert_close(eff.spike, R * (eff.shift**2).sum(-1), rtol=1e-10, atol=0)


def test_gain_ceiling_and_gaussian_ratio():
    assert scalar_gain(1, 0.5, 1.0) == pytest.approx(1 / 1.5)
    assert scalar_gain(1e12, 0.5, 2.0) == pytest.approx(0.5, rel=1e-9)
    zeta, x0 = torch.zeros(4), torch.tensor([[0.3, 0.4, 0.0, 0.0]])
    assert float(curvature_ratio(GaussianKernel(2.0), x0, zeta)) == pytest.approx(0.25 / 16, rel=1e-12)
    assert float(curvature_ratio(LaplaceKernel(2.0), x0, zeta)) == pytest.approx(0.25, rel=1e-12)


def test_sherman_morrison_for_any_trigger():
    X, Y, zeta, y_t = torch.randn(40, 5), torch.randn(40, 2), torch.randn(5), torch.randn(2)
    for m in (1, 5, 50):
        _, W_sm = linear_clone_update(X, Y, zeta, y_t, m, 0.3)
        Xp, Yp = add_clones(X, Y, zeta, y_t, m)
        torch.testing.assert_close(W_sm, ridge_weights(Xp, Yp, 0.3), rtol=1e-10, atol=1e-12)


def test_overlapping_clones_follow_effective_law():
    X, Y = torch.randn(50, 4), torch.randn(50, 2)
    zeta, y_t, kernel = 0.5 * torch.randn(4), torch.tensor([1.0, -1.0]), GaussianKernel(1.0)
    x0 = zeta[None] + 0.3 * torch.randn(1, 4)
    R_eff = effective_curvature_ratio(kernel, X, 0.1, x0, zeta)
    R_k = curvature_ratio(kernel, x0, zeta)
    assert abs(float(R_eff / R_k) - 1) > 1e-3  # overlap really changes the constant
    for m in (1, 10, 100):
        Xp, Yp = add_clones(X, Y, zeta, y_t, m)
        eff = measure_effect(kernel, X, Y, Xp, Yp, 0.1, x0)
        torch.testing.assert_close(eff.spike, R_eff * (eff.shift**2).sum(-1), rtol=1e-8, atol=0)


@pytest.mark.parametrize("name", ["linear", "gaussian", "laplace"])
def test_spike_efficacy_exponent_is_two(name):
    from poisoncurv.krr.kernels import make_kernel

    res = exact_regime(make_kernel(name, 1.5), settings("smoke"), seed=0)
    assert loglog_slope(res.shift_meas, res.spike_meas) == pytest.approx(2.0, abs=1e-8)
    assert res.autograd_spike_rel_err < 1e-8
    assert res.autograd_hessian_rel_gap < 1e-8


def test_loglog_slope_recovers_exponent():
    x = np.logspace(-2, 2, 9)
    assert loglog_slope(x, 3 * x**1.7) == pytest.approx(1.7, abs=1e-12)


def test_add_clones_rejects_zero_copies():
    with pytest.raises(ValueError, match="at least one"):
        add_clones(torch.randn(3, 2), torch.randn(3, 1), torch.randn(2), torch.randn(1), 0)


def test_exact_sweep_summary_is_rounding_error():
    s = ex.exact_sweep(ex.settings("smoke"), 0).summary()
    assert max(s["ch1_shift_max_rel_err"], s["ch1_spike_max_rel_err"], s["ch1_autograd_max_rel_err"]) < 1e-10
    assert s["ch1_slope_max_dev"] < 1e-10 and s["ch1_gaussian_Rk_rel_err"] < 1e-10


def test_whole_gauss_newton_change_equals_the_spike_only_far_from_the_data():
    cfg = ex.settings("smoke")
    ov = ex.overlap_sweep(ex.make_kernel("gaussian", cfg["lengthscale"]), cfg, 0)
    s = ov.summary()
    assert s["ch1_whole_own_far_max_rel_gap"] < 1e-10 and s["ch1_whole_outside_weyl_band"] == 0
    assert ov.clean_top[-1] == 0.0 and ov.clean_top[0] > ov.own[0]       # J0 vanishes far away, dominates at the centre
    assert abs(s["ch1_whole_over_own_at_centre"] - 1) > 0.1               # there the defender's change is not the spike
    assert s["ch1_overlap_clone_slope_max_dev"] < 1e-10 and s["ch1_overlap_eff_law_max_rel_err"] < 1e-10


def test_linear_patch_lag_threshold():
    lin = ex.linear_patch(ex.settings("smoke"), 0)
    assert lin.sm_rel_err < 1e-10 and lin.R_k_rel_spread < 1e-10
    assert lin.R_k_times_t2 == pytest.approx(1.0, rel=1e-12)
    # the spike at success is τ²/|t|²: visible at success iff it reaches Λ_clean iff |t| ≤ τ/√Λ_clean
    assert (lin.tau**2 / lin.trigger_norm**2 >= lin.lambda_clean) == (lin.trigger_norm <= lin.norm_threshold)


def test_ntk_gap_summary_has_seed_spread():
    cfg = {**ex.settings("smoke"), "ntk_widths": [64, 1024], "ntk_seeds": 2, "ntk_steps": 50}
    ntk = ex.ntk_convergence(cfg, 0)
    s = ntk.summary()
    assert ntk.gaps.shape == (2, 2) and s["ch1_ntk_seeds"] == 2 and s["ch1_ntk_gap_slope"] < 0
    assert s["ch1_ntk_seed_slope_sem"] == pytest.approx(s["ch1_ntk_seed_slope_std"] / np.sqrt(2))
