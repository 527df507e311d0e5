"""Each detector finds a separated sub-cluster and finds nothing in an exact mixture.

Separated: 10 % of class 1 (30 of 300, p = 20) shifted by 6 along a random direction; then the shift's
share of the class covariance, eps(1 − eps)·36 = 3.2, is twice the top eigenvalue of the clean covariance
(about (1 + sqrt(p/n))² = 1.6), so the top direction is the shift's. No separation: the "poisons" are drawn
like everything else, so any score is exchangeable across the class and the AUROC is distributed as under the
null, with standard deviation sqrt((n+ + n- + 1)/(12 n+ n-)) = 0.055 per seed (within class 1) and 0.017 for
the mean over 10 seeds; the tolerance 0.07 is four of those.
"""

import numpy as np
import pytest
import torch

from poisoncurv.detect.clustering import activation_clustering, kmeans2
from poisoncurv.detect.metrics import rates, roc_auc
from poisoncurv.detect.spectral import spectral_signatures
from poisoncurv.detect.spectre import que_scores, robust_mean_cov, spectre
from poisoncurv.detect.suite import score_detectors
from poisoncurv.detect.synthetic import gaussian_mixture as mixture

EPS, N_CLASS = 0.1, 300

DETECTORS = {
    "spectral": lambda F, y: spectral_signatures(F, y, eps=EPS),
    "spectral-uncentred": lambda F, y: spectral_signatures(F, y, eps=EPS, centred=False),
    "clustering": lambda F, y: activation_clustering(F, y),
    "spectre": lambda F, y: spectre(F, y, eps=EPS),
}


def class1_auroc(det, y, poison) -> float:
    return roc_auc(det.scores[y == 1], poison[y == 1])


@pytest.mark.parametrize("name", DETECTORS)
def test_finds_a_separated_subcluster(name):
    for seed in range(3):
        F, y, poison = mixture(seed, separation=6.0)
        det = DETECTORS[name](F, y)
        assert class1_auroc(det, y, poison) > 0.95, (name, seed)
        tpr, fpr = rates(det.flags, poison)
        assert tpr > 0.9 and fpr < 0.15, (name, seed, tpr, fpr)


@pytest.mark.parametrize("name", DETECTORS)
def test_finds_nothing_in_an_exact_mixture(name):
    aucs = []
    for seed in range(10):
        F, y, poison = mixture(100 + seed, separation=0.0)
        aucs.append(class1_auroc(DETECTORS[name](F, y), y, poison))
    assert abs(np.mean(aucs) - 0.5) < 0.07, aucs


def test_spectral_budgets():
    F, y, poison = mixture(0, separation=6.0)
    by_eps = spectral_signatures(F, y, eps=EPS)
    assert by_eps.flags.sum() == 2 * 45                      # ⌈1.5·eps·n_c⌉ = 45 per class
    by_q = spectral_signatures(torch.as_tensor(F), torch.as_tensor(y), budget="quantile")
    assert by_q.flags.sum() == 2 * int(0.15 * N_CLASS)
    np.testing.assert_allclose(by_q.scores, by_eps.scores)               # same scores, another budget
    # the top singular vector of a class that is one rank-one spike plus nothing else is the spike
    Fc = np.outer(np.r_[np.ones(10), -np.ones(10)], np.eye(4)[2])
    s = spectral_signatures(Fc, np.zeros(20, int), eps=0.1).scores
    np.testing.assert_allclose(s, 1.0, rtol=1e-12)


def test_activation_clustering_respects_the_size_rule():
    F, y, poison = mixture(1, separation=8.0)
    assert activation_clustering(F, y).flags[poison].all()
    # two equal halves: the smaller cluster holds 50 % > 35 % of the class, nothing is flagged
    half = np.r_[np.zeros(50), np.ones(50)]
    F2 = np.random.default_rng(0).standard_normal((100, 5)) + 10 * half[:, None]
    det = activation_clustering(F2, np.zeros(100, int))
    assert not det.flags.any()
    lab, _ = kmeans2(F2)
    assert np.array_equal(lab, half.astype(int)) or np.array_equal(lab, 1 - half.astype(int))
    with pytest.raises(ValueError, match="restarts"):      # no restart, no clustering (was a TypeError on None)
        kmeans2(F2, restarts=0)


def test_robust_covariance_ignores_outliers_and_que_limits():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((2000, 3)) * np.array([1.0, 2.0, 0.5])
    Z[:100] = 50.0                                  # 5 % gross outliers
    mu, cov = robust_mean_cov(Z, eps=0.05)
    np.testing.assert_allclose(mu, 0.0, atol=0.1)
    np.testing.assert_allclose(np.diag(cov), [1.0, 4.0, 0.25], rtol=0.15)
    # alpha -> 0: Q -> I / k, the score is |w|²/k
    W = rng.standard_normal((50, 4))
    np.testing.assert_allclose(que_scores(W, 1e-9), (W**2).sum(1) / 4, rtol=1e-6)


def test_bad_inputs_name_the_argument():
    F, y, _ = mixture(0, separation=0.0)
    with pytest.raises(ValueError, match="features"):
        spectral_signatures(F[:, :, None], y, eps=0.1)
    with pytest.raises(ValueError, match="labels"):
        activation_clustering(F, y[:-1])
    with pytest.raises(ValueError, match="labels"):
        spectre(F, y.astype(float), eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        spectral_signatures(F, y)
    with pytest.raises(ValueError, match="eps"):
        spectre(F, y, eps=0.9)
    with pytest.raises(ValueError, match="budget"):
        spectral_signatures(F, y, eps=0.1, budget="top")
    with pytest.raises(ValueError, match="quantile"):
        spectral_signatures(F, y, budget="quantile", quantile=1.5)
    with pytest.raises(ValueError, match="alpha"):
        spectre(F, y, eps=0.1, alpha=0.0)
    with pytest.raises(ValueError, match="max_fraction"):
        activation_clustering(F, y, max_fraction=0.7)


def test_suite_scores_every_detector_within_the_poisons_class():
    F, y, poison = mixture(2, separation=6.0)
    scores = score_detectors(F, y, poison, EPS, scored_class=1)
    assert set(scores) == {"spectral signatures", "spectral (uncentred)", "activation clustering", "SPECTRE"}
    assert all(s.auroc > 0.95 and s.tpr > 0.9 for s in scores.values()), scores
    with pytest.raises(ValueError, match="scored_class"):
        score_detectors(F, y, poison, EPS, scored_class=0)
    with pytest.raises(ValueError, match="separation"):
        mixture(0, separation=-1.0)
