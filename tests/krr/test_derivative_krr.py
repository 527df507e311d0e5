"""Gradient-penalised KRR against autograd and brute-force minimisation; the Fourier picture (float64)."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev

from poisoncurv.krr.derivative_krr import equivalent_kernel, fit_derivative_krr, full_gram, gram_blocks, objective
from poisoncurv.krr.kernels import GaussianKernel, LaplaceKernel, fit_krr
from poisoncurv.krr.spectral_filter import (
    continuum_kernel_1d,
    effective_density,
    gaussian_density,
    laplace_effective,
    laplace_grid_solve,
    peak_length_slope,
    peak_length_squared,
)

K = GaussianKernel(0.8)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def problem(n=6, d=2, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, C, generator=g)


def test_gram_blocks_are_mixed_derivatives_by_autograd():
    x, z = torch.randn(3, 3), torch.randn(4, 3)
    k, k_vg, k_gg = gram_blocks(K, x, z)
    for b in range(3):
        for n in range(4):
            f = lambda xv, zv: K(xv[None], zv[None])[0, 0]
            assert rel(k_vg[b, n], jacrev(f, argnums=1)(x[b], z[n])) < 1e-12
            assert rel(k_gg[b, n], jacrev(jacrev(f, argnums=1), argnums=0)(x[b], z[n]).T) < 1e-12


def test_full_gram_is_symmetric_positive_definite():
    X, _ = problem()
    G = full_gram(K, X)
    assert rel(G, G.T) < 1e-15
    assert float(torch.linalg.eigvalsh(G)[0]) > 0


def test_solution_is_exactly_stationary_and_derivatives_match_autograd():
    X, Y = problem()
    m = fit_derivative_krr(K, X, Y, ridge=0.05, kappa=0.7)
    c = m.coef.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(K, X, Y, 0.05, 0.7, c), c)
    assert float(g.norm()) < 1e-10 * float(Y.norm())
    x = torch.randn(3, 2)
    J = torch.stack([jacrev(lambda v: m.predict(v[None])[0])(x[i]) for i in range(3)])
    assert rel(m.jacobian(x), J) < 1e-12


def _rich_basis_minimum(X, Y, ridge, kappa, centres, with_derivatives):
    """Exact minimum of the objective over f = Σ β_m k(·, z_m) [+ derivative representers at X]."""
    n, d = X.shape
    k_c, vg_c, _ = gram_blocks(K, X, centres)          # values of k(·, z_m) at X, ∂_z
    grad_c = K.grad(X, centres).permute(0, 2, 1).reshape(n * d, -1)  # ∇_x k(x_i, z_m)
    val, grad, gram = k_c, grad_c, K(centres, centres)
    if with_derivatives:
        G = full_gram(K, X)
        kv, kvg, _ = gram_blocks(K, centres, X)
        cross = torch.cat([kv, kvg.reshape(len(centres), n * d)], 1)  # <k(·,z_m), representers of X>
        val = torch.cat([val, G[:n]], 1)
        grad = torch.cat([grad, G[n:]], 1)
        gram = torch.cat([torch.cat([gram, cross], 1), torch.cat([cross.T, G], 1)], 0)
    evals, evecs = torch.linalg.eigh(gram)
    R = (evecs * evals.clamp_min(0).sqrt()).T  # RᵀR = gram
    A = torch.cat([val, kappa**0.5 * grad, ridge**0.5 * R], 0)
    b = torch.cat([Y, torch.zeros(A.shape[0] - n, Y.shape[1])], 0)
    beta = torch.linalg.lstsq(A, b, driver="gelsd").solution
    return float(((A @ beta - b) ** 2).sum()), A, b


def test_representer_solution_is_the_minimum_over_a_richer_basis():
    X, Y = problem()
    ridge, kappa = 0.05, 0.7
    ours = fit_derivative_krr(K, X, Y, ridge, kappa).objective(Y)
    centres = torch.cat([X, 3 * torch.randn(40, 2)])
    rich, A, b = _rich_basis_minimum(X, Y, ridge, kappa, centres, with_derivatives=True)
    assert abs(rich - ours) < 1e-9 * ours
    # value-only kernels never beat it, and finite-difference pairs around each x_i nearly reach it
    fd = torch.cat([X + s * 1e-3 * e for s in (-1, 1) for e in torch.eye(2)] + [centres])
    fd_min, _, _ = _rich_basis_minimum(X, Y, ridge, kappa, fd, with_derivatives=False)
    assert ours <= fd_min * (1 + 1e-8) and fd_min < ours * (1 + 1e-3)  # 1e-8: rounding of the near-singular basis


def test_lbfgs_brute_force_reaches_the_exact_objective():
    X, Y = problem(n=4)
    ridge, kappa = 0.1, 0.5
    ours = fit_derivative_krr(K, X, Y, ridge, kappa).objective(Y)
    centres = torch.cat([X, 2 * torch.randn(20, 2)])
    _, A, b = _rich_basis_minimum(X, Y, ridge, kappa, centres, with_derivatives=True)
    beta = torch.zeros(A.shape[1], Y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([beta], lr=1, max_iter=5000, tolerance_grad=1e-14, tolerance_change=1e-16, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((A @ beta - b) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    found = float(((A @ beta.detach() - b) ** 2).sum())
    assert ours <= found * (1 + 1e-12) and found < ours * (1 + 1e-6)


def test_equivalent_kernel_krr_equals_the_penalised_solution_and_mu0_is_krr():
    X, Y = problem(n=8)
    x = torch.randn(5, 2)
    m = fit_derivative_krr(K, X, Y, 0.1, 0.3)
    Kt = equivalent_kernel(K, X, 0.1, 0.3, X, X)
    f = equivalent_kernel(K, X, 0.1, 0.3, x, X) @ torch.linalg.solve(Kt + 0.1 * torch.eye(8), Y)
    assert rel(f, m.predict(x)) < 1e-10
    assert rel(fit_derivative_krr(K, X, Y, 0.1, 0.0).predict(x), fit_krr(K, X, Y, 0.1).predict(x)) < 1e-12


def test_penalty_decreases_gradients_and_raises_residual():
    X, Y = problem(n=10)
    res, grads = [], []
    for kappa in (0.0, 0.1, 1.0, 10.0):
        m = fit_derivative_krr(K, X, Y, 0.05, kappa)
        res.append(float(((m.predict(X) - Y) ** 2).sum()))
        grads.append(float((m.jacobian(X) ** 2).sum()))
    assert all(np.diff(res) > 0) and all(np.diff(grads) < 0)


def test_data_on_a_line_leave_the_normal_profile_exactly_gaussian():
    """Training points on x₂ = 0: f(x₁, t) = f(x₁, 0)·exp(-t²/2ℓ²) for every penalty weight."""
    X = torch.stack([torch.linspace(-3, 3, 9), torch.zeros(9)], 1)
    Y = torch.randn(9, 1)
    m = fit_derivative_krr(K, X, Y, 0.05, 2.0)
    t = torch.linspace(-2, 2, 7)
    for x1 in (-0.7, 0.2, 1.9):
        f = m.predict(torch.stack([torch.full_like(t, x1), t], 1))[:, 0]
        f0 = m.predict(torch.tensor([[x1, 0.0]]))[0, 0]
        assert rel(f, f0 * torch.exp(-t**2 / (2 * K.lengthscale**2))) < 1e-12


def test_isolated_clone_cluster_is_untouched_by_the_penalty():
    X, Y = problem(n=10, C=1)
    zeta = torch.tensor([[40.0, 0.0]])
    Xa, Ya = torch.cat([X, zeta.expand(3, -1)]), torch.cat([Y, torch.ones(3, 1)])
    x0 = zeta + torch.tensor([[0.2, 0.1]])
    shifts = [float(fit_derivative_krr(K, Xa, Ya, 0.1, kappa).predict(x0) - fit_derivative_krr(K, X, Y, 0.1, kappa).predict(x0))
              for kappa in (0.0, 0.1, 10.0)]
    assert max(abs(s / shifts[0] - 1) for s in shifts) < 1e-12


def test_fourier_picture_matches_the_finite_sample_equivalent_kernel():
    h, ridge, kappa, ell = 0.5, 0.1, 0.01, 1.0
    X = (h * torch.arange(-40, 41))[:, None]
    t = np.linspace(0, 4, 9)
    kt = equivalent_kernel(GaussianKernel(ell), X, ridge, kappa, torch.tensor(t)[:, None], torch.zeros(1, 1))[:, 0].numpy()
    w = np.linspace(0, 40, 200001)
    kc = continuum_kernel_1d(effective_density(gaussian_density(w, ell), w, kappa / (h * ridge)), w, t)
    assert np.abs(kt - kc).max() < 1e-9
    assert np.abs(continuum_kernel_1d(gaussian_density(w, ell), w, t) - np.exp(-t**2 / 2)).max() < 1e-10


@pytest.mark.parametrize("d", [1, 2, 3])
def test_peak_length_first_order_law(d):
    a = 1e-5 / (2 * math.pi) ** (d / 2)  # gamma = 1e-5
    assert abs((peak_length_squared(1.0, a, d) - 1) / 1e-5 - peak_length_slope(d)) < 1e-3


def test_laplace_integrated_penalty_is_a_longer_exponential_kernel():
    rng = np.random.default_rng(1)
    h, ridge = 0.005, 0.3
    x = np.round(rng.uniform(-3, 3, 8) / h) * h
    y = rng.normal(size=8)
    for kap in (0.0, 0.5, 5.0):
        le, re = laplace_effective(1.0, ridge, kap)
        assert abs(le**2 - (1 + 2 * kap / ridge)) < 1e-12
        grid, f = laplace_grid_solve(x, y, 1.0, ridge, kap, 6.0, h)
        fc = fit_krr(LaplaceKernel(le), torch.tensor(x)[:, None], torch.tensor(y), re).predict(torch.tensor(grid)[:, None])[:, 0].numpy()
        assert np.abs(fc - f).max() < 1e-3 * np.abs(fc).max()


def test_errors_are_clear():
    X, Y = problem()
    with pytest.raises(ValueError, match="kernel"):
        fit_derivative_krr(LaplaceKernel(1.0), X, Y, 0.1, 0.1)
    with pytest.raises(ValueError, match="ridge"):
        fit_derivative_krr(K, X, Y, 0.0, 0.1)
    with pytest.raises(ValueError, match="kappa"):
        fit_derivative_krr(K, X, Y, 0.1, -1.0)
    with pytest.raises(ValueError, match="same n"):
        fit_derivative_krr(K, X, Y[:3], 0.1, 0.1)
    with pytest.raises(ValueError, match="kappa"):
        laplace_effective(1.0, 0.1, -1.0)
    with pytest.raises(ValueError, match="x_train"):
        laplace_grid_solve(np.array([100.0]), np.array([1.0]), 1.0, 0.1, 0.0, 5.0, 0.01)
