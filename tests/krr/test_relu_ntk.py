"""The two-layer ReLU NTK: closed form against the empirical NTK, its gradient and R_k against autograd (float64)."""

import math

import pytest
import torch

from poisoncurv.krr.ntk import TwoLayerReLU, empirical_ntk
from poisoncurv.krr.relu_ntk import CUSP_FACTOR, ReLUNTKKernel, angle, curvature_ratio_closed, radial_ratio

DT = torch.float64


def test_closed_form_kernel_is_the_wide_network_limit():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    gaps = []
    for w in (2**10, 2**14):
        net = TwoLayerReLU(4, w, generator=torch.Generator().manual_seed(0))
        E, C = empirical_ntk(net, x, x), ReLUNTKKernel()(x, x)
        gaps.append(float((E - C).norm() / C.norm()))
    assert gaps[1] < 0.03 and gaps[1] < 0.5 * gaps[0]      # finite-width error ~ w^{-1/2}


def test_gradient_and_ratio_against_autograd():
    gen = torch.Generator().manual_seed(2)
    x, z = torch.randn(7, 5, generator=gen, dtype=DT), torch.randn(3, 5, generator=gen, dtype=DT)
    k = ReLUNTKKernel()
    xr = x.clone().requires_grad_(True)
    for n in range(3):
        (g,) = torch.autograd.grad(k(xr, z[n:n + 1]).sum(), xr)
        torch.testing.assert_close(k.grad(x, z)[:, n, :], g, rtol=1e-12, atol=1e-14)
        ratio = (g**2).sum(-1) / k(x, z[n:n + 1])[:, 0] ** 2
        torch.testing.assert_close(curvature_ratio_closed(x, z[n]), ratio, rtol=1e-10, atol=0)


def test_ratio_tends_to_the_cusp_value_not_zero():
    z = torch.tensor([0.6, 0.8, 0.0], dtype=DT)
    e = torch.tensor([0.8, -0.6, 0.0], dtype=DT)       # tangential
    for r in (1e-4, 1e-6):
        x = (z + r * e)[None]
        assert float(curvature_ratio_closed(x, z)[0]) * float(z @ z) == pytest.approx(CUSP_FACTOR, rel=10 * r)
    assert CUSP_FACTOR == pytest.approx(1 + 1 / (4 * math.pi**2), rel=1e-15)
    assert float(radial_ratio((2 * z)[None])[0]) == pytest.approx(0.25, rel=1e-15)


def test_angle_is_accurate_near_zero_and_grad_refuses_the_cusp():
    z = torch.tensor([[1.0, 0.0]], dtype=DT)
    x = torch.tensor([[1.0, 1e-9]], dtype=DT)
    assert float(angle(x, z)[0, 0]) == pytest.approx(1e-9, rel=1e-12)
    with pytest.raises(ValueError, match="cusp"):
        ReLUNTKKernel().grad(2 * z, z)
