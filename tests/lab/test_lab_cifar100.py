"""CIFAR-100 in the lab: torchvision's ``cifar-100-python`` files, 100 classes, the Lanczos curvature route, missing data."""

import pytest
import torch
from lab_files import write_cifar
from torch import nn

from poisoncurv.lab import data, deep, sweep
from poisoncurv.lab.config import profile_config
from poisoncurv.lab.grid import load_grid
from poisoncurv.lab.train import train
from poisoncurv.models import PreActResNet


def test_lanczos_route_agrees_with_the_exact_route_above_ten_classes():
    torch.manual_seed(3)
    model = PreActResNet(8, 12).eval()           # 12 outputs > EXACT_MAX_CLASSES: curvature_at takes Lanczos
    x = torch.rand(6, 3, 8, 8)
    u = torch.randn(3 * 8 * 8)
    u = u / u.norm()
    assert model(x).shape[1] > deep.EXACT_MAX_CLASSES
    lanczos = deep.curvature_at(model, nn.CrossEntropyLoss(), x, u, 4)
    vals, vecs, curv_u, G = deep._exact_route(model, nn.CrossEntropyLoss(), x, u.double(), 4)
    assert lanczos["top"] == pytest.approx(vals.tolist(), rel=1e-8, abs=1e-14)
    assert lanczos["curv_u"] == pytest.approx(float(curv_u), rel=1e-10)
    assert lanczos["fisher_top"] == pytest.approx(float(torch.linalg.eigvalsh(G @ G.T / len(G))[-1]), rel=1e-10)
    proj = (vecs.T @ u) ** 2
    assert lanczos["overlap"] == pytest.approx(float(proj[0]), rel=1e-6, abs=1e-12)
    assert lanczos["mass"] == pytest.approx(float(proj.sum()), rel=1e-6, abs=1e-12)


@pytest.mark.slow
def test_cifar100_smoke_run_with_target_class_attack_and_deep_measures(tmp_path):
    write_cifar(tmp_path, "cifar100", per_file=200, cyclic=True)   # every class twice per split
    d = data.load("cifar100", root=tmp_path, shared=tmp_path / "none", download=False, verify=False)
    assert d.num_classes == 100 and int(d.y_train.max()) == 99 and d.x_train.shape == (200, 3, 32, 32)
    cfg = profile_config("smoke", dataset="cifar100", model="preresnet8", n_train=None, n_test=None, n_eval=8, epochs=1,
                         batch_size=50, attack="cross-stochastic", theta=0.05, target=57, measure="deep")
    res = train(cfg, data=d, checkpoint_dir=tmp_path / "ck", progress=False)
    assert res["poison"]["target"] == 57 and res["poison"]["n_poison"] == 10
    assert all(d.y_train[i] != 57 for i in res["poison"]["poison_idx"])   # dirty label: poisons come from other classes
    assert res["poison"]["n_trigger_test"] == 198                        # the non-target test images
    last = res["epochs"][-1]
    assert 0 <= last["asr"] <= 1 and 0 <= last["robust_acc"] <= 1 and len(last["trig_top"]) == cfg.top_k
    assert last["trig_top"] == sorted(last["trig_top"], reverse=True) and 0 <= last["trig_overlap"] <= last["trig_mass"] <= 1 + 1e-9
    assert res["final"]["ntk_poison"] is not None


def test_missing_cifar100_stops_a_sweep_with_one_message_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "shared"))

    def offline(name, cache):   # no internet here: torchvision's download fails
        raise data.DataNotFoundError(data._missing_message(name, cache, data.shared_root()) + " (download failed: offline)")

    monkeypatch.setattr(data, "_download", offline)
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("base: {dataset: cifar100, model: preresnet8, device: cpu}\n"
                         "profiles: {smoke: {groups: {a: {axes: {theta: [0.0, 0.05]}}}}}\n")
    grid = load_grid(grid_file, "smoke")
    with pytest.raises(data.DataNotFoundError) as err:
        sweep.sweep(grid, "debug", results_dir=tmp_path / "res", log_dir=tmp_path / "logs")
    msg = str(err.value)
    assert "cifar-100-python/{train, test, meta}" in msg and str(tmp_path / "cache" / "cifar100-download") in msg
    assert "python -m poisoncurv.lab.data cifar100" in msg and "cifar-100-python.tar.gz" in msg
    assert not (tmp_path / "logs").exists() and not (tmp_path / "res").exists()   # nothing was submitted
    assert sweep.main([str(grid_file), "--profile", "smoke", "--executor", "debug", "--results-dir", str(tmp_path / "res"),
                       "--log-dir", str(tmp_path / "logs")]) == 2
    assert capsys.readouterr().err.count("not found") == 1
