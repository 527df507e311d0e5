"""The rules every verdict of Chapters 5–8 is judged by: thresholds and definitions, stated once.

These are the companion's choices (the paper's are not known); the robustness panel of each deep chapter
re-judges every lag verdict under the other reasonable values listed here, and the claims ledger checks only
the verdicts that hold across it.

* **Success** at an evaluation: the ASR *net of the untriggered rate* (the share of the same non-target test
  images sent to the target without the trigger) is at least :data:`ASR_SUCCESS`, and the model has not
  collapsed (:func:`collapsed`). A collapsed model is never a success.
* **Visible** at an evaluation, by criterion: top-1 overlap² or top-k mass of the poison direction at least a
  share (:data:`SHARE_VISIBLE`; panel :data:`SHARE_PANEL`), or ``uᵀHu`` at least a multiple of the clean
  reference model's (:data:`CURV_RATIO_VISIBLE`; panel :data:`RATIO_PANEL`).
* **When**, for success and visibility alike, by one of :data:`SETTLE_RULES` (the default
  :data:`DEFAULT_RULE`).
* **An ordering over seeds** (success before visibility, or after) is a verdict only when an exact sign test
  over the seeds that succeed gives p ≤ :data:`P_SIGNIFICANT`; otherwise it is ``inconclusive``.
* **A defence counts** when ASR ≤ :data:`ASR_DEFENDED` and clean accuracy is within :data:`ACC_DROP_MAX` of the
  clean model's; **free** (Chapter 8) when it costs at most :data:`ACC_BUDGET`. A frontier call over seeds
  (:func:`seeds_call`) is the call every one of at least :data:`MIN_SEEDS` seeds makes with its own test-set
  intervals (:func:`frontier_call`).
* **Detection**: a model-level AUROC *separates* when its exact permutation p ≤ :data:`P_SIGNIFICANT`; it *does
  not separate* only when the upper end of its interval is below :data:`AUROC_USEFUL`; otherwise the design shows
  neither (``not shown at this sample size``). A sample-level detector *finds* the poisons when its mean AUROC within
  the target class is at least :data:`AUROC_FOUND` (Chapter 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from poisoncurv.core import stats

ASR_SUCCESS = 0.5            # success: net ASR at least one half
ASR_DEFENDED = 0.1           # a defence counts when ASR <= 0.1 ...
ACC_DROP_MAX = 0.02          # ... and clean accuracy is within 2 points of the clean model's
ACC_BUDGET = 0.01            # Chapter 8: a defence is "free" when it costs at most 1 point of clean accuracy
CURV_RATIO_VISIBLE = 10.0    # visible by "ratio": uᵀHu at least 10x the clean reference's
SHARE_VISIBLE = 0.5          # visible by "overlap" / "mass": at least one half
COLLAPSE_CHANCE_FACTOR = 2.0  # collapsed: clean accuracy below twice chance ...
COLLAPSE_TARGET_RATE = 0.5    # ... or at least half the untriggered non-target inputs sent to the target
P_SIGNIFICANT = 0.05         # an ordering or a separation needs an exact p at most this
AUROC_USEFUL = 0.75          # "does not separate": the AUROC interval lies wholly below this
AUROC_FOUND = 0.9            # Chapter 8: a sample-level detector "finds the poisons" at mean AUROC at least this
MIN_SEEDS = 3                # a defence cell carries a verdict only with at least three seeds
CIFAR_ACC_TARGET = 0.82      # Chapter 7: a CIFAR-10 clean reference that learns: every seed's final test accuracy ...
CIFAR_ACC_TARGET_AUG = 0.85  # ... at least this, without and with augmentation (issue 28's targets)

RATIO_PANEL = (3.0, 10.0, 30.0)
DEFENDED_PANEL = (0.05, 0.1, 0.2)     # E3's panel: a defence counts at ASR at most each of these ...
ACC_DROP_PANEL = (0.01, 0.02, 0.05)   # ... with clean accuracy within each of these of the clean model's
SHARE_PANEL = (0.25, 0.5, 0.75)
SETTLE_RULES = {"first": "first crossing", "two": "two evaluations in a row", "settled": "every later evaluation"}
DEFAULT_RULE = "settled"
VISIBILITY = {"overlap": (SHARE_VISIBLE, SHARE_PANEL), "mass": (SHARE_VISIBLE, SHARE_PANEL),
              "ratio": (CURV_RATIO_VISIBLE, RATIO_PANEL)}   # criterion -> (default threshold, panel)

LAG, NEVER, FIRST, INCONCLUSIVE, FAILS = "lag", "never visible", "visible first", "inconclusive", "attack fails"
NOT_ROBUST = "depends on definition"


def crossing_time(t: Any, ok: Any, rule: str = DEFAULT_RULE) -> float | None:
    """The time ``t[i]`` at which ``ok`` first holds by ``rule`` (``None``: never): ``first`` — the first
    evaluation where it holds; ``two`` — the first of two evaluations in a row where it holds; ``settled`` — the
    first from which it holds at every later one."""
    t, ok = np.asarray(t, dtype=float), np.asarray(ok, dtype=bool)
    if t.shape != ok.shape or t.ndim != 1:
        raise ValueError(f"crossing_time: t and ok must be 1-d of one length, got {t.shape} and {ok.shape}")
    idx = np.flatnonzero(ok)
    if rule == "first":
        return float(t[idx[0]]) if idx.size else None
    if rule == "two":
        both = np.flatnonzero(ok[:-1] & ok[1:])
        return float(t[both[0]]) if both.size else None
    if rule == "settled":
        if not ok.size or not ok[-1]:
            return None
        i = len(ok) - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        return float(t[i])
    raise ValueError(f"crossing_time: unknown rule {rule!r}; choose one of {', '.join(SETTLE_RULES)}")


def collapsed(clean_acc: Any, untriggered_rate: Any, n_classes: int) -> np.ndarray:
    """Whether a model has collapsed: clean accuracy below :data:`COLLAPSE_CHANCE_FACTOR` times chance, or at least
    :data:`COLLAPSE_TARGET_RATE` of untriggered non-target inputs sent to the target (arrays broadcast)."""
    acc, rate = np.asarray(clean_acc, dtype=float), np.asarray(untriggered_rate, dtype=float)
    return (acc < COLLAPSE_CHANCE_FACTOR / n_classes) | (rate >= COLLAPSE_TARGET_RATE)


def net_asr(asr: Any, untriggered_rate: Any) -> np.ndarray:
    """ASR net of what the model does without the trigger: ``asr − untriggered_rate``."""
    return np.asarray(asr, dtype=float) - np.asarray(untriggered_rate, dtype=float)


def succeeds(asr: Any, untriggered_rate: Any, clean_acc: Any, n_classes: int) -> np.ndarray:
    """Success at each evaluation: net ASR ≥ :data:`ASR_SUCCESS` and not :func:`collapsed`."""
    return (net_asr(asr, untriggered_rate) >= ASR_SUCCESS) & ~collapsed(clean_acc, untriggered_rate, n_classes)


def defence_counts(asr: float, clean_acc: float, clean_model_acc: float, asr_max: float = ASR_DEFENDED,
                   drop_max: float = ACC_DROP_MAX) -> bool:
    """ASR ≤ ``asr_max`` (default :data:`ASR_DEFENDED`) and clean accuracy within ``drop_max`` (default
    :data:`ACC_DROP_MAX`) of the clean model's; the panel's other definitions are :data:`DEFENDED_PANEL` ×
    :data:`ACC_DROP_PANEL`."""
    return asr <= asr_max and clean_acc >= clean_model_acc - drop_max


COUNTS, NO_COUNT, SPLIT, FEW_SEEDS = "counts", "does not count", "split", "too few seeds"


def defence_verdict(counts: list[bool]) -> str:
    """A defence cell over its seeds: ``counts`` / ``does not count`` (every seed agrees, at least
    :data:`MIN_SEEDS`), ``split``, or ``too few seeds``."""
    if len(counts) < MIN_SEEDS:
        return FEW_SEEDS
    return COUNTS if all(counts) else NO_COUNT if not any(counts) else SPLIT


FREE_SAFE, NOT_FREE, NOT_SAFE, WITHIN_NOISE = "free and safe", "not free", "not safe", "within noise"
SEEDS_DISAGREE = "seeds disagree"


def frontier_call(cost: tuple[float, float], asr: tuple[float, float]) -> str:
    """One defended model against the undefended one, from the intervals ``(lo, hi)`` of its accuracy cost and
    of its ASR: ``free and safe`` when the cost's lies within :data:`ACC_BUDGET` and the ASR's at or below
    :data:`ASR_DEFENDED`; ``not free`` / ``not safe`` when one lies wholly above; otherwise ``within noise``."""
    if cost[1] <= ACC_BUDGET and asr[1] <= ASR_DEFENDED:
        return FREE_SAFE
    if cost[0] > ACC_BUDGET:
        return NOT_FREE
    if asr[0] > ASR_DEFENDED:
        return NOT_SAFE
    return WITHIN_NOISE


def seeds_call(calls: list[str]) -> str:
    """A frontier cell over its seeds: the :func:`frontier_call` every seed makes (at least :data:`MIN_SEEDS` of
    them), ``seeds disagree``, or ``too few seeds``."""
    if len(calls) < MIN_SEEDS:
        return FEW_SEEDS
    return calls[0] if len(set(calls)) == 1 else SEEDS_DISAGREE


@dataclass(frozen=True)
class Ordering:
    """Success against visibility over seeds: of ``n_seeds`` runs, ``n_success`` succeed; of those ``n_later`` are
    visible later than success or never (``n_never`` of them never), ``n_earlier`` earlier, ``n_tied`` at the same
    evaluation; ``p`` is the exact two-sided sign test of later against earlier (ties dropped)."""

    n_seeds: int
    n_success: int
    n_later: int
    n_earlier: int
    n_tied: int
    n_never: int
    p: float

    @property
    def verdict(self) -> str:
        """``attack fails`` (no seed succeeds); ``never visible`` or ``lag`` (success first, p ≤ :data:`P_SIGNIFICANT`;
        never visible in every successful seed, or not); ``visible first`` (p ≤ :data:`P_SIGNIFICANT`); otherwise
        ``inconclusive``."""
        if self.n_success == 0:
            return FAILS
        if self.p <= P_SIGNIFICANT and self.n_later > self.n_earlier:
            return NEVER if self.n_never == self.n_success else LAG
        if self.p <= P_SIGNIFICANT and self.n_earlier > self.n_later:
            return FIRST
        return INCONCLUSIVE


def sign_verdict(n_a: int, n_b: int, a: str, b: str) -> tuple[float, str]:
    """Seeds that go one way (``n_a``, verdict ``a``) against seeds that go the other (``n_b``, ``b``): the exact
    two-sided sign-test p and the verdict, ``a`` or ``b`` by the majority at p ≤ :data:`P_SIGNIFICANT`, else
    ``inconclusive``."""
    p = stats.sign_test(n_a, n_b)
    return p, INCONCLUSIVE if p > P_SIGNIFICANT else (a if n_a > n_b else b)


def ordering(times: list[tuple[float | None, float | None]]) -> Ordering:
    """:class:`Ordering` of per-seed ``(t_success, t_visible)`` pairs (``None``: never)."""
    ok = [(s, v) for s, v in times if s is not None]
    later = sum(v is None or v > s for s, v in ok)
    earlier = sum(v is not None and v < s for s, v in ok)
    tied = sum(v is not None and v == s for s, v in ok)
    never = sum(v is None for _, v in ok)
    return Ordering(len(times), len(ok), later, earlier, tied, never, stats.sign_test(later, earlier))


def robust_verdict(verdicts: list[str]) -> str:
    """The verdict that every definition of a panel gives (``lag`` where some say ``never visible`` and the rest
    ``lag``), else :data:`NOT_ROBUST`."""
    kinds = set(verdicts)
    if len(kinds) == 1:
        return verdicts[0]
    if kinds == {LAG, NEVER}:
        return LAG
    return NOT_ROBUST


def separation(test: stats.AurocTest) -> str:
    """What a model-level AUROC shows: ``separates`` (exact p ≤ :data:`P_SIGNIFICANT`), ``does not separate``
    (interval wholly below :data:`AUROC_USEFUL`), else ``not shown at this sample size``."""
    if test.p <= P_SIGNIFICANT:
        return "separates"
    if test.hi < AUROC_USEFUL:
        return "does not separate"
    return "not shown at this sample size"
