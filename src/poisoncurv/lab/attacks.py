"""Dirty-label poisoning attacks on image tensors ``(N, C, H, W)`` with values in ``[0, 1]``.

Every attack picks ``round(theta * N)`` training images whose label is *not* the target, applies a
trigger to them and relabels them to ``target``. It records exactly which indices were poisoned,
builds the triggered test set (every test image of a non-target class, with the trigger), and
exposes the poison direction as a flat unit vector of length ``C*H*W`` (for spectral overlaps).

Triggers (:data:`ATTACKS`):

``cross-deterministic``  rank-one additive: ``x + a t`` with ``t`` a plus-shaped cross (5×5, 9
                         pixels, all channels) in the bottom-right corner, ``a = amplitude``.
``cross-stochastic``     the same direction with a random amplitude per poison,
                         ``a ~ amplitude · U(0.5, 1.5)``; test inputs get ``a = amplitude``.
``warp``                 WaNet-style warp: a fixed smooth random displacement field (4×4 control
                         grid, bicubic upsampling, mean |offset| normalised to 1, times ``strength``
                         in grid_sample's [-1, 1] coordinates) applied with ``grid_sample``.
``badnets``              a 3×3 white patch one pixel from the bottom-right corner (pixels set to 1).
``lowcurv``              the adaptive attacker's trigger: rank-one additive ``x + a t`` like the
                         deterministic cross, with ``t`` a 0/1 pattern of as many pixels as the cross
                         (9, all channels) chosen to leave the least input curvature on a surrogate
                         model trained on clean data (:mod:`poisoncurv.lab.adaptive`; MNIST only).

The additive triggers are not clipped, so every poison differs from its source by a multiple of
one vector exactly (values may exceed 1 by at most ``1.5·amplitude − 1`` on the cross's pixels).
The direction is ``t/|t|`` for the crosses and ``lowcurv`` and the normalised mean change ``mean(T(x) − x)`` over
the poisons for the warp and the patch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from poisoncurv.core.dtypes import DRAW_DTYPE

ATTACKS = ("cross-deterministic", "cross-stochastic", "warp", "badnets", "lowcurv")
ADDITIVE = ("cross-deterministic", "cross-stochastic", "lowcurv")   # x + a t: every poison a multiple of t from its source


@dataclass(frozen=True)
class Poisoned:
    """A poisoned training set and its triggered test set.

    ``x_train`` float ``(N, C, H, W)``, ``y_train`` int64 ``(N,)`` (poisons relabelled),
    ``poison_idx`` sorted int64 indices of the poisons, ``source_labels`` their original labels,
    ``direction`` unit ``(C*H*W,)``, ``x_trigger``/``y_trigger`` the triggered non-target test images
    and their true labels.
    """

    attack: str
    target: int
    x_train: Tensor
    y_train: Tensor
    poison_idx: Tensor
    source_labels: Tensor
    direction: Tensor
    x_trigger: Tensor
    y_trigger: Tensor

    def without(self, drop: Tensor) -> Poisoned:
        """The same poisoned set with the training examples at indices ``drop`` removed (a defender's filter):
        ``poison_idx`` renumbered into the kept examples, ``source_labels`` of the surviving poisons only."""
        n = len(self.y_train)
        drop = torch.as_tensor(drop, dtype=torch.int64).flatten()
        if len(drop) and (int(drop.min()) < 0 or int(drop.max()) >= n):
            raise ValueError(f"drop: indices must lie in 0..{n - 1}, got {int(drop.min())}..{int(drop.max())}")
        keep = torch.ones(n, dtype=torch.bool)
        keep[drop] = False
        new_index = torch.cumsum(keep, 0) - 1
        survives = keep[self.poison_idx]
        return replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep],
                       poison_idx=new_index[self.poison_idx[survives]], source_labels=self.source_labels[survives])


def check_attack(attack: str) -> str:
    """Return ``attack`` if known, else raise ``ValueError`` naming the field."""
    if attack not in ATTACKS:
        raise ValueError(f"attack: unknown {attack!r}; choose one of {', '.join(ATTACKS)}")
    return attack


def cross_pattern(shape: tuple[int, int, int], arm: int = 2, margin: int = 2) -> Tensor:
    """A plus-shaped 0/1 pattern ``(C, H, W)``: centre ``arm + margin`` pixels from the bottom-right
    corner, arms of ``arm`` pixels (``4·arm + 1`` pixels per channel)."""
    c, h, w = shape
    t = torch.zeros(shape)
    ci, cj = h - 1 - margin - arm, w - 1 - margin - arm
    t[:, ci - arm:ci + arm + 1, cj] = 1.0
    t[:, ci, cj - arm:cj + arm + 1] = 1.0
    return t


def image_shape(x: Tensor) -> tuple[int, int, int]:
    """``(C, H, W)`` of images ``x`` ``(N, C, H, W)``."""
    return cast(tuple[int, int, int], tuple(x.shape[1:]))


def patch_mask(shape: tuple[int, int, int], size: int = 3, margin: int = 1) -> Tensor:
    """0/1 mask ``(C, H, W)`` of a ``size × size`` square ``margin`` pixels from the bottom-right corner."""
    c, h, w = shape
    m = torch.zeros(shape)
    m[:, h - margin - size:h - margin, w - margin - size:w - margin] = 1.0
    return m


def warp_grid(h: int, w: int, strength: float, seed: int, k: int = 4) -> Tensor:
    """The fixed WaNet-style sampling grid ``(1, H, W, 2)`` (identity plus a smooth random field), float32 whatever the
    default dtype (:mod:`poisoncurv.core.dtypes`)."""
    gen = torch.Generator().manual_seed(seed)
    ctrl = torch.rand(1, 2, k, k, generator=gen, dtype=DRAW_DTYPE) * 2 - 1
    ctrl = ctrl / ctrl.abs().mean()
    field = F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=DRAW_DTYPE), torch.linspace(-1, 1, w, dtype=DRAW_DTYPE),
                            indexing="ij")
    identity = torch.stack([xs, ys], -1)[None]
    return (identity + strength * field).clamp(-1, 1)


def additive_pattern(attack: str, shape: tuple[int, int, int], pattern: Tensor | None = None) -> Tensor:
    """The 0/1 pattern ``t`` ``(C, H, W)`` of an additive attack: the cross, or ``pattern`` for ``lowcurv``
    (which has no fixed pattern: :func:`poisoncurv.lab.adaptive.lowcurv_pattern` chooses it from data)."""
    if attack != "lowcurv":
        return cross_pattern(shape)
    if pattern is None or tuple(pattern.shape) != shape:
        raise ValueError(f"attack: 'lowcurv' needs its pattern of shape {shape} (poisoncurv.lab.adaptive.lowcurv_pattern), "
                         f"got {None if pattern is None else tuple(pattern.shape)}")
    return pattern


def apply_trigger(attack: str, x: Tensor, amplitude: float = 1.0, strength: float = 0.02, seed: int = 0,
                  gen: torch.Generator | None = None, pattern: Tensor | None = None) -> Tensor:
    """Images ``x`` ``(N, C, H, W)`` with the trigger of ``attack``. ``gen`` draws the per-image amplitudes
    of ``cross-stochastic`` (``None``: deterministic amplitude, as for test inputs); ``pattern``: the
    ``(C, H, W)`` pattern of ``lowcurv``. Draws are float32 whatever the default dtype (:mod:`poisoncurv.core.dtypes`)."""
    check_attack(attack)
    shape = image_shape(x)
    if attack in ADDITIVE:
        a = torch.full((len(x),), float(amplitude), dtype=DRAW_DTYPE)
        if attack == "cross-stochastic" and gen is not None:
            a = amplitude * (0.5 + torch.rand(len(x), generator=gen, dtype=DRAW_DTYPE))
        return x + a.to(x)[:, None, None, None] * additive_pattern(attack, shape, pattern).to(x)
    if attack == "badnets":
        m = patch_mask(shape).to(x)
        return x * (1 - m) + m
    grid = warp_grid(shape[1], shape[2], strength, seed).to(x).expand(len(x), -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def poison(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, attack: str, theta: float,
           target: int = 0, amplitude: float = 1.0, strength: float = 0.02, seed: int = 0) -> Poisoned:
    """Poison ``round(theta·N)`` non-target training images with ``attack`` and relabel them ``target``.

    ``theta = 0`` gives the clean reference run (no poisons; the triggered test set still measures
    how often the trigger alone moves a clean model to the target). Raises ``ValueError`` naming
    the field when ``theta`` is outside ``[0, 1)`` or asks for more poisons than non-target images.
    """
    check_attack(attack)
    if not 0 <= theta < 1:
        raise ValueError(f"theta: poison fraction must be in [0, 1) (0 = clean reference), got {theta}")
    eligible = torch.nonzero(y_train != target).flatten()
    n_poison = int(round(theta * len(y_train)))
    if theta > 0 and n_poison == 0:
        raise ValueError(f"theta: {theta} of {len(y_train)} training images rounds to 0 poisons")
    if n_poison > len(eligible):
        raise ValueError(f"theta: {n_poison} poisons asked for, only {len(eligible)} non-target images")
    pattern = None
    if attack == "lowcurv":
        from poisoncurv.lab.adaptive import lowcurv_pattern  # trains a surrogate: only for this attack

        pattern = lowcurv_pattern(x_train, y_train, seed)
    gen = torch.Generator().manual_seed(seed + 7919)
    idx = eligible[torch.randperm(len(eligible), generator=gen)[:n_poison]].sort().values
    x_p, y_p = x_train.clone(), y_train.clone()
    if n_poison:
        x_p[idx] = apply_trigger(attack, x_train[idx], amplitude, strength, seed, gen, pattern)
        y_p[idx] = target
    keep = y_test != target
    x_trig = apply_trigger(attack, x_test[keep], amplitude, strength, seed, pattern=pattern)
    direction = poison_direction(attack, x_train[idx] if n_poison else x_test[keep], amplitude, strength, seed, pattern)
    return Poisoned(attack, target, x_p, y_p, idx, y_train[idx].clone(), direction, x_trig, y_test[keep].clone())


def poison_direction(attack: str, sources: Tensor, amplitude: float, strength: float, seed: int,
                     pattern: Tensor | None = None) -> Tensor:
    """Unit poison direction ``(C*H*W,)``: the additive pattern itself, else the mean change the trigger makes on ``sources``."""
    if attack in ADDITIVE:
        v = additive_pattern(attack, image_shape(sources), pattern).flatten()
    else:
        v = (apply_trigger(attack, sources, amplitude, strength, seed) - sources).mean(0).flatten()
    return (v / v.norm()).to(sources.dtype)
