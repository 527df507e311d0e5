"""Uncertainty of the book's verdicts: exact tests and intervals, one definition of each.

* :func:`binomial_ci`: Clopper-Pearson interval of a rate ``k / n`` (ASR, accuracy, a count of seeds);
* :func:`sign_test`: exact two-sided p of an ordering over seeds (ties dropped);
* :func:`auroc_test`: a model-level AUROC with its sample sizes, its exact one-sided permutation p (every
  relabelling of the models enumerated through the distribution of the rank sum, ties kept as mid-ranks) and a
  stratified bootstrap interval;
* :func:`mean_difference_ci`: a bootstrap interval for a difference of means (accuracy cost, ASR drop).

Every resampling takes an explicit seed: no global random state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta, binomtest, norm, rankdata

LEVEL = 0.95          # every interval of the book is a 95 % interval
N_BOOT = 10_000       # bootstrap resamples
BOOT_SEED = 0         # the bootstrap's generator seed (numpy PCG64)
MAX_EXACT = 120       # models at most in an exact permutation count


def binomial_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper-Pearson interval ``(lo, hi)`` of a rate with ``k`` successes in ``n`` trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"binomial_ci needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def rate_ci(rate: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """:func:`binomial_ci` of a stored rate measured on ``n`` items (``rate · n`` rounded to a count)."""
    return binomial_ci(int(round(rate * n)), n, level)


def wilson_ci(rate: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a rate measured on ``n`` items."""
    if n <= 0 or not 0 <= rate <= 1:
        raise ValueError(f"wilson_ci needs 0 <= rate <= 1 and n >= 1, got rate={rate}, n={n}")
    z = float(norm.ppf(1 - (1 - level) / 2))
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference_ci(p1: float, n1: int, p2: float, n2: int, level: float = LEVEL) -> tuple[float, float, float]:
    """``(p1 − p2, lo, hi)`` with Newcombe's hybrid score interval (from the two Wilson intervals; for rates on the
    same test images it is conservative: the pairing only narrows it)."""
    l1, u1 = wilson_ci(p1, n1, level)
    l2, u2 = wilson_ci(p2, n2, level)
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def sign_test(n_plus: int, n_minus: int) -> float:
    """Exact two-sided p of ``n_plus`` against ``n_minus`` under a fair coin (ties already dropped); 1 when both
    are zero."""
    if n_plus < 0 or n_minus < 0:
        raise ValueError(f"sign_test needs counts >= 0, got {n_plus} and {n_minus}")
    n = n_plus + n_minus
    return 1.0 if n == 0 else float(binomtest(n_plus, n, 0.5).pvalue)


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """Mann-Whitney AUROC of scores ``pos`` over ``neg`` (1-d float arrays), ties counted one half (average ranks)."""
    ranks = rankdata(np.concatenate([neg, pos]), method="average")
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def permutation_p(neg: Any, pos: Any) -> float:
    """Exact one-sided p of the AUROC of ``pos`` over ``neg``: the share of the ``C(n, n_pos)`` ways to call
    ``n_pos`` of the ``n`` models poisoned whose AUROC is at least the observed one. Computed from the
    distribution of the sum of doubled mid-ranks (a count of subsets by size and sum), so ties are exact."""
    neg, pos = _scores(neg, "neg"), _scores(pos, "pos")
    if len(neg) + len(pos) > MAX_EXACT:
        raise ValueError(f"permutation_p: {len(neg) + len(pos)} models; the exact count is for at most {MAX_EXACT}")
    r2 = np.rint(2 * rankdata(np.concatenate([neg, pos]), method="average")).astype(int)
    observed, m = int(r2[len(neg):].sum()), len(pos)
    total = int(r2.sum())
    ways = [[0] * (total + 1) for _ in range(m + 1)]     # ways[j][s]: subsets of j models with doubled rank sum s
    ways[0][0] = 1
    for r in r2:
        for j in range(min(m, len(r2)), 0, -1):
            row, prev = ways[j], ways[j - 1]
            for s in range(total, r - 1, -1):
                if prev[s - r]:
                    row[s] += prev[s - r]
    return sum(ways[m][observed:]) / math.comb(len(r2), m)


def _scores(values: Any, name: str) -> np.ndarray:
    a = np.ravel(np.asarray(values, dtype=np.float64))
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name}: need at least one finite score, got {a.size} values")
    return a


def bootstrap_auroc_ci(neg: Any, pos: Any, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile interval of the AUROC, resampling clean and poisoned models separately (stratified)."""
    neg, pos = _scores(neg, "neg"), _scores(pos, "pos")
    rng = np.random.default_rng(seed)
    n = rng.integers(0, len(neg), (n_boot, len(neg)))
    p = rng.integers(0, len(pos), (n_boot, len(pos)))
    win = np.sign(pos[:, None] - neg[None, :]) * 0.5 + 0.5        # (n_pos, n_neg): 1, ½ (tie) or 0
    stats = win[p[:, :, None], n[:, None, :]].mean((1, 2))
    a = 1 - level
    return float(np.quantile(stats, a / 2)), float(np.quantile(stats, 1 - a / 2))


@dataclass(frozen=True)
class AurocTest:
    """A model-level AUROC of ``n_pos`` poisoned against ``n_neg`` clean models, its exact one-sided permutation
    ``p`` and a 95 % stratified bootstrap interval ``(lo, hi)``."""

    auroc: float
    n_neg: int
    n_pos: int
    p: float
    lo: float
    hi: float

    @property
    def p_floor(self) -> float:
        """The smallest p this design can give: ``1 / C(n_neg + n_pos, n_pos)``."""
        return 1 / math.comb(self.n_neg + self.n_pos, self.n_pos)

    def text(self) -> str:
        """``0.97 (8 v 8, p = 0.0002)``: the AUROC with its design and p, for a table cell."""
        return f"{self.auroc:.3g} ({self.n_pos} v {self.n_neg}, p = {self.p:.2g})"


def auroc_test(neg: Any, pos: Any, seed: int = BOOT_SEED) -> AurocTest:
    """:class:`AurocTest` of the scores of poisoned models ``pos`` against clean models ``neg``."""
    neg, pos = _scores(neg, "neg"), _scores(pos, "pos")
    lo, hi = bootstrap_auroc_ci(neg, pos, seed=seed)
    return AurocTest(auroc(neg, pos), len(neg), len(pos), permutation_p(neg, pos), lo, hi)


def mean_ci(values: Any, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values`` (1-d, e.g. paired differences, one per seed) with a percentile
    bootstrap interval; one value gives a zero-width interval."""
    v = _scores(values, "values")
    m = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
    q = 1 - level
    return float(v.mean()), float(np.quantile(m, q / 2)), float(np.quantile(m, 1 - q / 2))


def mean_difference_ci(a: Any, b: Any, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float, float]:
    """``(mean(a) − mean(b), lo, hi)``: the difference of means with a percentile bootstrap interval, resampling
    each group on its own (``a`` and ``b`` 1-d, e.g. one value per seed). With one value in a group that group
    does not vary."""
    a, b = _scores(a, "a"), _scores(b, "b")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), (n_boot, len(a)))
    ib = rng.integers(0, len(b), (n_boot, len(b)))
    d = a[ia].mean(1) - b[ib].mean(1)
    q = 1 - level
    return float(a.mean() - b.mean()), float(np.quantile(d, q / 2)), float(np.quantile(d, 1 - q / 2))
