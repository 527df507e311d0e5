"""Gauss-Newton and Fisher operators over the input: the input GGN ``J_bᵀ Λ_b J_b`` (equal to the
true input Fisher for softmax cross-entropy and squared loss) and the empirical input Fisher."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from poisoncurv.curvature.base import Batch, CurvatureOperator, Data, InputOperator, Loss, Model, output_hessians


class InputGGN(InputOperator):
    """Mean over examples of ``J_bᵀ Λ_b J_b``: input Jacobian ``J_b`` ``(C, d)`` of the outputs and
    ``Λ_b`` the Hessian of the example's loss with respect to its outputs. For squared loss and
    softmax cross-entropy this is also the true input Fisher."""

    def _chunk_products(self, i: int, x: Tensor, y: Tensor, T: Tensor) -> Tensor:
        if i in self._cache:
            lam, vjp_fn = self._cache[i]
        else:
            out, vjp_fn = torch.func.vjp(self.model, x)[:2]  # a pair without has_aux (typed: a pair or a triple)
            self._loss(x, y)  # shape and decomposition checks
            lam = output_hessians(self.loss_fn, out, y)
            if self.keep_state:
                self._cache[i] = (lam, vjp_fn)
        Jt = torch.func.vmap(lambda t: torch.func.jvp(self.model, (x,), (t,))[1])(T)  # (k, B, C)
        u = torch.einsum("bcd,kbd->kbc", lam, Jt)
        return torch.func.vmap(lambda w: vjp_fn(w)[0])(u)


class EmpiricalInputFisher(InputOperator):
    """Mean over examples of ``g_b g_bᵀ`` with ``g_b = ∇_x ℓ_b`` the example's input gradient."""

    def _chunk_products(self, i: int, x: Tensor, y: Tensor, T: Tensor) -> Tensor:
        if i in self._cache:
            G = self._cache[i]
        else:
            xr = x.clone().requires_grad_(True)
            (G,) = torch.autograd.grad(self._loss(xr, y), xr)
            G = x.shape[0] * G.detach()  # per-example gradients g_b (the loss is a mean)
            if self.keep_state:
                self._cache[i] = G
        Gf, Tf = G.flatten(1), T.flatten(2)
        return (torch.einsum("bd,kbd->kb", Gf, Tf)[..., None] * Gf / x.shape[0]).reshape(T.shape)


def input_ggn(model: Model, loss_fn: Loss, x: Tensor | Iterable[Batch], y: Tensor | None = None, *,
              device: str | torch.device | None = None, chunk_size: int | None = None, vec_chunk: int = 16) -> InputGGN:
    """Mean over examples of the input generalised Gauss-Newton matrix ``J_bᵀ Λ_b J_b`` ``(d, d)``."""
    return InputGGN(model, loss_fn, Data(x, y, chunk_size, device), vec_chunk)


def input_fisher(model: Model, loss_fn: Loss, x: Tensor | Iterable[Batch], y: Tensor | None = None, *,
                 empirical: bool = False, device: str | torch.device | None = None, chunk_size: int | None = None,
                 vec_chunk: int = 16) -> CurvatureOperator:
    """Input Fisher ``(d, d)``, mean over examples.

    True Fisher (default): ``J_bᵀ F_b J_b`` with ``F_b`` the Fisher of the predictive distribution
    in the outputs; for ``CrossEntropyLoss`` (softmax) ``F_b = diag p − p pᵀ`` and for ``MSELoss``
    (a Gaussian likelihood whose negative log equals the mean squared error) ``F_b = (2/C) I``:
    in both cases the input GGN. ``empirical=True``: ``g_b g_bᵀ`` with ``g_b = ∇_x ℓ_b`` (rank one
    per example), for any loss.
    """
    data = Data(x, y, chunk_size, device)
    if empirical:
        return EmpiricalInputFisher(model, loss_fn, data, vec_chunk)
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.MSELoss)):
        raise ValueError(f"the true input Fisher is defined here for nn.CrossEntropyLoss and nn.MSELoss, got "
                         f"{type(loss_fn).__name__}; use input_ggn or empirical=True")
    return InputGGN(model, loss_fn, data, vec_chunk)
