"""Chapter 8's CNN drivers: the frontier's selection rules on hand-made points, the nearest-neighbour scale, and the
drivers on the committed cpu-profile runs of grids/ch08.yaml (loaded from results/lab, nothing is trained) and the
committed derived results (results/derived: what comes from the kept models' features, and the adaptive attacker's
surrogate), of which two runs' detections and the surrogate are recomputed from scratch here."""

import json
import math
import shutil
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from poisoncurv.book.claims import committed_values
from poisoncurv.chapters import cnn_mnist
from poisoncurv.chapters import detectors_cnn as cx
from poisoncurv.chapters.frontier import SafetyPoint
from poisoncurv.core.contract import glue_key
from poisoncurv.core.digests import file_digest
from poisoncurv.core.paths import chapter_lab_dir
from poisoncurv.core.prose import round_sig
from poisoncurv.detect.metrics import roc_auc
from poisoncurv.detect.suite import DETECTORS
from poisoncurv.lab import adaptive as lab_adaptive
from poisoncurv.lab import cache, derived, runner
from poisoncurv.lab.filtering import DETECTOR_OF

BUMP = "the cached derived results differ: if the computing code changed, bump its version in detectors_cnn and rerun"


def detected_runs():
    """Every run the drivers pass to detect_run: Chapter 6's seed runs and this chapter's amplitude and adaptive runs."""
    g6, g8 = cnn_mnist.grid("cpu"), cx.grid("cpu")
    six = [r.config for name in cnn_mnist.SEED_GROUPS for r in g6.group(name)]
    return six + [r.config for r in g8.group("amplitude")] + [r.config for r in g8.group("adaptive")]


def assert_glued(summary):
    """The driver's summary, rounded as the chapter glues it (3 significant digits), is the committed chapter's, for
    every key the chapter glues (what its page or the ledger reads: poisoncurv.book.reads)."""
    committed = committed_values()["ch08_detectors"]
    shown = [k for k in summary if k in committed]
    assert shown, "the chapter glues none of this summary"
    assert {k: round_sig(v, 3) if isinstance(v, float) else v for k, v in summary.items() if k in committed} == {
        k: committed[k] for k in shown}


@contextmanager
def reading_only():
    """Fail if a driver computes features or the surrogate instead of reading results/derived."""
    def refuse(*args, **kwargs):
        raise AssertionError("a driver recomputed a derived result instead of reading results/derived")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cx, "detection_values", refuse)
        mp.setattr(cx, "surrogate_values", refuse)
        yield


def _point(fam, setting, acc, asr, seed=0):
    return SafetyPoint(fam, setting, acc, asr, n_test=2000, n_trig=1800, seed=seed)


def test_frontier_rules_on_hand_made_points():
    none = tuple(_point("none", "undefended", acc, 0.95, s) for s, acc in enumerate((0.985, 0.98, 0.975)))
    pts = [_point("D", "1", 0.99, 0.0, 0)]       # one seed: no call, never chosen
    for s, acc in enumerate((0.985, 0.98, 0.975)):
        pts += [_point("A", "1", acc - 0.005, 0.5, s), _point("A", "2", acc - 0.08, 0.05, s), _point("A", "3", acc - 0.03, 0.08, s),
                _point("B", "1", acc + 0.003, 0.02, s), _point("C", "1", 0.5, 0.6, s),
                _point("E", "1", acc + 0.001, 0.2 if s == 2 else 0.02, s)]
    f = cx.DefenceResult("x", none, tuple(pts), tag="t")
    assert f.best_free("A").setting == "1" and f.cheapest_safe("A").setting == "3"
    assert f.best_free("C") is None and f.cheapest_safe("C") is None
    assert f.best_free("D") is None and f.cells("D")[0].call == "too few seeds"
    a1 = f.cells("A")[0]
    seed_costs = [p.cost(u) for p, u in zip(a1.points, f.undefended)]     # each seed against its own undefended model
    assert [c[0] for c in seed_costs] == pytest.approx([0.005] * 3)
    assert a1.cost() == pytest.approx((0.005, min(c[1] for c in seed_costs), max(c[2] for c in seed_costs)))
    assert f.clean_acc == pytest.approx(0.98) and a1.clean_acc == pytest.approx(0.975)
    assert f.cells("E")[0].spread("asr") == pytest.approx((0.06, 0.12))                    # mean 0.08 of 0.02, 0.02, 0.2
    assert f.cells("E")[0].call == "seeds disagree" and f.cells("E")[0].calls() == ["free and safe"] * 2 + ["not safe"]
    s = f.summary()
    assert s["ch8_t_n_free_safe"] == 2 and s["ch8_t_n_families"] == 5 and s["ch8_t_n_seeds"] == 3   # B and E by the means ...
    assert s["ch8_t_n_free_safe_solid"] == 1 and s["ch8_t_free_call_b"] == "free and safe"   # ... but every seed only in B
    assert s["ch8_t_free_asr_b"] == pytest.approx(0.02) and "ch8_t_safe_acc_c" not in s
    assert s["ch8_t_safe_acc_a"] == pytest.approx(0.95) and s["ch8_t_safe_setting_a"] == "3"
    assert s["ch8_t_free_setting_a"] == "1" and s["ch8_t_free_cost_a"] == pytest.approx(0.005)
    assert s["ch8_t_solid_settings_b"] == "1" and s["ch8_t_solid_settings_e"] == "none"
    assert "seeds disagree (2 free and safe, 1 not safe)" in {r[2] for r in f.table().rows}   # the call, third


@pytest.mark.parametrize("acc, asr, call", [
    (0.985, 0.01, "free and safe"),      # a better model: the cost's interval [-1.2, +0.2] is within one point
    (0.978, 0.02, "within noise"),       # 4 images of 2,000 fewer: the interval [-0.7, +1.1] reaches past one point
    (0.95, 0.02, "not free"),
    (0.985, 0.3, "not safe"),
    (0.985, 0.09, "within noise")])      # ASR 0.09 on 1,800 images: the interval reaches past 0.1
def test_frontier_calls_carry_the_test_set_interval(acc, asr, call):
    none, p = _point("none", "undefended", 0.98, 0.95), _point("A", "1", acc, asr)
    assert p.call(none) == call
    c, lo, hi = p.cost(none)
    assert c == pytest.approx(0.98 - acc) and lo < c < hi


def test_model_test_ranks_poisoned_above_clean():
    from types import SimpleNamespace
    clean = [SimpleNamespace(scores={"s": v}) for v in (0.1, 0.2, 0.3)]
    poisoned = [SimpleNamespace(scores={"s": v}) for v in (0.25, 0.4, 0.5)]
    t = cx.model_test(clean, poisoned, "s")
    assert (t.auroc, t.n_neg, t.n_pos) == (pytest.approx(8 / 9), 3, 3) and t.p == pytest.approx(0.1)
    assert cx.model_cells(t)[1:3] == ["3 v 3", "0.1"] and cx.model_cells(t)[-1] == "not shown at this sample size"


def test_nearest_clean_distance_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [10.0, 10.0]])
    # nearest others: 1, sqrt(9+9) = 4.24 (1 to 2), 1, sqrt(49+36) = 9.22; torch's median is the lower middle value
    assert cx.nearest_clean_distance(x, n=2) == pytest.approx(1.0)
    assert cx.nearest_clean_distance(x[1:], n=3) == pytest.approx(math.sqrt(18))   # 4.24, 4.24, 9.22


def test_every_cpu_run_is_committed_with_its_kept_weights():
    g = cx.grid("cpu")
    assert not [r.name for r in g.runs if not cache.result_path(r.config).exists()]
    assert not [r.name for r in g.runs if r.keep_model and not cache.model_path(r.config).exists()]


def test_every_detection_and_the_surrogate_are_cached_for_the_committed_weights():
    for cfg in detected_runs():
        res = json.loads(derived.derived_path(cx.DETECTION, cfg.key()).read_text())
        assert res["version"] == cx.DETECTION_VERSION and res["key"] == cfg.key()
        assert res["inputs"]["weights_sha256"] == file_digest(cache.model_path(cfg))
        assert (res["values"]["samples"] is None) == (cfg.theta == 0) and set(res["values"]["class_scores"]) == set(cx.FEATURE_SCORES)
    first = cx.grid("cpu").group("adaptive")[0].config
    assert json.loads(derived.derived_path(cx.SURROGATE, first.key()).read_text())["version"] == cx.SURROGATE_VERSION


def two_runs():
    """A poisoned run near the amplitude boundary (this chapter) and a clean seed run of Chapter 6."""
    poisoned = next(r.config for r in cx.grid("cpu").group("amplitude")
                    if (r.config.amplitude, r.config.theta, r.config.seed) == (0.2, 0.01, 1))
    clean = next(r.config for r in cnn_mnist.grid("cpu").group("seeds") if r.config.theta == 0)
    return poisoned, clean


@pytest.fixture(scope="module")
def fresh():
    """The two runs' detections recomputed from their kept models' features (written nowhere)."""
    return [cx.detect_run(cfg, cached=False) for cfg in two_runs()]


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1], ids=["poisoned", "clean"])
def test_detection_recomputed_from_the_features_equals_the_cache(fresh, which):
    cfg, r = two_runs()[which], fresh[which]
    assert r == cx.detect_run(cfg), BUMP                         # the same floats as the committed file
    assert r.config == cfg and (r.samples is None) == (cfg.theta == 0) and set(r.scores) == set(cx.MODEL_SCORES)
    if r.samples is not None:
        assert set(r.samples) == set(DETECTORS) and 0 < r.eps < 1
        assert all(0 <= getattr(s, f) <= 1 for s in r.samples.values() for f in ("auroc", "tpr", "fpr"))


@pytest.mark.slow
def test_detect_run_reads_and_refreshes_the_derived_folder_of_its_results_dir(tmp_path):
    """With a results folder the driver takes lab runs and derived results from it (and writes nowhere else); a
    planted file is read as it is, and a file of another version is recomputed."""
    cfg = two_runs()[0]
    (tmp_path / "lab" / "models").mkdir(parents=True)
    shutil.copy(cache.result_path(cfg), tmp_path / "lab")
    shutil.copy(cache.model_path(cfg), tmp_path / "lab" / "models")
    committed = json.loads(derived.derived_path(cx.DETECTION, cfg.key()).read_text())
    path = derived.derived_path(cx.DETECTION, cfg.key(), tmp_path / "derived")
    path.parent.mkdir(parents=True)
    planted = json.loads(json.dumps(committed))
    planted["values"]["class_scores"]["spectral_gap"] = 123.0
    planted["values"]["samples"]["SPECTRE"]["auroc"] = 0.25
    path.write_text(json.dumps(planted))
    r = cx.detect_run(cfg, str(tmp_path))
    assert r.scores["spectral_gap"] == 123.0 and r.samples["SPECTRE"].auroc == 0.25      # read, not recomputed
    path.write_text(json.dumps({**planted, "version": cx.DETECTION_VERSION + 1}))
    assert cx.detect_run(cfg, str(tmp_path)) == cx.detect_run(cfg)                         # recomputed
    rewritten = json.loads(path.read_text())
    assert rewritten.pop("provenance")["git_commit"] and {k: v for k, v in committed.items() if k != "provenance"} == rewritten
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == [
        f"derived/{cx.DETECTION}/{cfg.key()}.json", f"lab/{cfg.key()}.json"]
    assert chapter_lab_dir(str(tmp_path)) == tmp_path / "lab"


@pytest.fixture(scope="module")
def boundary():
    with reading_only():
        return cx.cnn_boundary("cpu")


@pytest.mark.slow
def test_boundary_numbers_recomputed_from_the_files(boundary, fresh):
    b = boundary
    np.testing.assert_allclose(b.trigger_norm, 3 * b.a, rtol=1e-6)      # |cross| = 3, no clipping
    for i, a in enumerate(b.a):
        files = [runner.get(r.config) for r in cx.grid("cpu").group("amplitude") if r.config.amplitude == a]
        asr = sorted(f["epochs"][-1]["asr"] for f in files if f["config"]["theta"] > 0)
        assert sorted(b.asr()[i]) == asr
        score = [f["epochs"][-1]["trig_curv_u"] for f in files]
        truth = [f["config"]["theta"] > 0 for f in files]
        assert b.model_auroc("trig_curv_u")[i] == pytest.approx(roc_auc(np.array(score), np.array(truth)))
    # the recomputed run is the driver's, and its detectors' AUROC enters the mean over seeds
    cfg, run = two_runs()[0], fresh[0]
    i = list(b.a).index(cfg.amplitude)
    assert run in b.runs[i][1]
    for name in DETECTORS:
        others = [r.samples[name].auroc for r in b.runs[i][1] if r.config != cfg]
        assert b.auroc(name)[i].mean() == pytest.approx(np.mean(others + [run.samples[name].auroc]), rel=1e-12)
    s = b.summary()
    assert_glued(s)
    assert s["ch8_amp_succ"] in b.a and 0 <= s["ch8_amp_n_found_succ"] <= 4
    # at the attack's threshold a poison is nearer its source than a clean image is to its nearest neighbour
    assert 3 * s["ch8_amp_succ"] < b.nearest_clean and s["ch8_amp_norm_ratio_succ"] < 1
    assert len(b.table().rows) == len(b.a)


def test_cnn_detection_reads_the_cache(fresh):
    with reading_only():
        d = cx.cnn_detection("cpu")
    clean, _ = d.runs[two_runs()[1].attack]
    assert fresh[1] in clean and d.summary()["ch8_cnn_n_models"] > 0
    assert_glued(d.summary())


def test_frontier_from_the_committed_runs():
    f = cx.frontier("cpu")
    bases = {r.config.seed: runner.get(r.config) for r in cx.grid("cpu").group("frontier_base")}
    assert f.seeds == sorted(bases) and len(bases) >= 3
    for u in f.undefended:
        assert u.asr == bases[u.seed]["epochs"][-1]["asr"]
    for s, base in bases.items():
        early = [p for p in f.points if p.family == "early stopping" and p.seed == s]
        assert [p.asr for p in early] == [row["asr"] for row in base["epochs"][1:-1]]
    assert all(c.n == len(bases) for c in f.cells())          # every cell over every seed
    filters = {(p.setting, p.seed): p for p in f.points if p.family == "filter-then-retrain"}
    assert set(filters) == {(d, s) for d in DETECTOR_OF.values() for s in bases}
    for r in cx.grid("cpu").group("filter"):
        res = runner.get(r.config)
        p = filters[DETECTOR_OF[r.config.filter], r.config.seed]
        assert (p.tpr, p.fpr, p.asr) == (res["filter"]["tpr"], res["filter"]["fpr"], res["epochs"][-1]["asr"])
        base = bases[r.config.seed]
        assert res["poison"]["n_poison"] == round(len(base["poison"]["poison_idx"]) * (1 - p.tpr))
    s = f.summary()
    for name in DETECTOR_OF.values():
        asr = [filters[name, seed].asr for seed in bases]
        assert s[f"ch8_fr_filter_asr_max_{glue_key(name)}"] == max(asr)


@pytest.fixture
def one_surrogate(monkeypatch):
    """lab.adaptive.surrogate_hessian trained once per set of inputs: a second call on equal images, labels and seed
    returns the first one's Hessian (the greedy choice on it still runs)."""
    real, seen = lab_adaptive.surrogate_hessian, []

    def memo(x, y, seed):
        for xs, ys, s, H in seen:
            if s == seed and torch.equal(xs, x) and torch.equal(ys, y):
                return H
        seen.append((x, y, seed, real(x, y, seed)))
        return seen[-1][3]
    monkeypatch.setattr(lab_adaptive, "surrogate_hessian", memo)
    return seen


@pytest.mark.slow
def test_adaptive_from_the_cache_and_its_surrogate_recomputed(one_surrogate):
    with reading_only():
        adv = cx.adaptive("cpu")
    assert adv.surrogate_curv["lowcurv"] < adv.surrogate_curv["cross-deterministic"]
    assert_glued(adv.summary())
    assert adv.pattern.sum() == 9 and set(np.unique(adv.pattern)) == {0.0, 1.0}
    # the surrogate recomputed from scratch gives the cached pattern and t'Ht, to the bit
    first = cx.grid("cpu").group("adaptive")[0].config
    fresh = cx.surrogate_values(first)
    assert fresh == json.loads(derived.derived_path(cx.SURROGATE, first.key()).read_text())["values"], BUMP
    assert np.array_equal(cx.pattern_from_pixels(fresh["pixels"]), adv.pattern)
    assert fresh["curv"] == adv.surrogate_curv and len(one_surrogate) == 1
    # the pattern shown is the trigger the committed runs were poisoned with (rebuilt from a kept run: its poisoning
    # asks for the surrogate of the same images, which is the one just trained)
    run = runner.trained_run(next(r.config for r in cx.grid("cpu").group("adaptive") if r.config.theta == 0.05))
    assert len(one_surrogate) == 1
    assert np.array_equal(run.poisoned.direction.reshape(28, 28).numpy() > 0, adv.pattern > 0)
    assert set(adv.runs) == {"cross θ=1%", "lowcurv θ=1%", "lowcurv θ=2%", "lowcurv θ=5%"}
    clean, poisoned = adv.runs["lowcurv θ=5%"]
    assert [r.config.theta for r in poisoned] == [0.05] * 8 and [r.config.theta for r in clean] == [0.0] * 8
    r = poisoned[0]
    ref = next(c for c in clean if c.config.seed == r.config.seed)
    assert adv.curv_ratio("lowcurv θ=5%")[0] == pytest.approx(r.final["trig_curv_u"] / ref.final["trig_curv_u"])
    undefended = runner.get(replace(cx.grid("cpu").group("adaptive_defence")[0].config, kappa=0.0))
    assert adv.defence[0].asr == undefended["epochs"][-1]["asr"] and adv.defended == "lowcurv θ=5%"
    assert len(adv.defence) == 1 + len(cx.grid("cpu").group("adaptive_defence")) and len(adv.filters) == 4


def test_pattern_from_pixels():
    t = cx.pattern_from_pixels([0, 29, 783])
    assert t.shape == (28, 28) and t.dtype == np.float64 and t.sum() == 3 and t[0, 0] == t[1, 1] == t[27, 27] == 1
    assert math.isclose(cx.pattern_from_pixels([5], (2, 3))[1, 2], 1.0)
