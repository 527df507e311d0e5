"""Chapter 5 drivers on the committed cpu-profile lab runs (loaded from results/lab, nothing is trained),
and the ledger checks of E1 against perturbed inputs."""

import copy

import numpy as np
import pytest

from poisoncurv.book.claims import evaluate, load_ledger
from poisoncurv.chapters import linear_mnist as ex

CHECKS = {chk["key"]: chk for claim in load_ledger() for chk in claim["checks"]}


@pytest.fixture(scope="module")
def results():
    return ex.load_runs("cpu", "cpu", 0)


@pytest.fixture(scope="module")
def sweep():
    return ex.theta_sweep("cpu", "cpu", 0)


def test_runs_names_and_weight_decay():
    r = ex.runs("cpu")
    wd = [c for n, c in r.items() if "weight_decay" in n]
    assert len(wd) == 2 * len(ex.settings("cpu")["weight_decays"])
    assert all(c.kappa == 0 and c.theta == ex.settings("cpu")["theta_kappa"] for c in wd)


def test_mass_lower_bound_is_a_bound():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lam = np.sort(rng.exponential(size=8))[::-1]
        V, _ = np.linalg.qr(rng.normal(size=(8, 8)))
        u = rng.normal(size=8)
        u /= np.linalg.norm(u)
        c = float(u @ (V * lam) @ V.T @ u)
        o = (V.T @ u) ** 2
        lb = ex.mass_lower_bound(list(lam[:5]), float(o[0]), c, k=4)
        assert o[0] - 1e-12 <= lb <= o[:4].sum() + 1e-12


def test_visibility_criteria(sweep):
    s = ex.visibility_criteria(sweep).summary()
    assert s["ch5_vis_n"] == 8
    assert evaluate(CHECKS["ch5_vis_curv_ratio_min"], s["ch5_vis_curv_ratio_min"])
    assert evaluate(CHECKS["ch5_vis_top1_n"], s["ch5_vis_top1_n"])
    # mutation: a poisoned run whose curvature along the trigger were the clean model's fails criterion 3
    broken = copy.deepcopy(sweep)
    clean = broken["squared"][0]["epochs"][-1]["curv_along_poison"]
    broken["squared"][1]["epochs"][-1]["curv_along_poison"] = clean
    assert not evaluate(CHECKS["ch5_vis_curv_ratio_min"], ex.visibility_criteria(broken).summary()["ch5_vis_curv_ratio_min"])


def test_amplitude_ceiling():
    amp = ex.amplitude_sweep("cpu", "cpu", 0)
    b = ex.amplitude_bound(amp)
    norm = amp["squared"][-1][1]["poison"]["trigger_norm"]
    assert b.bound[-1] == pytest.approx(2 / norm**2, rel=1e-12)
    s = b.summary()
    assert s["ch5_sq_bound_over_clean_a100"] < 1     # cpu profile: the a = 1 spike cannot beat the clean curvature
    assert evaluate(CHECKS["ch5_sq_spike_over_bound_max"], s["ch5_sq_spike_over_bound_max"])
    # mutation: a ceiling with the wrong power of the norm, 2/|a t|^3 = 2/27 instead of 2/9, is broken by the measured spike
    wrong = ex.AmplitudeBound(b.amplitudes, tuple(x * norm**2 / norm**3 for x in b.bound), b.lam_clean, b.spike_max, b.shift2_max)
    assert not evaluate(CHECKS["ch5_sq_spike_over_bound_max"], wrong.summary()["ch5_sq_spike_over_bound_max"])


def test_defence_criterion(results):
    f = ex.frontier(results, "cpu")
    assert evaluate(CHECKS["ch5_n_defended"], f.summary()["ch5_n_defended"])
    acc = f.clean_acc["ce"]
    good = ex.FrontierPoint("ce", "weight decay", 0.1, acc - 0.019, 0.1, 0.0)
    assert f.counts(good)
    assert not f.counts(ex.FrontierPoint("ce", "weight decay", 0.1, acc - 0.021, 0.1, 0.0))
    assert not f.counts(ex.FrontierPoint("ce", "weight decay", 0.1, acc, 0.11, 0.0))
    # mutation: one defended model on the frontier makes the "no defence counts" check fail
    mutated = ex.Frontier(f.points + (good,), f.clean_acc)
    assert not evaluate(CHECKS["ch5_n_defended"], mutated.summary()["ch5_n_defended"])


def test_law_and_margins(sweep, results):
    lag = ex.lag_table(sweep, 0.5)
    err = max(abs(r["law_ratio"] - 1) for r in lag["squared"])
    assert evaluate(CHECKS["ch5_law_max_rel_err_squared"], err)
    assert not evaluate(CHECKS["ch5_law_max_rel_err_squared"], err + 1e-3)
    table = ex.provenance_table(results)
    assert len(table.rows) == len({r["key"] for r in results.values()})


def test_law_points_hold_the_law_for_the_squared_loss_only(sweep):
    law = ex.law_points(sweep, ex.settings("cpu")["theta_kappa"])
    s = law.summary()
    assert evaluate(CHECKS["ch5_law_max_rel_err_squared"], s["ch5_law_max_rel_err_squared"])
    ce_err = np.abs(law.measured["ce"] / law.predicted["ce"] - 1).max()
    assert ce_err > 0.1                          # cross-entropy reweights by softmax variances: no exact law
    assert s["ch5_n_points"] == sum(len(v) for v in law.predicted.values()) and 0 <= s["ch5_visibility_threshold_agreement"] <= 1
