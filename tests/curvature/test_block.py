"""Block Lanczos and the batched per-example solver against dense float64 eigendecompositions."""

import pytest
import torch
from dense_ops import shared_spectra, with_spectrum
from torch import nn

from poisoncurv.curvature import (
    exact_input_hessian,
    input_hessian,
    per_example_input_hessian,
    per_example_top_eigen,
    top_eigen_block,
)
from poisoncurv.curvature import reference as ref
from poisoncurv.models import MLP

SPECTRA = shared_spectra() | {
    "cluster_of_4": torch.cat([torch.full((4,), 2.0), torch.linspace(1.0, 0.0, 296)]),
    "rank_9": torch.cat([torch.linspace(3.0, 0.5, 9), torch.zeros(191)]),
}


@pytest.mark.parametrize("name", SPECTRA)
def test_block_top10_matches_eigh(name):
    op = with_spectrum(SPECTRA[name])
    res = top_eigen_block(op, 10, tol=1e-8, max_products=300)  # tight tol on clustered spectra: up to d products
    exact = torch.linalg.eigvalsh(op.A).flip(0)[:10]
    scale = float(exact.abs().max())
    assert res.converged
    assert float(((res.values - exact).abs()).max()) <= 1e-7 * scale
    # the reported residuals are the true ones, and meet the contract
    true = (op.A @ res.vectors - res.vectors * res.values).norm(dim=0)
    torch.testing.assert_close(res.residuals, true, rtol=1e-6, atol=1e-14 * scale)
    assert bool(((res.residuals <= 1e-8 * res.values.abs()) | (res.residuals <= 300**0.5 * 2.3e-16 * scale)).all())
    torch.testing.assert_close(res.vectors.T @ res.vectors, torch.eye(10), atol=1e-10, rtol=0)


def test_block_on_a_network_input_hessian():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    op = input_hessian(model, nn.CrossEntropyLoss(), x, y)
    H = ref.per_example_input_hessians(model, nn.CrossEntropyLoss(), x, y).mean(0)
    res = top_eigen_block(op, 6, block_size=3, tol=1e-10)
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(H).flip(0)[:6], rtol=1e-8, atol=0)


def test_block_on_the_exact_factor_operator_of_a_relu_cnn():
    """Block Lanczos through exact_input_hessian (ReLU CNN, premise checked) against the dense float64
    torch.func Hessian: eigenvalues, the true residuals against the dense matrix, and the operator itself."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 12), nn.ReLU(), nn.Linear(12, 6)).eval()
    x, y = torch.randn(7, 2, 6, 6), torch.randint(0, 6, (7,))
    loss_fn = nn.CrossEntropyLoss()
    H = ref.per_example_input_hessians(model, loss_fn, x, y).mean(0)
    op = exact_input_hessian(model, loss_fn, x, y)
    assert op.premise_gap <= 1e-12
    assert float((op.dense() - H).norm() / H.norm()) <= 1e-10
    V = torch.randn(72, 5)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12 * float(H.abs().max()))
    res = top_eigen_block(op, 10, tol=1e-9)
    exact = torch.linalg.eigvalsh(H).flip(0)[:10]
    assert res.converged
    assert float(((res.values - exact).abs() / exact.abs().max()).max()) <= 1e-9
    true = (H @ res.vectors - res.vectors * res.values).norm(dim=0)
    torch.testing.assert_close(res.residuals, true, rtol=1e-6, atol=1e-13 * float(exact[0]))
    # at the benchmark's tolerance the contract holds against the dense matrix too
    loose = top_eigen_block(op, 10, tol=1e-3)
    true = (H @ loose.vectors - loose.vectors * loose.values).norm(dim=0)
    assert loose.converged and bool((true <= 1e-3 * loose.values.abs() + 72**0.5 * 2.3e-16 * float(exact[0])).all())


def test_per_example_top_eigen_matches_dense_per_example():
    model = nn.Sequential(nn.Linear(12, 10), nn.Softplus(), nn.Linear(10, 4)).eval()  # full-rank Hessians
    x, y = torch.randn(5, 12), torch.randint(0, 4, (5,))
    Hs = ref.per_example_input_hessians(model, nn.CrossEntropyLoss(), x, y)
    exact = torch.linalg.eigvalsh(Hs).flip(-1)[:, :3]
    for p in (1, 2):
        res = per_example_top_eigen(per_example_input_hessian(model, nn.CrossEntropyLoss(), x, y), 3, block_size=p,
                                    tol=1e-9)
        assert res.converged and res.values.shape == (5, 3) and res.vectors.shape == (5, 12, 3)
        assert float(((res.values - exact).abs() / exact[:, :1].abs()).max()) <= 1e-8
        true = (Hs @ res.vectors - res.vectors * res.values[:, None, :]).norm(dim=1)
        torch.testing.assert_close(res.residuals, true, rtol=1e-6, atol=1e-13)


def test_per_example_rank_deficient_relu():
    """ReLU network, C = 4 classes: each Hessian has rank ≤ 3, so the 4th eigenvalue is zero."""
    model = MLP(10, (12,), 4).eval()
    x, y = torch.randn(4, 10), torch.randint(0, 4, (4,))
    Hs = ref.per_example_input_hessians(model, nn.CrossEntropyLoss(), x, y)
    res = per_example_top_eigen(per_example_input_hessian(model, nn.CrossEntropyLoss(), x, y), 4, tol=1e-10)
    exact = torch.linalg.eigvalsh(Hs).flip(-1)[:, :4]
    assert res.converged
    assert float(((res.values - exact).abs() / exact[:, :1]).max()) <= 1e-9


def test_block_errors():
    op = with_spectrum(torch.rand(5))
    with pytest.raises(ValueError, match="k must be between 1 and d = 5"):
        top_eigen_block(op, 6)
    with pytest.raises(ValueError, match="block_size"):
        top_eigen_block(op, 2, block_size=0)
    with pytest.raises(ValueError, match="tol"):
        top_eigen_block(op, 2, tol=-1)
    with pytest.raises(ValueError, match="per_example_input_hessian"):
        per_example_top_eigen(op, 2)
