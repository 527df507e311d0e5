"""Chapter 6 drivers on the committed cpu-profile lab runs (loaded from results/lab, nothing is trained):
the chapter's numbers recomputed independently from the run files, and from the kept final weights."""

import pytest
import torch
from torch import nn

from poisoncurv.chapters import cnn_mnist as ex
from poisoncurv.chapters import deep_runs as dr
from poisoncurv.lab import cache, deep
from poisoncurv.lab.data import locate


@pytest.fixture(scope="module")
def runs():
    return ex.load_runs("cpu")


def test_every_run_is_committed_with_its_kept_weights():
    grid = ex.grid("cpu")
    missing = [r.name for r in grid.runs if not cache.result_path(r.config).exists()]
    assert not missing, f"uncommitted cpu runs: {missing}"
    unkept = [r.name for r in grid.runs if r.keep_model and not cache.model_path(r.config).exists()]
    assert not unkept
    assert sum(r.keep_model for r in grid.runs) == 4 * 3 * 2        # 4 attacks x 3 seeds x (clean, poisoned)


def test_success_times_recomputed_by_hand(runs):
    lag = ex.lag(runs)
    for res in runs.groups(ex.SEED_GROUPS):
        if res["config"]["theta"] == 0:
            continue
        asr = [row["asr"] for row in res["epochs"]]
        t = None
        for i in range(len(asr)):          # the first index from which ASR stays >= 1/2
            if all(a >= dr.ASR_SUCCESS for a in asr[i:]):
                t = res["epochs"][i]["epoch"]
                break
        cell = lag.cell(res["config"]["attack"], "overlap", "trig")
        assert t in [r.t_success for r in cell if r.seed == res["config"]["seed"]]


def test_every_attack_has_three_seeds_at_one_theta(runs):
    s = ex.lag(runs).summary()
    for attack in ex.setting("cpu", "x").attacks:
        assert s[f"ch6_lag_{dr.slug(attack)}_n_seeds"] == 3


def test_theta_table_is_the_final_rows(runs):
    rows = ex.thetas(runs).rows
    files = runs.groups(ex.THETA_GROUPS)
    assert len(rows) == len(files)
    for row, res in zip(rows, files):
        assert row["asr"] == res["epochs"][-1]["asr"] and row["theta"] == res["config"]["theta"]


def test_measurements_are_consistent(runs):
    c = ex.consistency(runs)
    assert c.premise_gap_q99 < 1e-9 and c.premise_gap_max < 1e-6   # float64 premise of the exact route (measured 2.5e-10, 2.3e-8)
    assert c.mass_minus_overlap_min >= -1e-12
    assert c.mass_max <= 1 + 1e-9
    assert c.rayleigh_excess_max <= 1e-9


def test_defence_counts_follow_the_definition(runs):
    d = ex.defences(runs)
    for p in d.points:
        ok = p.asr <= 0.1 and p.clean_acc >= d.clean_acc[p.attack] - 0.02
        assert d.counts(p) == ok
    assert d.batch_size == 100 and d.kappa_paper(1.0) == 1e4


@pytest.mark.skipif(locate("mnist") is None, reason="needs a copy of MNIST to rebuild the poisoned data")
def test_kept_weights_reproduce_the_committed_final_measurements():
    run = next(r for r in ex.grid("cpu").group("seeds", attack="badnets", seed=1) if r.config.theta > 0)
    res = cache.get(run.config)
    tr = cache.trained_run(run.config)
    torch.set_num_threads(1)
    again = deep.measure_deep(tr.model, nn.CrossEntropyLoss(), tr.probe, run.config.top_k)
    last = res["epochs"][-1]
    for key in ("trig_overlap", "trig_mass", "trig_curv_u", "clean_curv_u", "feat_trig_to_poison", "feat_trig_to_target"):
        assert again[key] == pytest.approx(last[key], rel=1e-5, abs=1e-10), key
    with torch.no_grad():
        asr = (tr.model(tr.poisoned.x_trigger).argmax(1) == run.config.target).double().mean().item()
    assert asr == pytest.approx(last["asr"], abs=1e-12)
