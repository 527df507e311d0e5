"""The defender's view (poisoncurv.krr.visibility): the closed-form radii of far Gaussian clones, and the synthetic data."""

import math

import numpy as np
import pytest
import torch

from poisoncurv.core.dtypes import THEORY_DTYPE
from poisoncurv.krr.synthetic import clean_data, target_vector
from poisoncurv.krr.visibility import success_radius, visibility_radius


def spike(r, ell, gain):
    """The far-clone spike ``gain² (r²/ℓ⁴) e^{−r²/ℓ²}``."""
    return gain**2 * r**2 / ell**4 * math.exp(-(r**2) / ell**2)


@pytest.mark.parametrize("lam,ell,gain", [(1e-3, 1.0, 1.0), (0.05, 1.5, 2.0), (0.3, 0.7, 1.2)])
def test_visibility_radius_is_the_smaller_root(lam, ell, gain):
    r = visibility_radius(lam, ell, gain)
    assert spike(r, ell, gain) == pytest.approx(lam, rel=1e-10)
    assert r < ell                                 # the spike peaks at r = ℓ: the smaller root lies below it
    assert spike(0.99 * r, ell, gain) < lam < spike(1.01 * r, ell, gain)


def test_visibility_radius_is_infinite_above_the_peak():
    assert visibility_radius(1.0, 1.0, 1.0) == math.inf          # the peak spike is 1/e < 1: never visible
    assert visibility_radius(math.exp(-1) * 0.999, 1.0, 1.0) < 1.0


def test_success_radius():
    r = success_radius(0.5, 2.0, 1.5)
    assert 1.5 * math.exp(-(r**2) / (2 * 2.0**2)) == pytest.approx(0.5, rel=1e-12)
    assert success_radius(2.0, 1.0, 1.0) == 0.0                   # the gain never reaches the margin


def test_clean_data_and_target_vector():
    X, Y = clean_data(50, 6, 3, seed=4)
    assert X.dtype == Y.dtype == THEORY_DTYPE and X.shape == (50, 6) and Y.shape == (50, 3)
    assert torch.equal(Y.argmax(1), X[:, :3].argmax(1)) and torch.equal(Y.sum(1), torch.ones(50, dtype=THEORY_DTYPE))
    assert torch.equal(clean_data(50, 6, 3, seed=4)[0], X)        # seeded
    assert np.array_equal(target_vector(3, 2, X).numpy(), [0.0, 0.0, 1.0])
