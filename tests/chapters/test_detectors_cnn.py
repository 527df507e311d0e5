"""Chapter 8's CNN drivers: the frontier's selection rules on hand-made points, the nearest-neighbour scale, and the
drivers on the committed cpu-profile runs of grids/ch08.yaml (loaded from results/lab, nothing is trained)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from poisoncurv.chapters import detectors_cnn as cx
from poisoncurv.detect.metrics import roc_auc
from poisoncurv.lab import cache
from poisoncurv.lab.filtering import DETECTOR_OF


def test_frontier_rules_on_hand_made_points():
    none = cx.FrontierPoint("none", "undefended", 0.98, 0.95)
    pts = (cx.FrontierPoint("A", "1", 0.975, 0.5), cx.FrontierPoint("A", "2", 0.90, 0.05), cx.FrontierPoint("A", "3", 0.95, 0.08),
           cx.FrontierPoint("B", "1", 0.979, 0.02), cx.FrontierPoint("C", "1", 0.5, 0.6))
    f = cx.Frontier("x", none, pts)
    assert f.best_free("A").setting == "1" and f.cheapest_safe("A").setting == "3"
    assert f.best_free("C") is None and f.cheapest_safe("C") is None
    s = f.summary("t")
    assert s["ch8_t_n_free_safe"] == 1 and s["ch8_t_n_families"] == 3            # only B is safe within 1 point
    assert s["ch8_t_free_asr_b"] == 0.02 and "ch8_t_safe_acc_c" not in s and s["ch8_t_safe_acc_a"] == 0.95


def test_nearest_clean_distance_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [10.0, 10.0]])
    # nearest others: 1, sqrt(9+9) = 4.24 (1 to 2), 1, sqrt(49+36) = 9.22; torch's median is the lower middle value
    assert cx.nearest_clean_distance(x, n=2) == pytest.approx(1.0)
    assert cx.nearest_clean_distance(x[1:], n=3) == pytest.approx(math.sqrt(18))   # 4.24, 4.24, 9.22


def test_every_cpu_run_is_committed_with_its_kept_weights():
    g = cx.grid("cpu")
    assert not [r.name for r in g.runs if not cache.result_path(r.config).exists()]
    assert not [r.name for r in g.runs if r.keep_model and not cache.model_path(r.config).exists()]


@pytest.fixture(scope="module")
def boundary():
    torch.set_num_threads(1)
    return cx.cnn_boundary("cpu")


def test_boundary_numbers_recomputed_from_the_files(boundary):
    b = boundary
    np.testing.assert_allclose(b.trigger_norm, 3 * b.a, rtol=1e-6)      # |cross| = 3, no clipping
    for i, a in enumerate(b.a):
        files = [cache.get(r.config) for r in cx.grid("cpu").group("amplitude") if r.config.amplitude == a]
        asr = sorted(f["epochs"][-1]["asr"] for f in files if f["config"]["theta"] > 0)
        assert sorted(b.asr()[i]) == asr
        score = [f["epochs"][-1]["trig_curv_u"] for f in files]
        truth = [f["config"]["theta"] > 0 for f in files]
        assert b.model_auroc("trig_curv_u")[i] == pytest.approx(roc_auc(np.array(score), np.array(truth)))
    s = b.summary()
    assert s["ch8_amp_succ"] in b.a and 0 <= s["ch8_amp_n_found_succ"] <= 4
    # at the attack's threshold a poison is nearer its source than a clean image is to its nearest neighbour
    assert 3 * s["ch8_amp_succ"] < b.nearest_clean and s["ch8_amp_norm_ratio_succ"] < 1
    assert len(b.table().rows) == len(b.a)


def test_frontier_from_the_committed_runs():
    f = cx.frontier("cpu")
    base = cache.get(cx.grid("cpu").group("frontier_base")[0].config)
    assert f.undefended.asr == base["epochs"][-1]["asr"]
    early = [p for p in f.points if p.family == "early stopping"]
    assert [p.asr for p in early] == [row["asr"] for row in base["epochs"][1:-1]]
    filters = [p for p in f.points if p.family == "filter-then-retrain"]
    assert sorted(p.setting for p in filters) == sorted(DETECTOR_OF.values())
    for r in cx.grid("cpu").group("filter"):
        res = cache.get(r.config)
        p = next(p for p in filters if p.setting == DETECTOR_OF[r.config.filter])
        assert (p.tpr, p.fpr, p.asr) == (res["filter"]["tpr"], res["filter"]["fpr"], res["epochs"][-1]["asr"])
        assert res["poison"]["n_poison"] == round(len(base["poison"]["poison_idx"]) * (1 - p.tpr))


def test_adaptive_trigger_is_flatter_on_its_surrogate_and_ratios_by_hand():
    torch.set_num_threads(1)
    adv = cx.adaptive("cpu")
    assert adv.surrogate_curv["lowcurv"] < adv.surrogate_curv["cross-deterministic"]
    assert adv.pattern.sum() == 9 and set(np.unique(adv.pattern)) == {0.0, 1.0}
    # the pattern shown is the trigger the committed runs were poisoned with (rebuilt from a kept run)
    run = cache.trained_run(next(r.config for r in cx.grid("cpu").group("adaptive") if r.config.theta == 0.05))
    assert np.array_equal(run.poisoned.direction.reshape(28, 28).numpy() > 0, adv.pattern > 0)
    assert set(adv.runs) == {"cross θ=1%", "lowcurv θ=1%", "lowcurv θ=2%", "lowcurv θ=5%"}
    clean, poisoned = adv.runs["lowcurv θ=5%"]
    assert [r.config.theta for r in poisoned] == [0.05] * 3 and [r.config.theta for r in clean] == [0.0] * 3
    r = poisoned[0]
    ref = next(c for c in clean if c.config.seed == r.config.seed)
    assert adv.curv_ratio("lowcurv θ=5%")[0] == pytest.approx(r.final["trig_curv_u"] / ref.final["trig_curv_u"])
    undefended = cache.get(replace(cx.grid("cpu").group("adaptive_defence")[0].config, kappa=0.0))
    assert adv.defence[0].asr == undefended["epochs"][-1]["asr"] and adv.defended == "lowcurv θ=5%"
    assert len(adv.defence) == 1 + len(cx.grid("cpu").group("adaptive_defence")) and len(adv.filters) == 4
