"""The GPU training path (bf16 autocast, channels-last, torch.compile) as far as a CPU can check it."""

from dataclasses import replace

import pytest
import torch
from lab_files import synthetic
from torch import nn

from poisoncurv.lab.config import profile_config
from poisoncurv.lab.deep import curvature_at
from poisoncurv.lab.train import TrainForward, TrainMode, autocast, penalised_loss, train, train_mode
from poisoncurv.models import PreActResNet

CUDA = torch.device("cuda")  # constructing the device object needs no GPU


def test_train_mode_follows_the_configuration_on_every_device():
    cfg = profile_config("smoke", dataset="cifar10", model="preresnet20")
    assert train_mode(cfg, torch.device("cpu")) == TrainMode(False, False, False)
    assert train_mode(cfg, CUDA) == TrainMode(channels_last=True)                          # preresnet: channels-last on CUDA
    convnet = profile_config("smoke", dataset="cifar10", model="convnet16")
    assert train_mode(convnet, torch.device("cpu")) == TrainMode(channels_last=True)      # convnet: on every device
    fast = replace(convnet, precision="bf16", compile=True)
    assert train_mode(fast, torch.device("cpu")) == train_mode(fast, CUDA) == TrainMode(True, True, True)
    assert train_mode(replace(fast, kappa=0.1), CUDA) == TrainMode(compiled=False, bf16=True, channels_last=True)  # double backward: eager
    assert train_mode(profile_config("smoke", model="lenet", precision="bf16"), CUDA) == TrainMode(bf16=True)
    assert TrainMode(True, True, True).provenance(compiled_ran=False) == \
        {"train_mode": "eager", "train_precision": "bf16", "memory_format": "channels_last"}


def test_precision_and_compile_enter_the_key_only_when_set():
    cfg = profile_config("smoke", model="mlp")
    assert replace(cfg, precision="fp32", compile=False).key() == cfg.key()
    assert len({cfg.key(), replace(cfg, precision="bf16").key(), replace(cfg, compile=True).key()}) == 3
    with pytest.raises(ValueError, match="precision: unknown 'fp16'; choose one of fp32, bf16"):
        profile_config("smoke", model="mlp", precision="fp16")


def test_compile_failure_falls_back_to_eager_with_a_warning():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    fwd = TrainForward(model, compiled=False)
    x = torch.rand(5, 4)
    assert fwd(x).equal(model(x)) and not fwd.compiled_ran

    def broken(_):
        raise RuntimeError("no C++ compiler")

    fwd.compiled_ran, fwd.fn = True, broken  # as if torch.compile's first call failed
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler.*eager"):
        out = fwd(x)
    assert out.equal(model(x)) and not fwd.compiled_ran and fwd.fn is model


def test_bf16_autocast_penalty_is_close_to_fp32_and_double_backward_runs():
    torch.manual_seed(1)
    model = PreActResNet(8, 10).float().train()   # training runs in float32 (the tests' default is float64)
    x, y = torch.rand(6, 3, 32, 32, dtype=torch.float32), torch.randint(0, 10, (6,))
    loss32, pen32 = penalised_loss(model, nn.CrossEntropyLoss(), x, y, kappa=2.0)
    with autocast(TrainMode(bf16=True), torch.device("cpu")):
        loss16, pen16 = penalised_loss(model, nn.CrossEntropyLoss(), x, y, kappa=2.0)
    assert loss16.dtype == torch.float32 and pen16.dtype == torch.float32 and loss16.item() != loss32.item()  # bf16 ran
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-2)
    assert pen16.item() == pytest.approx(pen32.item(), rel=0.1) and pen32.item() > 0
    (loss16 + pen16).backward()  # the penalty's double backward through autocast
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_channels_last_model_gives_the_same_outputs_and_curvature():
    torch.manual_seed(2)
    dense = PreActResNet(8, 10).eval()
    cl = PreActResNet(8, 10).eval()
    cl.load_state_dict(dense.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    assert cl.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(cl(x.contiguous(memory_format=torch.channels_last)), dense(x), atol=1e-5)
    u = torch.randn(3 * 32 * 32)
    u = u / u.norm()
    a = curvature_at(dense, nn.CrossEntropyLoss(), x, u, 3)
    b = curvature_at(cl, nn.CrossEntropyLoss(), x, u, 3)
    assert b["top"] == pytest.approx(a["top"], rel=1e-4, abs=1e-9)
    assert b["curv_u"] == pytest.approx(a["curv_u"], rel=1e-4, abs=1e-12)


def test_cpu_run_records_eager_fp32_and_is_reproducible(tmp_path):
    cfg = profile_config("smoke", model="mlp", n_train=None, n_test=None, n_eval=50, epochs=1, attack="cross-stochastic", theta=0.1)
    a = train(cfg, data=synthetic(), checkpoint_dir=tmp_path, progress=False)
    b = train(cfg, data=synthetic(), checkpoint_dir=tmp_path, progress=False)
    assert {k: a["provenance"][k] for k in ("train_mode", "train_precision", "memory_format")} == \
        {"train_mode": "eager", "train_precision": "fp32", "memory_format": "contiguous"}
    assert a["epochs"] == b["epochs"]
    assert a["key"] == "8a75297f301d6c3b"  # the configuration key does not depend on the training mode


def test_compiled_forward_trains_at_kappa_zero_and_cannot_double_backward(monkeypatch):
    """Why train_mode compiles κ = 0 only: through a compiled graph the penalty's double backward raises (aot_autograd,
    the layer under every torch.compile backend; the aot_eager backend keeps the test free of a C++ toolchain)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: compile_(m, backend="aot_eager"))
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).float()
    x, y = torch.rand(5, 1, 3, 4, dtype=torch.float32), torch.randint(0, 3, (5,))
    eager, _ = penalised_loss(model, nn.CrossEntropyLoss(), x, y, 0.0)
    fwd = TrainForward(model, compiled=True)
    loss, pen = penalised_loss(fwd, nn.CrossEntropyLoss(), x, y, 0.0)
    (loss + pen).backward()
    assert fwd.compiled_ran and loss.item() == pytest.approx(eager.item(), rel=1e-6)
    loss, pen = penalised_loss(fwd, nn.CrossEntropyLoss(), x, y, 0.5)
    with pytest.raises(RuntimeError, match="double backward"):
        (loss + pen).backward()


def test_fast_mode_trains_on_the_cpu_records_itself_and_stays_near_the_eager_run(tmp_path):
    """bf16 autocast and inductor (torch.compile) on the CPU: the run compiles, records the mode, and its training
    losses stay within 0.2 % of the eager fp32 run's at every evaluation (measured: 1e-4 on this model) while falling."""
    cfg = profile_config("smoke", model="mlp", n_train=None, n_test=None, n_eval=50, epochs=2, attack="cross-stochastic", theta=0.1)
    eager = train(cfg, data=synthetic(), checkpoint_dir=tmp_path, progress=False)
    fast = train(replace(cfg, precision="bf16", compile=True), data=synthetic(), checkpoint_dir=tmp_path, progress=False)
    assert {k: fast["provenance"][k] for k in ("train_mode", "train_precision")} == {"train_mode": "compiled", "train_precision": "bf16"}
    assert fast["config"]["precision"] == "bf16" and fast["key"] != eager["key"]
    losses = [(a["train_loss"], b["train_loss"]) for a, b in zip(eager["epochs"][1:], fast["epochs"][1:])]
    assert losses and all(b != a and b == pytest.approx(a, rel=2e-3) for a, b in losses)   # bf16 ran, and stayed close
    assert losses[-1][1] < losses[0][1]                                                   # and it trains
