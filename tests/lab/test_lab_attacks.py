"""Poison bookkeeping: counts, indices, labels, triggered test set, directions."""

import pytest
import torch

from poisoncurv.lab.attacks import ATTACKS, apply_trigger, cross_pattern, patch_mask, poison, warp_grid


def toy(n=200, n_test=60, shape=(1, 28, 28), seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=gen) * 0.5
    x[..., -7:, -7:] = 0.0  # a clean corner, as on MNIST
    xt = torch.rand(n_test, *shape, generator=gen) * 0.5
    return x, torch.arange(n) % 10, xt, torch.arange(n_test) % 10


@pytest.mark.parametrize("attack", ATTACKS)
def test_bookkeeping(attack):
    x, y, xt, yt = toy()
    p = poison(x, y, xt, yt, attack, theta=0.1, target=3, seed=1)
    idx = p.poison_idx
    assert len(idx) == 20 and idx.unique().numel() == 20 and torch.equal(idx, idx.sort().values)
    assert (y[idx] != 3).all() and torch.equal(p.source_labels, y[idx])
    assert (p.y_train[idx] == 3).all()
    others = torch.ones(len(y), dtype=torch.bool)
    others[idx] = False
    assert torch.equal(p.y_train[others], y[others]) and torch.equal(p.x_train[others], x[others])
    assert not torch.equal(p.x_train[idx], x[idx])
    assert len(p.y_trigger) == int((yt != 3).sum()) and (p.y_trigger != 3).all()
    assert torch.allclose(p.direction.norm(), torch.tensor(1.0)) and p.direction.shape == (28 * 28,)
    again = poison(x, y, xt, yt, attack, theta=0.1, target=3, seed=1)
    assert torch.equal(again.poison_idx, idx) and torch.equal(again.x_train, p.x_train)


def test_crosses_are_rank_one_and_stochastic_amplitudes_differ():
    x, y, xt, yt = toy()
    t = cross_pattern((1, 28, 28))
    assert int(t.sum()) == 9
    for attack in ("cross-deterministic", "cross-stochastic"):
        p = poison(x, y, xt, yt, attack, theta=0.2, target=0, amplitude=0.8)
        delta = (p.x_train[p.poison_idx] - x[p.poison_idx]).flatten(1)
        amps = delta @ t.flatten() / t.flatten().dot(t.flatten())
        assert torch.allclose(delta, amps[:, None] * t.flatten(), atol=1e-12)  # exactly along t
        assert torch.allclose(p.direction, t.flatten() / 3.0)
        if attack == "cross-deterministic":
            assert torch.allclose(amps, torch.full_like(amps, 0.8))
        else:
            assert amps.min() >= 0.4 and amps.max() <= 1.2 and amps.std() > 0.05
    trig = p.x_trigger - xt[yt != 0]
    assert torch.allclose(trig.flatten(1), 0.8 * t.flatten().expand(len(trig), -1))


def test_badnets_patch_and_warp_grid():
    x, y, xt, yt = toy()
    m = patch_mask((1, 28, 28))
    assert int(m.sum()) == 9 and m[0, 24:27, 24:27].all()
    out = apply_trigger("badnets", x[:5])
    assert (out[:, 0, 24:27, 24:27] == 1).all() and torch.equal(out * (1 - m), x[:5] * (1 - m))
    g = warp_grid(28, 28, strength=0.02, seed=0)
    ident = warp_grid(28, 28, strength=0.0, seed=0)
    shift = (g - ident).abs()
    assert shift.max() <= 0.02 * 4 and 0.005 < shift.mean() < 0.03  # mean |offset| = strength before clamping
    # the grid is float32 whatever the images' dtype (as the committed runs drew it): identity to float32 rounding
    assert ident.dtype == torch.float32 and torch.allclose(apply_trigger("warp", x[:3], strength=0.0), x[:3], atol=1e-6)


def test_clean_reference_and_bad_theta():
    x, y, xt, yt = toy()
    p = poison(x, y, xt, yt, "badnets", theta=0.0)
    assert len(p.poison_idx) == 0 and torch.equal(p.x_train, x) and len(p.y_trigger) > 0
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="theta"):
            poison(x, y, xt, yt, "badnets", theta=bad)
    with pytest.raises(ValueError, match="theta"):
        poison(x, y, xt, yt, "badnets", theta=0.95)  # more poisons than non-target images
    with pytest.raises(ValueError, match="attack"):
        poison(x, y, xt, yt, "blend", theta=0.1)
