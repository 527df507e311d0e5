"""Input Hessians of the loss: the mean over examples (``input_hessian``) and every example's own
(``per_example_input_hessian``), by double backward through a cached first-order graph or by
forward-over-reverse."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from poisoncurv.curvature.base import Batch, Data, InputOperator, Loss, Model, check_finite, grad_graph, jacobian_products

METHODS = ("double_backward", "forward_over_reverse")


class InputHessian(InputOperator):
    """Mean over examples of each example's input Hessian of its loss, ``(d, d)``."""

    def __init__(self, model: Model, loss_fn: Loss, data: Data, vec_chunk: int, method: str, cache_graph: bool | None):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        super().__init__(model, loss_fn, data, vec_chunk)
        self.method = method
        if cache_graph is not None:
            self.keep_state = cache_graph

    def _chunk_products(self, i: int, x: Tensor, y: Tensor, T: Tensor) -> Tensor:
        if self.method == "forward_over_reverse":
            grad_fn = torch.func.grad(self._loss)
            if y.is_floating_point():  # an explicit zero tangent for y avoids a ZeroTensor error in mse_loss
                zero = torch.zeros_like(y)
                return torch.func.vmap(lambda t: torch.func.jvp(grad_fn, (x, y), (t, zero))[1])(T)
            return torch.func.vmap(lambda t: torch.func.jvp(lambda z: grad_fn(z, y), (x,), (t,))[1])(T)
        if i in self._cache:
            xr, g = self._cache[i]
        else:
            xr = x.clone().requires_grad_(True)
            g = grad_graph(self._loss(xr, y), xr)
            if self.keep_state:
                self._cache[i] = (xr, g)
        return jacobian_products(g, xr, T)[0]


class PerExampleInputHessian:
    """Each example's own input Hessian ``∇²_{x_b} ℓ_b``, stacked ``(B, d, d)``.

    ``op @ V`` takes one tangent per example, ``V`` of shape ``(B, d)`` (or ``(B, d, k)``), and
    returns ``H_b v_b`` for every ``b`` from one batched product (block-diagonal batching).
    """

    def __init__(self, model: Model, loss_fn: Loss, x: Tensor, y: Tensor, device: str | torch.device | None,
                 vec_chunk: int, method: str):
        self.inner = InputHessian(model, loss_fn, Data(x, y, None, device), vec_chunk, method, cache_graph=True)
        self.B, self.d = x.shape[0], self.inner.n
        self.dtype, self.device = self.inner.dtype, self.inner.device

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.B, self.d, self.d)

    def __matmul__(self, V: Tensor) -> Tensor:
        """``H_b V_b`` for ``V`` of shape ``(B, d)`` or ``(B, d, k)``; same shape out."""
        if V.ndim not in (2, 3) or V.shape[:2] != (self.B, self.d):
            raise ValueError(f"per-example tangents must have shape ({self.B}, {self.d}) or ({self.B}, {self.d}, k), "
                             f"got {tuple(V.shape)}")
        check_finite("vector", V)
        op = self.inner
        op_shape = op.data.input_shape
        W = V.to(op.device, op.dtype).reshape(self.B, self.d, -1).permute(2, 0, 1)  # (k, B, d)
        x, y = op.data.chunks[0]
        outs = [op._chunk_products(0, x, y, W[i:i + op.vec_chunk].reshape(-1, self.B, *op_shape))
                for i in range(0, W.shape[0], op.vec_chunk)]
        return (self.B * torch.cat(outs).detach().reshape(W.shape)).permute(1, 2, 0).reshape(V.shape)

    def dense(self, max_dim: int = 8192) -> Tensor:
        """``(B, d, d)``: every example's Hessian, from ``d`` batched products."""
        if self.d > max_dim:
            raise ValueError(f"dense() of {self.d} x {self.d} blocks exceeds max_dim={max_dim}")
        eye = torch.eye(self.d, dtype=self.dtype, device=self.device)
        return self @ eye.expand(self.B, self.d, self.d)


def input_hessian(model: Model, loss_fn: Loss, x: Tensor | Iterable[Batch], y: Tensor | None = None, *,
                  device: str | torch.device | None = None, chunk_size: int | None = None, vec_chunk: int = 16,
                  method: str = "double_backward", cache_graph: bool | None = None) -> InputHessian:
    """Mean over examples of each example's input Hessian of its loss: a ``(d, d)`` operator.

    ``x, y``: a batch, or ``x`` an iterable of ``(x, y)`` batches (e.g. a DataLoader) and ``y=None``.
    ``chunk_size`` splits a tensor batch to bound memory; ``vec_chunk`` bounds how many vectors
    are pushed through one vectorised pass. ``method``: ``"double_backward"`` (default, faster on
    CPU) or ``"forward_over_reverse"``. ``cache_graph`` keeps the first-order graph of each chunk
    between products (default: only when the data is one tensor chunk).
    """
    return InputHessian(model, loss_fn, Data(x, y, chunk_size, device), vec_chunk, method, cache_graph)


def per_example_input_hessian(model: Model, loss_fn: Loss, x: Tensor, y: Tensor, *,
                              device: str | torch.device | None = None, vec_chunk: int = 16,
                              method: str = "double_backward") -> PerExampleInputHessian:
    """Every example's own input Hessian ``(B, d, d)`` as an operator on per-example tangents."""
    return PerExampleInputHessian(model, loss_fn, x, y, device, vec_chunk, method)
