"""benchmarks/gpu_check.py on a CPU: it refuses to run without a GPU; its projection, epoch timer and smoke runs."""

import itertools
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from benchmarks import gpu_check
from poisoncurv.core.paths import REPO_ROOT
from poisoncurv.lab.config import profile_config


@pytest.mark.slow
def test_without_a_gpu_it_stops_at_once_with_a_message(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path / "g.json")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU visible" in proc.stderr and "nothing was measured" in proc.stderr
    assert not (tmp_path / "g.json").exists()


def test_projection_by_hand():
    a = profile_config("gpu", dataset="cifar10", model="preresnet110", epochs=2, evals_per_epoch=1, n_eval=256, device="cpu")
    b = profile_config("gpu", dataset="cifar100", model="preresnet110", epochs=3, evals_per_epoch=1, n_eval=512, n_train=25000,
                       kappa=0.5, device="cpu")
    c = profile_config("gpu", dataset="cifar10", model="convnet64", epochs=2, evals_per_epoch=1, n_eval=256, theta=0.0,
                       device="cpu")
    d = replace(c, attack="badnets")       # a clean reference that shares c's training: its evaluations only
    epoch_s = {("preresnet110", False): 10.0, ("preresnet110", True): 30.0, ("convnet64", False): 1.0}
    eval_s = {("preresnet110", "cifar10"): 2.0, ("preresnet110", "cifar100"): 4.0, ("convnet64", "cifar10"): 0.5}
    got = gpu_check.project([a, b, c, d], epoch_s, eval_s, eval_n=256)
    # a: 2 epochs × 10 s + 3 evaluations × 2 s = 26 s; b: 3 × 30 s × ½ (half the images) + 4 × 4 s × 2 (twice the inputs) = 77 s
    # c: 2 × 1 s + 3 × 0.5 s = 3.5 s; d: 3 × 0.5 s = 1.5 s
    assert (got["runs"], got["trainings"]) == (4, 3)
    assert got["hours"] == pytest.approx(108 / 3600, rel=1e-12)
    assert got["per_run_hours"]["max"] == pytest.approx(77 / 3600, rel=1e-12)


def _cpu_cfg(**kw):
    return profile_config("smoke", dataset="cifar10", model="preresnet8", batch_size=16, **kw)


def test_epoch_timer_runs_the_lab_step_on_cpu_and_reports_failures(monkeypatch):
    torch.set_default_dtype(torch.float32)
    data = gpu_check.ImageData(
        "cifar10", torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.arange(64) % 10,
        torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16) % 10, 10, "test")
    out = gpu_check.epoch_time(_cpu_cfg(kappa=0.1), torch.device("cpu"), data, compiled=False, steps=2, warmup=1)
    assert out["step_s"] > 0 and out["steps_per_epoch"] == 3125 and out["epoch_s"] == pytest.approx(3125 * out["step_s"])
    assert (out["train_mode"], out["train_precision"]) == ("eager", "fp32")

    def fails(*a, **k):
        raise RuntimeError("torch.compile does not currently support double backward")

    monkeypatch.setattr(gpu_check, "penalised_loss", fails)
    out = gpu_check.epoch_time(_cpu_cfg(kappa=0.1), torch.device("cpu"), data, compiled=False, steps=2, warmup=1)
    assert out["error"].startswith("RuntimeError: torch.compile does not currently support double backward")


@pytest.mark.slow
def test_synthetic_fallback_and_smoke_runs_within_the_budget(tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "none"))
    d = gpu_check.dataset_or_synthetic("cifar100", 40, 20, (3, 32, 32))
    assert d.source == gpu_check.SYNTHETIC and d.num_classes == 100 and d.x_train.shape == (40, 3, 32, 32)
    budget = itertools.chain([100.0], itertools.repeat(0.0))     # time for one run, then none
    out = gpu_check.smoke_runs(torch.device("cpu"), ("ch07",), remaining=lambda: next(budget))
    n = len(gpu_check.load_grid(gpu_check.GRIDS_DIR / "ch07.yaml", "smoke").runs)
    assert len(out["runs"]) == n and sum("skipped" in r for r in out["runs"]) == n - 1
    assert out["drivers"] == {"ch07": {"skipped": "runs missing"}}
    first = out["runs"][0]
    assert "error" not in first and 0 <= first["asr"] <= 1 and first["data_source"] == gpu_check.SYNTHETIC
    assert first["train_mode"] == "eager" and first["train_precision"] == "fp32"


@pytest.mark.slow
def test_smoke_runs_then_the_chapter_driver_end_to_end_on_cpu(tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "none"))
    out = gpu_check.smoke_runs(torch.device("cpu"), ("ch07",))
    assert len(out["runs"]) == 15 and not [r for r in out["runs"] if "error" in r or "skipped" in r]
    check = out["drivers"]["ch07"]
    assert "error" not in check, check
    assert check["driver"] == "resnet_cifar" and check["glued_values"] > 50
