"""Closed-form kernel and KRR input derivatives against automatic differentiation (float64)."""

import pytest
import torch
from torch.func import hessian, jacrev

from poisoncurv.krr.kernels import GaussianKernel, LaplaceKernel, LinearKernel, fit_krr, make_kernel

KERNELS = [LinearKernel(), GaussianKernel(1.3), LaplaceKernel(0.9)]


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_kernel_derivatives_match_autograd(kernel):
    x, z = torch.randn(4, 5), torch.randn(3, 5)
    for b in range(4):
        for n in range(3):
            f = lambda v: kernel(v[None], z[n : n + 1])[0, 0]
            assert rel(kernel.grad(x, z)[b, n], jacrev(f)(x[b])) < 1e-12
            if not isinstance(kernel, LinearKernel):
                assert rel(kernel.hess(x, z)[b, n], hessian(f)(x[b])) < 1e-10


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_krr_matches_direct_solve_and_autograd(kernel):
    X, Y, x = torch.randn(30, 4), torch.randn(30, 2), torch.randn(5, 4)
    model = fit_krr(kernel, X, Y, ridge=0.1)
    K = kernel(X, X)
    alpha = torch.linalg.solve(K + 0.1 * torch.eye(30), Y)
    assert rel(model.alpha, alpha) < 1e-10
    assert rel(model.predict(x), kernel(x, X) @ alpha) < 1e-10
    J = jacrev(lambda v: model.predict(v[None])[0])(x[0])
    assert rel(model.jacobian(x)[0], J) < 1e-10
    y0 = torch.randn(2)
    H = hessian(lambda v: 0.5 * ((model.predict(v[None])[0] - y0) ** 2).sum())(x[0])
    gn, res = model.loss_input_hessian(x[:1], y0[None])
    assert rel(gn[0] + res[0], H) < 1e-10
    assert rel(gn[0], J.T @ J) < 1e-12


def test_near_clone_distances_are_exact():
    """Squared distances come from differences, so tiny offsets are not lost to cancellation."""
    z = torch.full((1, 3), 1.0)
    x = z + torch.tensor([[1e-6, 0.0, 0.0]])
    k = GaussianKernel(1e-6)
    assert abs(float(k(x, z)) - torch.exp(torch.tensor(-0.5)).item()) < 1e-8


def test_errors_are_clear():
    with pytest.raises(ValueError, match="lengthscale"):
        GaussianKernel(0.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        make_kernel("polynomial")
    with pytest.raises(ValueError, match="feature dimensions"):
        LinearKernel()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="x = z"):
        LaplaceKernel(1.0).grad(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="ridge"):
        fit_krr(LinearKernel(), torch.randn(3, 2), torch.randn(3), ridge=0.0)
    with pytest.raises(ValueError, match="same n"):
        fit_krr(LinearKernel(), torch.randn(3, 2), torch.randn(4), ridge=1.0)
    with pytest.raises(ValueError, match="finite"):
        fit_krr(LinearKernel(), torch.tensor([[float("nan"), 0.0]]), torch.randn(1), ridge=1.0)
