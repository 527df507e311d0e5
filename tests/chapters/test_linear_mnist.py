"""Chapter 5 drivers on the committed cpu-profile lab runs (loaded from results/lab, nothing is trained),
and the ledger checks of E1 against perturbed inputs."""

import copy

import numpy as np
import pytest

from poisoncurv.book.claims import evaluate, load_ledger
from poisoncurv.chapters import linear_mnist as ex
from poisoncurv.chapters.frontier import SafetyPoint

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
    good = SafetyPoint("weight decay", 0.1, acc - 0.019, 0.1, model="ce", clean_to_target=0.0)
    assert f.counts(good)
    assert not f.counts(SafetyPoint("weight decay", 0.1, acc - 0.021, 0.1, model="ce", clean_to_target=0.0))
    assert not f.counts(SafetyPoint("weight decay", 0.1, acc, 0.11, model="ce", clean_to_target=0.0))
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


# ---- every glued number of the setting, the amplitude sweep and the κ sweep ----------------------------------

def test_setting_reads_the_runs_sizes_and_the_trigger_norm(sweep):
    s = ex.setting(sweep, "MNIST, test copy").summary()
    cfg = ex.runs("cpu")["ce theta=0.01"]
    assert (s["ch5_epochs"], s["ch5_batch"], s["ch5_evals"], s["ch5_n_eval"], s["ch5_target"]) == (
        cfg.epochs, cfg.batch_size, cfg.evals_per_epoch, cfg.n_eval, cfg.target)
    assert s["ch5_lr_sq"] == ex.runs("cpu")["squared theta=0"].lr and s["ch5_lr_ce"] == cfg.lr
    assert s["ch5_n_train"] == 20000 and s["ch5_data_source"] == "MNIST, test copy"
    assert s["ch5_target"] == 1 and s["ch5_n_test"] == 10000 - 1135    # MNIST's test images that are not a 1
    assert s["ch5_trigger_norm"] == pytest.approx(3.0, rel=1e-6)   # nine pixels of 1 at amplitude 1: ‖a t‖ = 3
    assert s["ch5_R_k"] == pytest.approx(1 / 9, rel=1e-6)


@pytest.fixture(scope="module")
def amp_runs():
    return ex.amplitude_sweep("cpu", "cpu", 0)


@pytest.fixture(scope="module")
def amp(amp_runs):
    return ex.amplitude_result(amp_runs, "cpu")


def test_amplitude_result_reads_the_final_evaluation_of_each_run(amp, amp_runs):
    s = amp.summary()
    for loss in ex.LOSSES:
        lam_clean = amp_runs[loss][0][0]["epochs"][-1]["hess_top"][0]
        for _, r in amp_runs[loss]:
            e, tag = r["epochs"][-1], f"{loss}_a{round(r['config']['amplitude'] * 100)}"
            assert (s[f"ch5_amp_overlap_{tag}"], s[f"ch5_amp_asr_{tag}"], s[f"ch5_amp_shift2_{tag}"]) == (
                e["overlap"], e["asr"], e["trigger_shift2"])
            assert s[f"ch5_amp_ratio_{tag}"] == pytest.approx(e["curv_along_poison"] / lam_clean, rel=1e-12)


def test_amplitude_result_glues_every_run_and_the_law_fixes_the_squared_ratio(amp):
    s = amp.summary()
    amps = ex.settings("cpu")["amplitudes"]
    assert amp.amplitudes == amps and (s["ch5_amp_lo"], s["ch5_amp_hi"]) == (min(amps), max(amps))
    assert s["ch5_theta_amplitude"] == ex.settings("cpu")["theta_amplitude"]
    lam = s["ch5_sq_lam_clean"]
    for a in amps:
        for loss in ex.LOSSES:
            assert amp.rows[loss, a]["R_k"] == pytest.approx(1 / (9 * a**2), rel=1e-6)   # R_k = 1/‖a t‖², ‖t‖² = 9
            for metric in ("overlap", "asr", "shift2", "ratio"):
                assert f"ch5_amp_{metric}_{loss}_a{round(a * 100)}" in s
        # squared loss: uᵀHu = R_k‖Δf‖² at every step, so the ratio is R_k‖Δf‖²/λ_clean (to the law's 1e-2)
        tag = f"squared_a{round(a * 100)}"
        assert s[f"ch5_amp_ratio_{tag}"] == pytest.approx(s[f"ch5_amp_shift2_{tag}"] / (9 * a**2) / lam, rel=1e-2)
    # the prediction of the ceiling: the fainter trigger leaves the larger squared-loss spike
    assert s["ch5_amp_ratio_squared_a25"] > s["ch5_amp_ratio_squared_a100"]
    assert s["ch5_sq_bound_over_clean_a100"] == pytest.approx(2 / 9 / lam, rel=1e-12)
    assert all(amp.digits(k) == 2 for k in s if k.startswith(("ch5_amp_overlap", "ch5_amp_ratio")))


def test_amplitude_visible_first_lists_runs_visible_before_success(amp):
    text = amp.summary()["ch5_amp_visible_first"]
    first = amp.visible_first()
    assert all(amp.rows[k]["t_visible"] is not None for k in first)
    assert all(f"{loss}, a = {a:g} (visible from epoch" in text for loss, a in first)
    # a run visible after it succeeded is not listed
    (loss, a), r = next((k, r) for k, r in amp.rows.items() if k not in first)
    late = dict(r, t_visible=1.0, t_success=0.5)
    assert ex.AmplitudeResult(amp.theta, {**amp.rows, (loss, a): late}, amp.bound).visible_first() == first
    early = dict(r, t_visible=0.25, t_success=None)
    listed = ex.AmplitudeResult(amp.theta, {**amp.rows, (loss, a): early}, amp.bound).summary()["ch5_amp_visible_first"]
    assert f"{loss}, a = {a:g} (visible from epoch 0.25, ASR ≥ 0.5 never)" in listed
    table = amp.table()
    assert table.name == "tbl-ch5-amplitude" and len(table.rows) == len(amp.rows) and "ch05_linear_mnist_run" in table.caption


@pytest.fixture(scope="module")
def kappa():
    return ex.kappa_result(ex.kappa_sweep("cpu", "cpu", 0), "cpu")


def test_kappa_result_margins_accuracies_and_overlaps(kappa):
    s = kappa.summary()
    kp = ex.settings("cpu")["kappa_paper"]
    assert s["ch5_theta_kappa"] == ex.settings("cpu")["theta_kappa"]
    kruns = ex.kappa_sweep("cpu", "cpu", 0)
    for loss, c in kappa.curves.items():
        assert list(c.kappa_paper) == kp and c.margin.shape == c.overlap.shape == (len(kp),)
        first, last = kruns[loss][0]["epochs"][-1], kruns[loss][-1]["epochs"][-1]
        assert s[f"ch5_margin_kappa0_{loss}"] == pytest.approx(first["asr"] - first["clean_to_target"], abs=1e-12)
        assert s[f"ch5_margin_kappa_max_{loss}"] == pytest.approx(last["asr"] - last["clean_to_target"], abs=1e-12)
        assert (s[f"ch5_clean_acc_kappa0_{loss}"], s[f"ch5_kappa_overlap0_{loss}"]) == (first["clean_acc"], first["overlap"])
        assert s[f"ch5_clean_acc_kappa_max_{loss}"] == last["clean_acc"]
        assert s[f"ch5_margin_kappa0_{loss}"] == c.margin[0] and s[f"ch5_margin_kappa_max_{loss}"] == c.margin[-1]
        assert s[f"ch5_clean_acc_kappa0_{loss}"] > s[f"ch5_clean_acc_kappa_max_{loss}"]   # the penalty costs clean accuracy
        assert s[f"ch5_kappa_overlap_max_{loss}"] == c.overlap.max() >= s[f"ch5_kappa_overlap0_{loss}"]
        assert c.overlap[kp.index(s[f"ch5_kappa_overlap_argmax_{loss}"])] == c.overlap.max()
        k = kp.index(s[f"ch5_kappa_half_{loss}"])
        assert c.margin[k] < 0.5 <= c.margin[:k].min()
    assert s["ch5_margin_kappa0_min"] == min(s["ch5_margin_kappa0_squared"], s["ch5_margin_kappa0_ce"])
    assert s["ch5_margin_kappa_max_max"] == max(s["ch5_margin_kappa_max_squared"], s["ch5_margin_kappa_max_ce"])
    assert evaluate(CHECKS["ch5_margin_kappa0_min"], s["ch5_margin_kappa0_min"])
    assert evaluate(CHECKS["ch5_margin_kappa_max_max"], s["ch5_margin_kappa_max_max"])


def test_kappa_result_mutations_break_the_ledger(kappa):
    # a penalty that did nothing (every κ the κ = 0 run) leaves the largest-κ margin high: the suppression check fails
    flat = {loss: ex.KappaCurve(c.kappa_paper, np.full_like(c.margin, c.margin[0]), c.clean_acc, c.curv_along, c.hess_top,
                                c.overlap) for loss, c in kappa.curves.items()}
    s = ex.KappaResult(kappa.theta, flat).summary()
    assert not evaluate(CHECKS["ch5_margin_kappa_max_max"], s["ch5_margin_kappa_max_max"])
    assert np.isnan(s["ch5_kappa_half_ce"])                  # the margin never falls below 1/2
    # a margin with the ASR and the clean-to-target rate swapped fails the no-penalty check
    swapped = {loss: ex.KappaCurve(c.kappa_paper, -c.margin, c.clean_acc, c.curv_along, c.hess_top, c.overlap)
               for loss, c in kappa.curves.items()}
    assert not evaluate(CHECKS["ch5_margin_kappa0_min"], ex.KappaResult(kappa.theta, swapped).summary()["ch5_margin_kappa0_min"])
