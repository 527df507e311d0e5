"""The shared base of the curvature operators: the operator protocol, input checks, the data an
operator averages over, and the autograd primitives (gradient graph, Hessian-vector products).

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
``op @ V`` for ``V`` of shape ``(d, k)`` (one vector: a plain double backward; ``k > 1``: the
products are vectorised with ``is_grads_batched`` double backward or ``vmap``), ``dense()`` and
``as_linear_operator()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

Model = Callable[[Tensor], Tensor]
Loss = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]

_COUPLING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)


class Operator(Protocol):
    """What the eigen solvers need: a square ``shape``, ``dtype``, ``device`` and ``op @ V`` (read-only members, so
    that a property such as :attr:`CurvatureOperator.shape` qualifies)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def __matmul__(self, v: Tensor) -> Tensor: ...


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


def check_loss(loss_fn: Loss) -> None:
    """Refuse losses whose batch value is not the mean of per-example values."""
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(f"loss_fn must use reduction='mean' (got reduction={reduction!r}); "
                         "the operators average per-example curvature as the mean reduction implies")
    if getattr(loss_fn, "weight", None) is not None:
        raise ValueError("loss_fn has class weights: its 'mean' is a weighted mean, not the mean of per-example "
                         "losses; pass an unweighted loss")


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if a floating tensor holds nan or inf."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def check_batch(x: object, y: object) -> None:
    """Raise ``ValueError`` unless ``x`` ``(B, *input_shape)`` and ``y`` ``(B, ...)`` are finite tensors."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (B, *input_shape) with at least 2 dims, got shape {tuple(x.shape)}")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y must have the batch size of x as its first dim: x {tuple(x.shape)}, y {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)


def _check_decomposes(loss_fn: Loss, out: Tensor, y: Tensor) -> None:
    """Check on up to 4 examples that the batch loss equals the mean of single-example losses."""
    m = min(out.shape[0], 4)
    whole = loss_fn(out[:m], y[:m])
    singles = torch.stack([loss_fn(out[b:b + 1], y[b:b + 1]) for b in range(m)]).mean()
    if not torch.allclose(whole, singles, rtol=1e-4, atol=0.0):
        raise ValueError("loss_fn(out, y) is not the mean of per-example losses (is its reduction 'mean' and "
                         "unweighted?); the input operators need a mean-reduced per-example loss")


def check_model_device(model: Model, device: torch.device) -> None:
    """Raise ``ValueError`` if the module behind ``model`` has parameters on another device than the data."""
    module = model if isinstance(model, nn.Module) else getattr(model, "__self__", None)
    if isinstance(module, nn.Module):
        devices = {p.device for p in module.parameters()}
        if devices and device not in devices:
            raise ValueError(f"model parameters are on {sorted(map(str, devices))} but the data is on {device}: "
                             "move the model (model.to(device)) or pass device=")


class CurvatureOperator:
    """A symmetric linear operator ``(n, n)`` applied through ``_apply(V) -> op V`` with ``V`` rows
    ``(k, n)``, at most ``vec_chunk`` rows per vectorised pass."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device, vec_chunk: int = 16):
        if vec_chunk < 1:
            raise ValueError(f"vec_chunk must be >= 1, got {vec_chunk}")
        self.n, self.dtype, self.device, self.vec_chunk = n, dtype, device, vec_chunk

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
        check_finite("vector", v)
        V = v.to(device=self.device, dtype=self.dtype).reshape(self.n, -1).T
        out = torch.cat([self._apply(V[i:i + self.vec_chunk]) for i in range(0, V.shape[0], self.vec_chunk)])
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


class Data:
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
            check_batch(x, y)
            assert isinstance(x, Tensor)  # check_batch raised otherwise
            size = chunk_size or x.shape[0]
            self.chunks = [self._prepare((x[i:i + size], y[i:i + size])) for i in range(0, x.shape[0], size)]
            x0, y0 = self.chunks[0]
        self.input_shape, self.dtype, self.dev = tuple(x0.shape[1:]), x0.dtype, x0.device
        self.d = math.prod(self.input_shape)
        if not x0.is_floating_point():
            raise ValueError(f"x must be floating point, got {x0.dtype}")

    def _prepare(self, batch: Batch) -> Batch:
        x, y = batch
        check_batch(x, y)
        if self.device is not None:
            x, y = x.to(self.device), y.to(self.device)
        return x.detach(), y.detach()

    def __iter__(self):
        if self.loader is None:
            yield from self.chunks
        else:
            for batch in self.loader:
                yield self._prepare(batch)


class InputOperator(CurvatureOperator):
    """Shared machinery of the input operators: per chunk, tangents ``(k, B, *input_shape)``;
    results averaged over all examples with chunk weights ``B_chunk / N``."""

    def __init__(self, model: Model, loss_fn: Loss, data: Data, vec_chunk: int):
        check_eval_mode(model)
        check_loss(loss_fn)
        check_model_device(model, data.dev)
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


def grad_graph(loss: Tensor, x: Tensor) -> Tensor:
    """Input gradient of ``loss`` with its graph kept (zeros that require no grad if unused)."""
    (g,) = torch.autograd.grad(loss, x, create_graph=True, allow_unused=True, materialize_grads=True)
    return g


def jacobian_products(g: Tensor, xs: Tensor | Sequence[Tensor], T: Tensor) -> list[Tensor]:
    """Products ``∂(g·t)/∂x`` ``(k, *x.shape)`` for each tangent ``t`` in ``T`` ``(k, *g.shape)``,
    one tensor per entry of ``xs`` (zero if ``g`` is constant). One tangent (``k = 1``) runs a plain
    backward pass (a plain double backward); ``k > 1`` one vectorised pass (``is_grads_batched``)."""
    xs = [xs] if isinstance(xs, Tensor) else xs
    if not g.requires_grad:
        return [torch.zeros(T.shape[0], *x.shape, dtype=x.dtype, device=x.device) for x in xs]
    if T.shape[0] == 1:
        hv = torch.autograd.grad(g, xs, T[0], retain_graph=True, allow_unused=True, materialize_grads=True)
        return [h[None] for h in hv]
    return list(torch.autograd.grad(g, xs, T, retain_graph=True, is_grads_batched=True, allow_unused=True,
                                    materialize_grads=True))


def output_hessians(loss_fn: Loss, out: Tensor, y: Tensor) -> Tensor:
    """Blocks ``(B, C, C)`` of the Hessian of the batch loss with respect to the outputs ``(B, C)``."""
    C = out.shape[1]
    o = out.detach().clone().requires_grad_(True)
    g = grad_graph(loss_fn(o, y), o)
    E = torch.eye(C, dtype=o.dtype, device=o.device)[:, None, :].expand(C, o.shape[0], C)
    return jacobian_products(g, o, E)[0].permute(1, 2, 0)  # [b, :, c] = column c of block b
