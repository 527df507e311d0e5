"""Dense reference matrices by ``torch.func``, independent of the operators' code paths: the
oracles the tests compare every operator with (in float64), and the dense baseline of the
benchmarks. Cost: ``d`` (or ``P``) products per example and ``O(d²)`` memory, so small models only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, hessian, jacrev

from poisoncurv.curvature.base import Loss, Model


def _example_loss(model: Model, loss_fn: Loss, x: Tensor, y: Tensor, b: int):
    """``ℓ_b`` as a function of the flattened input ``(d,)`` of example ``b``."""
    return lambda xb: loss_fn(model(xb.reshape(1, *x.shape[1:])), y[b:b + 1])


def per_example_input_hessians(model: Model, loss_fn: Loss, x: Tensor, y: Tensor) -> Tensor:
    """``(B, d, d)``: each example's own input Hessian ``∇²_{x_b} ℓ_b`` by ``torch.func.hessian``."""
    return torch.stack([hessian(_example_loss(model, loss_fn, x, y, b))(x[b].flatten())
                        for b in range(x.shape[0])]).detach()


def per_example_input_gradients(model: Model, loss_fn: Loss, x: Tensor, y: Tensor) -> Tensor:
    """``(B, d)``: each example's input gradient ``∇_{x_b} ℓ_b`` by ``torch.func.jacrev``."""
    return torch.stack([jacrev(_example_loss(model, loss_fn, x, y, b))(x[b].flatten())
                        for b in range(x.shape[0])]).detach()


def per_example_input_ggns(model: Model, loss_fn: Loss, x: Tensor, y: Tensor) -> Tensor:
    """``(B, d, d)``: each example's ``J_bᵀ Λ_b J_b`` with ``J_b`` ``(C, d)`` by ``jacrev`` and
    ``Λ_b`` ``(C, C)`` the Hessian of ``ℓ_b`` in the outputs by ``torch.func.hessian``."""
    out = []
    for b in range(x.shape[0]):
        J = jacrev(lambda xb: model(xb.reshape(1, *x.shape[1:]))[0])(x[b].flatten())
        o = model(x[b:b + 1]).detach()[0]
        Lam = hessian(lambda ob: loss_fn(ob[None], y[b:b + 1]))(o)
        out.append(J.T @ Lam @ J)
    return torch.stack(out).detach()


def param_hessian_dense(model: nn.Module, loss_fn: Loss, x: Tensor, y: Tensor) -> Tensor:
    """``(P, P)``: Hessian of the batch loss in the trainable parameters (flattened in the order of
    ``model.parameters()``) by ``torch.func.hessian`` of ``functional_call``."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    Hp = hessian(lambda q: loss_fn(functional_call(model, q, (x,)), y))(params)
    names = list(params)
    return torch.cat([torch.cat([Hp[a][b].reshape(params[a].numel(), params[b].numel()) for b in names], 1)
                      for a in names]).detach()
