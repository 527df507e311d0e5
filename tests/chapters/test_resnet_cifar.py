"""Chapter 7 drivers on the smoke profile (trained into a temporary folder) and on hand-made results: the numbers
recomputed independently, the CIFAR-100 preflight, the per-data-set split and the marker ordering."""

from dataclasses import asdict
from itertools import combinations

import pytest
import torch

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.chapters import resnet_cifar as ex
from poisoncurv.lab import data
from poisoncurv.lab.cache import result_path
from poisoncurv.lab.data import locate
from poisoncurv.lab.grid import load_grid

needs_cifar = pytest.mark.skipif(locate("cifar10") is None, reason="needs the CIFAR-10 copy")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    torch.set_num_threads(1)
    return ex.load_runs("smoke", results_dir=str(tmp_path_factory.mktemp("ch7")))


def test_profiles_datasets_and_setting():
    assert ex.datasets("cpu") == ex.datasets("gpu") == ("cifar10",) and ex.datasets("full") == ("cifar10", "cifar100")
    s = ex.setting("cpu", "x")
    assert (s.model, s.n_train, s.n_test, s.epochs, s.batch_size, s.precision) == ("convnet40", None, 5000, 12, 512, "bf16")
    assert s.thetas == (("warp", 0.1), ("cross-stochastic", 0.05), ("badnets", 0.05)) and s.n_seeds == 3
    assert s.n_params == 229270 and s.aug_epochs == 16
    assert (s.def_n_train, s.def_epochs, s.def_batch_size, s.def_n_seeds) == (10000, 8, 256, 3)
    assert s.kappas == (0.0, 0.03, 0.1, 0.3) and s.weight_decays == (0.002, 0.005) and not s.has_cifar100
    out = s.summary()
    assert out["ch7_model"] == "ConvNet-40" and out["ch7_kappas_paper"] == "0, 1.97·10³, 6.55·10³, 1.97·10⁴"
    assert "no CIFAR-100 results" in out["ch7_cifar100_note"]
    g = ex.setting("gpu", "x")
    assert g.model == "convnet64" and g.n_seeds == 5 and g.def_n_seeds == 5
    # the paper's grid κ_paper ∈ {0, 1e2, ..., 1e6} through κ_lab = κ_paper / B²
    assert [round(k * g.def_batch_size ** 2, 6) for k in g.kappas] == [0, 1e2, 1e3, 1e4, 1e5, 1e6]
    f = ex.setting("full", "x")
    assert f.model == "preresnet110" and f.epochs == 450 and f.has_cifar100


def test_by_dataset_splits_every_group():
    g = ex.grid("full")
    parts = {d: ex.by_dataset(g, d) for d in ex.DATASETS}
    assert sum(len(p.runs) for p in parts.values()) == len(g.runs)
    assert all({r.config.dataset for r in p.runs} == {d} for d, p in parts.items())
    assert set(parts["cifar100"].groups) == {"attacks", "defence", "defence_det", "defence_warp"}


def test_missing_cifar100_stops_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "_download", lambda name, cache: (_ for _ in ()).throw(
        data.DataNotFoundError(data._missing_message(name, cache, data.shared_root()))))
    g = ex.by_dataset(ex.grid("full"), "cifar100")
    with pytest.raises(data.DataNotFoundError, match=r"cifar-100-python/\{train, test, meta\}.*python -m poisoncurv.lab.data cifar100"):
        ex.preflight(g, tmp_path / "lab")
    assert not (tmp_path / "lab").exists()


@needs_cifar
@pytest.mark.slow
def test_smoke_success_times_and_final_rows_by_hand(smoke):
    runs = smoke["cifar10"]
    lag = ex.lag(runs)
    for attack in ("cross-stochastic", "badnets"):
        expect = []
        for res in runs.group("attacks", attack=attack):
            if res["config"]["theta"] == 0:
                continue
            ok = [r["asr"] - r["clean_to_target"] >= 0.5 and r["clean_acc"] >= 0.2 and r["clean_to_target"] < 0.5
                  for r in res["epochs"]]
            expect.append(next((res["epochs"][i]["epoch"] for i in range(len(ok)) if all(ok[i:])), None))
        assert [r.t_success for r in lag.cell(attack, "overlap", "trig")] == expect and len(expect) == 2
    fit = ex.fits(runs)
    for row, res in zip(fit.rows, runs.group("attacks") + runs.group("clean_aug")):
        n = res["config"]["n_test"]
        k = round(res["epochs"][-1]["clean_acc"] * n)
        assert (row.test_acc, row.n_test, row.train_acc_clean) == (k / n, n, res["train_fit"]["acc_clean"])
        assert row.test_lo < k / n < row.test_hi or k in (0, n)
        assert (row.train_acc_poison is None) == (res["config"]["theta"] == 0)
    clean = fit.clean(False)
    assert sorted(r.seed for r in clean) == [0, 1] and all(r.theta == 0 and not r.augment for r in clean)
    out = fit.summary()
    assert out["ch7_clean_acc_min"] == min(r.test_acc for r in clean)
    n_meet = sum(r.test_acc >= 0.82 for r in clean)
    assert out["ch7_clean_n_meet_target"] == n_meet and out["ch7_clean_meets_target"] == ("yes" if n_meet == 2 else "no")
    assert out["ch7_clean_aug_n_seeds"] == 1


@needs_cifar
@pytest.mark.slow
def test_smoke_measurements_consistent_and_defence_counts(smoke):
    c = ex.consistency(smoke)
    assert c.premise_gap_max < 1e-10 and c.mass_minus_overlap_min >= -1e-12 and c.mass_max <= 1 + 1e-9
    assert c.rayleigh_excess_max <= 1e-9
    d = ex.defences(smoke["cifar10"])
    clean = next(r for r in smoke["cifar10"].group("attacks", attack="cross-stochastic") if r["config"]["theta"] == 0)
    assert d.clean_acc("cross-stochastic") == clean["epochs"][-1]["clean_acc"]   # the attacks' clean reference
    for c in d.cells:
        for p in c.points:
            assert p.counts == (p.asr <= 0.1 and p.clean_acc >= d.clean_acc(p.attack) - 0.02)
    assert d.batch_size == 64 and d.kappa_paper(1.0) == 4096
    assert len(ex.provenance(smoke).runs_table.rows) == len(ex.grid("smoke").runs)


def _kendall(x, y):
    pairs = list(combinations(range(len(x)), 2))
    s = sum((x[i] - x[j]) * (y[i] - y[j]) > 0 for i, j in pairs) - sum((x[i] - x[j]) * (y[i] - y[j]) < 0 for i, j in pairs)
    return s / len(pairs)


def test_marker_order_against_kendall_by_hand(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("base: {dataset: cifar10, model: preresnet8, measure: deep, device: cpu}\nprofiles: {smoke: {groups: {\n"
                    "  defence: {base: {attack: cross-stochastic, theta: 0.05},\n"
                    "            axes: {kappa: [0.0, 0.1, 1.0, 10.0], augment: [false, true]}},\n"
                    "  defence_det: {base: {attack: cross-deterministic, theta: 0.05}, axes: {kappa: [0.0, 1.0], augment: [false]}}}}}\n")
    g = load_grid(path, "smoke")
    marks = {"trig_overlap": [0.9, 0.5, 0.2, 0.1], "trig_mass": [0.3, 0.9, 0.1, 0.6], "trig_curv_u": [1.0, 2.0, 3.0, 4.0]}
    results = {}
    for runs in g.groups.values():
        for r in runs:
            j = sorted({x.config.kappa for x in runs}).index(r.config.kappa)
            results[r.config.key()] = {"config": asdict(r.config), "epochs": [{m: v[j] for m, v in marks.items()}]}
    order = ex.marker_order(dr.ChapterRuns(g, results))
    kappas = [0.0, 0.1, 1.0, 10.0]
    for attack, _, m, tau in order.rows:
        if attack == "cross-deterministic":
            assert tau is None                    # two cells: no ordering to speak of
        else:
            assert tau == pytest.approx(_kendall(kappas, marks[m]), abs=1e-12)
    assert {tau for a, _, m, tau in order.rows if a == "cross-stochastic" and m == "trig_overlap"} == {-1.0}
    expect = (1 + 0 + 1) / 3   # |τ| of the three markers (mass: 3 concordant, 3 discordant pairs), with and without augmentation
    assert order.summary()["ch7_order_cross_stochastic_mean_abs_tau"] == pytest.approx(expect)


@needs_cifar
def test_gallery_directions_are_unit_and_the_cross_is_exact():
    from poisoncurv.chapters.gallery import gallery
    from poisoncurv.lab.attacks import cross_pattern

    g = gallery(ex.cifar("cifar10"), ("cross-stochastic", "warp", "badnets"), 0.02, n_sources=50)
    assert g.triggered["warp"].shape == (32, 32, 3) and g.direction["badnets"].shape == (32, 32)
    t = cross_pattern((3, 32, 32))
    assert g.direction["cross-stochastic"] == pytest.approx((t / t.norm()).mean(0).numpy(), abs=1e-7)


def test_no_result_file_written_by_the_driver_outside_its_folder(tmp_path):
    cfg = ex.grid("smoke").runs[0].config
    assert result_path(cfg, tmp_path / "lab").parent == tmp_path / "lab"
