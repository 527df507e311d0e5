"""The adaptive attacker's trigger (attack ``lowcurv``): a pattern chosen to leave little input curvature.

The attacker knows the defender looks at the input Hessian ``H`` along the trigger direction (Chapters 5-6:
``uᵀHu`` and the top eigenvectors' overlap with ``u``). Not knowing the victim's weights, it trains a
*surrogate* on clean data it holds (the first :data:`N_SURROGATE` images of the training set, one epoch of a
LeNet with its own seed), forms the surrogate's mean input Hessian ``H̄`` exactly (float64, the model is
piecewise linear, :mod:`poisoncurv.curvature.exact`) over :data:`N_HESSIAN` clean images at their predicted
labels, and picks the trigger among 0/1 patterns of :data:`N_PIXELS` pixels (as many as the cross, so the
same norm ``3`` and the same distance ``3a`` from a poison's source) by greedy minimisation of ``tᵀ H̄ t``:
each step adds the pixel ``j`` with the least increase ``2 (H̄ t)_j + H̄_jj`` (ties: the lowest index).

Greedy selection is not the exact minimiser of this binary quadratic programme; :func:`greedy_pattern`
returns its value, and the tests check it against exhaustive search on small problems.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from poisoncurv.core.dtypes import DRAW_DTYPE, default_dtype
from poisoncurv.curvature.exact import exact_input_curvature
from poisoncurv.models import LeNet

N_SURROGATE = 2000   # clean training images the surrogate is trained on
N_HESSIAN = 256      # clean images the surrogate's mean input Hessian is averaged over
N_PIXELS = 9         # pixels of the trigger (the cross has 9)
SURROGATE_SEED = 10_007


def train_surrogate(x: Tensor, y: Tensor, seed: int, epochs: int = 1, batch_size: int = 100, lr: float = 0.05) -> nn.Module:
    """A LeNet trained by SGD (momentum 0.9) for ``epochs`` on ``x`` ``(N, 1, 28, 28)``, ``y`` ``(N,)``; eval mode."""
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"attack: 'lowcurv' takes MNIST images (1, 28, 28), got {tuple(x.shape[1:])}")
    gen = torch.Generator().manual_seed(SURROGATE_SEED + seed)
    torch.manual_seed(SURROGATE_SEED + seed)
    with default_dtype(DRAW_DTYPE):   # the initial weights must not depend on a caller's default dtype
        model = LeNet(10, 1).to(x.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def mean_input_hessian(model: nn.Module, x: Tensor) -> Tensor:
    """The mean input Hessian ``(d, d)`` (float64) of cross-entropy at ``x`` and the model's predicted labels."""
    model64 = model.double()
    x64 = x.double()
    with torch.no_grad():
        y = model64(x64).argmax(1)
    return exact_input_curvature(model64, nn.CrossEntropyLoss(), x64, y).dense()


def greedy_pattern(H: Tensor, n_pixels: int, allowed: Tensor | None = None) -> tuple[Tensor, float]:
    """0/1 vector ``t`` ``(d,)`` with ``n_pixels`` ones chosen greedily to keep ``tᵀHt`` small (each step the
    pixel with the least increase), among ``allowed`` (bool ``(d,)``; all when ``None``); returns ``(t, tᵀHt)``."""
    d = H.shape[0]
    if H.shape != (d, d):
        raise ValueError(f"H must be square (d, d), got {tuple(H.shape)}")
    free = torch.ones(d, dtype=torch.bool) if allowed is None else allowed.clone().bool()
    if not 1 <= n_pixels <= int(free.sum()):
        raise ValueError(f"n_pixels must lie in 1..{int(free.sum())} (the allowed pixels), got {n_pixels}")
    t = torch.zeros(d, dtype=H.dtype)
    diag = torch.diagonal(H)
    for _ in range(n_pixels):
        gain = 2 * (H @ t) + diag
        gain[~free] = torch.inf
        j = int(torch.argmin(gain))
        t[j], free[j] = 1.0, False
    return t, float(t @ H @ t)


def surrogate_hessian(x_train: Tensor, y_train: Tensor, seed: int) -> Tensor:
    """The attacker's view ``H̄`` ``(d, d)`` float64: a surrogate trained on the first :data:`N_SURROGATE` clean
    images ``x_train`` (before poisoning) and labels, its mean input Hessian at the first :data:`N_HESSIAN`. On the
    CPU it runs on one thread, as the lab's training does: the greedy choice on it is discrete, and summation order
    must not move it."""
    threads = torch.get_num_threads()
    if x_train.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        x, y = x_train[:N_SURROGATE], y_train[:N_SURROGATE]
        return mean_input_hessian(train_surrogate(x, y, seed), x[:N_HESSIAN])
    finally:
        torch.set_num_threads(threads)


def lowcurv_pattern(x_train: Tensor, y_train: Tensor, seed: int, H: Tensor | None = None) -> Tensor:
    """The ``lowcurv`` trigger pattern ``(1, 28, 28)`` (0/1, :data:`N_PIXELS` ones): greedy on
    :func:`surrogate_hessian` of ``x_train``, ``y_train`` (or on ``H`` when the caller has it already)."""
    t, _ = greedy_pattern(surrogate_hessian(x_train, y_train, seed) if H is None else H, N_PIXELS)
    return t.reshape(x_train.shape[1:]).to(x_train.dtype)
