"""The adaptive attacker's trigger (greedy low-curvature pattern) and filter-then-retrain defences."""

import itertools

import numpy as np
import pytest
import torch
from lab_files import synthetic

from poisoncurv.detect.suite import DETECTORS
from poisoncurv.lab import cache, runner
from poisoncurv.lab.adaptive import N_PIXELS, greedy_pattern, mean_input_hessian, train_surrogate
from poisoncurv.lab.attacks import cross_pattern, poison
from poisoncurv.lab.config import FILTERS, profile_config
from poisoncurv.lab.filtering import DETECTOR_OF
from poisoncurv.lab.train import train


def toy(n=300, n_test=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen) * 0.5
    x[..., -7:, -7:] = 0.0
    return x, torch.arange(n) % 10, torch.rand(n_test, 1, 28, 28, generator=gen) * 0.5, torch.arange(n_test) % 10


def test_without_renumbers_the_surviving_poisons():
    x, y, xt, yt = toy()
    p = poison(x, y, xt, yt, "cross-deterministic", theta=0.1, target=3, seed=2)
    drop = torch.cat([p.poison_idx[::3], torch.tensor([0, 1, 2])]).unique()
    q = p.without(drop)
    kept_poisons = [int(i) for i in p.poison_idx if int(i) not in set(drop.tolist())]
    assert len(q.y_train) == len(p.y_train) - len(drop) and len(q.poison_idx) == len(kept_poisons)
    assert torch.equal(q.x_train[q.poison_idx], p.x_train[kept_poisons])
    assert torch.equal(q.source_labels, y[kept_poisons]) and (q.y_train[q.poison_idx] == 3).all()
    assert torch.equal(p.without(torch.tensor([], dtype=torch.int64)).x_train, p.x_train)
    with pytest.raises(ValueError, match="drop"):
        p.without(torch.tensor([len(y)]))


def test_greedy_pattern_exact_on_diagonal_and_close_to_exhaustive():
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(12, generator=gen, dtype=torch.float64)
    t, v = greedy_pattern(torch.diag(d), 4)
    assert set(torch.nonzero(t).flatten().tolist()) == set(torch.argsort(d)[:4].tolist())
    assert v == pytest.approx(float(torch.sort(d).values[:4].sum()), rel=1e-12)
    # coupled pixels: the two smallest diagonals are strongly coupled, so the best pair avoids one of them
    H = torch.diag(torch.tensor([0.1, 0.1, 0.3, 0.3, 1.0], dtype=torch.float64))
    H[0, 1] = H[1, 0] = 0.5
    t, v = greedy_pattern(H, 2)
    assert v == pytest.approx(0.4) and t[2] + t[3] == 1 and t[0] + t[1] == 1
    for seed in range(5):
        A = torch.randn(8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        H = A @ A.T
        t, v = greedy_pattern(H, 3)
        best = min(float(H[list(c)][:, list(c)].sum()) for c in itertools.combinations(range(8), 3))
        assert t.sum() == 3 and v == pytest.approx(float(t @ H @ t)) and best <= v + 1e-12 <= 2.5 * best + 1e-12
    with pytest.raises(ValueError, match="n_pixels"):
        greedy_pattern(H, 9)


@pytest.mark.slow
def test_lowcurv_trigger_is_additive_nine_pixels_and_flatter_than_the_cross():
    x, y, xt, yt = toy()
    p = poison(x, y, xt, yt, "lowcurv", theta=0.1, target=3, amplitude=0.7, seed=1)
    delta = (p.x_train[p.poison_idx] - x[p.poison_idx]).flatten(1)
    t = delta[0] / 0.7
    assert torch.allclose(delta, 0.7 * t.expand_as(delta), atol=1e-6)
    assert set(t.round(decimals=5).unique().tolist()) == {0.0, 1.0} and int(t.sum().round()) == N_PIXELS
    assert torch.allclose(p.direction, t / 3, atol=1e-6)
    # on the attacker's own surrogate the pattern carries less curvature than the cross (a 33x margin on MNIST)
    H = mean_input_hessian(train_surrogate(x, y, 1), x[:256])
    c = cross_pattern((1, 28, 28)).flatten().double()
    assert float(t.double() @ H @ t.double()) < float(c @ H @ c)


def test_lowcurv_pattern_does_not_depend_on_the_default_dtype():
    """Chapter 8 runs with float64 as the default dtype; the pattern it shows must be the one the runs used."""
    x, y, _, _ = toy()
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        a = train_surrogate(x, y, 1).state_dict()
        torch.set_default_dtype(torch.float64)
        b = train_surrogate(x, y, 1).state_dict()
    finally:
        torch.set_default_dtype(default)
    assert all(torch.equal(a[k], b[k]) for k in a)      # the same surrogate, hence the same greedy pattern


def test_filter_and_lowcurv_validation():
    assert set(DETECTOR_OF) == set(FILTERS) - {"none"} and set(DETECTOR_OF.values()) <= set(DETECTORS)
    with pytest.raises(ValueError, match="filter"):
        profile_config("smoke", model="mlp", theta=0.0, filter="spectral")
    with pytest.raises(ValueError, match="filter"):
        profile_config("smoke", model="mlp", filter="pca")
    with pytest.raises(ValueError, match="lowcurv"):
        profile_config("smoke", dataset="cifar10", model="preresnet8", attack="lowcurv")
    cfg = profile_config("smoke", model="mlp", theta=0.05, filter="ac")
    assert cfg.key() != profile_config("smoke", model="mlp", theta=0.05).key()
    with pytest.raises(ValueError, match="drop"):
        train(cfg, data=synthetic())


@pytest.mark.slow
def test_filtered_run_retrains_without_what_the_detector_removed(tmp_path):
    data = synthetic(n_train=600, n_test=200)
    cfg = profile_config("smoke", model="mlp", n_train=None, n_test=None, n_eval=50, epochs=2, batch_size=50,
                         attack="cross-deterministic", theta=0.05, amplitude=1.0, filter="spectral")
    res = runner.get(cfg, tmp_path, data=data)
    base = profile_config("smoke", model="mlp", n_train=None, n_test=None, n_eval=50, epochs=2, batch_size=50,
                          attack="cross-deterministic", theta=0.05, amplitude=1.0)
    f = res["filter"]
    assert f["base_key"] == base.key() and cache.model_path(base, tmp_path).exists()
    n_poison = round(0.05 * 600)
    removed = np.array(f["removed_idx"])
    assert f["n_removed"] == len(removed) > 0 and res["poison"]["n_train"] == 600 - len(removed)
    base_res = runner.get(base, tmp_path, data=data)
    was_poison = np.isin(removed, base_res["poison"]["poison_idx"])
    assert f["tpr"] == pytest.approx(was_poison.sum() / n_poison)
    assert f["fpr"] == pytest.approx((~was_poison).sum() / (600 - n_poison))
    assert res["poison"]["n_poison"] == n_poison - was_poison.sum()
    assert f["eps"] == pytest.approx(n_poison / (n_poison + 60))   # synthetic: 60 clean images per class
    assert runner.get(cfg, tmp_path, data=data)["filter"] == f     # cached
