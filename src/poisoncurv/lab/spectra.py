"""Per-epoch spectral metrics of the input curvature, averaged over an evaluation batch.

For a model ``f`` and per-example loss ``ℓ_b`` the input Hessian is ``H = mean_b ∇²_x ℓ_b`` and the
empirical input Fisher ``F = mean_b g_b g_bᵀ`` with ``g_b = ∇_x ℓ_b``.

**Linear models** ``f(x) = W x + b`` (closed form, any input size): ``H = Wᵀ M W`` and
``F = Wᵀ (RᵀR / B) W`` with

* squared loss ``ℓ = ½|f − e_y|²``: ``M = I`` (so ``H = WᵀW``, the same at every input) and
  residuals ``R = f − e_y``;
* cross-entropy: ``M = mean_b (diag p_b − p_b p_bᵀ)`` and ``R = p − e_y``.

``Wᵀ M W = Aᵀ A`` with ``A = M^½ W`` (``C × d``), so its non-zero eigenpairs come from the
``C × C`` matrix ``A Aᵀ``: eigenvalues equal, eigenvectors ``Aᵀ u / √λ``. (For linear models the
*true* input Fisher equals ``H``; the empirical one differs, which is why it is reported.)

**Other models**: Lanczos on the curvature core's operators (:func:`lanczos_spectra`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from poisoncurv.curvature import input_fisher, input_hessian, top_eigen
from poisoncurv.models import LinearModel


class SquaredLoss(nn.Module):
    """``mean_b ½ |out_b − onehot(y_b)|²`` for integer labels ``y``: linear regression on one-hot targets."""

    reduction = "mean"

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        onehot = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
        return 0.5 * ((out - onehot) ** 2).sum(1).mean()


def _top_eig_gram(A: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top ``k`` eigenpairs of ``AᵀA`` (``A``: ``C × d``) through ``A Aᵀ``: values ``(k,)`` descending,
    unit vectors ``(d, k)``."""
    lam, U = torch.linalg.eigh(A @ A.T)
    lam, U = lam.flip(0)[:k], U.flip(1)[:, :k]
    V = A.T @ U / lam.clamp_min(torch.finfo(A.dtype).tiny).sqrt()
    return lam.clamp_min(0), V / V.norm(dim=0, keepdim=True).clamp_min(torch.finfo(A.dtype).tiny)


def _sqrtm_psd(M: Tensor) -> Tensor:
    lam, U = torch.linalg.eigh(M)
    return U @ torch.diag(lam.clamp_min(0).sqrt()) @ U.T


def linear_spectra(W: Tensor, b: Tensor, x: Tensor, y: Tensor, loss: str, k: int) -> dict[str, Tensor]:
    """Closed-form input Hessian and empirical input Fisher spectra of a linear model.

    ``W`` ``(C, d)``, ``b`` ``(C,)``, ``x`` ``(B, d)``, ``y`` ``(B,)`` labels. Returns ``hess_vals``
    ``(k,)``, ``hess_vecs`` ``(d, k)``, ``fisher_vals`` ``(k,)``.
    """
    out = x @ W.T + b
    onehot = nn.functional.one_hot(y, W.shape[0]).to(W.dtype)
    if loss == "squared":
        M = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
        R = out - onehot
    else:
        p = out.softmax(1)
        M = torch.diag(p.mean(0)) - p.T @ p / len(p)
        R = p - onehot
    hv, hV = _top_eig_gram(_sqrtm_psd(M) @ W, k)
    fv, _ = _top_eig_gram(_sqrtm_psd(R.T @ R / len(R)) @ W, k)
    return {"hess_vals": hv, "hess_vecs": hV, "fisher_vals": fv}


def lanczos_spectra(model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor, k: int) -> dict[str, Tensor]:
    """The same quantities for any eval-mode model, by Lanczos (:func:`poisoncurv.curvature.top_eigen`,
    relative tolerance 1e-6) on the curvature core's Hessian-vector and Fisher-vector products."""
    h = top_eigen(input_hessian(model, loss_fn, x, y), k)
    f = top_eigen(input_fisher(model, loss_fn, x, y, empirical=True), 1)
    return {"hess_vals": h.values, "hess_vecs": h.vectors, "fisher_vals": f.values}


def spectral_metrics(model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor, direction: Tensor, k: int) -> dict[str, Any]:
    """Top-``k`` input-Hessian eigenvalues, squared cosine of the top eigenvector with ``direction``
    (unit, ``(d,)``), curvature along ``direction`` (``uᵀHu``), top empirical input-Fisher eigenvalue,
    and ``visible`` (squared overlap ≥ 1/2: the top eigenvector points more along the poison than
    across it). The model must be in eval mode."""
    loss_name = "squared" if isinstance(loss_fn, SquaredLoss) else "ce"
    if isinstance(model, LinearModel):  # closed form, in float64
        x, u = x.double(), direction.double().flatten()
        W, b = model.linear.weight.detach().double(), model.linear.bias.detach().double()
        s = linear_spectra(W, b, x.flatten(1), y, loss_name, k)
        out = x.flatten(1) @ W.T + b
        if loss_name == "squared":
            curv_u = (W @ u).pow(2).sum()
        else:
            p, Wu = out.softmax(1), W @ u
            curv_u = (p @ Wu**2 - (p @ Wu) ** 2).mean()  # mean_b uᵀWᵀ(diag p_b − p_b p_bᵀ)Wu
    else:
        u = direction.to(x.dtype).flatten()
        s = lanczos_spectra(model, loss_fn, x, y, k)
        curv_u = u @ (input_hessian(model, loss_fn, x, y) @ u)
    overlap = float((s["hess_vecs"][:, 0] @ u) ** 2)
    return {"hess_top": s["hess_vals"].tolist(), "overlap": overlap, "curv_along_poison": float(curv_u),
            "fisher_top": float(s["fisher_vals"][0]), "visible": overlap >= 0.5}
