"""The parameter Hessian of the mean loss, for comparison with the input operators."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from poisoncurv.curvature.base import (
    Batch,
    CurvatureOperator,
    Data,
    Loss,
    check_eval_mode,
    check_loss,
    jacobian_products,
)


class ParamHessian(CurvatureOperator):
    """Hessian of the mean loss over all data with respect to the trainable parameters, ``(P, P)``."""

    def __init__(self, model: nn.Module, loss_fn: Loss, data: Data, vec_chunk: int):
        if not isinstance(model, nn.Module):
            raise ValueError(f"param_hessian needs an nn.Module, got {type(model).__name__}")
        check_eval_mode(model)
        check_loss(loss_fn)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("model has no trainable parameters")
        super().__init__(sum(p.numel() for p in self.params), self.params[0].dtype, self.params[0].device, vec_chunk)
        self.model, self.loss_fn, self.data = model, loss_fn, data

    def _apply(self, V: Tensor) -> Tensor:
        total, count = torch.zeros_like(V), 0
        for x, y in self.data:
            loss = self.loss_fn(self.model(x), y)
            gs = torch.autograd.grad(loss, self.params, create_graph=True, materialize_grads=True)
            g = torch.cat([t.reshape(-1) for t in gs])
            hvs = jacobian_products(g, self.params, V)
            total += x.shape[0] * torch.cat([h.reshape(V.shape[0], -1) for h in hvs], dim=1)
            count += x.shape[0]
        return total / count


def param_hessian(model: nn.Module, loss_fn: Loss, x: Tensor | Iterable[Batch], y: Tensor | None = None, *,
                  device: str | torch.device | None = None, chunk_size: int | None = None,
                  vec_chunk: int = 16) -> ParamHessian:
    """Hessian of the mean loss with respect to the trainable parameters (flattened), ``(P, P)``."""
    return ParamHessian(model, loss_fn, Data(x, y, chunk_size, device), vec_chunk)
