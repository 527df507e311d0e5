"""Filter-then-retrain defences: a sample-level detector removes what it flags, and the model is trained again.

The defender holds the poisoned training set and a model trained on it (the same run without the filter), computes
that model's penultimate features ``φ(x)`` (its ``embed``) of every training example, runs one detector of
:data:`poisoncurv.detect.suite.DETECTORS` class by class with the known poison fraction ``ε`` (poisons over the
size of the target class, as in Chapter 8), and drops every flagged example, poisons and clean alike. The retrained
run (:func:`poisoncurv.lab.runner.get` orchestrates it) records :class:`FilterOutcome` under ``filter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from poisoncurv.detect.metrics import rates
from poisoncurv.detect.suite import DETECTORS
from poisoncurv.lab.attacks import Poisoned

# config name -> detector of poisoncurv.detect.suite
DETECTOR_OF = {"spectral": "spectral signatures", "spectral-uncentred": "spectral (uncentred)",
               "ac": "activation clustering", "spectre": "SPECTRE"}


@dataclass(frozen=True)
class FilterOutcome:
    """What a filter removed: ``flags`` bool ``(N,)`` over the poisoned training set, ``n_removed``, the removed
    poisons' share ``tpr`` and the removed clean examples' share ``fpr``, the ``eps`` the detector was given, and
    the ``base_key`` of the unfiltered run whose model it used."""

    detector: str
    flags: np.ndarray
    n_removed: int
    tpr: float
    fpr: float
    eps: float
    base_key: str

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (the removed indices, not the mask)."""
        out = {k: v for k, v in asdict(self).items() if k != "flags"}
        return {**out, "removed_idx": np.nonzero(self.flags)[0].tolist()}


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch: int = 2000) -> np.ndarray:
    """Penultimate features ``(N, p)`` float64 of images ``x`` ``(N, C, H, W)`` (the model in eval mode)."""
    model.eval()
    embed = cast(Callable[[torch.Tensor], torch.Tensor], model.embed)  # the classifiers' penultimate features (nn.Module types it loosely)
    return torch.cat([embed(xb) for xb in x.split(batch)]).double().cpu().numpy()


def known_poisons(p: Poisoned) -> tuple[np.ndarray, float]:
    """What the defender is assumed to know of ``p``: the poison mask bool ``(N,)`` (for scoring only) and the
    poison fraction ``eps`` = ``|poisons| / |target class|`` its detectors are given."""
    y = p.y_train.numpy()
    truth = np.zeros(len(y), dtype=bool)
    truth[p.poison_idx.numpy()] = True
    return truth, float(truth.sum() / (y == p.target).sum())


def filter_poisons(model: nn.Module, p: Poisoned, filter_name: str, base_key: str) -> FilterOutcome:
    """Run the detector of ``filter_name`` on ``model``'s features of the poisoned training set ``p``; the
    poison fraction it is given is the known ``|poisons| / |target class|``."""
    if filter_name not in DETECTOR_OF:
        raise ValueError(f"filter: unknown {filter_name!r}; choose one of {', '.join(DETECTOR_OF)}")
    truth, eps = known_poisons(p)
    if not truth.any():
        raise ValueError("filter: the training set holds no poisons (theta = 0): nothing for the known eps to describe")
    det = DETECTORS[DETECTOR_OF[filter_name]](features(model, p.x_train), p.y_train.numpy(), eps)
    tpr, fpr = rates(det.flags, truth)
    return FilterOutcome(filter_name, det.flags, int(det.flags.sum()), float(tpr), float(fpr), eps, base_key)
