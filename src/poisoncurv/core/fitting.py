"""Fitting and comparison helpers shared by the drivers and the tests: one definition of each."""

from __future__ import annotations

from typing import Any

import numpy as np


def loglog_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (arrays of equal length, all entries > 0)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"loglog_slope needs two arrays of one shape with >= 2 points, got {x.shape} and {y.shape}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("loglog_slope needs positive x and y")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def decay_length(x: Any, y: Any) -> float:
    """Length ``ℓ`` of the exponential ``y ∝ exp(-x/ℓ)`` fitted by least squares to ``log y`` against ``x``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if (y <= 0).any():
        raise ValueError("decay_length needs positive y")
    slope = np.polyfit(x, np.log(y), 1)[0]
    return float(-1.0 / slope)


def linear_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``y`` against ``x``."""
    return float(np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)[0])


def rel_err(measured: Any, reference: Any) -> float:
    """Largest relative error ``max |measured / reference - 1|`` over the entries (arrays, tensors or numbers)."""
    m, r = _np(measured), _np(reference)
    return float(np.abs(m / r - 1.0).max())


def rel_norm_err(measured: Any, reference: Any) -> float:
    """Relative error in norm, ``‖measured − reference‖ / ‖reference‖`` (Frobenius norm over all entries)."""
    m, r = _np(measured), _np(reference)
    return float(np.linalg.norm((m - r).ravel()) / np.linalg.norm(r.ravel()))


def _np(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)
