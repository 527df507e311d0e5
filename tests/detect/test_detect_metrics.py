"""TPR, FPR and ROC-AUC against cases with known answers."""

import numpy as np
import pytest

from poisoncurv.detect.metrics import model_auroc, rates, roc_auc

TRUTH = np.array([False, False, True, True])


def test_auroc_closed_cases():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], TRUTH) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], TRUTH) == 0.0
    assert roc_auc([1.0, 1.0, 1.0, 1.0], TRUTH) == 0.5
    # one tie between a poison and a clean sample counts one half: (3 + 0.5)/4
    assert roc_auc([0.1, 0.5, 0.5, 0.9], TRUTH) == pytest.approx(3.5 / 4, abs=1e-15)


def test_auroc_equals_pairwise_count():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)      # many ties
    t = rng.random(60) < 0.3
    pos, neg = s[t], s[~t]
    expect = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert roc_auc(s, t) == pytest.approx(expect, abs=1e-14)


def test_rates_and_model_auroc():
    assert rates(np.array([False, True, True, False]), TRUTH) == (0.5, 0.5)
    assert rates(np.array([False, False, True, True]), TRUTH) == (1.0, 0.0)
    assert model_auroc([0.1, 0.2], [0.3, 0.4, 0.05]) == pytest.approx(4 / 6)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="is_poison"):
        roc_auc([0.1, 0.2], np.array([True, True]))
    with pytest.raises(ValueError, match="is_poison"):
        roc_auc([0.1, 0.2, 0.3], TRUTH)
    with pytest.raises(ValueError, match="scores"):
        roc_auc([[0.1, 0.2]], TRUTH)
    with pytest.raises(ValueError, match="flags"):
        rates(np.array([0, 1, 1, 0]), TRUTH)
    with pytest.raises(ValueError, match="clean_scores"):
        model_auroc([], [0.3])
