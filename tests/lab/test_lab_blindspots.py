"""Paths the rest of the suite did not exercise: PreActResNet on CIFAR files, cosine resume, the cache key, poison counts."""

from dataclasses import asdict, fields, replace

import pytest
import torch
from lab_files import synthetic, write_cifar, write_cifar_jpeg

from poisoncurv.lab import cache, data, runner
from poisoncurv.lab import train as train_mod
from poisoncurv.lab.attacks import poison
from poisoncurv.lab.config import LabConfig, config_from_fields, profile_config
from poisoncurv.lab.train import train


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_preresnet_cifar_run_evaluates_in_eval_mode(tmp_path, monkeypatch, name):
    """A PreActResNet-20 run on CIFAR files written here (CIFAR-10: the offline JPEG tree; CIFAR-100:
    torchvision's pickles), through the results cache. Every evaluation must see the model in eval mode
    (batch norm on running statistics): a model left in train mode fails the test."""
    if name == "cifar10":
        write_cifar_jpeg(tmp_path / "shared" / data.CIFAR_JPEG_TAR, per_class=4)
        load = lambda: data.load(name, root=tmp_path / "cache", shared=tmp_path / "shared", download=False, verify=False)
    else:
        write_cifar(tmp_path, name, per_file=40)
        load = lambda: data.load(name, root=tmp_path, shared=tmp_path / "none", download=False, verify=False)
    modes = []

    def spy(fn):
        def wrapped(model, *a, **k):
            modes.append(model.training)
            return fn(model, *a, **k)
        return wrapped

    monkeypatch.setattr(train_mod, "_logits", spy(train_mod._logits))
    monkeypatch.setattr(train_mod, "spectral_metrics", spy(train_mod.spectral_metrics))
    cfg = profile_config("smoke", dataset=name, n_train=40, n_test=20, n_eval=3, top_k=2, epochs=1, batch_size=20, theta=0.1)
    assert cfg.model == "preresnet20" and cfg.augment and cfg.schedule == "cosine"
    res = runner.get(cfg, tmp_path / "res", data=load, checkpoint_dir=tmp_path / "ck")
    assert modes and not any(modes), "evaluation ran with the model in train mode"
    assert len(modes) == 2 * 3 + 1  # two evaluations (epoch 0 and 1), each: test set, triggered set, spectra; the fit
    assert res["config"]["model"] == "preresnet20" and res["poison"]["n_poison"] == 4 and len(res["epochs"]) == 2
    last = res["epochs"][-1]
    assert len(last["hess_top"]) == 2 and last["hess_top"][0] >= last["hess_top"][1] and 0 <= last["overlap"] <= 1
    assert cache.result_path(cfg, tmp_path / "res").exists() and not list((tmp_path / "ck").glob("*"))


def test_resume_with_the_cosine_schedule_equals_an_uninterrupted_run(tmp_path):
    small = synthetic(n_train=200, n_test=100)
    cfg = profile_config("smoke", n_train=None, n_test=None, n_eval=50, epochs=4, batch_size=50, theta=0.05,
                         schedule="cosine", evals_per_epoch=1)
    whole = train(cfg, data=small, checkpoint_dir=tmp_path / "a", progress=False)
    constant = train(replace(cfg, schedule="constant"), data=small, checkpoint_dir=tmp_path / "c", progress=False)
    assert constant["epochs"][-1]["train_loss"] != whole["epochs"][-1]["train_loss"], "the schedule had no effect"
    for stop in (1, 2):  # interrupted after one epoch, then after two more, then finished
        assert train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False, max_epochs=stop) is None
    resumed = train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False)
    for key in whole:
        if key != "provenance":
            assert resumed[key] == whole[key], key


def _other_value(cfg: LabConfig, name: str):
    """A different value of field ``name``, by its type (a new field of any of these types is covered)."""
    value = getattr(cfg, name)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.01
    if isinstance(value, str):
        return value + "-other"
    if value is None:
        return 7
    raise AssertionError(f"field {name}: no alternative for a {type(value).__name__}; extend this test")


def test_every_configuration_field_is_part_of_the_cache_key():
    """Every field that can change a run's numbers must change its results file: changing any one field
    changes the key (none is exempt, even the labels ``profile`` and ``device``)."""
    base = profile_config("smoke")
    keys = {base.key()}
    for f in fields(LabConfig):
        other = replace(base, **{f.name: _other_value(base, f.name)})
        assert other.key() != base.key(), f"{f.name} does not change the cache key"
        keys.add(other.key())
    assert len(keys) == len(fields(LabConfig)) + 1  # all distinct
    assert config_from_fields(asdict(base)).key() == base.key()  # equal configurations share a file


@pytest.mark.parametrize("theta,expected", [
    (0.0125, 2),   # θ·N = 2.5 exactly: a tie, rounded to the even neighbour 2
    (0.0075, 2),   # 1.5: tie, to even 2
    (0.0175, 4),   # 3.5000000000000004 in floating point: above the tie, 4
    (0.013, 3),    # 2.6: nearest, 3
    (0.0111, 2),   # 2.22: nearest, 2
])
def test_poison_count_for_non_integer_theta_n(theta, expected):
    """Rule: ``n_poison = round(θ·N)`` with Python's ``round`` on the float product: nearest integer,
    exact ties to even. N = 200 images, 20 of them of the target class."""
    y = torch.arange(200) % 10
    x = torch.rand(200, 1, 8, 8)
    p = poison(x, y, x[:20], y[:20], "cross-deterministic", theta, target=1)
    assert len(p.poison_idx) == expected and p.poison_idx.unique().numel() == expected
    assert (y[p.poison_idx] != 1).all() and (p.y_train[p.poison_idx] == 1).all()
    assert (p.y_train != y).sum() == expected


def test_theta_rounding_to_zero_poisons_is_refused():
    y = torch.arange(200) % 10
    x = torch.rand(200, 1, 8, 8)
    with pytest.raises(ValueError, match="theta: 0.0025 of 200 training images rounds to 0 poisons"):  # 0.5: tie to even, 0
        poison(x, y, x[:20], y[:20], "cross-deterministic", 0.0025, target=1)


def test_onecycle_schedule_rises_then_falls():
    cfg = LabConfig(schedule="onecycle")
    assert [train_mod._lr_factor(cfg, s, 100) for s in (0, 10, 20, 60, 100)] == pytest.approx([0, 0.5, 1, 0.5, 0])


def test_label_smoothing_changes_the_training_loss_only():
    cfg = LabConfig(label_smoothing=0.2)
    assert train_mod.make_loss(cfg, training=True).label_smoothing == 0.2 and train_mod.make_loss(cfg).label_smoothing == 0
    with pytest.raises(ValueError, match="label_smoothing"):
        config_from_fields({"label_smoothing": 0.2, "loss": "squared"})
    with pytest.raises(ValueError, match="label_smoothing"):
        config_from_fields({"label_smoothing": 1.0})
    with pytest.raises(ValueError, match="mnist"):
        config_from_fields({"model": "convnet32"})


def test_convnet_cifar_run_takes_the_fast_recipe_and_reports_its_fit(tmp_path):
    """A ConvNet run on CIFAR-10 files written here gets its recipe (Nesterov, one-cycle, label smoothing 0.2) and
    reports how well it fits its training set, poisons apart."""
    write_cifar_jpeg(tmp_path / "shared" / data.CIFAR_JPEG_TAR, per_class=4)
    load = lambda: data.load("cifar10", root=tmp_path / "cache", shared=tmp_path / "shared", download=False, verify=False)  # noqa: E731
    cfg = profile_config("smoke", dataset="cifar10", model="convnet16", n_train=40, n_test=20, n_eval=3, top_k=2, epochs=2,
                         batch_size=20, theta=0.1)
    assert (cfg.nesterov, cfg.schedule, cfg.label_smoothing, cfg.lr) == (True, "onecycle", 0.2, 0.4)
    res = runner.get(cfg, tmp_path / "res", data=load, checkpoint_dir=tmp_path / "ck")
    fit = res["train_fit"]
    n, k = res["poison"]["n_train"], res["poison"]["n_poison"]
    assert k == 4 and fit["acc"] == pytest.approx((fit["acc_clean"] * (n - k) + fit["acc_poison"] * k) / n)
    assert res["epochs"][-1]["train_loss"] > 0
