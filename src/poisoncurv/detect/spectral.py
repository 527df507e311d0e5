"""Spectral signatures (Tran, Li and Madry, NeurIPS 2018).

Per class with features ``F_c`` ``(n_c, p)`` and class mean ``μ_c``: ``v`` is the top right singular vector
of the centred ``F_c − μ_c``, and the score of sample ``i`` is ``((x_i − μ_c)·v)²``. The released code of the
paper projects the *uncentred* features instead, ``(x_i·v)²`` (``centred=False``; ``v`` still from the centred
matrix). Removal, per class: the ``⌈1.5·eps·n_c⌉`` largest scores (``budget="eps"``, the paper's rule) or the
scores above the class's ``quantile`` (``budget="quantile"``, 0.85 by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisoncurv.detect.base import Detection, as_inputs, check_eps, classes, top_fraction

BUDGETS = ("eps", "quantile")


def spectral_signatures(features: Any, labels: Any, eps: float | None = None, budget: str = "eps", centred: bool = True,
                        quantile: float = 0.85, multiplier: float = 1.5) -> Detection:
    """Scores ``(N,)`` and flags of spectral signatures; ``eps`` is needed for ``budget="eps"``."""
    F, y = as_inputs(features, labels)
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    fraction = 0.0  # the share of each class flagged under budget="eps"
    if budget == "eps":
        if eps is None:
            raise ValueError("eps (the poison fraction) is needed for budget='eps'")
        check_eps(eps)
        fraction = multiplier * eps
        if not 0 < fraction <= 1:
            raise ValueError(f"multiplier·eps must lie in (0, 1], got multiplier={multiplier}, eps={eps}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    scores, flags = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    for idx in classes(y):
        Fc = F[idx]
        R = Fc - Fc.mean(0)
        v = np.linalg.svd(R, full_matrices=False)[2][0]
        s = ((R if centred else Fc) @ v) ** 2
        scores[idx] = s
        flags[idx] = top_fraction(s, fraction) if budget == "eps" else s > np.quantile(s, quantile)
    name = f"spectral signatures ({'centred' if centred else 'uncentred'}, budget {budget})"
    return Detection(scores, flags, name)
