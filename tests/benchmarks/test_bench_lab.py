"""benchmarks/bench_lab.py at toy sizes on random MNIST-shaped images: the lab run and the plain loop train the same weights,
and the lab's time splits into its parts."""

import json

import torch

from benchmarks import bench_lab as bench
from poisoncurv.lab.data import ImageData


def test_lab_and_plain_loop_train_the_same_weights_and_the_times_add_up(tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
    gen = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)  # noqa: E731
    mnist = ImageData("mnist", images(300), torch.arange(300) % 10, images(120), torch.arange(120) % 10, 10, "random (test)")
    monkeypatch.setattr(bench, "load", lambda name: mnist)
    bench.main(["--epochs", "1", "--evals-per-epoch", "2", "--n-train", "300", "--n-test", "120", "--n-eval", "8",
                "--repeats", "2", "--penalty-steps", "2", "--out", str(tmp_path / "out")])
    out = json.loads((tmp_path / "out" / "lab_ch06_e1_v2_t1_cpu.json").read_text())
    assert out["final_weights_equal"] is True
    assert out["config"]["n_train"] == 300 and out["config"]["measure"] == "deep" and len(out["lab_times_s"]) == 2
    med = out["lab_median_s"]
    assert med["evaluations"] == 3 and med["rows"] == 3            # epoch 0 and two in the epoch
    assert 0 < med["measure_deep"] < med["evaluate"] < med["total"] and med["final_eNTK"] > 0 and med["train_fit"] > 0
    assert out["measurement_share_of_lab_run"] == (med["evaluate"] + med["final_eNTK"] + med["train_fit"]) / med["total"]
    assert out["lab_over_plain"] == med["total"] / out["plain_median_s"]
    assert 0 < out["measurement_share_of_lab_run"] < 1 and out["penalty_step_over_plain_step"] > 1
    assert out["provenance"]["data_source"] and "environment_end" in out
    assert out["rates_floor_over_plain"] == out["plain_with_rates_median_s"] / out["plain_median_s"]
    assert len(out["plain_with_rates_times_s"]) == 2
    lab_ratios = [r["total"] / p for r, p in zip(out["lab_times_s"], out["plain_times_s"])]
    assert out["paired_over_plain"]["lab"] == {"median": sum(lab_ratios) / 2, "min": min(lab_ratios), "max": max(lab_ratios)}
    assert out["paired_over_plain"]["rates_floor"]["min"] == min(
        r / p for r, p in zip(out["plain_with_rates_times_s"], out["plain_times_s"]))


def test_the_rates_floor_makes_the_lab_runs_forward_passes_and_trains_the_same_weights(monkeypatch):
    """With ``rates_on`` the plain loop passes each of its sets through the model once before training and once at
    every evaluation mark of the lab, then the training set once, in eval mode; the weights do not change."""
    torch.set_default_dtype(torch.float32)
    gen = torch.Generator().manual_seed(1)
    cfg = bench.ch06_config(2, n_train=200, n_test=40, evals_per_epoch=3)
    x, y = torch.rand(200, 1, 28, 28, generator=gen), torch.arange(200) % 10
    sets = (torch.rand(40, 1, 28, 28, generator=gen), torch.rand(30, 1, 28, 28, generator=gen))
    seen: list[tuple[int, bool]] = []
    logits = bench.lab_train._logits
    monkeypatch.setattr(bench.lab_train, "_logits", lambda m, im: (seen.append((len(im), m.training)), logits(m, im))[1])
    _, plain = bench.plain_run(cfg, x, y)
    assert seen == []
    _, with_rates = bench.plain_run(cfg, x, y, sets)
    n_marks = 1 + cfg.epochs * len(bench.lab_train.eval_marks(cfg, 200 // cfg.batch_size))   # 1 + 2·2 (2 steps an epoch)
    assert seen == [(40, False), (30, False)] * n_marks + [(200, False)]
    assert all(torch.equal(plain[k], with_rates[k]) for k in plain)
