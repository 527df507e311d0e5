"""The deep-network chapters' shared analysis on hand-built run files with known answers."""

from dataclasses import asdict

import numpy as np
import pytest

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.lab.config import profile_config
from poisoncurv.lab.grid import Grid, Run


def rows(t, asr, overlap=None, mass=None, curv=None, acc=None, untriggered=None):
    n = len(t)
    untriggered = untriggered if untriggered is not None else [0.0] * n
    overlap = overlap if overlap is not None else [0.0] * n
    mass = mass if mass is not None else overlap
    curv = curv if curv is not None else [1.0] * n
    acc = acc if acc is not None else [0.98] * n
    return [{"epoch": t[i], "asr": asr[i], "clean_acc": acc[i], "robust_acc": 1 - asr[i], "premise_gap": 1e-15,
             "clean_to_target": untriggered[i],
             **{f"{p}_{k}": v for p in ("trig", "clean") for k, v in
                (("overlap", overlap[i]), ("mass", mass[i]), ("curv_u", curv[i]), ("top", [2.0, 1.0]))}}
            for i in range(n)]


def run_file(cfg, epochs, final=None):
    return {"config": asdict(cfg), "key": cfg.key(), "epochs": epochs, "poison": {"n_poison": int(cfg.theta * 100)},
            "final": final or {}, "provenance": {"git_commit": "abc", "device_name": "CPU: x", "wall_time_s": 1.0},
            "data_source": "test"}


def chapter(files):
    """A ChapterRuns over hand-built files, the grid's groups given as ``{group: [(cfg, epochs, final), ...]}``."""
    groups, results = {}, {}
    for name, items in files.items():
        groups[name] = []
        for cfg, epochs, final in items:
            groups[name].append(Run(name, {}, cfg))
            results[cfg.key()] = run_file(cfg, epochs, final)
    return dr.ChapterRuns(Grid(None, "smoke", "test", groups), results)


T = [0.0, 0.5, 1.0, 1.5, 2.0]


def cfg(**kw):
    return profile_config("smoke", model="lenet", measure="deep", **kw)


def test_lag_rows_and_verdicts():
    clean = rows(T, [0] * 5, curv=[1.0] * 5)
    lagging = rows(T, [0, 0.6, 0.9, 0.9, 0.9], overlap=[0, 0, 0.2, 0.6, 0.7], curv=[1, 2, 20, 30, 30])
    ch = chapter({"seeds": [(cfg(attack="badnets", theta=0.0, seed=s), clean, None) for s in range(6)]
                  + [(cfg(attack="badnets", theta=0.05, seed=s), lagging, None) for s in range(6)]})
    lag = dr.lag_result(ch, ["seeds"], "t", "run")
    ov = lag.cell("badnets", "overlap", "trig")
    assert [(r.t_success, r.t_visible, r.lag) for r in ov] == [(0.5, 1.5, 1.0)] * 6
    ratio = lag.cell("badnets", "ratio", "trig")
    assert [r.t_visible for r in ratio] == [1.0] * 6            # ratio 20 >= 10 from epoch 1
    assert lag.cell("badnets", "ratio", "trig", threshold=30.0)[0].t_visible == 1.5
    assert lag.cell("badnets", "overlap", "trig", threshold=0.25)[0].t_visible == 1.5
    s = lag.summary()
    assert s["t_lag_badnets_overlap"] == 1.0 and s["t_verdict_badnets_overlap"] == "lag"
    assert s["t_lag_p_badnets_overlap"] == 2 * 0.5**6 and s["t_lag_later_badnets_overlap"] == 6
    assert s["t_verdict_panel_badnets_overlap"] == "lag"       # every threshold and rule: visible after success
    assert s["t_n_cells_lag"] == 6                             # the clean inputs carry the same series here
    assert s["t_lag_badnets_n_success"] == 6 and s["t_n_cells"] == 6
    # every cell is seen in some definition, and no definition puts any seed's visibility first
    assert (s["t_n_cells_unseen_trig"], s["t_n_cells_unseen_clean"], s["t_n_cells_none_earlier"]) == (0, 0, 6)
    assert lag.table().rows[0][5] == "6/6" and lag.table().rows[0][8] == "6/0/0"      # the verdicts come first (3, 4)
    assert lag.panel_table().rows[0][3:] == ["L L L", "L L L", "N N N", "lag"]   # overlap never reaches ¾


def test_a_definition_that_flips_the_verdict_is_not_robust():
    """Overlap crosses ½ once before success and settles after it: first crossing says visible first, the
    settled rule says lag; the panel says it depends on the definition."""
    clean = rows(T, [0] * 5)
    flicker = rows(T, [0, 0.2, 0.9, 0.9, 0.9], overlap=[0, 0.6, 0.1, 0.6, 0.6])
    ch = chapter({"seeds": [(cfg(attack="warp", theta=0.0, seed=s), clean, None) for s in range(6)]
                  + [(cfg(attack="warp", theta=0.05, seed=s), flicker, None) for s in range(6)]})
    lag = dr.lag_result(ch, ["seeds"], "t", "run")
    s = lag.summary()
    assert s["t_verdict_warp_overlap"] == "lag" and s["t_verdict_first_warp_overlap"] == "visible first"
    assert s["t_verdict_panel_warp_overlap"] == "depends on definition"
    # first crossing at ¼ and ½ says visible first; the other rules, and ¾ (never reached), say success first
    assert (s["t_panel_first_warp_overlap"], s["t_panel_later_warp_overlap"], s["t_panel_size_warp_overlap"]) == (2, 7, 9)
    # the ratio (curvature equal to the clean model's) is never visible under any definition, at either probe set;
    # the overlap and mass are visible first under first crossing, so only the two ratio cells have none earlier
    assert (s["t_n_cells_unseen_trig"], s["t_n_cells_unseen_clean"], s["t_n_cells_none_earlier"]) == (1, 1, 2)


def test_each_seed_is_paired_with_its_own_clean_reference():
    """Two seeds whose clean references differ: the ratio criterion of each uses its own (10 exactly is visible)."""
    refs = {0: [1.0] * 5, 1: [4.0] * 5}
    pois = rows(T, [0, 0.6, 0.9, 0.9, 0.9], curv=[1, 10, 10, 10, 10])
    ch = chapter({"seeds": [(cfg(attack="badnets", theta=0.0, seed=s), rows(T, [0] * 5, curv=c), None) for s, c in refs.items()]
                  + [(cfg(attack="badnets", theta=0.05, seed=s), pois, None) for s in refs]})
    cell = dr.lag_result(ch, ["seeds"], "t", "run").cell("badnets", "ratio", "trig")
    assert [r.t_visible for r in cell] == [0.5, None]           # 10 / 1 = 10 is visible; 10 / 4 is not


def test_collapse_is_not_success():
    """ASR 1 while the model sends every untriggered input to the target (accuracy 0.1) is not success."""
    clean = rows(T, [0] * 5)
    collapse = rows(T, [0, 1.0, 1.0, 1.0, 0.9], acc=[0.1, 0.11, 0.1, 0.9, 0.95], untriggered=[0, 0.99, 1.0, 0.02, 0.01],
                    overlap=[0, 0.6, 0.6, 0.6, 0.6])
    ch = chapter({"seeds": [(cfg(attack="warp", theta=0.0), clean, None), (cfg(attack="warp", theta=0.05), collapse, None)]})
    row = dr.lag_result(ch, ["seeds"], "t", "run").cell("warp", "overlap", "trig")[0]
    assert (row.t_success, row.t_visible) == (1.5, 0.5)


def test_curvature_ratio_and_band():
    clean = rows(T, [0] * 5, curv=[1, 2, 0, 4, 4])
    pois = rows(T, [0] * 5, curv=[1, 4, 3, 40, 8])
    ch = chapter({"seeds": [(cfg(attack="warp", theta=0.0), clean, None), (cfg(attack="warp", theta=0.1), pois, None)]})
    r = dr.curvature_ratio(ch.results[cfg(attack="warp", theta=0.1).key()], ch.results[cfg(attack="warp", theta=0.0).key()], "trig")
    np.testing.assert_allclose(r, [1, 2, np.nan, 10, 2])
    b = dr.band(ch, ["seeds"], "warp", 0.1, dr.ratio_metric("trig"))
    np.testing.assert_allclose(b.mean, [1, 2, np.nan, 10, 2])
    assert dr.lag_theta(ch, ["seeds"], "warp") == 0.1


def _final(asr, acc):
    return rows([0.0, 1.0], [0.0, asr], acc=[0.1, acc])


def test_defence_cells_over_seeds_and_e3():
    base = dict(attack="cross-stochastic", theta=0.05)
    clean = [(cfg(attack="cross-stochastic", theta=0.0, seed=s), _final(0.0, acc), None) for s, acc in enumerate((0.97, 0.985, 0.96))]
    table = {(0.0, False): (1.0, 0.97), (0.0, True): (0.9, 0.97), (1.0, False): (0.2, 0.96), (1.0, True): (0.05, 0.96),
             (10.0, True): (0.0, 0.5)}
    cells = [(cfg(**base, kappa=k, augment=a, seed=s), _final(asr - 0.01 * s, acc), None)
             for (k, a), (asr, acc) in table.items() for s in range(3)]
    wd = [(cfg(**base, weight_decay=0.05), _final(0.05, 0.96), None)]
    ch = chapter({"theta": clean, "defence": cells, "weight_decay": wd})
    d = dr.defence_result(ch, {"cross-stochastic": (("defence",), "weight_decay")}, "t", "run")
    assert d.clean_acc("cross-stochastic") == pytest.approx((0.97 + 0.985 + 0.96) / 3)
    s = d.summary()
    assert s["t_def_cross_stochastic_aug_alone_counts"] == "does not count"
    assert s["t_def_cross_stochastic_verdict_kp2p5e03_aug"] == "split"       # κ_paper = 2500: seed 1's clean model is 2.5 points up
    assert s["t_def_cross_stochastic_n_kappa_aug_counts"] == 0            # κ = 10 collapses accuracy: does not count
    assert s["t_def_cross_stochastic_e3_holds"] == "inconclusive"
    assert s["t_def_cross_stochastic_n_works"] == 3 and s["t_def_cross_stochastic_attack_works"] == "yes"
    assert s["t_def_cross_stochastic_n_wd_seed_counts"] == 1 and s["t_def_cross_stochastic_n_wd_counts"] == 0   # one seed
    assert (s["t_def_cross_stochastic_asr_wd0p05"], s["t_def_cross_stochastic_n_wd0p05"]) == (0.05, 1)
    assert s["t_def_cross_stochastic_cost_wd0p05"] == pytest.approx(0.01)    # against seed 0's clean model, 0.97
    assert s["t_def_cross_stochastic_verdict_wd0p05"] == "too few seeds" and s["t_def_cross_stochastic_n_collapsed_wd0p05"] == 0
    assert s["t_def_cross_stochastic_aug_drop"] == pytest.approx(0.15)   # 0.2 - 0.05 in every seed at κ = 1
    assert s["t_def_cross_stochastic_aug_drop_lo"] == pytest.approx(0.15)
    assert d.kappa_paper(1.0) == 50**2                               # smoke batch 50
    early = [c for c in d.cells if c.method == "early stopping"]
    assert len(early) == 1 and early[0].n == 3
    cost = d.cell("cross-stochastic", 1.0, True).cost()
    assert cost[0] == pytest.approx((0.01 + 0.025 + 0.0) / 3)
    row = d.table().rows[1]
    assert row[:5] == ["cross-stochastic", "off", "2.5·10³", "does not count", "0/3"]


def test_e3_fails_when_augmentation_alone_counts():
    clean = [(cfg(attack="warp", theta=0.0, seed=s), _final(0.0, 0.97), None) for s in range(3)]
    table = {(0.0, False): (0.95, 0.97), (0.0, True): (0.05, 0.97), (1.0, True): (0.05, 0.965)}
    cells = [(cfg(attack="warp", theta=0.05, kappa=k, augment=a, seed=s), _final(asr, acc), None)
             for (k, a), (asr, acc) in table.items() for s in range(3)]
    s = dr.defence_result(chapter({"theta": clean, "defence": cells, "weight_decay": []}),
                          {"warp": (("defence",), "weight_decay")}, "t", "run").summary()
    assert s["t_def_warp_aug_alone_counts"] == "counts" and s["t_def_warp_e3_holds"] == "no"


def test_e3_across_the_panel_of_definitions():
    """Augmentation alone leaves ASR 0.15 (counts only at ASR <= 0.2); κ with augmentation brings it to 0.05 at a cost
    of 1.5 points (counts only within 2 and 5 points): E3 holds under four of the nine definitions."""
    clean = [(cfg(attack="warp", theta=0.0, seed=s), _final(0.0, 0.97), None) for s in range(3)]
    table = {(0.0, False): (0.95, 0.97), (0.0, True): (0.15, 0.97), (1.0, True): (0.05, 0.955)}
    cells = [(cfg(attack="warp", theta=0.05, kappa=k, augment=a, seed=s), _final(asr, acc), None)
             for (k, a), (asr, acc) in table.items() for s in range(3)]
    d = dr.defence_result(chapter({"theta": clean, "defence": cells, "weight_decay": []}),
                          {"warp": (("defence",), "weight_decay")}, "t", "run")
    s = d.summary()
    assert s["t_def_warp_e3_holds"] == "yes"                          # the default: ASR 0.1, 2 points
    assert d.e3("warp", 0.1, 0.01) == "no" and d.e3("warp", 0.2, 0.02) == "no"
    assert (s["t_def_warp_e3_panel"], s["t_def_warp_e3_panel_n_yes"], s["t_def_warp_e3_panel_size"]) == ("depends on definition", 4, 9)
    assert d.panel_table().rows == [["warp", "N Y Y", "N Y Y", "N N N", "depends on definition"]]


def test_e3_holds_when_every_seed_agrees():
    base = dict(attack="warp", theta=0.05)
    clean = [(cfg(attack="warp", theta=0.0, seed=s), _final(0.0, 0.97), None) for s in range(3)]
    table = {(0.0, False): (0.95, 0.97), (0.0, True): (0.9, 0.97), (1.0, False): (0.6, 0.97), (1.0, True): (0.05, 0.965)}
    cells = [(cfg(**base, kappa=k, augment=a, seed=s), _final(asr, acc), None) for (k, a), (asr, acc) in table.items() for s in range(3)]
    ch = chapter({"theta": clean, "defence": cells, "weight_decay": []})
    s = dr.defence_result(ch, {"warp": (("defence",), "weight_decay")}, "t", "run").summary()
    assert s["t_def_warp_e3_holds"] == "yes" and s["t_n_e3_holds"] == 1
    assert s["t_def_warp_e3_panel"] == "yes" and s["t_def_warp_e3_panel_n_yes"] == 9     # every definition agrees
    assert s["t_def_warp_first_counts_aug"] == "2.5·10³" and s["t_def_warp_first_counts_noaug"] == "none"   # κ_lab 1, B = 50
    assert s["t_def_warp_n_kappa_aug_counts"] == 1 and s["t_def_warp_n_kappa_counts"] == 0


def test_consistency_worst_cases():
    r = rows(T, [0] * 5, overlap=[0.1] * 5, mass=[0.3] * 5, curv=[1.0, 1.0, 2.2, 1.0, 1.0])
    ch = chapter({"theta": [(cfg(attack="warp", theta=0.0), r, None)]})
    c = dr.consistency(ch, "t")
    assert c.mass_minus_overlap_min == pytest.approx(0.2) and c.mass_max == 0.3
    assert c.rayleigh_excess_max == pytest.approx(0.1)               # 2.2 against λ₁ = 2
    assert c.n_rows == 5 and c.premise_gap_max == c.premise_gap_q99 == 1e-15 and c.n_premise_above == 0
    assert c.summary()["t_premise_above_lam1_max"] == "none"


def test_consistency_says_where_the_premise_gap_is_large():
    r = rows(T, [0] * 5, overlap=[0.1] * 5, mass=[0.3] * 5)
    r[1].update(premise_gap=0.7, clean_acc=0.1)          # both products tiny: rounding, at a model still at chance
    r[1]["trig_top"] = [3e-9] + r[1]["trig_top"][1:]
    r[2].update(premise_gap=1e-11)                       # below the noted gap
    c = dr.consistency(chapter({"theta": [(cfg(attack="warp", theta=0.0), r, None)]}), "t")
    assert c.n_premise_above == 1 and c.premise_gap_max == 0.7
    assert c.premise_above_lam1_max == 3e-9 and c.premise_above_acc_max == 0.1


def test_feature_rows_keep_successful_seeds_and_test_the_entk_ordering():
    def feat(tp, tt, asr=1.0):
        e = rows([0.0, 1.0], [0, asr])
        e[-1].update(feat_trig_to_poison=tp, feat_trig_to_target=2.0, feat_trig_to_source=1.0, feat_target_to_target=tt,
                     feat_collapse_clean=5.0, feat_collapse_poison=0.1, feat_collapse_trig=0.2)
        return e

    def fin(rp):
        return {"ntk_poison": {"R_median": rp}, "ntk_clean": {"R_median": 0.04}}
    seeds = [(cfg(attack="badnets", theta=0.05, seed=s), feat(0.5 + 0.2 * (s % 2), 0.8 if s < 5 else 0.6), fin(0.02))
             for s in range(6)]                                        # seed 5: 0.7 from the poisons, 0.6 within the target
    failed = (cfg(attack="badnets", theta=0.05, seed=6), feat(9.0, 0.8, asr=0.1), fin(0.08))   # R ratio 2: not counted
    f = dr.feature_result(chapter({"seeds": seeds + [failed]}), ["seeds"], "t", "run")
    row = f.rows[0]
    assert (row.n_seeds, row.n_runs) == (6, 7)
    assert row.values["feat_trig_to_poison"] == pytest.approx((0.6, np.std([0.5, 0.7] * 3, ddof=1)))
    assert row.values["R_ratio"][0] == pytest.approx(0.5)
    assert row.near_clones() == (5, 1, pytest.approx(2 * 7 / 2**6), "inconclusive")   # near in seeds 0-4, apart in 5
    assert row.ntk_ordering() == (6, 0, 2 * 0.5**6, "flatter")
    s = f.summary()
    assert s["t_n_near_clone"] == s["t_n_apart"] == 0 and s["t_feat_badnets_near_clone"] == "inconclusive"
    assert s["t_n_ntk_flatter"] == 1 and s["t_feat_badnets_n_success"] == 6
    assert (s["t_feat_badnets_near_clone_n_seeds"], s["t_feat_badnets_apart_n_seeds"]) == (5, 1)
    assert f.ntk_table().rows[0][2] == "6/7" and f.ntk_table().rows[0][-1] == "flatter"
    assert f.table().rows[0][-1] == "5/1 (p = 0.22)"


def test_near_clones_need_the_sign_test_over_seeds():
    def row(margins):
        return dr.FeatureRow("badnets", 0.05, len(margins), {}, near_margins=tuple(margins))
    assert row([0.1] * 6).near_clones() == (6, 0, pytest.approx(2 * 0.5**6), "near clone")
    assert row([-0.1] * 7 + [0.0]).near_clones()[3] == "inconclusive"          # 7 of 8 apart: p = 0.07
    assert row([-0.1] * 8).near_clones()[3] == "apart"                          # 8 of 8: p = 0.008
    assert row([0.2, 0.1, 0.3]).near_clones()[3] == "inconclusive"             # 3 of 3: p = 0.25


def test_a_defence_of_an_attack_that_fails_undefended_is_not_evidence():
    base = dict(attack="warp", theta=0.05)
    clean = (cfg(attack="warp", theta=0.0), _final(0.0, 0.97), None)
    cells = [(cfg(**base, kappa=k, augment=a), _final(0.05, 0.97), None) for k in (0.0, 1.0) for a in (False, True)]
    ch = chapter({"theta": [clean], "defence": cells, "weight_decay": []})
    s = dr.defence_result(ch, {"warp": (("defence",), "weight_decay")}, "t", "run").summary()
    assert s["t_def_warp_attack_works"] == "no" and s["t_def_warp_e3_holds"] == "n/a" and s["t_n_e3_testable"] == 0


def test_clean_model_matches_files_written_before_a_field_existed():
    """A run file from the current code (with every field, e.g. ``filter``) finds its clean model in a file written
    before that field existed (no ``filter`` key: it holds the default)."""
    poisoned, clean = cfg(attack="badnets", theta=0.05, kappa=1.0), cfg(attack="badnets", theta=0.0)
    ch = chapter({"g": [(poisoned, rows(T, [0.9] * 5), None), (clean, rows(T, [0.0] * 5), None)]})
    old = ch.results[clean.key()]
    old["config"] = {k: v for k, v in old["config"].items() if k != "filter"}
    assert ch.clean_model(ch.results[poisoned.key()]) is old
    assert ch.clean_model({**ch.results[poisoned.key()], "config": {**ch.results[poisoned.key()]["config"],
                                                                     "filter": "ac"}}) is None


def test_hardware_compare_in_seed_units_and_only_for_the_chapters_runs(tmp_path):
    """Three seeds' accuracies 0.96, 0.97, 0.98 (sd 0.01); seed 0 retrained at 0.975 is +1.5 seed sd. A retrained pair
    of another profile (seed 9, not among the chapter's runs) is left out; with none left the result is empty."""
    import json

    from poisoncurv.chapters import hardware as hw

    def run(theta, seed, acc):
        return (cfg(attack="badnets", theta=theta, seed=seed), rows([0.0, 1.0], [0.0, 0.9 if theta else 0.0], acc=[0.1, acc]), None)

    items = [run(th, s, 0.96 + 0.01 * s) for s in range(3) for th in (0.0, 0.05)]
    ch = chapter({"seeds": items})
    for theta, seed, acc in ((0.0, 0, 0.975), (0.05, 0, 0.975), (0.0, 9, 0.5), (0.05, 9, 0.5)):
        c, epochs, _ = run(theta, seed, acc)
        (tmp_path / f"{c.key()}.json").write_text(json.dumps(run_file(c, epochs)))
    res = hw.compare(ch, ("seeds",), tmp_path, "t", "run")
    assert [(r.attack, r.seed) for r in res.rows] == [("badnets", 0)]
    assert res.rows[0].in_seed_sd["clean_acc"] == pytest.approx(1.5)
    assert res.summary()["t_hw_n_runs"] == 1 and res.summary()["t_hw_max_sd_clean_acc"] == pytest.approx(1.5)
    other = chapter({"seeds": [run(th, 5, 0.9) for th in (0.0, 0.05)]})             # a profile none was retrained for
    empty = hw.compare(other, ("seeds",), tmp_path, "t", "run")
    assert empty.rows == () and np.isnan(empty.summary()["t_hw_max_sd_clean_acc"]) and empty.table().rows == []
    with pytest.raises(ValueError, match="no retrained poisoned runs"):
        hw.compare(ch, ("seeds",), tmp_path / "missing", "t", "run")


def test_feature_summary_glues_none_where_no_seed_gave_a_clean_distance():
    # a clean row whose trig → target distance no seed measured glues "none", as the poisoned rows' means do
    row = dr.FeatureRow("cross", 0.0, 1, {"feat_trig_to_target": (None, None)}, n_runs=1)
    assert dr.FeatureResult("chx", (row,), "run").summary()["chx_feat_clean_cross_trig_to_target"] == "none"
    row = dr.FeatureRow("cross", 0.0, 1, {"feat_trig_to_target": (2.5, 0.1)}, n_runs=1)
    assert dr.FeatureResult("chx", (row,), "run").summary()["chx_feat_clean_cross_trig_to_target"] == 2.5
