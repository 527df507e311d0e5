"""Training engine: penalty gradient, closed-form spectra, backdoor learned and suppressed, resume, cache, CLI."""

import json

import pytest
import torch
from lab_files import synthetic, write_mnist
from torch import nn

from poisoncurv.curvature import input_fisher, input_hessian
from poisoncurv.lab import cache, runner
from poisoncurv.lab import config as config_mod
from poisoncurv.lab import train as train_mod
from poisoncurv.lab.__main__ import main as cli
from poisoncurv.lab.config import SCHEMA_VERSION, LabConfig, profile_config, validate
from poisoncurv.lab.data import ImageData
from poisoncurv.lab.spectra import SquaredLoss, linear_spectra, spectral_metrics
from poisoncurv.lab.train import augment, penalised_loss, train
from poisoncurv.models import MLP, LinearModel

VALIDATING_MODULES = (config_mod, runner, train_mod)    # every module that calls validate on the CLI path


def small_cfg(**kw) -> LabConfig:
    base = dict(n_train=None, n_test=None, n_eval=100, epochs=6, batch_size=50, attack="cross-deterministic", theta=0.1)
    return profile_config("smoke", **{**base, **kw})


def test_penalty_gradient_matches_finite_differences():
    torch.manual_seed(1)
    x, y = torch.rand(7, 1, 3, 3), torch.randint(0, 4, (7,))
    for model, loss_fn in ((MLP(9, (5,), 4), nn.CrossEntropyLoss()), (LinearModel(9, 4), SquaredLoss())):
        if isinstance(model, MLP):
            model.net[1] = nn.Softplus()  # smooth, so central differences converge
        params = list(model.parameters())

        def objective():
            loss, pen = penalised_loss(model, loss_fn, x, y, kappa=3.0)
            return loss + pen

        grads = torch.autograd.grad(objective(), params)
        eps = 1e-6
        for p, g in zip(params, grads):
            for i in range(p.numel()):
                with torch.no_grad():
                    p.view(-1)[i] += eps
                up = objective().item()
                with torch.no_grad():
                    p.view(-1)[i] -= 2 * eps
                down = objective().item()
                with torch.no_grad():
                    p.view(-1)[i] += eps
                assert abs((up - down) / (2 * eps) - g.view(-1)[i].item()) < 1e-7
    # closed form for the linear model under the squared loss: (κ/2) mean_b |Wᵀ r_b|²
    W, b = model.linear.weight, model.linear.bias
    r = x.flatten(1) @ W.T + b - nn.functional.one_hot(y, 4)
    _, pen = penalised_loss(model, loss_fn, x, y, kappa=3.0)
    assert torch.allclose(pen, 1.5 * (r @ W).pow(2).sum(1).mean(), rtol=1e-12)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), SquaredLoss()], ids=["ce", "squared"])
def test_linear_closed_form_spectra_match_the_curvature_core(loss_fn):
    torch.manual_seed(2)
    model = LinearModel(36, 5)
    x, y = torch.rand(40, 1, 6, 6), torch.randint(0, 5, (40,))
    H = input_hessian(model, loss_fn, x, y).dense()
    F = input_fisher(model, loss_fn, x, y, empirical=True).dense()
    s = linear_spectra(model.linear.weight.detach(), model.linear.bias.detach(), x.flatten(1), y,
                       "ce" if isinstance(loss_fn, nn.CrossEntropyLoss) else "squared", k=3)
    assert torch.allclose(s["hess_vals"], torch.linalg.eigvalsh(H).flip(0)[:3], rtol=1e-10, atol=1e-12)
    assert torch.allclose(s["fisher_vals"], torch.linalg.eigvalsh(F).flip(0)[:3], rtol=1e-10, atol=1e-12)
    v = s["hess_vecs"][:, 0]
    assert torch.allclose(H @ v, s["hess_vals"][0] * v, atol=1e-10)
    u = torch.randn(36)
    u = u / u.norm()
    m = spectral_metrics(model.eval(), loss_fn, x, y, u, k=3)
    assert m["curv_along_poison"] == pytest.approx(float(u @ H @ u), rel=1e-10)
    assert m["overlap"] == pytest.approx(float((v @ u) ** 2), rel=1e-10)


def test_augmentation_shifts_within_bounds():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 14, 14] = 1
    out = augment(x, "mnist", torch.Generator().manual_seed(0))
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 28 - 14, pos % 28 - 14
    assert out.sum() == 64 and rows.abs().max() <= 2 and cols.abs().max() <= 2 and rows.unique().numel() == 5
    img = torch.rand(32, 3, 32, 32)
    assert augment(img, "cifar10", torch.Generator().manual_seed(0)).shape == img.shape


def test_backdoor_is_learned_and_a_large_kappa_suppresses_it(tmp_path):
    data = synthetic()
    plain = train(small_cfg(), data=data, checkpoint_dir=tmp_path, progress=False)
    last = plain["epochs"][-1]
    assert last["asr"] > 0.9 and last["clean_acc"] > 0.9 and plain["poison"]["n_poison"] == 50
    assert last["visible"] and last["overlap"] > 0.5
    defended = train(small_cfg(kappa=10.0), data=data, checkpoint_dir=tmp_path, progress=False)["epochs"][-1]
    assert defended["asr"] < 0.3 and defended["asr"] - defended["clean_to_target"] < 0.3
    assert defended["curv_along_poison"] < 0.1 * last["curv_along_poison"] and not defended["visible"]


def test_resume_after_interruption_gives_the_same_results(tmp_path):
    data = synthetic(n_train=200, n_test=100)
    cfg = small_cfg(epochs=4, theta=0.05, kappa=1.0)
    whole = train(cfg, data=data, checkpoint_dir=tmp_path / "a", progress=False)
    assert train(cfg, data=data, checkpoint_dir=tmp_path / "b", progress=False, max_epochs=2) is None
    assert list((tmp_path / "b").glob("*.pt")), "no checkpoint after the interruption"
    resumed = train(cfg, data=data, checkpoint_dir=tmp_path / "b", progress=False)
    assert not list((tmp_path / "b").glob("*.pt"))
    for key in whole:
        if key != "provenance":
            assert resumed[key] == whole[key], key


def test_cache_loads_recomputes_and_reports_stale_files(tmp_path, monkeypatch):
    data = synthetic(n_train=100, n_test=50)
    cfg = small_cfg(epochs=1, n_eval=20)
    first = runner.get(cfg, tmp_path, data=data, checkpoint_dir=tmp_path / "ck")
    path = cache.result_path(cfg, tmp_path)
    assert json.loads(path.read_text())["data_source"] == "synthetic (tests)"

    def boom(*a, **k):
        raise AssertionError("trained although a results file exists")

    monkeypatch.setattr(runner, "train", boom)
    assert runner.get(cfg, tmp_path, data=data)["epochs"] == json.loads(json.dumps(first["epochs"]))
    with pytest.raises(AssertionError, match="trained"):
        runner.get(cfg, tmp_path, data=data, force=True)
    monkeypatch.setenv("FORCE", "1")
    with pytest.raises(AssertionError, match="trained"):
        runner.get(cfg, tmp_path, data=data)
    monkeypatch.delenv("FORCE")
    other = ImageData(**{**data.__dict__, "source": "JPEG copy (q75), not canonical"})
    with pytest.raises(cache.StaleResultError, match="JPEG"):
        runner.get(cfg, tmp_path, data=other)
    stale = {**json.loads(path.read_text()), "schema_version": SCHEMA_VERSION - 1}
    path.write_text(json.dumps(stale))
    with pytest.raises(cache.StaleResultError, match="schema"):
        runner.get(cfg, tmp_path, data=data)


@pytest.mark.parametrize("field,value", [("attack", "blend"), ("theta", 1.2), ("theta", -0.01), ("kappa", -1.0),
                                         ("model", "vit"), ("dataset", "svhn"), ("target", 10), ("epochs", 0)])
def test_bad_configuration_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        profile_config("smoke", **{field: value})


def test_absent_cuda_is_refused_before_work(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device"):
        validate(LabConfig(device="cuda"))
    assert cli(["--profile", "smoke", "--device", "cuda"]) == 2
    assert cli(["--profile", "smoke", "--attack", "blend"]) == 2
    assert cli(["--profile", "smoke", "--kappa", "-1"]) == 2
    err = capsys.readouterr().err
    assert "device" in err and "attack" in err and "kappa" in err


def test_nonlinear_model_uses_the_curvature_core(tmp_path):
    """An MLP run (augmentation on) takes the Lanczos route; its spectra match a direct dense eigensolve."""
    data = synthetic(n_train=100, n_test=40, side=8)
    cfg = small_cfg(model="mlp", epochs=1, n_eval=10, augment=True, attack="badnets", loss="ce")
    res = train(cfg, data=data, checkpoint_dir=tmp_path, progress=False)
    last = res["epochs"][-1]
    assert len(last["hess_top"]) == cfg.top_k and last["hess_top"] == sorted(last["hess_top"], reverse=True)
    assert 0 <= last["overlap"] <= 1 and last["fisher_top"] >= 0
    torch.manual_seed(3)
    model = MLP(16, (6,), 3).eval()
    x, y = torch.rand(5, 1, 4, 4), torch.randint(0, 3, (5,))
    u = torch.zeros(16)
    u[-1] = 1.0
    m = spectral_metrics(model, nn.CrossEntropyLoss(), x, y, u, k=2)
    H = input_hessian(model, nn.CrossEntropyLoss(), x, y).dense()
    assert m["hess_top"] == pytest.approx(torch.linalg.eigvalsh(H).flip(0)[:2].tolist(), rel=1e-5, abs=1e-10)
    assert m["curv_along_poison"] == pytest.approx(float(H[-1, -1]), rel=1e-9, abs=1e-12)


def test_cli_runs_a_configuration_and_caches_it(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data" / "mnist-download" / "MNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    args = ["--profile", "smoke", "--theta", "0.1", "--results-dir", str(tmp_path / "res"), "--set", "epochs=1", "--set", "n_train=60",
            "--set", "n_test=30", "--set", "n_eval=20", "--quiet"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "canonical download" in out and "  1.00 " in out and "hess_top" in out
    files = list((tmp_path / "res").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["config"]["epochs"] == 1
    assert cli(args) == 0 and capsys.readouterr().out == out  # second call: loaded from the cache
    assert cli(args + ["--model", "lenet", "--set", "measure=deep", "--set", "n_eval=8"]) == 0   # deep rows print too
    deep = capsys.readouterr().out.splitlines()
    assert deep[1].split() == ["epoch", "clean_acc", "asr", "clean_to_tgt", "trig_overlap", "trig_top", "clean_overlap"]
    assert deep[2].split()[0] == "0.00" and deep[-1].split()[0] == "1.00"  # from epoch 0 to the end of epoch 1


def test_cli_validates_a_configuration_once(tmp_path, monkeypatch, capsys):
    """``python -m poisoncurv.lab ...`` validates its configuration once (``profile_config``), not again in the cache or
    in training, whether the run trains or is read from the cache; a bad configuration is still refused with its message."""
    write_mnist(tmp_path / "data" / "mnist-download" / "MNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    calls = []

    def counted(cfg):
        calls.append(cfg.key())
        return validate(cfg)

    for module in VALIDATING_MODULES:
        monkeypatch.setattr(module, "validate", counted)
    args = ["--profile", "smoke", "--theta", "0.1", "--results-dir", str(tmp_path / "res"), "--set", "epochs=1", "--set", "n_train=60",
            "--set", "n_test=30", "--set", "n_eval=20", "--quiet"]
    assert cli(args) == 0 and len(calls) == 1                  # trained
    calls.clear()
    assert cli(args) == 0 and len(calls) == 1                  # read from the cache
    cfg = profile_config("smoke", theta=0.1, epochs=1, n_train=60, n_test=30, n_eval=20)
    calls.clear()
    runner.get(cfg, tmp_path / "res2")                          # the Python entry point validates once too
    assert len(calls) == 1
    capsys.readouterr()
    assert cli(["--profile", "smoke", "--kappa", "-1"]) == 2
    assert "kappa: penalty weight must be a finite number >= 0, got -1.0" in capsys.readouterr().err
