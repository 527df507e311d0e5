"""Curvature operators against dense float64 matrices from torch.func, closed forms, and errors."""

import pytest
import torch
from torch import nn

from poisoncurv.curvature import input_fisher, input_ggn, input_hessian, param_hessian, per_example_input_hessian
from poisoncurv.curvature import reference as ref
from poisoncurv.krr.kernels import GaussianKernel, fit_krr
from poisoncurv.models import MLP, LinearModel

TOL = 1e-10


class SmallCNN(nn.Module):
    """Conv, batch norm (eval), ReLU, max pool, linear: piecewise linear in the input."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(3 * 3 * 3, classes))
        bn = self.net[1]
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()

    def forward(self, x):
        return self.net(x)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def case(kind, loss):
    B = 5
    if kind == "mlp":
        model, x = MLP(6, (7, 5), 3), torch.randn(B, 6)
    else:
        model, x = SmallCNN(), torch.randn(B, 2, 6, 6)
    model.eval()
    C = model(x).shape[1]
    if loss == "ce":
        return model, nn.CrossEntropyLoss(), x, torch.randint(0, C, (B,))
    return model, nn.MSELoss(), x, torch.randn(B, C)


def per_example_dense(model, loss_fn, x, y):
    """(B, d, d) Hessians and (B, d) gradients of each example's own loss, by the torch.func oracles."""
    return ref.per_example_input_hessians(model, loss_fn, x, y), ref.per_example_input_gradients(model, loss_fn, x, y)


CASES = [(k, l) for k in ("mlp", "cnn") for l in ("ce", "mse")]


@pytest.mark.parametrize("kind,loss", CASES)
def test_operators_match_dense_autograd(kind, loss):
    model, loss_fn, x, y = case(kind, loss)
    Hs, gs = per_example_dense(model, loss_fn, x, y)
    H = Hs.mean(0)
    for method in ("double_backward", "forward_over_reverse"):
        assert rel(input_hessian(model, loss_fn, x, y, method=method).dense(), H) <= TOL
    assert rel(input_hessian(model, loss_fn, x, y, chunk_size=2).dense(), H) <= TOL
    loader = [(x[:2], y[:2]), (x[2:], y[2:])]
    assert rel(input_hessian(model, loss_fn, loader).dense(), H) <= TOL
    assert rel(per_example_input_hessian(model, loss_fn, x, y).dense(), Hs) <= TOL
    # ReLU networks: the input Hessian is the GGN (and the true Fisher)
    assert rel(input_ggn(model, loss_fn, loader).dense(), H) <= TOL
    assert rel(input_ggn(model, loss_fn, x, y).dense(), ref.per_example_input_ggns(model, loss_fn, x, y).mean(0)) <= TOL
    assert rel(input_fisher(model, loss_fn, x, y).dense(), H) <= TOL
    assert rel(input_fisher(model, loss_fn, x, y, empirical=True).dense(), gs.T @ gs / x.shape[0]) <= TOL


@pytest.mark.parametrize("kind,loss", [("mlp", "ce"), ("cnn", "mse")])
def test_param_hessian_matches_dense(kind, loss):
    model, loss_fn, x, y = case(kind, loss)
    dense = ref.param_hessian_dense(model, loss_fn, x, y)
    assert rel(param_hessian(model, loss_fn, [(x[:3], y[:3]), (x[3:], y[3:])]).dense(), dense) <= TOL


def test_ggn_differs_from_hessian_for_smooth_model():
    model = nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 3)).eval()
    x, y = torch.randn(4, 4), torch.randint(0, 3, (4,))
    loss_fn = nn.CrossEntropyLoss()
    Hs, _ = per_example_dense(model, loss_fn, x, y)
    assert rel(input_hessian(model, loss_fn, x, y).dense(), Hs.mean(0)) <= TOL
    G = input_ggn(model, loss_fn, x, y).dense()
    assert rel(G, Hs.mean(0)) > 1e-3
    assert rel(G, ref.per_example_input_ggns(model, loss_fn, x, y).mean(0)) <= TOL


def test_linear_model_closed_forms():
    B, d, C = 6, 5, 3
    model, x = LinearModel(d, C).eval(), torch.randn(B, d)
    W = model.linear.weight.detach()
    # MSELoss averages over the B·C entries, so each example's loss is |Wx + b − y|²/C: Hessian 2WᵀW/C
    H = input_hessian(model, nn.MSELoss(), x, torch.randn(B, C)).dense()
    assert rel(H, 2 * W.T @ W / C) <= TOL
    # multinomial logistic regression: mean over examples of Wᵀ(diag p − p pᵀ)W
    p = torch.softmax(model(x).detach(), 1)
    S = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    expect = (W.T @ S @ W).mean(0)
    y = torch.randint(0, C, (B,))
    for op in (input_hessian(model, nn.CrossEntropyLoss(), x, y), input_fisher(model, nn.CrossEntropyLoss(), x, y)):
        assert rel(op.dense(), expect) <= TOL


def test_krr_predictor_against_closed_form():
    C = 3
    X, Y = torch.randn(30, 4), torch.randn(30, C)
    krr = fit_krr(GaussianKernel(1.3), X, Y, ridge=0.5)
    x, y = torch.randn(3, 4), torch.randn(3, C)
    gn, res = krr.loss_input_hessian(x, y)  # Hessians of ½|f − y|² per query
    # MSELoss per example is |f − y|²/C = (2/C)·½|f − y|²
    H = input_hessian(krr.predict, nn.MSELoss(), x, y).dense()
    assert rel(H, (2 / C) * (gn + res).mean(0)) <= TOL


def test_block_diagonal_batching():
    model, loss_fn, x, y = case("cnn", "ce")
    pe = per_example_input_hessian(model, loss_fn, x, y)
    V = torch.randn(x.shape[0], pe.d, 3)
    batched = pe @ V
    for b in range(x.shape[0]):
        single = per_example_input_hessian(model, loss_fn, x[b:b + 1], y[b:b + 1]) @ V[b:b + 1]
        assert rel(batched[b], single[0]) <= TOL
    # one batched product with the same tangent for all examples is the mean of the blocks
    op = input_hessian(model, loss_fn, x, y)
    v = torch.randn(op.n)
    assert rel(op @ v, (pe @ v.expand(x.shape[0], -1)).mean(0)) <= TOL
    # many vectors at once (vectorised pass) equal one at a time (plain double backward), for H and the parameter Hessian
    W = torch.randn(op.n, 5)
    assert rel(op @ W, torch.stack([op @ W[:, i] for i in range(5)], 1)) <= TOL
    ph = param_hessian(model, loss_fn, x, y)
    Wp = torch.randn(ph.n, 3)
    assert rel(ph @ Wp, torch.stack([ph @ Wp[:, i] for i in range(3)], 1)) <= TOL


def test_float32_and_devices():
    model, loss_fn, x, y = case("mlp", "ce")
    H64 = input_hessian(model, loss_fn, x, y, device="cpu").dense()
    op32 = input_hessian(model.float(), loss_fn, x.float(), y)
    assert op32.dtype == torch.float32 and str(op32.device) == "cpu"
    assert rel(op32.dense().double(), H64) <= 1e-5


def test_scipy_linear_operator_view():
    model, loss_fn, x, y = case("mlp", "mse")
    op = input_hessian(model, loss_fn, x, y)
    A = op.as_linear_operator()
    v = torch.randn(op.n)
    assert rel(torch.as_tensor(A.matvec(v.numpy())), op @ v) <= TOL


def test_training_mode_is_refused():
    model, loss_fn, x, y = case("cnn", "ce")
    model.train()
    with pytest.raises(ValueError, match="training mode.*BatchNorm2d.*model.eval"):
        input_hessian(model, loss_fn, x, y)
    drop = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5))
    with pytest.raises(ValueError, match="Dropout"):
        input_ggn(drop, loss_fn, torch.randn(4, 6), torch.randint(0, 3, (4,)))


def test_bad_inputs_are_refused():
    model, loss_fn, x, y = case("mlp", "ce")
    with pytest.raises(ValueError, match="reduction='mean'"):
        input_hessian(model, nn.CrossEntropyLoss(reduction="sum"), x, y)
    with pytest.raises(ValueError, match="class weights"):
        input_hessian(model, nn.CrossEntropyLoss(weight=torch.ones(3)), x, y)
    with pytest.raises(ValueError, match="batch size"):
        input_hessian(model, loss_fn, x, y[:3])
    with pytest.raises(ValueError, match="at least 2 dims"):
        input_hessian(model, loss_fn, x[0], y)
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains non-finite"):
        input_hessian(model, loss_fn, bad, y)
    op = input_hessian(model, loss_fn, x, y)
    with pytest.raises(ValueError, match=r"shape \(6,\) or \(6, k\)"):
        op @ torch.randn(5)
    with pytest.raises(ValueError, match="vector contains non-finite"):
        op @ torch.full((6,), float("inf"))
    with pytest.raises(ValueError, match="method"):
        input_hessian(model, loss_fn, x, y, method="finite_differences")
    with pytest.raises(ValueError, match="not the mean of per-example"):
        (input_hessian(model, lambda o, t: nn.functional.cross_entropy(o, t, reduction="sum"), x, y) @ torch.randn(6))
    with pytest.raises(ValueError, match="true input Fisher"):
        input_fisher(model, nn.HuberLoss(), x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="max_dim"):
        op.dense(max_dim=4)


def test_model_on_another_device_is_refused():
    model, loss_fn, x, y = case("mlp", "ce")
    model.to("meta")
    with pytest.raises(ValueError, match="model parameters are on"):
        input_hessian(model, loss_fn, x, y)
