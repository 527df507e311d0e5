"""Chapter 6 drivers on the committed cpu-profile lab runs (loaded from results/lab, nothing is trained):
the chapter's numbers recomputed independently from the run files, and from the kept final weights."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from poisoncurv.chapters import cnn_mnist as ex
from poisoncurv.chapters import deep_runs as dr
from poisoncurv.lab import cache, deep, runner
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
    assert sum(r.keep_model for r in grid.runs) == 4 * 8 * 2        # 4 attacks x 8 seeds x (clean, poisoned)


def test_success_times_recomputed_by_hand(runs):
    """Success: ASR net of the untriggered rate at least 1/2, accuracy at least 0.2 and under half the untriggered
    inputs sent to the target, at every evaluation from the success time on (written out here independently)."""
    lag = ex.lag(runs)
    for res in runs.groups(ex.SEED_GROUPS):
        if res["config"]["theta"] == 0:
            continue
        ok = [r["asr"] - r["clean_to_target"] >= 0.5 and r["clean_acc"] >= 0.2 and r["clean_to_target"] < 0.5
              for r in res["epochs"]]
        t = next((res["epochs"][i]["epoch"] for i in range(len(ok)) if all(ok[i:])), None)
        cell = lag.cell(res["config"]["attack"], "overlap", "trig")
        assert [r.t_success for r in cell if r.seed == res["config"]["seed"]] == [t]


def test_every_attack_has_eight_seeds_at_one_theta(runs):
    s = ex.lag(runs).summary()
    for attack in ex.setting("cpu", "x").attacks:
        assert s[f"ch6_lag_{dr.slug(attack)}_n_seeds"] == 8


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
    """Each defended model against the clean model of its own seed (found here by its configuration)."""
    d = ex.defences(runs)
    for c in d.cells:
        for p in c.points:
            assert p.counts == (p.asr <= 0.1 and p.clean_acc >= p.clean_model_acc - 0.02)
    for res in runs.groups(("defence_seeds",)):
        ref = runs.of(ex.grid("cpu").group("defence_seeds_clean", seed=res["config"]["seed"])[0].config)
        p = next(p for c in d.grid("cross-stochastic") for p in c.points
                 if (c.setting, c.augment, p.seed) == (res["config"]["kappa"], res["config"]["augment"], res["config"]["seed"]))
        assert p.clean_model_acc == ref["epochs"][-1]["clean_acc"]
    assert d.batch_size == 100 and d.kappa_paper(1.0) == 1e4
    assert all(c.n >= 3 for a in d.attacks for c in d.grid(a) if c.setting in (0.0, 1.0, 10.0))


def test_hardware_table_compares_the_retrained_runs(runs):
    hw = ex.hardware(runs)
    assert len(hw.rows) == 3 and hw.n_seeds == 8
    for r in hw.rows:
        assert "EPYC" in r.cpu_committed and "Xeon" in r.cpu_retrained
        assert r.committed["asr"] == runs.results[r.key]["epochs"][-1]["asr"]
        again = json.loads((ex.HARDWARE_DIR / f"{r.key}.json").read_text())
        assert r.retrained["clean_acc"] == again["epochs"][-1]["clean_acc"] and again["key"] == runs.results[r.key]["key"] == r.key
        sd = np.std([res["epochs"][-1]["clean_acc"] for res in runs.groups(ex.SEED_GROUPS, attack=r.attack, theta=0.01)], ddof=1)
        assert r.in_seed_sd["clean_acc"] == pytest.approx((r.retrained["clean_acc"] - r.committed["clean_acc"]) / sd)


@pytest.mark.skipif(locate("mnist") is None, reason="needs a copy of MNIST to rebuild the poisoned data")
def test_kept_weights_reproduce_the_committed_final_measurements():
    run = next(r for r in ex.grid("cpu").group("seeds", attack="badnets", seed=1) if r.config.theta > 0)
    res = runner.get(run.config)
    tr = runner.trained_run(run.config)
    torch.set_num_threads(1)
    again = deep.measure_deep(tr.model, nn.CrossEntropyLoss(), tr.probe, run.config.top_k)
    last = res["epochs"][-1]
    for key in ("trig_overlap", "trig_mass", "trig_curv_u", "clean_curv_u", "feat_trig_to_poison", "feat_trig_to_target"):
        assert again[key] == pytest.approx(last[key], rel=1e-5, abs=1e-10), key
    with torch.no_grad():
        asr = (tr.model(tr.poisoned.x_trigger).argmax(1) == run.config.target).double().mean().item()
    assert asr == pytest.approx(last["asr"], abs=1e-12)
