"""Each attack's trigger on one test image and its poison direction, for the deep chapters' first figure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisoncurv.lab.attacks import apply_trigger, poison_direction
from poisoncurv.lab.data import ImageData, to_float


@dataclass(frozen=True)
class Gallery:
    """Each attack's trigger on the first test image (``(H, W)`` for one channel, else ``(H, W, 3)`` clipped to
    ``[0, 1]``) and its poison direction ``u`` averaged over the channels ``(H, W)`` (the unit mean change the trigger
    makes over ``n_sources`` test images; exactly the cross for the additive attacks)."""

    clean: np.ndarray
    triggered: dict[str, np.ndarray]
    direction: dict[str, np.ndarray]
    n_sources: int


def _image(x: np.ndarray) -> np.ndarray:
    """One image ``(C, H, W)`` as matplotlib shows it: ``(H, W)`` for one channel, else ``(H, W, C)``."""
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


def gallery(data: ImageData | None, attacks: tuple[str, ...], warp_strength: float, seed: int = 0,
            n_sources: int = 500) -> Gallery | None:
    """:class:`Gallery` from the first test images of ``data`` (``None`` without a copy of the data set)."""
    if data is None:
        return None
    x = to_float(data.x_test[:n_sources])
    trig = {a: _image(apply_trigger(a, x[:1], 1.0, warp_strength, seed)[0].clamp(0, 1).numpy()) for a in attacks}
    u = {a: poison_direction(a, x, 1.0, warp_strength, seed).reshape(x.shape[1:]).mean(0).numpy() for a in attacks}
    return Gallery(_image(x[0].numpy()), trig, u, len(x))
