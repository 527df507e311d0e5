"""Curvature operators over the flattened input (and, for comparison, the parameters) of a model.

Conventions. ``model`` is any callable mapping a batch ``x`` of shape ``(B, *input_shape)`` to
outputs ``(B, C)`` (an ``nn.Module`` in eval mode, or e.g. :meth:`poisoncurv.krr.kernels.KRR.predict`).
``loss_fn`` is a standard torch loss with mean reduction, so that the batch loss is the mean over
examples of each example's own loss ``ℓ_b = loss_fn(model(x[b:b+1]), y[b:b+1])``. Input
coordinates are shared: every example lives in the same ``d = prod(input_shape)`` dimensional
space, and the input operators average each example's ``d × d`` curvature of its own loss.

Because examples do not interact (eval mode), the Hessian of the batch loss with respect to the
batched input is block-diagonal with blocks ``∇²ℓ_b / B``; one batched product with the same
tangent for every example therefore returns ``Σ_b ∇²ℓ_b v / B`` (the mean) in a single pass.

Every operator has ``shape``, ``dtype``, ``device``, ``op @ v`` for ``v`` of shape ``(d,)`` or
``op @ V`` for ``V`` of shape ``(d, k)`` (the ``k`` products are vectorised with
``is_grads_batched`` double backward or ``vmap``), ``dense()`` and ``as_linear_operator()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

Model = Callable[[Tensor], Tensor]
Batch = tuple[Tensor, Tensor]
METHODS = ("double_backward", "forward_over_reverse")

_COUPLING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)


def check_eval_mode(model: Model) -> None:
    """Raise ``ValueError`` if ``model`` (or the module a bound method belongs to) has batch norm in
    training mode (couples the examples of a batch) or dropout in training mode (random)."""
    module = model if isinstance(model, nn.Module) else getattr(model, "__self__", None)
    if not isinstance(module, nn.Module):
        return
    bad = [f"{name or type(module).__name__} ({type(m).__name__})" for name, m in module.named_modules()
           if isinstance(m, _COUPLING) and m.training]
    if bad:
        raise ValueError("model is in training mode with " + ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
                         + ": batch norm in training mode couples the examples of a batch and dropout randomises "
                         "them, so input curvature is ill-defined; call model.eval() first")


def check_loss(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Refuse losses whose batch value is not the mean of per-example values."""
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(f"loss_fn must use reduction='mean' (got reduction={reduction!r}); "
                         "the operators average per-example curvature as the mean reduction implies")
    if getattr(loss_fn, "weight", None) is not None:
        raise ValueError("loss_fn has class weights: its 'mean' is a weighted mean, not the mean of per-example "
                         "losses; pass an unweighted loss")


def _finite(name: str, t: Tensor) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def _check_batch(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (B, *input_shape) with at least 2 dims, got shape {tuple(x.shape)}")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y must have the batch size of x as its first dim: x {tuple(x.shape)}, y {tuple(y.shape)}")
    _finite("x", x)
    _finite("y", y)


def _check_decomposes(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor) -> None:
    """Check on up to 4 examples that the batch loss equals the mean of single-example losses."""
    m = min(out.shape[0], 4)
    whole = loss_fn(out[:m], y[:m])
    singles = torch.stack([loss_fn(out[b:b + 1], y[b:b + 1]) for b in range(m)]).mean()
    if not torch.allclose(whole, singles, rtol=1e-4, atol=0.0):
        raise ValueError("loss_fn(out, y) is not the mean of per-example losses (is its reduction 'mean' and "
                         "unweighted?); the input operators need a mean-reduced per-example loss")


class CurvatureOperator:
    """A symmetric linear operator ``(n, n)`` applied through ``_apply(V) -> op V`` with ``V`` rows
    ``(k, n)``. Counts the vectors it has been applied to in ``n_products``."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device, vec_chunk: int = 16):
        if vec_chunk < 1:
            raise ValueError(f"vec_chunk must be >= 1, got {vec_chunk}")
        self.n, self.dtype, self.device, self.vec_chunk = n, dtype, device, vec_chunk
        self.n_products = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def _apply(self, V: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __matmul__(self, v: Tensor) -> Tensor:
        """``op @ v`` for ``v`` of shape ``(n,)`` (returns ``(n,)``) or ``(n, k)`` (returns ``(n, k)``)."""
        if not isinstance(v, Tensor):
            v = torch.as_tensor(v)
        if v.ndim not in (1, 2) or v.shape[0] != self.n:
            raise ValueError(f"vector must have shape ({self.n},) or ({self.n}, k), got {tuple(v.shape)}")
        _finite("vector", v)
        V = v.to(device=self.device, dtype=self.dtype).reshape(self.n, -1).T
        out = torch.cat([self._apply(V[i:i + self.vec_chunk]) for i in range(0, V.shape[0], self.vec_chunk)])
        self.n_products += V.shape[0]
        return out.detach().T.reshape(v.shape)

    def dense(self, max_dim: int = 8192) -> Tensor:
        """The full ``(n, n)`` matrix, built from ``n`` products with basis vectors."""
        if self.n > max_dim:
            raise ValueError(f"dense() of a {self.n} x {self.n} operator exceeds max_dim={max_dim}")
        return self @ torch.eye(self.n, dtype=self.dtype, device=self.device)

    def as_linear_operator(self) -> Any:
        """A float64 ``scipy.sparse.linalg.LinearOperator`` view (for ``eigsh`` and friends)."""
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def mv(v: Any) -> Any:
            return (self @ torch.as_tensor(np.asarray(v), dtype=self.dtype)).detach().cpu().double().numpy()

        return LinearOperator(self.shape, matvec=mv, matmat=mv, dtype=np.float64)


class _Data:
    """The data an operator averages over: a list of ``(x, y)`` chunks (tensors split into chunks of
    ``chunk_size`` examples) or a re-iterable loader of ``(x, y)`` batches."""

    def __init__(self, x: Tensor | Iterable[Batch], y: Tensor | None, chunk_size: int | None,
                 device: str | torch.device | None):
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.device = None if device is None else torch.device(device)
        if y is None:
            if isinstance(x, Tensor):
                raise ValueError("pass targets y with a tensor x, or pass an iterable of (x, y) batches as x")
            self.loader: Iterable[Batch] | None = x
            self.chunks: list[Batch] = []
            x0, y0 = self._prepare(next(iter(x)))
        else:
            self.loader = None
            _check_batch(x, y)
            size = chunk_size or x.shape[0]
            self.chunks = [self._prepare((x[i:i + size], y[i:i + size])) for i in range(0, x.shape[0], size)]
            x0, y0 = self.chunks[0]
        self.input_shape, self.dtype, self.dev = tuple(x0.shape[1:]), x0.dtype, x0.device
        self.d = math.prod(self.input_shape)
        if not x0.is_floating_point():
            raise ValueError(f"x must be floating point, got {x0.dtype}")

    def _prepare(self, batch: Batch) -> Batch:
        x, y = batch
        _check_batch(x, y)
        if self.device is not None:
            x, y = x.to(self.device), y.to(self.device)
        return x.detach(), y.detach()

    def __iter__(self):
        if self.loader is None:
            yield from self.chunks
        else:
            for batch in self.loader:
                yield self._prepare(batch)


def _check_model_device(model: Model, device: torch.device) -> None:
    module = model if isinstance(model, nn.Module) else getattr(model, "__self__", None)
    if isinstance(module, nn.Module):
        devices = {p.device for p in module.parameters()}
        if devices and device not in devices:
            raise ValueError(f"model parameters are on {sorted(map(str, devices))} but the data is on {device}: "
                             "move the model (model.to(device)) or pass device=")


class _InputOperator(CurvatureOperator):
    """Shared machinery: per chunk, tangents ``(k, B, *input_shape)``; results averaged over all
    examples with chunk weights ``B_chunk / N``."""

    def __init__(self, model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], data: _Data, vec_chunk: int):
        check_eval_mode(model)
        check_loss(loss_fn)
        _check_model_device(model, data.dev)
        super().__init__(data.d, data.dtype, data.dev, vec_chunk)
        self.model, self.loss_fn, self.data = model, loss_fn, data
        self._checked = False
        self.keep_state = data.loader is None and len(data.chunks) == 1  # keep per-chunk state between products
        self._cache: dict[int, Any] = {}

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.model(x)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"model must return outputs (B, C); got shape {tuple(out.shape)} for a batch of {x.shape[0]}")
        if not self._checked:
            _check_decomposes(self.loss_fn, out.detach(), y)
            self._checked = True
        return self.loss_fn(out, y)

    def _chunk_products(self, i: int, x: Tensor, y: Tensor, T: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``(k, B, *in)`` products of the chunk-mean-loss curvature with tangents ``T`` ``(k, B, *in)``."""
        raise NotImplementedError

    def _apply(self, V: Tensor) -> Tensor:
        total, count = torch.zeros_like(V), 0
        for i, (x, y) in enumerate(self.data):
            B = x.shape[0]
            T = V.reshape(V.shape[0], 1, *self.data.input_shape).expand(-1, B, *self.data.input_shape)
            total += B * self._chunk_products(i, x, y, T).sum(1).reshape(V.shape)
            count += B
        return total / count


def _grad_graph(loss: Tensor, x: Tensor) -> Tensor:
    """Input gradient of ``loss`` with its graph kept (zeros that require no grad if unused)."""
    (g,) = torch.autograd.grad(loss, x, create_graph=True, allow_unused=True, materialize_grads=True)
    return g


def _double_backward(g: Tensor, x: Tensor, T: Tensor) -> Tensor:
    """``(k, *x.shape)`` products ``∂(g·t)/∂x`` for each tangent ``t`` in ``T`` (zero if ``g`` is constant)."""
    if not g.requires_grad:
        return torch.zeros_like(T)
    (hv,) = torch.autograd.grad(g, x, T, retain_graph=True, is_grads_batched=True, allow_unused=True,
                                materialize_grads=True)
    return hv


class InputHessian(_InputOperator):
    """Mean over examples of each example's input Hessian of its loss, ``(d, d)``."""

    def __init__(self, model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], data: _Data, vec_chunk: int,
                 method: str, cache_graph: bool | None):
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
            g = _grad_graph(self._loss(xr, y), xr)
            if self.keep_state:
                self._cache[i] = (xr, g)
        return _double_backward(g, xr, T)


def _output_hessians(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor) -> Tensor:
    """Blocks ``(B, C, C)`` of the Hessian of the batch loss with respect to the outputs ``(B, C)``."""
    C = out.shape[1]
    o = out.detach().clone().requires_grad_(True)
    g = _grad_graph(loss_fn(o, y), o)
    E = torch.eye(C, dtype=o.dtype, device=o.device)[:, None, :].expand(C, o.shape[0], C)
    return _double_backward(g, o, E).permute(1, 2, 0)  # [b, :, c] = column c of block b


class InputGGN(_InputOperator):
    """Mean over examples of ``J_bᵀ Λ_b J_b``: input Jacobian ``J_b`` ``(C, d)`` of the outputs and
    ``Λ_b`` the Hessian of the example's loss with respect to its outputs. For squared loss and
    softmax cross-entropy this is also the true input Fisher."""

    def _chunk_products(self, i: int, x: Tensor, y: Tensor, T: Tensor) -> Tensor:
        if i in self._cache:
            lam, vjp_fn = self._cache[i]
        else:
            out, vjp_fn = torch.func.vjp(self.model, x)
            self._loss(x, y)  # shape and decomposition checks
            lam = _output_hessians(self.loss_fn, out, y)
            if self.keep_state:
                self._cache[i] = (lam, vjp_fn)
        Jt = torch.func.vmap(lambda t: torch.func.jvp(self.model, (x,), (t,))[1])(T)  # (k, B, C)
        u = torch.einsum("bcd,kbd->kbc", lam, Jt)
        return torch.func.vmap(lambda w: vjp_fn(w)[0])(u)


class EmpiricalInputFisher(_InputOperator):
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


class ParamHessian(CurvatureOperator):
    """Hessian of the mean loss over all data with respect to the trainable parameters, ``(P, P)``."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data: _Data, vec_chunk: int):
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
            total += x.shape[0] * _param_products(g, self.params, V)
            count += x.shape[0]
        return total / count


def _param_products(g: Tensor, params: list[Tensor], V: Tensor) -> Tensor:
    """``(k, P)`` products of the Jacobian of the flat gradient ``g`` w.r.t. ``params`` with ``V`` rows."""
    if not g.requires_grad:
        return torch.zeros_like(V)
    hvs = torch.autograd.grad(g, params, V, retain_graph=True, is_grads_batched=True, allow_unused=True,
                              materialize_grads=True)
    return torch.cat([h.reshape(V.shape[0], -1) for h in hvs], dim=1)


class PerExampleInputHessian:
    """Each example's own input Hessian ``∇²_{x_b} ℓ_b``, stacked ``(B, d, d)``.

    ``op @ V`` takes one tangent per example, ``V`` of shape ``(B, d)`` (or ``(B, d, k)``), and
    returns ``H_b v_b`` for every ``b`` from one batched product (block-diagonal batching).
    """

    def __init__(self, model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                 device: str | torch.device | None, vec_chunk: int, method: str):
        self.inner = InputHessian(model, loss_fn, _Data(x, y, None, device), vec_chunk, method, cache_graph=True)
        self.B, self.d = x.shape[0], self.inner.n

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.B, self.d, self.d)

    def __matmul__(self, V: Tensor) -> Tensor:
        """``H_b V_b`` for ``V`` of shape ``(B, d)`` or ``(B, d, k)``; same shape out."""
        if V.ndim not in (2, 3) or V.shape[:2] != (self.B, self.d):
            raise ValueError(f"per-example tangents must have shape ({self.B}, {self.d}) or ({self.B}, {self.d}, k), "
                             f"got {tuple(V.shape)}")
        _finite("vector", V)
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
        eye = torch.eye(self.d, dtype=self.inner.dtype, device=self.inner.device)
        return self @ eye.expand(self.B, self.d, self.d)


def input_hessian(model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor | Iterable[Batch],
                  y: Tensor | None = None, *, device: str | torch.device | None = None, chunk_size: int | None = None,
                  vec_chunk: int = 16, method: str = "double_backward", cache_graph: bool | None = None) -> InputHessian:
    """Mean over examples of each example's input Hessian of its loss: a ``(d, d)`` operator.

    ``x, y``: a batch, or ``x`` an iterable of ``(x, y)`` batches (e.g. a DataLoader) and ``y=None``.
    ``chunk_size`` splits a tensor batch to bound memory; ``vec_chunk`` bounds how many vectors
    are pushed through one vectorised pass. ``method``: ``"double_backward"`` (default, faster on
    CPU) or ``"forward_over_reverse"``. ``cache_graph`` keeps the first-order graph of each chunk
    between products (default: only when the data is one tensor chunk).
    """
    return InputHessian(model, loss_fn, _Data(x, y, chunk_size, device), vec_chunk, method, cache_graph)


def per_example_input_hessian(model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, *,
                              device: str | torch.device | None = None, vec_chunk: int = 16,
                              method: str = "double_backward") -> PerExampleInputHessian:
    """Every example's own input Hessian ``(B, d, d)`` as an operator on per-example tangents."""
    return PerExampleInputHessian(model, loss_fn, x, y, device, vec_chunk, method)


def input_ggn(model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor | Iterable[Batch],
              y: Tensor | None = None, *, device: str | torch.device | None = None, chunk_size: int | None = None,
              vec_chunk: int = 16) -> InputGGN:
    """Mean over examples of the input generalised Gauss-Newton matrix ``J_bᵀ Λ_b J_b`` ``(d, d)``."""
    return InputGGN(model, loss_fn, _Data(x, y, chunk_size, device), vec_chunk)


def input_fisher(model: Model, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor | Iterable[Batch],
                 y: Tensor | None = None, *, empirical: bool = False, device: str | torch.device | None = None,
                 chunk_size: int | None = None, vec_chunk: int = 16) -> CurvatureOperator:
    """Input Fisher ``(d, d)``, mean over examples.

    True Fisher (default): ``J_bᵀ F_b J_b`` with ``F_b`` the Fisher of the predictive distribution
    in the outputs; for ``CrossEntropyLoss`` (softmax) ``F_b = diag p − p pᵀ`` and for ``MSELoss``
    (a Gaussian likelihood whose negative log equals the mean squared error) ``F_b = (2/C) I``:
    in both cases the input GGN. ``empirical=True``: ``g_b g_bᵀ`` with ``g_b = ∇_x ℓ_b`` (rank one
    per example), for any loss.
    """
    data = _Data(x, y, chunk_size, device)
    if empirical:
        return EmpiricalInputFisher(model, loss_fn, data, vec_chunk)
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.MSELoss)):
        raise ValueError(f"the true input Fisher is defined here for nn.CrossEntropyLoss and nn.MSELoss, got "
                         f"{type(loss_fn).__name__}; use input_ggn or empirical=True")
    return InputGGN(model, loss_fn, data, vec_chunk)


def param_hessian(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor | Iterable[Batch],
                  y: Tensor | None = None, *, device: str | torch.device | None = None, chunk_size: int | None = None,
                  vec_chunk: int = 16) -> ParamHessian:
    """Hessian of the mean loss with respect to the trainable parameters (flattened), ``(P, P)``."""
    return ParamHessian(model, loss_fn, _Data(x, y, chunk_size, device), vec_chunk)
