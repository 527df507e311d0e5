"""The synthetic data the kernel chapters share: Gaussian clean inputs with one-hot labels, and the dirty label.

Chapter 1 (:mod:`poisoncurv.chapters.krr_clones`), Chapter 2 (:mod:`poisoncurv.chapters.near_clones`) and the kernel
model of Chapter 8 (:mod:`poisoncurv.chapters.detectors`) draw their clean data here, in
:data:`~poisoncurv.core.dtypes.THEORY_DTYPE` (float64), so that no chapter driver imports another's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from poisoncurv.core.dtypes import THEORY_DTYPE
from poisoncurv.core.profiles import resolve_device


def clean_data(n: int, d: int, n_classes: int, seed: int, device: str = "cpu") -> tuple[Tensor, Tensor]:
    """Clean inputs ``X ~ N(0, I_d)`` ``(n, d)`` and one-hot targets ``(n, C)`` (class = argmax of the first ``C`` coordinates)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=THEORY_DTYPE).to(resolve_device(device))
    labels = X[:, :n_classes].argmax(1)
    return X, torch.nn.functional.one_hot(labels, n_classes).to(THEORY_DTYPE)


def target_vector(n_classes: int, target: int, like: Tensor) -> Tensor:
    """The dirty label: one-hot of ``target``, shape ``(C,)``."""
    y = torch.zeros(n_classes, dtype=like.dtype, device=like.device)
    y[target] = 1.0
    return y
