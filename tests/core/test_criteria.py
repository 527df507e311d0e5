"""The rules of core.criteria on hand-made series with known answers."""

import numpy as np
import pytest

from poisoncurv.core import criteria as cr
from poisoncurv.core import stats

T = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


@pytest.mark.parametrize("ok, first, two, settled", [
    ([0, 1, 0, 1, 1, 1], 0.5, 1.5, 1.5),
    ([0, 1, 1, 0, 1, 1], 0.5, 0.5, 2.0),
    ([0, 1, 0, 1, 0, 1], 0.5, None, 2.5),
    ([0, 0, 0, 0, 0, 0], None, None, None),
    ([1, 1, 1, 1, 1, 0], 0.0, 0.0, None),
    ([1, 1, 1, 1, 1, 1], 0.0, 0.0, 0.0)])
def test_crossing_rules(ok, first, two, settled):
    got = [cr.crossing_time(T, ok, r) for r in ("first", "two", "settled")]
    assert got == [first, two, settled]
    assert cr.crossing_time([], [], "settled") is None
    with pytest.raises(ValueError, match="unknown rule"):
        cr.crossing_time(T, ok, "mostly")


def test_success_is_net_of_the_untriggered_rate_and_never_collapsed():
    asr = np.array([0.2, 0.6, 1.0, 0.9, 0.95])
    untrig = np.array([0.0, 0.05, 0.997, 0.45, 0.01])
    acc = np.array([0.5, 0.9, 0.109, 0.5, 0.19])
    np.testing.assert_array_equal(cr.net_asr(asr, untrig), asr - untrig)
    # 0.2: too low; 0.6-0.05: success; 1.0 with 99.7 % untriggered: collapsed; 0.9-0.45 < 0.5; acc 0.19 < 2/10
    np.testing.assert_array_equal(cr.succeeds(asr, untrig, acc, 10), [False, True, False, False, False])
    np.testing.assert_array_equal(cr.collapsed([0.21, 0.19, 0.9], [0.0, 0.0, 0.5], 10), [False, True, True])
    # at the boundaries: accuracy exactly twice chance is not collapse, an untriggered rate of exactly ½ is
    np.testing.assert_array_equal(cr.collapsed([0.2, 0.9], [0.0, 0.4999], 10), [False, False])
    np.testing.assert_array_equal(cr.succeeds([0.5, 0.5], [0.0, 0.0], [0.9, 0.9], 10), [True, True])   # net ASR exactly ½


def test_defence_verdict_needs_three_seeds():
    assert cr.defence_verdict([True, True]) == "too few seeds"
    assert cr.defence_verdict([True] * 3) == "counts" and cr.defence_verdict([False] * 3) == "does not count"
    assert cr.defence_verdict([True, False, True]) == "split"


@pytest.mark.parametrize("cost, asr, call", [
    ((-0.012, 0.002), (0.005, 0.1), "free and safe"),     # both intervals inside, the ASR's touching 0.1
    ((-0.012, 0.0101), (0.005, 0.02), "within noise"),    # the cost's reaches past one point
    ((0.0101, 0.03), (0.0, 0.02), "not free"),
    ((-0.01, 0.0), (0.1001, 0.2), "not safe"),
    ((0.02, 0.03), (0.5, 0.6), "not free"),               # not free is said first
    ((-0.01, 0.0), (0.05, 0.15), "within noise")])
def test_frontier_call(cost, asr, call):
    assert cr.frontier_call(cost, asr) == call


def test_seeds_call_needs_every_seed():
    assert cr.seeds_call(["free and safe"] * 2) == "too few seeds"
    assert cr.seeds_call(["not safe"] * 3) == "not safe"
    assert cr.seeds_call(["not safe", "not safe", "within noise"]) == "seeds disagree"


def test_defence_counts():
    assert cr.defence_counts(0.1, 0.96, 0.98) and not cr.defence_counts(0.11, 0.99, 0.98)
    assert not cr.defence_counts(0.0, 0.959, 0.98)


@pytest.mark.parametrize("pairs, verdict", [
    ([(None, None)] * 8, "attack fails"),
    ([(1.0, None)] * 6, "never visible"),                     # 6 of 6: p = 0.031
    ([(1.0, None)] * 5, "inconclusive"),                      # 5 of 5: p = 0.0625
    ([(1.0, None)] * 3 + [(1.0, 2.0)] * 3, "lag"),
    ([(2.0, 1.0)] * 7 + [(1.0, 1.0)], "visible first"),       # the tie is dropped: 7 of 7
    ([(2.0, 1.0)] * 6 + [(1.0, 2.0)] * 2, "inconclusive"),    # 6 against 2: p = 0.29
    ([(1.0, 1.0)] * 8, "inconclusive")])
def test_ordering_verdicts(pairs, verdict):
    o = cr.ordering(pairs)
    assert o.verdict == verdict
    assert o.n_seeds == len(pairs) and o.n_later + o.n_earlier + o.n_tied == o.n_success


def test_ordering_counts_and_p():
    o = cr.ordering([(1.0, None), (1.0, 2.0), (2.0, 1.0), (1.0, 1.0), (None, 0.5)])
    assert (o.n_success, o.n_later, o.n_earlier, o.n_tied, o.n_never) == (4, 2, 1, 1, 1)
    assert o.p == stats.sign_test(2, 1) == 1.0


def test_robust_verdict():
    assert cr.robust_verdict(["lag"] * 9) == "lag"
    assert cr.robust_verdict(["lag", "never visible"]) == "lag"
    assert cr.robust_verdict(["never visible"] * 3) == "never visible"
    assert cr.robust_verdict(["lag", "inconclusive"]) == cr.NOT_ROBUST


def test_separation_needs_p_or_a_narrow_interval():
    assert cr.separation(stats.AurocTest(1.0, 8, 8, 1e-4, 1.0, 1.0)) == "separates"
    assert cr.separation(stats.AurocTest(1.0, 3, 3, 0.05, 1.0, 1.0)) == "separates"
    assert cr.separation(stats.AurocTest(0.889, 3, 3, 0.10, 0.6, 1.0)) == "not shown at this sample size"
    assert cr.separation(stats.AurocTest(0.45, 30, 30, 0.7, 0.3, 0.6)) == "does not separate"
    # a point estimate below 0.75 is not absence while the interval reaches useful detection
    assert cr.separation(stats.AurocTest(0.6, 8, 8, 0.3, 0.3, 0.85)) == "not shown at this sample size"


def test_sign_verdict_needs_the_sign_test_and_names_the_majority():
    assert cr.sign_verdict(6, 0, "near", "apart") == (pytest.approx(2 * 0.5**6), "near")
    assert cr.sign_verdict(0, 8, "near", "apart")[1] == "apart"
    assert cr.sign_verdict(3, 0, "near", "apart") == (pytest.approx(0.25), cr.INCONCLUSIVE)    # three seeds: p = 0.25
    assert cr.sign_verdict(7, 1, "near", "apart")[1] == cr.INCONCLUSIVE                        # p = 0.07
