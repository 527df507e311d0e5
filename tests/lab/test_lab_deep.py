"""The deep measurements (poisoncurv.lab.deep) against dense torch.func oracles and hand computations."""

import hashlib
import json
from dataclasses import asdict

import pytest
import torch
from torch import nn

from poisoncurv.curvature.reference import per_example_input_hessians
from poisoncurv.lab import deep
from poisoncurv.lab.config import LabConfig, config_from_fields
from poisoncurv.models import MLP, LeNet


class TinyCNN(nn.Module):
    """A small ReLU CNN on 1×6×6 inputs with an ``embed`` (max-pooling and eval-mode batch norm included)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(27, 8), nn.ReLU())
        self.head = nn.Linear(8, 4)
        self.body[1].running_mean.uniform_(-0.1, 0.1)
        self.body[1].running_var.uniform_(0.5, 2.0)

    def embed(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.embed(x))


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _dense_mean_hessian(model, x):
    y = model(x).argmax(1)
    return per_example_input_hessians(model, nn.CrossEntropyLoss(), x, y).mean(0)


def test_curvature_at_matches_dense_hessian():
    model = TinyCNN().eval()
    x = torch.randn(7, 1, 6, 6)
    u = torch.randn(36)
    u /= u.norm()
    got = deep.curvature_at(model, nn.CrossEntropyLoss(), x, u, k=3)
    H = _dense_mean_hessian(model, x)
    vals, vecs = torch.linalg.eigh(H)
    vals, vecs = vals.flip(0)[:3], vecs.flip(1)[:, :3]
    assert torch.allclose(torch.tensor(got["top"]), vals, rtol=1e-9, atol=1e-12)
    proj = (vecs.T @ u) ** 2
    assert got["overlap"] == pytest.approx(float(proj[0]), rel=1e-7, abs=1e-12)
    assert got["mass"] == pytest.approx(float(proj.sum()), rel=1e-7, abs=1e-12)
    assert got["curv_u"] == pytest.approx(float(u @ H @ u), rel=1e-9)
    assert got["overlap"] <= got["mass"] <= 1 + 1e-12


def test_curvature_at_lanczos_branch_agrees(monkeypatch):
    model = TinyCNN().eval()
    x = torch.randn(6, 1, 6, 6)
    u = torch.randn(36)
    u /= u.norm()
    dense = deep.curvature_at(model, nn.CrossEntropyLoss(), x, u, k=2)
    monkeypatch.setattr(deep, "DENSE_MAX", 10)       # force the Lanczos route on the factors
    lanczos = deep.curvature_at(model, nn.CrossEntropyLoss(), x, u, k=2)
    assert lanczos["top"] == pytest.approx(dense["top"], rel=1e-6)
    assert lanczos["overlap"] == pytest.approx(dense["overlap"], rel=1e-4, abs=1e-8)


def test_fisher_top_is_the_empirical_fisher_at_predicted_labels():
    model = TinyCNN().eval()
    x = torch.randn(5, 1, 6, 6).requires_grad_(True)
    out = model(x)
    y = out.argmax(1)
    g = torch.autograd.grad(nn.functional.cross_entropy(out, y, reduction="sum"), x)[0].flatten(1)
    F = g.T @ g / len(g)
    got = deep.curvature_at(model, nn.CrossEntropyLoss(), x.detach(), torch.eye(36)[0], k=1)["fisher_top"]
    assert got == pytest.approx(float(torch.linalg.eigvalsh(F)[-1]), rel=1e-9)


def test_premise_gap64_separates_relu_from_smooth_networks():
    relu = TinyCNN().eval()
    x = torch.randn(4, 1, 6, 6).float()
    assert deep.premise_gap64(relu.float(), nn.CrossEntropyLoss(), x) < 1e-10
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Tanh(), nn.Linear(8, 4)).eval()
    assert deep.premise_gap64(smooth, nn.CrossEntropyLoss(), torch.randn(4, 36)) > 1e-3


def test_collapse_ratio_closed_form():
    # two classes at ±m with within-class offsets ±s in an orthogonal coordinate:
    # between = n·m² per class, within = n·s² per class -> ratio m²/s²
    m, s = 3.0, 0.5
    phi = torch.tensor([[m, s], [m, -s], [-m, s], [-m, -s]])
    labels = torch.tensor([0, 0, 1, 1])
    assert deep._collapse_ratio(phi, labels) == pytest.approx(m**2 / s**2)
    assert deep._collapse_ratio(phi, torch.tensor([0, 1, 0, 1])) == pytest.approx(s**2 / m**2)
    assert deep._collapse_ratio(phi, torch.zeros(4, dtype=torch.long)) is None


class FlatEmbed(nn.Module):
    """``embed`` = the flattened input: feature distances are input distances."""

    def __init__(self, d):
        super().__init__()
        self.head = nn.Linear(d, 3)

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.head(self.embed(x))


def test_feature_geometry_by_hand():
    gen = torch.Generator().manual_seed(1)
    xc = torch.randn(12, 1, 2, 2, generator=gen)
    yc = torch.arange(12) % 3
    xt, yt = torch.randn(5, 1, 2, 2, generator=gen), torch.tensor([0, 2, 0, 2, 0])
    xp, yp = torch.randn(4, 1, 2, 2, generator=gen), torch.tensor([0, 2, 0, 2])
    xtar = torch.randn(6, 1, 2, 2, generator=gen)
    probe = deep.Probe(xc, yc, xt, yt, xp, yp, xtar, xtar, torch.ones(4) / 2, 1)
    got = deep.feature_geometry(FlatEmbed(4), probe)
    f = lambda x: x.flatten(1)  # noqa: E731
    mus = torch.stack([f(xc)[yc == c].mean(0) for c in range(3)])
    sw = (f(xc) - mus[yc]).pow(2).sum(1).mean().sqrt()
    assert got["feat_sigma_w"] == pytest.approx(float(sw))
    assert got["feat_trig_to_poison"] == pytest.approx(float((f(xt) - f(xp).mean(0)).norm(dim=1).mean() / sw))
    assert got["feat_trig_to_target"] == pytest.approx(float((f(xt) - f(xtar).mean(0)).norm(dim=1).mean() / sw))
    assert got["feat_trig_to_source"] == pytest.approx(float((f(xt) - mus[yt]).norm(dim=1).mean() / sw))
    assert got["feat_collapse_poison"] == pytest.approx(deep._collapse_ratio(f(xp), yp))
    empty = deep.Probe(xc, yc, xt, yt, xp[:0], yp[:0], xtar, xtar, torch.ones(4) / 2, 1)
    assert deep.feature_geometry(FlatEmbed(4), empty)["feat_trig_to_poison"] is None


def test_ntk_ratio_matches_per_pair_autograd():
    torch.manual_seed(3)
    model = MLP(6, (5,), 3).eval()
    x, zeta = torch.randn(3, 6), torch.randn(2, 6)
    got = deep.ntk_ratio(model, x, zeta, target=1)
    params = list(model.parameters())

    def pgrad(z, create=False):
        return torch.autograd.grad(model(z[None])[0, 1], params, create_graph=create)

    ks, rs = [], []
    for z in zeta:
        gz = [g.detach() for g in pgrad(z)]
        for xi in x:
            xi = xi.clone().requires_grad_(True)
            k = sum((a * b).sum() for a, b in zip(pgrad(xi, create=True), gz))
            (gx,) = torch.autograd.grad(k, xi)
            ks.append(float(k.detach()))
            rs.append(float(gx.pow(2).sum() / k.detach() ** 2))
    assert got["k_median"] == pytest.approx(float(torch.tensor(ks).median()), rel=1e-9)
    assert got["R_median"] == pytest.approx(float(torch.tensor(rs).median()), rel=1e-8)


def test_make_probe_groups_and_errors():
    x_train = torch.arange(10.0).reshape(10, 1, 1, 1)
    y = torch.tensor([1, 1, 1, 0, 2, 1, 0, 2, 1, 1])
    poison_idx = torch.tensor([0, 5])   # relabelled to the target 1: excluded from the clean target images
    p = deep.make_probe(x_train, y, x_train, y, x_train, y, poison_idx, torch.tensor([0, 2]), torch.ones(1), 1, n=3)
    assert p.x_poison.flatten().tolist() == [0.0, 5.0]
    assert p.x_target_train.flatten().tolist() == [1.0, 2.0, 8.0]
    with pytest.raises(ValueError, match="target"):
        deep.make_probe(x_train, y, x_train, y, x_train, y, poison_idx, torch.tensor([0, 2]), torch.ones(1), 7, n=3)


def test_lenet_embed_is_the_head_input():
    torch.manual_seed(0)
    net = LeNet().eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(net.classifier[-1](net.embed(x)), net(x))
    assert net.embed(x).shape == (2, 84)


def test_measure_field_validation_and_stable_keys():
    with pytest.raises(ValueError, match="measure"):
        config_from_fields({"model": "lenet", "measure": "everything"})
    with pytest.raises(ValueError, match="measure"):
        config_from_fields({"model": "linear", "measure": "deep"})
    cfg = LabConfig()
    added = ("measure", "filter", "nesterov", "label_smoothing", "precision", "compile")
    legacy = {k: v for k, v in asdict(cfg).items() if k not in added}   # the key before the fields existed
    assert cfg.key() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]
    assert config_from_fields({"model": "lenet", "measure": "deep"}).key() != config_from_fields({"model": "lenet"}).key()


def test_a_kept_model_reproduces_its_final_deep_measurements(tmp_path):
    """Train a tiny deep run with keep_model, rebuild it from the kept weights (runner.trained_run) and
    measure again: the final row of the results file comes back to rounding."""
    from lab_files import synthetic

    from poisoncurv.lab import runner

    torch.set_default_dtype(torch.float32)
    data = synthetic(n_train=300, n_test=120, side=28)
    cfg = config_from_fields({"model": "lenet", "attack": "badnets", "theta": 0.05, "n_train": 300, "n_test": 120,
                              "n_eval": 24, "epochs": 1, "evals_per_epoch": 1, "batch_size": 50, "measure": "deep",
                              "weight_decay": 5e-4, "schedule": "cosine", "profile": "smoke"})
    res = runner.get(cfg, tmp_path, data=data, keep_model=True)
    run = runner.trained_run(cfg, tmp_path, data=data)
    again = deep.measure_deep(run.model, nn.CrossEntropyLoss(), run.probe, cfg.top_k)
    last = res["epochs"][-1]
    for key in ("trig_overlap", "trig_mass", "trig_curv_u", "clean_curv_u", "feat_trig_to_poison", "feat_collapse_clean"):
        assert again[key] == pytest.approx(last[key], rel=1e-6, abs=1e-12), key
    assert again["trig_top"] == pytest.approx(last["trig_top"], rel=1e-6)
    assert res["final"]["ntk_poison"]["R_median"] > 0
    assert len(run.probe.x_poison) == res["poison"]["n_poison"] == 15
    (tmp_path / "models" / f"{cfg.key()}.pt").unlink()
    with pytest.raises(FileNotFoundError, match="keep_model"):
        runner.trained_run(cfg, tmp_path, data=data)


@pytest.mark.slow
def test_an_interrupted_deep_run_resumes_to_the_same_numbers(tmp_path):
    from lab_files import synthetic

    from poisoncurv.lab.train import train

    torch.set_default_dtype(torch.float32)
    data = synthetic(n_train=200, n_test=100, side=28)
    cfg = config_from_fields({"model": "lenet", "attack": "cross-stochastic", "theta": 0.05, "n_train": 200, "n_test": 100,
                              "n_eval": 16, "epochs": 2, "evals_per_epoch": 2, "batch_size": 50, "measure": "deep",
                              "kappa": 0.5, "augment": True, "profile": "smoke"})
    whole = train(cfg, data=data, checkpoint_dir=tmp_path / "a", progress=False)
    assert train(cfg, data=data, checkpoint_dir=tmp_path / "b", progress=False, max_epochs=1) is None
    resumed = train(cfg, data=data, checkpoint_dir=tmp_path / "b", progress=False)
    assert resumed["epochs"] == whole["epochs"]                     # bit for bit, every measurement
    assert resumed["final"] == whole["final"]
