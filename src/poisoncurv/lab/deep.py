"""Deep-network measurements of a lab run (``measure="deep"``): input curvature at clean and at
triggered inputs, penultimate-feature geometry, and the empirical NTK of the final model.

**Curvature.** For a network that is piecewise linear in its input (ReLU, pooling, eval-mode batch
norm) the input Hessian of cross-entropy at an input is ``H_b = J_bᵀ (diag p_b − p_b p_bᵀ) J_b``
(:mod:`poisoncurv.curvature.exact`): it depends on the prediction ``p_b`` only, not on the label, so
the same matrix stands at a triggered input whichever label one assigns it. On each probe set
(``clean``: clean test images; ``trig``: triggered non-target test images) the mean ``H`` is formed
exactly from the Jacobians, and with ``u`` the unit poison direction the row records

* ``<set>_top``: the top ``k`` eigenvalues of ``H``;
* ``<set>_overlap``: ``(v₁·u)²``, the squared cosine of the top eigenvector with ``u``;
* ``<set>_mass``: ``Σ_{i≤k} (v_i·u)²``, the share of ``u`` inside the top-``k`` eigenspace;
* ``<set>_curv_u``: ``uᵀHu``, the curvature along the poison direction (the chapter divides it by the
  clean reference run's, measured at the same inputs and the same time).

**Features** ``φ`` (the model's ``embed``, the input of the last linear layer). With ``σ_w² =
mean_b |φ(x_b) − μ_{y_b}|²`` the clean within-class variance (class means ``μ_c`` over the clean probe
set), distances are in units of ``σ_w``: ``feat_trig_to_poison = mean |φ(T(x)) − μ_poison|/σ_w``
(``μ_poison`` the mean over the poisons as trained), ``feat_trig_to_target`` (to the clean target-class
mean), ``feat_trig_to_source`` (to the clean mean of the input's own class) and
``feat_target_to_target`` (clean target-class images to their own mean: the scale of a near clone).
The collapse ratio of a group is ``tr Σ_between / tr Σ_within`` of its features grouped by *true*
class (source class for poisons and triggered inputs): large for clean data, near zero when the
trigger has erased the source class from the features.

**Empirical NTK** (final model only), for the target logit ``f_t``: ``k(x, ζ) = ∇_θ f_t(x)·∇_θ f_t(ζ)``
and ``R = |∇_x k(x, ζ)|² / k(x, ζ)²``, the quantity that sets the Gauss-Newton spike of a kernel
model (Chapter 1: ``Λ_GN = R·Δf²``). Medians over poison pairs (triggered ``x``, poison ``ζ``) and
clean pairs (clean target-class test ``x``, clean target-class training ``ζ``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from poisoncurv.curvature import dense_top_eigen, input_hessian, top_eigen
from poisoncurv.curvature.base import check_eval_mode
from poisoncurv.curvature.exact import ExactCurvature, exact_input_curvature, premise_gap

DENSE_MAX = 1024   # form H densely (float64, LAPACK's top k) up to this input dimension; Lanczos on the factors above it
EXACT_MAX_CLASSES = 10  # exact Jacobians (C backward passes per input) up to this many classes; Hessian-vector Lanczos above
N_PAIRS = 16       # inputs and kernel centres per eNTK group (N_PAIRS² pairs)


@dataclass(frozen=True)
class Probe:
    """The fixed inputs a run is measured on. Images ``(n, C, H, W)``; labels int64 ``(n,)``.

    ``x_clean``/``y_clean``: clean test images; ``x_trig``/``y_trig``: triggered non-target test images
    and their true classes; ``x_poison``/``y_poison``: poisons as trained and their source classes
    (empty for a clean run); ``x_target``: clean test images of the target class; ``x_target_train``:
    clean training images of the target class; ``direction``: unit poison direction ``(d,)``.
    """

    x_clean: Tensor
    y_clean: Tensor
    x_trig: Tensor
    y_trig: Tensor
    x_poison: Tensor
    y_poison: Tensor
    x_target: Tensor
    x_target_train: Tensor
    direction: Tensor
    target: int


def make_probe(x_test: Tensor, y_test: Tensor, x_trigger: Tensor, y_trigger: Tensor, x_train: Tensor, y_train_clean: Tensor,
               poison_idx: Tensor, source_labels: Tensor, direction: Tensor, target: int, n: int) -> Probe:
    """The first ``n`` of each group (test order, training order); raises ``ValueError`` if a group is empty
    where it must not be (no clean target-class images)."""
    clean_train = torch.ones(len(x_train), dtype=torch.bool, device=x_train.device)
    clean_train[poison_idx] = False
    tgt_train = x_train[clean_train & (y_train_clean == target)]
    tgt_test = x_test[y_test == target]
    if len(tgt_test) < 2 or len(tgt_train) < 2:
        raise ValueError(f"target: class {target} has fewer than 2 clean test or training images in this subset")
    return Probe(x_test[:n], y_test[:n], x_trigger[:n], y_trigger[:n], x_train[poison_idx[:n]], source_labels[:n],
                 tgt_test[:n], tgt_train[:n], direction.flatten(), target)


def curvature_at(model: nn.Module, loss_fn: nn.Module, x: Tensor, u: Tensor, k: int) -> dict[str, Any]:
    """Input-Hessian measures at inputs ``x`` along unit ``u`` ``(d,)``: ``top`` (k eigenvalues,
    descending), ``overlap``, ``mass``, ``curv_u`` and ``fisher_top`` (top eigenvalue of the empirical input
    Fisher at the predicted labels). The model must be in eval mode and piecewise linear in its input
    (:func:`premise_gap64` checks it). Up to :data:`EXACT_MAX_CLASSES` outputs the mean Hessian is formed
    exactly from the Jacobians (``C`` backward passes per batch); above it (CIFAR-100) the top eigenpairs
    come from Lanczos on the Hessian-vector products of the mean loss (:func:`_lanczos_route`)."""
    check_eval_mode(model)
    u = u.double()
    with torch.no_grad():
        n_outputs = model(x[:1]).shape[1]
    if n_outputs > EXACT_MAX_CLASSES:
        with torch.no_grad():
            y = model(x).argmax(1)
        vals, vecs, curv_u, G = _lanczos_route(model, loss_fn, x, y, u, k)
    else:
        vals, vecs, curv_u, G = _exact_route(model, loss_fn, x, u, k)
    fisher_top = torch.linalg.eigvalsh(G @ G.T / len(G))[-1]
    proj = (vecs.T @ u.to(vecs.device)) ** 2
    return {"top": vals.clamp_min(0).tolist(), "overlap": float(proj[0]), "mass": float(proj.sum()),
            "curv_u": float(curv_u), "fisher_top": float(fisher_top.clamp_min(0))}


Route = tuple[Tensor, Tensor, Tensor, Tensor]


def _exact_route(model: nn.Module, loss_fn: nn.Module, x: Tensor, u: Tensor, k: int) -> Route:
    """``(top k eigenvalues, eigenvectors (d, k), uᵀHu, per-example input gradients (B, d))`` of the mean
    ``H = mean_b J_bᵀ Λ_b J_b`` at the model's predicted labels, formed in float64 from the exact Jacobians
    (:func:`~poisoncurv.curvature.exact.exact_input_curvature`, whose forward pass gives the predictions)."""
    ex = exact_input_curvature(model, loss_fn, x, None, check=False)
    assert ex.outputs is not None  # exact_input_curvature keeps the outputs
    logits, y = ex.outputs, ex.outputs.argmax(1)
    J, Lam = ex.J.double(), ex.Lam.double()
    u = u.to(J.device)
    d = J.shape[2]
    if d <= DENSE_MAX:
        H = ExactCurvature(J, Lam).dense()
        vals, vecs = dense_top_eigen(0.5 * (H + H.T), k)
    else:
        eig = top_eigen(ExactCurvature(J, Lam).operator(), k)
        vals, vecs = eig.values, eig.vectors
    Ju = J @ u                                                   # (B, C)
    curv_u = torch.einsum("bc,bce,be->", Ju, Lam, Ju) / J.shape[0]
    p = torch.softmax(logits.double(), 1)
    resid = p - nn.functional.one_hot(y, p.shape[1]).double()   # zero rows at confident predictions
    return vals, vecs, curv_u, torch.einsum("bc,bcd->bd", resid, J)


def _lanczos_route(model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor, u: Tensor, k: int) -> Route:
    """The same four quantities as :func:`_exact_route` without Jacobians: Lanczos
    (:func:`~poisoncurv.curvature.top_eigen`) on the mean input Hessian's products (double backward, in the
    model's dtype, read out in float64), ``uᵀHu`` from one product, the gradients from one backward pass
    (per example, since the eval-mode Hessian and gradient are block-diagonal over the batch)."""
    op = input_hessian(model, loss_fn, x, y)
    eig = top_eigen(op, k)
    curv_u = u @ (op @ u.to(x)).double()
    xr = x.detach().clone().requires_grad_(True)
    (G,) = torch.autograd.grad(loss_fn(model(xr), y) * len(x), xr)
    return eig.values.double(), eig.vectors.double(), curv_u, G.detach().flatten(1).double()


def premise_gap64(model: nn.Module, loss_fn: nn.Module, x: Tensor) -> float:
    """The exact route's premise, ``max ‖Hv − GGN v‖/‖GGN v‖`` (:func:`~poisoncurv.curvature.exact.premise_gap`),
    on a float64 copy of ``model`` at the first four inputs of ``x``: ~1e-13 for a piecewise-linear network
    (float32 rounding alone gives ~1e-4 where the softmax saturates)."""
    m64 = copy.deepcopy(model).double().eval()
    x64 = x[:4].double()
    with torch.no_grad():
        y = m64(x64).argmax(1)
    return premise_gap(m64, loss_fn, x64, y)


def _collapse_ratio(phi: Tensor, labels: Tensor) -> float | None:
    """``tr Σ_between / tr Σ_within`` of features ``phi`` ``(n, p)`` grouped by ``labels``; ``None`` with
    fewer than two groups of two."""
    classes = [c for c in labels.unique() if int((labels == c).sum()) >= 2]
    if len(classes) < 2:
        return None
    keep = torch.isin(labels, torch.stack(classes))
    phi, labels = phi[keep], labels[keep]
    mu = phi.mean(0)
    between = within = 0.0
    for c in classes:
        g = phi[labels == c]
        between += len(g) * float((g.mean(0) - mu).pow(2).sum())
        within += float((g - g.mean(0)).pow(2).sum())
    return between / within if within > 0 else None


@torch.no_grad()
def feature_geometry(model: nn.Module, probe: Probe) -> dict[str, float | None]:
    """Distances (in clean within-class spreads) and collapse ratios of the penultimate features
    (module docstring); poison entries are ``None`` in a clean run."""
    embed = cast(Callable[[Tensor], Tensor], model.embed)  # the classifiers' penultimate features (nn.Module types it loosely)
    phi_c, y_c = embed(probe.x_clean).double(), probe.y_clean
    classes = y_c.unique()                                           # sorted
    means = torch.stack([phi_c[y_c == c].mean(0) for c in classes])   # (classes, p)
    mus = {int(c): mu for c, mu in zip(classes, means)}
    sigma_w = float((phi_c - means[torch.searchsorted(classes, y_c)]).pow(2).sum(1).mean().sqrt())
    phi_t = embed(probe.x_trig).double()
    mu_target = embed(probe.x_target).double()
    mu_t = mu_target.mean(0)
    src_means = torch.stack([mus.get(int(c), torch.full_like(mu_t, float("nan"))) for c in probe.y_trig])

    def dist(a: Tensor, b: Tensor) -> float:
        return float((a - b).norm(dim=-1).nanmean() / sigma_w)

    out: dict[str, float | None] = {
        "feat_sigma_w": sigma_w, "feat_trig_to_target": dist(phi_t, mu_t), "feat_trig_to_source": dist(phi_t, src_means),
        "feat_target_to_target": dist(mu_target, mu_t), "feat_collapse_clean": _collapse_ratio(phi_c, y_c),
        "feat_collapse_trig": _collapse_ratio(phi_t, probe.y_trig),
        "feat_trig_to_poison": None, "feat_poison_to_target": None, "feat_collapse_poison": None}
    if len(probe.x_poison):
        phi_p = embed(probe.x_poison).double()
        mu_p = phi_p.mean(0)
        out.update(feat_trig_to_poison=dist(phi_t, mu_p), feat_poison_to_target=dist(mu_p, mu_t),
                   feat_collapse_poison=_collapse_ratio(phi_p, probe.y_poison))
    return out


def measure_deep(model: nn.Module, loss_fn: nn.Module, probe: Probe, k: int) -> dict[str, Any]:
    """One evaluation's deep measurements: ``clean_*`` and ``trig_*`` curvature (:func:`curvature_at`), the
    ``feat_*`` geometry (:func:`feature_geometry`) and ``premise_gap`` (:func:`premise_gap64` at the triggered
    inputs). The model must be in eval mode."""
    out: dict[str, Any] = {"premise_gap": premise_gap64(model, loss_fn, probe.x_trig)}
    for name, x in (("clean", probe.x_clean), ("trig", probe.x_trig)):
        out.update({f"{name}_{key}": v for key, v in curvature_at(model, loss_fn, x, probe.direction, k).items()})
    out.update(feature_geometry(model, probe))
    return out


def ntk_ratio(model: nn.Module, x: Tensor, zeta: Tensor, target: int) -> dict[str, float]:
    """Medians over all pairs of ``k(x, ζ)`` and ``R = |∇_x k(x, ζ)|²/k(x, ζ)²`` for the target logit
    (module docstring); ``x`` ``(n, C, H, W)``, ``zeta`` ``(m, C, H, W)``. Eval mode."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_t(ps: dict[str, Tensor], xx: Tensor) -> Tensor:
        return functional_call(model, ps, (xx,))[:, target]

    ks, rs = [], []
    for z in zeta:
        g = grad(lambda ps: f_t(ps, z[None]).sum())(params)
        kx, pullback = vjp(lambda xx: jvp(lambda ps: f_t(ps, xx), (params,), (g,))[1], x)[:2]  # a pair without has_aux
        (gx,) = pullback(torch.ones_like(kx))
        ks.append(kx.detach())
        rs.append(gx.detach().flatten(1).pow(2).sum(1) / kx.detach().pow(2))
    k_all, r_all = torch.cat(ks), torch.cat(rs)
    return {"k_median": float(k_all.median()), "R_median": float(r_all.median()),
            "k_positive": float((k_all > 0).double().mean())}


def final_measures(model: nn.Module, probe: Probe) -> dict[str, Any]:
    """The final model's eNTK ratios: ``ntk_poison`` (triggered inputs vs poisons; ``None`` in a clean run)
    and ``ntk_clean`` (clean target-class test vs training images), each from :func:`ntk_ratio`."""
    n = N_PAIRS
    clean = ntk_ratio(model, probe.x_target[:n], probe.x_target_train[:n], probe.target)
    poison = ntk_ratio(model, probe.x_trig[:n], probe.x_poison[:n], probe.target) if len(probe.x_poison) else None
    return {"ntk_clean": clean, "ntk_poison": poison}
