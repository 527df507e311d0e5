"""The exact tests and intervals of core.stats against brute force and closed forms."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom

from poisoncurv.core import stats


def brute_permutation_p(neg, pos):
    allv = np.concatenate([neg, pos])
    obs = stats.auroc(np.asarray(neg, float), np.asarray(pos, float))
    hits = total = 0
    for idx in itertools.combinations(range(len(allv)), len(pos)):
        m = np.zeros(len(allv), bool)
        m[list(idx)] = True
        total += 1
        hits += stats.auroc(allv[~m], allv[m]) >= obs - 1e-12
    return hits / total


@pytest.mark.parametrize("seed", range(6))
def test_permutation_p_equals_enumeration_with_ties(seed):
    rng = np.random.default_rng(seed)
    neg = rng.integers(0, 4, 5).astype(float)         # few values: many ties
    pos = rng.integers(1, 5, 4).astype(float)
    assert stats.permutation_p(neg, pos) == pytest.approx(brute_permutation_p(neg, pos), abs=1e-15)


def test_permutation_p_floors_of_small_designs():
    """The floors the book quotes: 3 v 3 cannot go below 1/20 = 0.05; 8 v 8 reaches 1/12870."""
    assert stats.permutation_p([0, 1, 2], [3, 4, 5]) == pytest.approx(0.05)
    assert stats.permutation_p([0, 1, 2], [0.5, 1.5, 5]) == pytest.approx(0.35)      # AUROC 0.667 -> 7/20
    assert stats.permutation_p(range(8), range(8, 16)) == pytest.approx(1 / math.comb(16, 8))
    t = stats.auroc_test(range(8), range(8, 16))
    assert t.auroc == 1.0 and t.p == pytest.approx(t.p_floor) and (t.lo, t.hi) == (1.0, 1.0)


def test_permutation_p_refuses_large_designs():
    with pytest.raises(ValueError, match="exact count"):
        stats.permutation_p(np.zeros(100), np.ones(100))


def test_sign_test_is_the_binomial_two_sided_p():
    assert stats.sign_test(8, 0) == pytest.approx(2 * 0.5**8)
    assert stats.sign_test(3, 0) == pytest.approx(0.25)
    assert stats.sign_test(7, 1) == pytest.approx(2 * binom.sf(6, 8, 0.5))
    assert stats.sign_test(0, 0) == 1.0 and stats.sign_test(4, 4) == 1.0


def test_clopper_pearson_interval():
    lo, hi = stats.binomial_ci(0, 10)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))            # closed form at k = 0
    lo, hi = stats.binomial_ci(5, 10)
    assert binom.sf(4, 10, lo) == pytest.approx(0.025) and binom.cdf(5, 10, hi) == pytest.approx(0.025)
    assert stats.rate_ci(0.5, 10) == (lo, hi)
    with pytest.raises(ValueError):
        stats.binomial_ci(3, 2)


def test_bootstrap_intervals_cover_and_are_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 8), rng.normal(0.0, 0.1, 8)
    d, lo, hi = stats.mean_difference_ci(a, b)
    assert d == pytest.approx(a.mean() - b.mean()) and lo < d < hi and 0.8 < lo and hi < 1.2
    assert stats.mean_difference_ci(a, b) == (d, lo, hi)                      # same seed, same interval
    assert stats.mean_difference_ci([1.0], [0.0]) == (1.0, 1.0, 1.0)          # nothing varies
    lo, hi = stats.bootstrap_auroc_ci(rng.normal(size=8), rng.normal(size=8))
    assert 0 <= lo < 0.5 < hi <= 1


def test_wilson_and_newcombe_intervals():
    lo, hi = stats.wilson_ci(0.5, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)              # the textbook value
    d, lo, hi = stats.rate_difference_ci(56 / 70, 70, 48 / 80, 80)
    assert (d, lo, hi) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)       # Newcombe (1998), example (a), method 10
    d, lo, hi = stats.rate_difference_ci(0.98, 2000, 0.979, 2000)
    assert lo < 0 < hi and hi - lo == pytest.approx(0.0177, abs=5e-4)          # one test image in 2,000 is noise
