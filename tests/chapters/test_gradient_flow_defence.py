"""Chapter 3 driver at smoke size: every number the ledger checks (C4, C5), and mutations that must break them."""

import numpy as np
import pytest
import torch

from poisoncurv.book.claims import check_results, load_ledger
from poisoncurv.chapters import gradient_flow_defence as ex

CHAPTER = "ch03_gradient_flow_defence"
CFG = ex.settings("smoke")


def ledger_failures(summary: dict, claim: str) -> list[str]:
    """Keys of ``claim``'s checks that ``summary`` (part of the chapter's values) fails; unchecked keys are skipped."""
    rows = [c for c in load_ledger() if c["id"] == claim]
    results = check_results(rows, {CHAPTER: summary})
    return [r.key for r in results if r.value is not None and not r.passed]


@pytest.fixture(scope="module")
def krr():
    return ex.krr_data(CFG, 0)


@pytest.fixture(scope="module")
def lin():
    return ex.patch_data(CFG, 0)


def test_every_ledger_key_is_produced_by_a_driver_summary():
    """Each ch03 key the ledger checks appears in a ``summary()`` of the driver (tested below)."""
    import inspect

    src = inspect.getsource(ex)
    keys = {chk["key"] for c in load_ledger() for chk in c["checks"] if chk["chapter"] == CHAPTER}
    assert keys and all(f'"{k}"' in src for k in keys), sorted(k for k in keys if f'"{k}"' not in src)


def test_two_penalties(lin):
    s = ex.two_penalties(lin, CFG).summary()
    assert s["ch3_loss_penalty_rel_err"] < 1e-14 and s["ch3_loss_ridge_rel_err"] < 1e-7
    assert s["ch3_loss_max_stationary"] >= 1
    assert ledger_failures(s, "C5") == []


def test_df_sweep_and_residual_counterexample(krr):
    s = ex.krr_sweep(CFG, krr).summary()
    assert s["ch3_df_max_step"] < 0 and s["ch3_ddf_max"] < 0 and s["ch3_data_min_step"] > 0
    assert s["ch3_res_counter_fd"] == pytest.approx(s["ch3_res_counter_d"], rel=1e-5)
    assert s["ch3_df_at_max"] < s["ch3_df_at_min"]
    assert ledger_failures(s, "C5") == []


def test_contraction_and_bound_violations(krr):
    co = ex.eigenmode_contraction(CFG, krr, 0)
    s = co.summary()
    assert s["ch3_viol_hessian"] == 0.0 and s["ch3_viol_random"] > 0.5
    assert s["ch3_rate_rel_err"] == pytest.approx(0.5 * CFG["flow_step_fraction"], rel=0.05)   # Euler bias ημ/2
    assert ledger_failures(s, "C4") == []


def test_cluster_energy():
    s = ex.cluster_penalty_energy(CFG, 0).summary()
    assert s["ch3_cluster_law_rel_err"] < 1e-5
    assert ledger_failures(s, "C4") == []


def test_frontier(lin):
    fr = ex.frontier(lin, CFG)
    s = fr.summary()
    assert s["ch3_cost_eff_ratio"] == pytest.approx(0.1, rel=1e-8)         # κ_ε = h_p(1/ε − 1) is exact
    assert s["ch3_factor_vs_theory"] < 1e-12
    assert ledger_failures(s, "C5") == []


def test_counterexamples_to_equal_eigenvalue_contraction(krr):
    iso = ex.isolated_clones(CFG, krr).summary()
    mr = ex.matrix_ridge_counterexample(CFG, 0).summary()
    assert iso["ch3_iso_poison_dev"] < 1e-12 and iso["ch3_iso_clean_eq_min"] < 0.1
    assert mr["ch3_multi_sylvester_res"] < 1e-6 and mr["ch3_multi_isotropic_gap_max"] > 0.1
    assert ledger_failures({**iso, **mr}, "C5") == []


# ---- mutations: perturb what a check relies on, and the ledger must fail --------------------------------

def test_mutation_anisotropic_penalty_breaks_equal_contraction(lin, monkeypatch):
    """A penalty that shrinks the patch coordinates harder is no longer blind to the poison mode."""
    real = ex.euler_flow
    q = len(lin["h"])

    def biased(grad, w0, step, n_steps, record_every=1):
        return real(lambda W: grad(W) + 0.5 * np.where(np.arange(W.shape[-1]) >= q, W, 0.0), w0, step, n_steps, record_every)

    monkeypatch.setattr(ex, "euler_flow", biased)
    assert "ch3_factor_gap_equal_eig" in ledger_failures(ex.frontier(lin, CFG).summary(), "C5")


def test_mutation_overstated_penalty_energy_breaks_the_bound_for_hessian_modes(krr, monkeypatch):
    real = ex.bound_violations
    monkeypatch.setattr(ex, "bound_violations", lambda H, F, *a: real(H, 5 * F, *a))
    assert "ch3_viol_hessian" in ledger_failures(ex.eigenmode_contraction(CFG, krr, 0).summary(), "C4")


def test_mutation_coarse_euler_step_breaks_the_rate_check(krr):
    cfg = {**CFG, "flow_step_fraction": 0.05}
    assert "ch3_rate_rel_err" in ledger_failures(ex.eigenmode_contraction(cfg, krr, 0).summary(), "C4")


def test_mutation_penalty_that_sees_the_clones_breaks_the_isolated_check(krr, monkeypatch):
    real = ex.gradient_penalty_matrix
    monkeypatch.setattr(ex, "gradient_penalty_matrix", lambda k, X, at=None: real(k, X, at) + 1e-2 * torch.eye(X.shape[0]))
    assert "ch3_iso_poison_dev" in ledger_failures(ex.isolated_clones(CFG, krr).summary(), "C5")


def test_mutation_one_output_is_an_isotropic_ridge():
    cfg = {**CFG, "multi_outputs": 1, "multi_noise": [0.3]}
    failed = ledger_failures(ex.matrix_ridge_counterexample(cfg, 0).summary(), "C5")
    assert "ch3_multi_isotropic_gap_max" in failed
