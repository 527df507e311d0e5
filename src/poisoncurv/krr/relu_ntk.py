"""The infinite-width NTK of the two-layer ReLU network of :mod:`poisoncurv.krr.ntk`, and its curvature ratio.

For ``f(x) = aᵀ relu(W x / sqrt(d)) / sqrt(width)`` with both layers trained and standard normal
initialisation, the NTK tends (width → ∞) to the sum of the arc-cosine kernels of orders 1 and 0
(Cho and Saul), with ``θ`` the angle between ``x`` and ``z``:

    Θ(x, z) = |x| |z| g(θ) / (2π d),   g(θ) = sin θ + 2(π − θ) cos θ.

Its input gradient splits into a radial and a tangential part (``t̂`` the unit vector in the plane of
``x`` and ``z``, orthogonal to ``x``, pointing towards ``z``):

    ∇_x Θ = |z| (g(θ) x̂ − g'(θ) t̂) / (2π d),   g'(θ) = −cos θ − 2(π − θ) sin θ,

so the curvature ratio of Chapter 1 is ``R_k(x, z) = (1 + (g'(θ)/g(θ))²) / |x|²``. As ``x → z``,
``g'(0)/g(0) = −1/(2π)``: ``R_k → (1 + 1/4π²)/|z|²``, not 0. Along the ray ``x = s z`` (``θ = 0``)
``Θ`` has a cusp in the tangential directions (it depends on ``|θ|``), like the Laplace kernel at
``x = z``; there only the radial derivative exists, with ratio ``1/|x|²``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from poisoncurv.krr.kernels import _check_pair

CUSP_FACTOR = 1.0 + 1.0 / (4.0 * math.pi**2)     # lim_{θ→0} 1 + (g'/g)²: R_k |z|² in the tangential limit


def angle(x: Tensor, z: Tensor) -> Tensor:
    """Angles ``θ ∈ [0, π]`` between rows of ``x`` ``(B, d)`` and ``z`` ``(N, d)``: ``(B, N)``.

    Computed as ``2 atan2(|x̂ − ẑ|, |x̂ + ẑ|)``, accurate near 0 (``arccos`` of the cosine loses half the digits).
    """
    xh = x / x.norm(dim=1, keepdim=True)
    zh = z / z.norm(dim=1, keepdim=True)
    minus = (xh[:, None, :] - zh[None, :, :]).norm(dim=-1)
    plus = (xh[:, None, :] + zh[None, :, :]).norm(dim=-1)
    return 2 * torch.atan2(minus, plus)


def g(theta: Tensor) -> Tensor:
    """``g(θ) = sin θ + 2(π − θ) cos θ`` (so ``Θ = |x||z| g / 2πd``)."""
    return torch.sin(theta) + 2 * (math.pi - theta) * torch.cos(theta)


def g_prime(theta: Tensor) -> Tensor:
    """``g'(θ) = −cos θ − 2(π − θ) sin θ``."""
    return -torch.cos(theta) - 2 * (math.pi - theta) * torch.sin(theta)


@dataclass(frozen=True)
class ReLUNTKKernel:
    """Infinite-width NTK of the two-layer ReLU network (no biases), a :mod:`~poisoncurv.krr.kernels` kernel.

    ``grad`` raises on queries on the ray of a centre (``θ = 0``), where the kernel has its cusp.
    """

    name: str = "relu_ntk"

    def __call__(self, x: Tensor, z: Tensor) -> Tensor:
        _check_pair(x, z)
        norms = x.norm(dim=1)[:, None] * z.norm(dim=1)[None, :]
        return norms * g(angle(x, z)) / (2 * math.pi * x.shape[1])

    def grad(self, x: Tensor, z: Tensor) -> Tensor:
        """``∇_x Θ(x_b, z_n)``, ``(B, N, d)``, from the radial/tangential formula of the module docstring."""
        _check_pair(x, z)
        theta = angle(x, z)
        if bool((theta == 0).any()):
            raise ValueError("the ReLU NTK has no input gradient on the ray of a centre (theta = 0: a cusp)")
        xh = x / x.norm(dim=1, keepdim=True)
        zh = z / z.norm(dim=1, keepdim=True)
        cos = torch.cos(theta)[..., None]
        t_hat = (zh[None, :, :] - cos * xh[:, None, :]) / torch.sin(theta)[..., None]
        radial = g(theta)[..., None] * xh[:, None, :]
        return z.norm(dim=1)[None, :, None] * (radial - g_prime(theta)[..., None] * t_hat) / (2 * math.pi * x.shape[1])


def curvature_ratio_closed(x: Tensor, z: Tensor) -> Tensor:
    """``R_k(x_b, z) = (1 + (g'(θ)/g(θ))²)/|x_b|²`` for queries ``(B, d)`` and one centre ``z`` ``(d,)``; ``(B,)``."""
    theta = angle(x, z.reshape(1, -1))[:, 0]
    return (1 + (g_prime(theta) / g(theta)) ** 2) / (x**2).sum(-1)


def radial_ratio(x: Tensor) -> Tensor:
    """The radial part of ``R_k``, ``(∂_r Θ)²/Θ² = 1/|x|²`` (the only derivative on the ray of the centre); ``(B,)``."""
    return 1.0 / (x**2).sum(-1)
