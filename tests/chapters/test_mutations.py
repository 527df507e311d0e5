"""Mutation tests: break the formula or the input a ledger check relies on, and the check must then fail."""

import numpy as np
import pytest
import torch
from scipy.special import lambertw

from poisoncurv.book.claims import evaluate, load_ledger
from poisoncurv.chapters import krr_clones as ch1
from poisoncurv.chapters import near_clones as ch2
from poisoncurv.krr import relu_ntk
from poisoncurv.krr.kernels import make_kernel

CHECKS = {chk["key"]: chk for claim in load_ledger() for chk in claim["checks"]}


def passes(summary: dict, key: str) -> bool:
    return evaluate(CHECKS[key], summary[key])


@pytest.fixture(scope="module")
def cfg1():
    return ch1.settings("smoke")


@pytest.fixture(scope="module")
def cfg2():
    return ch2.settings("smoke")


def test_spike_law_exponent(cfg1, monkeypatch):
    assert passes(ch1.exact_sweep(cfg1, 0).summary(), "ch1_spike_max_rel_err")
    real = ch1.predicted_spike
    monkeypatch.setattr(ch1, "predicted_spike", lambda *a: real(*a) ** 0.95)     # exponent 2 -> 1.9
    s = ch1.exact_sweep(cfg1, 0).summary()
    assert not passes(s, "ch1_spike_max_rel_err") and not passes(s, "ch1_autograd_max_rel_err")


def test_shift_law(cfg1, monkeypatch):
    real = ch1.predicted_shift
    monkeypatch.setattr(ch1, "predicted_shift", lambda k, x, z, y, m, c: real(k, x, z, y, m + 1, c))   # S(m) -> S(m+1)
    assert not passes(ch1.exact_sweep(cfg1, 0).summary(), "ch1_shift_max_rel_err")


def test_sherman_morrison(cfg1, monkeypatch):
    real = ch1.linear_clone_update
    monkeypatch.setattr(ch1, "linear_clone_update", lambda X, Y, z, y, m, c: real(X, Y, z, y, m + 1, c))
    assert not passes(ch1.linear_patch(cfg1, 0).summary(), "ch1_sm_rel_err")


def test_overlap_law_and_whole_gn(cfg1, monkeypatch):
    kernel = make_kernel("gaussian", cfg1["lengthscale"])
    real = ch1.effective_curvature_ratio
    monkeypatch.setattr(ch1, "effective_curvature_ratio", lambda *a: real(*a) * 1.001)
    assert not passes(ch1.overlap_sweep(kernel, cfg1, 0).summary(), "ch1_overlap_eff_law_max_rel_err")
    monkeypatch.undo()
    real_top = ch1.top_gn_eigenvalue
    monkeypatch.setattr(ch1, "top_gn_eigenvalue", lambda J: real_top(J) * 1.5)   # a defender's eigenvalue mis-measured
    s = ch1.overlap_sweep(kernel, cfg1, 0).summary()
    assert not passes(s, "ch1_whole_own_far_max_rel_gap") or not passes(s, "ch1_whole_outside_weyl_band")


def test_near_clone_exponent(cfg2, monkeypatch):
    real = ch2.make_kernel
    monkeypatch.setattr(ch2, "make_kernel", lambda name, ell=1.0: real("laplace" if name == "gaussian" else name, ell))
    assert not passes(ch2.near_clone_laws(cfg2, 0).summary(), "ch2_spike_slope_gaussian")


def test_visibility_radius_branch(cfg2, monkeypatch):
    def wrong_branch(lam, ell, gain):
        z = lam * ell**2 / gain**2
        return float("inf") if z > np.exp(-1) else float(ell * np.sqrt(-lambertw(-z, -1).real))
    monkeypatch.setattr(ch2, "visibility_radius", wrong_branch)
    s = ch2.phase_diagram(cfg2, 0).summary()
    assert not passes(s, "ch2_visible_below_r_vis_limit") and not passes(s, "ch2_r_vis_limit_rel_err")


def test_lag_crossing_closed_form(cfg2, monkeypatch):
    real = ch2.saturation_time
    monkeypatch.setattr(ch2, "saturation_time", lambda level, rate: real(level, rate * (1 + 1e-6)))
    assert not passes(ch2.lag_gaussian(cfg2, 0).summary(), "ch2_lag_crossing_max_rel_err")


def test_relu_ntk_closed_form(cfg2, monkeypatch):
    monkeypatch.setattr(relu_ntk, "g_prime", lambda th: -1.01 * torch.cos(th) - 2 * (np.pi - th) * torch.sin(th))
    s = ch2.relu_ntk_curvature(cfg2, 0).summary()
    assert not passes(s, "ch2_relu_autograd_max_rel_err")
