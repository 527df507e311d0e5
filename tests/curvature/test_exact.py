"""The exact route for piecewise-linear models against dense autograd Hessians."""

import pytest
import torch
from torch import nn

from poisoncurv.curvature import (
    assert_piecewise_linear,
    exact_dataset_hessian,
    exact_input_curvature,
    exact_input_hessian,
    input_hessian,
    premise_gap,
    top_eigen,
)
from poisoncurv.curvature import reference as ref
from poisoncurv.curvature.exact import ExactCurvature, _FactorOperator, input_jacobian
from poisoncurv.models import MLP, ConvNet, PreActResNet

TOL = 1e-10


def tiny_resnet(net=None):
    """A PreActResNet-8 (or ``net``) on 3×8×8 inputs with random eval-mode batch-norm statistics."""
    net = net or PreActResNet(8, num_classes=4)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("which", ["mlp-ce", "resnet-ce", "resnet-mse", "convnet-ce"])
def test_exact_spectra_and_average_match_dense(which):
    if which == "mlp-ce":
        model, x, C = MLP(10, (12, 8), 5).eval(), torch.randn(4, 10), 5
    elif which == "convnet-ce":        # max-pooling and batch norm between the convolutions: 8 -> 4 -> 2 -> 1 pixels
        model, x, C = tiny_resnet(ConvNet(4, num_classes=4)), torch.randn(3, 3, 8, 8), 4
    else:
        model, x, C = tiny_resnet(), torch.randn(3, 3, 8, 8), 4
    loss_fn = nn.CrossEntropyLoss() if which.endswith("ce") else nn.MSELoss()
    y = torch.randint(0, C, (x.shape[0],)) if which.endswith("ce") else torch.randn(x.shape[0], C)
    ex = exact_input_curvature(model, loss_fn, x, y)
    assert ex.premise_gap <= 1e-12
    Hs = ref.per_example_input_hessians(model, loss_fn, x, y)
    assert float((ex.dense() - Hs.mean(0)).norm() / Hs.mean(0).norm()) <= TOL
    vals, vecs = ex.eigen()
    dense_vals = torch.linalg.eigvalsh(Hs).flip(-1)
    scale = dense_vals[:, :1]
    assert float(((vals - dense_vals[:, :C]).abs() / scale).max()) <= TOL
    assert float((dense_vals[:, C:].abs() / scale).max()) <= TOL  # nothing beyond C eigenvalues
    if which.endswith("ce"):  # Λ 1 = 0: rank ≤ C − 1
        assert float((vals[:, -1].abs() / scale[:, 0]).max()) <= TOL
    for b in range(x.shape[0]):  # eigenvectors: H u = λ u
        top = vecs[b][:, :2]
        assert float((Hs[b] @ top - top * vals[b, :2]).norm() / vals[b, 0]) <= TOL
    op = ex.operator()
    assert float((op.dense() - Hs.mean(0)).norm() / Hs.mean(0).norm()) <= TOL
    # top eigenpairs of the average through the factor operator
    res = top_eigen(op, 3, tol=1e-12)
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(Hs.mean(0)).flip(0)[:3], rtol=1e-9, atol=0)


def test_dataset_accumulation_over_batches():
    model, loss_fn = tiny_resnet(), nn.CrossEntropyLoss()
    x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 4, (5,))
    loader = [(x[:2], y[:2]), (x[2:], y[2:])]
    H = exact_dataset_hessian(model, loss_fn, loader)
    dense = input_hessian(model, loss_fn, x, y).dense()
    assert float((H - dense).norm() / dense.norm()) <= TOL


def test_premise_fails_for_smooth_model():
    model = nn.Sequential(nn.Linear(6, 8), nn.Softplus(), nn.Linear(8, 3)).eval()
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    gap = premise_gap(model, nn.CrossEntropyLoss(), x, y)
    assert gap > 1e-3
    with pytest.raises(ValueError, match="exact route does not apply"):
        exact_input_curvature(model, nn.CrossEntropyLoss(), x, y)
    with pytest.raises(ValueError, match="exact route does not apply"):
        assert_piecewise_linear(model, nn.CrossEntropyLoss(), x, y)
    with pytest.raises(ValueError, match="exact route does not apply"):
        exact_input_hessian(model, nn.CrossEntropyLoss(), x, y)
    relu = MLP(6, (8,), 3).eval()
    assert assert_piecewise_linear(relu, nn.CrossEntropyLoss(), x, y) <= 1e-12
    # the caller may skip the check (then the factors are the GGN's, not the Hessian's)
    assert exact_input_curvature(model, nn.CrossEntropyLoss(), x, y, check=False).premise_gap is None


def test_float32_exact_route():
    model = MLP(10, (12,), 5).eval()
    x, y = torch.randn(4, 10), torch.randint(0, 5, (4,))
    ex64 = exact_input_curvature(model, nn.CrossEntropyLoss(), x, y)
    ex32 = exact_input_curvature(model.float(), nn.CrossEntropyLoss(), x.float(), y)
    assert ex32.J.dtype == torch.float32 and ex32.premise_gap <= 3.5e-4
    torch.testing.assert_close(ex32.eigvals().double(), ex64.eigvals(), rtol=1e-4, atol=1e-6 * float(ex64.eigvals().max()))


@pytest.mark.parametrize("row_chunk", [1, 3, 7, None])
def test_factor_operator_signed_rows_match_dense_for_indefinite_blocks(row_chunk):
    """The operator's signed rows ``Mᵀ diag(s) M`` reproduce ``(1/B) Σ_b J_bᵀ Λ_b J_b`` for symmetric
    ``Λ_b`` of either sign, whatever the row chunking."""
    gen = torch.Generator().manual_seed(3)
    B, C, d = 5, 4, 9
    J = torch.randn(B, C, d, generator=gen)
    A = torch.randn(B, C, C, generator=gen)
    Lam = A + A.transpose(1, 2)  # indefinite
    ex = ExactCurvature(J, Lam)
    op = _FactorOperator(J, Lam, row_chunk=row_chunk)
    assert float((op.dense() - ex.dense()).norm() / ex.dense().norm()) <= TOL
    assert bool((op._s < 0).any()) and bool((op._s > 0).any())


@pytest.mark.parametrize("row_chunk", [0, -2])
def test_factor_operator_refuses_a_non_positive_row_chunk(row_chunk):
    J, Lam = torch.randn(2, 3, 4), torch.eye(3).expand(2, 3, 3)
    with pytest.raises(ValueError, match="row_chunk must be a positive"):
        _FactorOperator(J, Lam, row_chunk=row_chunk)


def test_factor_operator_drops_the_cross_entropy_null_row():
    """Cross-entropy's ``Λ_b 1 = 0``: one row per example is rounding and is dropped, exactly."""
    model, loss_fn = MLP(10, (12,), 5).eval(), nn.CrossEntropyLoss()
    x, y = torch.randn(6, 10), torch.randint(0, 5, (6,))
    ex = exact_input_curvature(model, loss_fn, x, y)
    op = ex.operator()
    assert op._M.shape == (6 * 4, 10)
    assert float((op.dense() - ex.dense()).norm() / ex.dense().norm()) <= TOL


def _jacobian_by_autograd(model, x):
    """Reference input Jacobian ``(B, C, d)``: ``torch.func.jacrev`` of the summed outputs (examples independent)."""
    J = torch.func.jacrev(lambda xx: model(xx).sum(0))(x)          # (C, B, ...)
    return J.detach().flatten(2).transpose(0, 1)


class _ConvNet(nn.Module):
    """A one-channel ReLU CNN whose first convolution is ``first`` (any padding, kernel shape, or in-place ReLU)."""

    def __init__(self, first: nn.Conv2d, inplace: bool = False):
        super().__init__()
        torch.manual_seed(1)
        self.first = first
        self.rest = nn.Sequential(nn.ReLU(inplace=inplace), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(5))

    def forward(self, x):
        return self.rest(self.first(x))


@pytest.mark.parametrize("first, inplace", [
    (nn.Conv2d(1, 4, 5, padding=2), False),          # LeNet's: the transpose path
    (nn.Conv2d(1, 4, (3, 5), padding=(0, 1)), False),  # unequal kernel and padding: the transpose path
    (nn.Conv2d(1, 4, 3, padding=1), True),           # output changed in place: falls back to autograd
    (nn.Conv2d(1, 4, 3, stride=2), False),           # strided: falls back to autograd
    (nn.Conv2d(2, 4, 3, padding=1), False),          # two input channels: autograd
])
def test_input_jacobian_matches_jacrev_on_every_path(first, inplace):
    in_ch = first.in_channels
    model = _ConvNet(first, inplace).double()
    x = torch.randn(3, in_ch, 10, 12, dtype=torch.float64)
    model(x)                                          # materialise the lazy layer
    model.eval()
    out, J = input_jacobian(model, x)
    assert J.shape == (3, 5, in_ch * 120)
    torch.testing.assert_close(out, model(x).detach(), rtol=0, atol=0)
    torch.testing.assert_close(J, _jacobian_by_autograd(model, x), rtol=1e-12, atol=1e-13)


def test_input_jacobian_of_lenet_in_float32_is_autograd_up_to_rounding():
    from poisoncurv.models import LeNet

    torch.manual_seed(0)
    model = LeNet().eval()
    x = torch.rand(16, 1, 28, 28)
    _, J = input_jacobian(model, x)
    ref32 = _jacobian_by_autograd(model, x)
    assert float((J - ref32).abs().max() / ref32.abs().max()) < 1e-5
    _, J64 = input_jacobian(model.double(), x.double())
    torch.testing.assert_close(J64, _jacobian_by_autograd(model, x.double()), rtol=1e-12, atol=1e-14)


def test_premise_gap_is_zero_where_a_saturated_softmax_leaves_no_curvature():
    """Logits 10⁴ apart make the float64 softmax one-hot: Hv = GGN v = 0, which the premise allows (not 0/0 = nan);
    the smooth model still fails it."""
    relu = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    with torch.no_grad():
        relu[2].weight.mul_(1e5)
    x = torch.randn(4, 6, dtype=torch.float64)
    y = relu(x).argmax(1)
    assert premise_gap(relu, nn.CrossEntropyLoss(), x, y) == 0.0
    smooth = nn.Sequential(nn.Linear(6, 8), nn.Softplus(), nn.Linear(8, 3)).double().eval()
    assert premise_gap(smooth, nn.CrossEntropyLoss(), x, y) > 1e-3
