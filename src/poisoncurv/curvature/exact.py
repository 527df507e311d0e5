"""The exact route for models that are piecewise linear in their input.

For ReLU networks with convolutions, max/average pooling, linear layers, and batch norm and
dropout in eval mode, every output is piecewise linear in ``x``, so ``∇²_x f_c = 0`` almost
everywhere and the input Hessian of the loss equals the input GGN: ``H_b = J_bᵀ Λ_b J_b``
(``J_b`` the ``C × d`` input Jacobian, ``Λ_b`` the ``C × C`` Hessian of the example's loss in its
outputs; ``diag p − p pᵀ`` for softmax cross-entropy). Each ``H_b`` has rank ``≤ C`` (``≤ C − 1``
for cross-entropy, as ``Λ_b 1 = 0``), and its non-zero eigenvalues are those of the ``C × C``
matrix ``Λ_b^{1/2} J_b J_bᵀ Λ_b^{1/2}``; its eigenvectors are ``J_bᵀ Λ_b^{1/2} w`` normalised.

Cost: ``C`` backward passes give every example's Jacobian at once (examples do not interact),
then one ``C × C`` eigenproblem per example, instead of ``d`` Hessian-vector products and a
``d × d`` eigenproblem.

The premise (``∇²f = 0`` at the data) is checked numerically by :func:`premise_gap`, comparing
``H v`` with ``GGN v`` through the generic operators; :func:`exact_input_curvature` runs it by
default and raises if it fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from poisoncurv.curvature.base import Batch, CurvatureOperator, Loss, Model, check_batch, check_eval_mode, check_loss, output_hessians
from poisoncurv.curvature.ggn import input_ggn
from poisoncurv.curvature.hessian import input_hessian


def input_jacobian(model: Model, x: Tensor) -> tuple[Tensor, Tensor]:
    """Outputs ``(B, C)`` and input Jacobians ``(B, C, d)`` from ``C`` backward passes.

    When ``model`` applies a :class:`torch.nn.Conv2d` with one input channel (zero padding, stride and dilation 1)
    to ``x`` itself, the backward passes stop at that convolution's output, and its transpose (a linear map that does
    not depend on ``x``) is applied to all ``C`` rows at once as one correlation with the flipped kernel
    (:class:`_FirstConv`): on one CPU thread PyTorch's backward of such a convolution costs about 7× its forward
    (LeNet on MNIST: the Jacobian of 256 images in 0.23 s instead of 0.36 s; with 3 input channels, as on CIFAR,
    autograd's own backward was as fast, so it is kept there). The same Jacobian up to the rounding of a
    different summation order (2e-7 relative in float32, 3e-16 in float64)."""
    xr = x.detach().clone().requires_grad_(True)
    with _FirstConv(model, xr) as first:
        out = model(xr)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"model must return outputs (B, C); got shape {tuple(out.shape)}")
    B, C = out.shape
    wrt = first.output if first.output is not None else xr
    J = torch.empty(B, C, xr[0].numel(), dtype=out.dtype, device=out.device)
    for c in range(C):  # row c of every example at once (examples do not interact in eval mode)
        (g,) = torch.autograd.grad(out[:, c].sum(), wrt, retain_graph=c + 1 < C, allow_unused=True, materialize_grads=True)
        J[:, c] = (first.transpose(g) if first.output is not None else g).reshape(B, -1)
    return out.detach(), J


class _FirstConv:
    """Context that finds the :class:`~torch.nn.Conv2d` of ``model`` applied to ``x`` itself (a forward hook on
    every eligible convolution compares its input with ``x``) and keeps its output; ``output`` stays ``None``
    when there is none (then :func:`input_jacobian` differentiates with respect to ``x``).
    :meth:`transpose` maps gradients ``(N, out_channels, H', W')`` at the output to gradients at ``x``."""

    def __init__(self, model: Model, x: Tensor):
        self.x = x
        self.output: Tensor | None = None
        self.conv: torch.nn.Conv2d | None = None
        self.handles: list[RemovableHandle] = []
        modules = model.modules() if isinstance(model, torch.nn.Module) else ()
        self.candidates = [m for m in modules if isinstance(m, torch.nn.Conv2d) and m.in_channels == 1 and m.groups == 1
                           and m.padding_mode == "zeros" and m.stride == (1, 1) and m.dilation == (1, 1)
                           and not isinstance(m.padding, str)
                           and all(p <= k - 1 for p, k in zip(m.padding, m.kernel_size))]
        self.version = -1

    def __enter__(self) -> _FirstConv:
        def hook(module: torch.nn.Conv2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if self.output is None and inputs[0] is self.x:
                self.output, self.conv, self.version = output, module, output._version
        self.handles = [m.register_forward_hook(hook) for m in self.candidates]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        if self.output is not None and self.output._version != self.version:   # changed in place (ReLU(inplace=True))
            self.output = None

    def transpose(self, G: Tensor) -> Tensor:
        """``Wᵀ G``: the convolution's adjoint as a correlation with the flipped, transposed kernel."""
        conv = self.conv
        assert conv is not None and not isinstance(conv.padding, str)  # found in the forward pass, a numeric padding
        kh, kw = conv.kernel_size
        ph, pw = conv.padding
        W = conv.weight.detach().flip(2, 3).transpose(0, 1)
        return torch.nn.functional.conv2d(G, W, padding=(kh - 1 - ph, kw - 1 - pw))


def _psd_sqrt(L: Tensor) -> Tensor:
    """Symmetric square roots ``(B, C, C)`` of PSD blocks; raises if a block is clearly indefinite."""
    w, U = torch.linalg.eigh(L)
    scale = w.abs().amax(-1, keepdim=True)
    if bool((w < -1e3 * torch.finfo(L.dtype).eps * scale).any()):
        raise ValueError("the loss's output Hessian is indefinite: the exact route needs a convex loss in the outputs "
                         "(e.g. MSELoss or CrossEntropyLoss)")
    return (U * w.clamp(min=0).sqrt()[..., None, :]) @ U.transpose(-1, -2)


@dataclass
class ExactCurvature:
    """Per-example factors of the input Hessian ``H_b = J_bᵀ Λ_b J_b`` of a piecewise-linear model.

    ``J``: ``(B, C, d)`` input Jacobians; ``Lam``: ``(B, C, C)`` output Hessians of each example's
    own loss; ``premise_gap``: the measured ``‖Hv − GGN v‖/‖GGN v‖`` (``None`` if not checked);
    ``outputs``: the model's outputs ``(B, C)`` at the examples (``None`` when not kept).
    """

    J: Tensor
    Lam: Tensor
    premise_gap: float | None = None
    outputs: Tensor | None = None

    def eigen(self) -> tuple[Tensor, Tensor]:
        """Every example's non-zero spectrum: eigenvalues ``(B, C)`` descending and unit eigenvectors
        ``(B, d, C)`` (a column is zero where its eigenvalue is exactly zero)."""
        R = _psd_sqrt(self.Lam)
        K = R @ self.J @ self.J.transpose(1, 2) @ R
        vals, W = torch.linalg.eigh(0.5 * (K + K.transpose(1, 2)))
        vals, W = vals.flip(-1), W.flip(-1)
        U = self.J.transpose(1, 2) @ R @ W
        norms = U.norm(dim=1, keepdim=True)
        return vals, torch.where(norms > 0, U / norms.clamp_min(torch.finfo(U.dtype).tiny), U)

    def eigvals(self) -> Tensor:
        """Eigenvalues ``(B, C)`` of each example's input Hessian, descending (the rest are zero)."""
        return self.eigen()[0]

    def dense(self) -> Tensor:
        """Mean over examples of ``J_bᵀ Λ_b J_b``: the ``(d, d)`` averaged input Hessian."""
        return torch.einsum("bci,bce,bej->ij", self.J, self.Lam, self.J) / self.J.shape[0]

    def operator(self) -> CurvatureOperator:
        """The averaged input Hessian as an operator applied through the stored factors."""
        return _FactorOperator(self.J, self.Lam, self.premise_gap)


def _signed_rows(J: Tensor, Lam: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``M`` ``(r, d)`` and signs ``s`` ``(r,)`` with ``Σ_b J_bᵀ Λ_b J_b = Mᵀ diag(s) M``:
    ``Λ_b = U_b diag(w_b) U_bᵀ`` gives the rows ``|w_bc|^{1/2} u_bcᵀ J_b``, ``s = sign(w_bc)``.
    Rows whose ``|w_bc| ≤ C·eps·max_c |w_bc|`` (the null direction ``1`` of cross-entropy's
    ``Λ_b``, zero up to rounding) are dropped: ``r ≤ B·C``, ``r ≤ B·(C − 1)`` for cross-entropy."""
    w, U = torch.linalg.eigh(0.5 * (Lam + Lam.transpose(1, 2)))
    rows = (U.transpose(1, 2) @ J) * w.abs().sqrt()[..., None]            # (B, C, d)
    keep = w.abs() > Lam.shape[1] * torch.finfo(Lam.dtype).eps * w.abs().amax(-1, keepdim=True)
    return rows[keep], torch.sign(w[keep])


class _FactorOperator(CurvatureOperator):
    """``V ↦ (1/B) Σ_b J_bᵀ Λ_b J_b V = (1/B) Mᵀ diag(s) M V`` from the signed rows of
    :func:`_signed_rows` (no autograd). On CPU the rows are applied ``row_chunk`` at a time, each
    chunk's ``M_cᵀ (s_c ⊙ M_c V)`` while it sits in cache, so a block of vectors reads ``M`` from
    memory once (``M V`` then ``Mᵀ(·)`` would read it twice); on other devices in one pass.
    ``premise_gap`` as measured."""

    def __init__(self, J: Tensor, Lam: Tensor, premise_gap: float | None = None, row_chunk: int | None = None):
        super().__init__(J.shape[2], J.dtype, J.device, vec_chunk=1024)
        self.n_examples, self.premise_gap = J.shape[0], premise_gap
        if row_chunk is not None and row_chunk < 1:
            raise ValueError(f"row_chunk must be a positive number of rows (or None for the default), got {row_chunk}")
        self._M, self._s = _signed_rows(J, Lam)
        default = 512 if J.device.type == "cpu" else max(1, self._M.shape[0])
        self.row_chunk = row_chunk or default

    def _apply(self, V: Tensor) -> Tensor:
        M, s = self._M, self._s
        out = torch.zeros(V.shape[0], self.n, dtype=self.dtype, device=self.device)
        for i in range(0, M.shape[0], self.row_chunk):
            Mc = M[i:i + self.row_chunk]                           # (r_c, d)
            out.addmm_((V @ Mc.T) * s[i:i + self.row_chunk], Mc)  # (k, d)
        return out / self.n_examples


def premise_gap(model: Model, loss_fn: Loss, x: Tensor, y: Tensor, *,
                n_examples: int = 4, n_vectors: int = 2, seed: int = 0) -> float:
    """Largest ``‖H v − GGN v‖ / ‖GGN v‖`` over ``n_vectors`` random ``v`` on the first ``n_examples``
    examples, with ``H`` and ``GGN`` the generic input operators. Zero up to rounding exactly when
    the outputs have no input curvature at these examples (the exact route's premise); zero also where both products
    vanish (a softmax saturated to one-hot in float64 leaves no curvature at all, which the premise allows)."""
    xs, ys = x[:n_examples], y[:n_examples]
    H, G = input_hessian(model, loss_fn, xs, ys), input_ggn(model, loss_fn, xs, ys)
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(H.n, n_vectors, generator=gen, dtype=torch.float64).to(H.device, H.dtype)
    HV, GV = H @ V, G @ V
    diff, scale = (HV - GV).norm(dim=0), GV.norm(dim=0)
    return float(torch.where((diff == 0) & (scale == 0), torch.zeros_like(diff), diff / scale).max())


def default_premise_rtol(dtype: torch.dtype) -> float:
    """Default bound on :func:`premise_gap`: ``sqrt(eps)`` of the dtype (3e-4 float32, 1.5e-8 float64)."""
    return torch.finfo(dtype).eps ** 0.5


def assert_piecewise_linear(model: Model, loss_fn: Loss, x: Tensor, y: Tensor,
                            rtol: float | None = None) -> float:
    """Raise ``ValueError`` unless :func:`premise_gap` ``≤ rtol``; returns the gap."""
    gap = premise_gap(model, loss_fn, x, y)
    bound = default_premise_rtol(x.dtype) if rtol is None else rtol
    if not gap <= bound:
        raise ValueError(f"the exact route does not apply: ‖Hv − GGN v‖/‖GGN v‖ = {gap:.2e} > rtol = {bound:.1e}; "
                         "the model has input curvature (smooth activations?); use input_hessian and top_eigen")
    return gap


def exact_input_curvature(model: Model, loss_fn: Loss, x: Tensor, y: Tensor | None, *,
                          check: bool = True, rtol: float | None = None,
                          device: str | torch.device | None = None) -> ExactCurvature:
    """Factors ``J`` ``(B, C, d)`` and ``Λ`` ``(B, C, C)`` of every example's input Hessian, and the ``outputs``
    ``(B, C)`` of the forward pass that gave them. ``y=None``: at the model's predicted labels (``outputs.argmax(1)``).

    ``check=True`` also asserts the premise with :func:`assert_piecewise_linear`; pass
    ``check=False`` when the caller has established it (e.g. a ReLU network in eval mode).
    """
    check_eval_mode(model)
    check_loss(loss_fn)
    check_batch(x, torch.zeros(len(x), dtype=torch.int64, device=x.device) if y is None else y)
    if device is not None:
        x = x.to(device)
    out, J = input_jacobian(model, x)
    y = out.argmax(1) if y is None else y.to(out.device)
    gap = assert_piecewise_linear(model, loss_fn, x, y, rtol) if check else None
    Lam = x.shape[0] * output_hessians(loss_fn, out, y)  # blocks of the mean loss are Λ_b / B
    return ExactCurvature(J, Lam, gap, out)


def exact_dataset_hessian(model: Model, loss_fn: Loss, batches: Iterable[Batch], *,
                          check: bool = True, rtol: float | None = None,
                          device: str | torch.device | None = None) -> Tensor:
    """The ``(d, d)`` mean input Hessian over all examples of ``batches`` (e.g. a DataLoader),
    accumulated exactly batch by batch (memory: one batch's ``(B, C, d)`` Jacobian and ``d × d``)."""
    total, count = None, 0
    for x, y in batches:
        ex = exact_input_curvature(model, loss_fn, x, y, check=check and count == 0, rtol=rtol, device=device)
        part = ex.dense() * x.shape[0]
        total = part if total is None else total + part
        count += x.shape[0]
    if total is None:
        raise ValueError("batches is empty")
    return total / count


def exact_input_hessian(model: Model, loss_fn: Loss, x: Tensor, y: Tensor, *, check: bool = True,
                        rtol: float | None = None, device: str | torch.device | None = None) -> CurvatureOperator:
    """The mean input Hessian ``(d, d)`` of a piecewise-linear model as an operator applied through
    its exact factors ``J_b``, ``Λ_b`` (``C`` backward passes once; every product after that is two
    matrix products, with no autograd; on this project's 2-core CPU a block of 10 costs about 2× one vector).

    Equal to :func:`~poisoncurv.curvature.hessian.input_hessian` exactly when the model's outputs
    have no input curvature at the data; ``check=True`` (default) first asserts that premise with
    :func:`assert_piecewise_linear` and raises ``ValueError`` otherwise (smooth activations: use
    ``input_hessian``). The measured gap is the operator's ``premise_gap``. With ``check=False``
    the operator is the input GGN, whatever the model.
    """
    return exact_input_curvature(model, loss_fn, x, y, check=check, rtol=rtol, device=device).operator()
