"""Input-gradient regularisation (Chapter 3): closed forms against autograd, brute-force minimisation
and simulated gradient flow (float64)."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.func import jacrev

from poisoncurv.chapters.gradient_flow_defence import residual_counterexample
from poisoncurv.krr.flow import euler_flow
from poisoncurv.krr.kernels import GaussianKernel, LinearKernel
from poisoncurv.krr.regularised import (
    effective_ridge,
    feature_coordinates,
    gradient_penalty_matrix,
    linear_flow_closed_form,
    loss_gradient_objective,
    mean_loss,
    regularised_krr_objective,
    ridge_filter,
    ridge_solution,
    ridge_stationary_points,
)


@pytest.mark.parametrize("kernel", [GaussianKernel(0.8), LinearKernel()], ids=lambda k: k.name)
def test_penalty_matrix_is_sum_of_squared_input_gradients(kernel):
    X, alpha, at = torch.randn(7, 3), torch.randn(7), torch.randn(4, 3)
    f = lambda x: kernel(x[None], X)[0] @ alpha
    for points, G in ((X, gradient_penalty_matrix(kernel, X)), (at, gradient_penalty_matrix(kernel, X, at))):
        brute = sum(float((jacrev(f)(a) ** 2).sum()) for a in points)
        assert float(alpha @ G @ alpha) == pytest.approx(brute, rel=1e-12)
        assert torch.linalg.eigvalsh(G).min() > -1e-12 * torch.linalg.eigvalsh(G).max()
    if isinstance(kernel, LinearKernel):
        torch.testing.assert_close(gradient_penalty_matrix(kernel, X), 7 * kernel(X, X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 0.05, 0.7, 20.0])
def test_regularised_krr_matches_brute_force_minimisation(kappa):
    X, y, lam, kernel = torch.randn(9, 2), torch.randn(9), 0.02, GaussianKernel(1.0)
    ridge = 9 * lam                                            # the module's one convention: ridge = nλ
    K, G = kernel(X, X), gradient_penalty_matrix(kernel, X)
    fc = feature_coordinates(K, G)
    J = lambda a: regularised_krr_objective(a, K, G, y, ridge, kappa)
    res = minimize(lambda v: float(J(torch.tensor(v))), np.zeros(9), method="BFGS",
                   jac=lambda v: torch.func.grad(J)(torch.tensor(v)).numpy(), options={"gtol": 1e-13})
    fit_brute, fit = K @ torch.tensor(res.x), K @ fc.alpha(y, ridge, kappa)
    assert float((fit_brute - fit).norm() / fit.norm()) < 1e-7
    assert float(J(fc.alpha(y, ridge, kappa))) <= res.fun + 1e-12
    # the mean-loss form (1/2n)|Kα − y|² + (λ/2)αᵀKα + (κ/2n)αᵀGα is the same objective
    a = fc.alpha(y, ridge, kappa)
    mean_form = 0.5 * ((K @ a - y) ** 2).mean() + 0.5 * lam * a @ K @ a + 0.5 * kappa / 9 * a @ G @ a
    assert float(J(a)) == pytest.approx(float(mean_form), rel=1e-13)
    # normal equations (K² + ridge·K + κG) α = K y
    torch.testing.assert_close((K @ K + ridge * K + kappa * G) @ a, K @ y, rtol=1e-8, atol=1e-8)


def test_df_strictly_decreasing_with_closed_form_derivative():
    X, y, kernel = torch.randn(25, 2), torch.randn(25), GaussianKernel(1.0)
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    kappas = np.logspace(-4, 2, 200)
    cur = fc.curves(y, 0.05, kappas)
    assert np.diff(cur["df"]).max() < 0                      # strictly decreasing on the grid
    assert np.diff(cur["data_term"]).min() > 0               # the ridge-regularised data term increases
    assert np.diff(cur["penalty"]).max() < 0                 # the gradient penalty decreases
    for k in (1e-3, 0.1, 10.0):
        assert cur["df"][0] <= fc.lam.shape[0]
        fd = (fc.df(0.05, k * (1 + 1e-5)) - fc.df(0.05, k * (1 - 1e-5))) / (2e-5 * k)
        assert fc.df_derivative(0.05, k) < 0
        assert fd == pytest.approx(fc.df_derivative(0.05, k), rel=1e-6)
        assert fc.df(0.05, k) == pytest.approx(float(np.interp(k, kappas, cur["df"])), rel=1e-2)


def test_residual_monotone_without_ridge_but_not_always_with_it():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        X, y = torch.randn(6, 1, generator=gen), torch.randn(6, generator=gen)
        kernel = GaussianKernel(1.0)
        fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
        for k in (0.01, 0.3, 5.0):
            assert fc.residual_derivative(y, 0.0, k) >= -1e-12
            fd = (fc.residual(y, 0.3, k * (1 + 1e-5)) - fc.residual(y, 0.3, k * (1 - 1e-5))) / (2e-5 * k)
            assert fd == pytest.approx(fc.residual_derivative(y, 0.3, k), rel=1e-4, abs=1e-10)
    ce = residual_counterexample()
    assert ce["d_residual"] < -1e-3 and ce["fd_residual"] == pytest.approx(ce["d_residual"], rel=1e-5)
    assert ce["fd_data_term"] > 0


def test_linear_kernel_penalty_is_ridge():
    X, y = torch.randn(30, 4), torch.randn(30)
    lin = LinearKernel()
    fc = feature_coordinates(lin(X, X), gradient_penalty_matrix(lin, X))
    for lam, kappa in ((0.01, 0.0), (0.01, 0.5), (0.0, 2.0)):
        w = X.T @ fc.alpha(y, 30 * lam, kappa)
        torch.testing.assert_close(w, ridge_solution(X, y, lam + kappa), rtol=1e-9, atol=1e-12)


def test_loss_gradient_penalty_closed_form_and_stationary_points():
    X, y, kappa = torch.randn(40, 3), torch.randn(40) + 1.0, 3.0
    w = torch.randn(3)
    x = X.clone().requires_grad_(True)
    gx, = torch.autograd.grad(0.5 * ((x @ w - y) ** 2).sum(), x, create_graph=True)
    J_auto = mean_loss(w, X, y) + 0.5 * kappa * (gx**2).sum(1).mean()
    assert float(J_auto.detach()) == pytest.approx(float(loss_gradient_objective(w, X, y, kappa)), rel=1e-12)
    for k in (0.1, 3.0, 300.0):
        points = ridge_stationary_points(X, y, k)
        for _J, w_s, mu in points:                           # each is stationary and a ridge solution
            g = torch.func.grad(lambda v: loss_gradient_objective(v, X, y, k))(w_s)
            assert float(g.norm()) < 1e-8 * max(1.0, float(w_s.norm()))
            assert mu == pytest.approx(effective_ridge(w_s, X, y, k), rel=1e-8, abs=1e-14)
        res = minimize(lambda v: float(loss_gradient_objective(torch.tensor(v), X, y, k)), np.zeros(3), method="BFGS",
                       options={"gtol": 1e-12})
        assert res.fun >= points[0][0] - 1e-12               # nothing beats the best stationary point


def test_gradient_flow_closed_form_and_euler_convergence():
    X, y, kappa, T = torch.randn(50, 4), torch.randn(50), 0.3, 5.0
    H, b = X.T @ X / 50, X.T @ y / 50
    exact = linear_flow_closed_form(X, y, kappa, T)
    errs = []
    for step in (0.01, 0.005):
        n_steps = int(round(T / step))
        w = euler_flow(lambda v: H @ v - b + kappa * v, torch.zeros(4), step, n_steps, record_every=n_steps)
        errs.append(float((w[-1] - exact).norm() / exact.norm()))
    assert errs[1] < 0.6 * errs[0] and errs[0] < 1e-2       # first order in the step
    # converged flow = ridge; filter factors in the eigenbasis
    torch.testing.assert_close(linear_flow_closed_form(X, y, kappa, 1e4), ridge_solution(X, y, kappa))
    h = torch.linalg.eigvalsh(H)
    assert float(ridge_filter(h, kappa)[0]) == pytest.approx(float(h[0] / (h[0] + kappa)))
    assert float(ridge_filter(h, kappa, 2.0)[0]) == pytest.approx(float(h[0] / (h[0] + kappa) * (1 - torch.exp(-(h[0] + kappa) * 2))))


def test_eigenmode_contraction_bound():
    """Theorem 3.12 (companion's form): on a quadratic J with Hessian Λ/n + λI + κF, every eigenvector v
    decays as exp(−2μ_v t) with μ_v ≥ λ + κ vᵀFv."""
    X, y, kernel = torch.randn(15, 2), torch.randn(15), GaussianKernel(1.0)
    fc = feature_coordinates(kernel(X, X), gradient_penalty_matrix(kernel, X))
    lam, kappa, n = 0.01, 2.0, 15
    H, F, b = fc.system(n * lam, kappa) / n, fc.M / n, fc.B.T @ y / n
    mu, V = torch.linalg.eigh(H)
    assert bool((mu >= lam + kappa * torch.einsum("ik,ij,jk->k", V, F, V) - 1e-12).all())
    beta_star, t = torch.linalg.solve(H, b), 3.0
    beta_t = beta_star - torch.linalg.matrix_exp(-H * t) @ beta_star          # exact flow from 0
    E0, Et = (V.T @ beta_star) ** 2, (V.T @ (beta_t - beta_star)) ** 2
    torch.testing.assert_close(Et, E0 * torch.exp(-2 * mu * t), rtol=1e-8, atol=1e-14)


def test_bad_parameters_raise():
    fc = feature_coordinates(torch.eye(3), torch.eye(3))
    with pytest.raises(ValueError, match="kappa"):
        fc.system(0.1, -1.0)
    with pytest.raises(ValueError, match="ridge"):
        fc.df(-0.1, 1.0)
    with pytest.raises(ValueError, match="kappa"):
        ridge_filter(np.ones(2), -1.0)
    with pytest.raises(ValueError, match="step"):
        euler_flow(lambda v: v, torch.zeros(2), 0.0, 10)
    with pytest.raises(ValueError, match="square"):
        feature_coordinates(torch.eye(3), torch.eye(2))



def test_flow_closed_form_is_the_one_flow_gain_and_euler_alpha_matches():
    from poisoncurv.krr.flow import euler_alpha, flow_gain, krr_flow, quadratic_flow

    mu = torch.tensor([0.0, 1e-3, 2.0])
    torch.testing.assert_close(flow_gain(mu, 3.0), torch.tensor([3.0, -np.expm1(-3e-3) / 1e-3, -np.expm1(-6.0) / 2.0]))
    X, y, kernel = torch.randn(12, 2), torch.randn(12, 2), GaussianKernel(1.0)
    A = kernel(X, X) + 0.3 * torch.eye(12)
    exact = quadratic_flow(A, y, 0.8)
    torch.testing.assert_close(krr_flow(kernel, X, y, 0.3).alpha(torch.tensor([0.8]))[0], exact, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(exact, (torch.eye(12) - torch.linalg.matrix_exp(-0.8 * A)) @ torch.linalg.solve(A, y),
                               rtol=1e-8, atol=1e-10)
    assert float((euler_alpha(kernel, X, y, 0.3, 0.8, 4000) - exact).norm() / exact.norm()) < 1e-3


def test_matrix_ridge_is_the_stationarity_of_the_multi_output_loss_gradient_objective():
    from poisoncurv.krr.regularised import loss_gradient_objective_multi, matrix_ridge, sylvester_ridge_solution

    X, Y, W, kappa = torch.randn(30, 4), torch.randn(30, 3), torch.randn(3, 4), 0.7
    x = X.clone().requires_grad_(True)
    r = x @ W.T - Y
    gx, = torch.autograd.grad(0.5 * (r**2).sum(), x, create_graph=True)      # rows: ∇_x L_i = Wᵀ r_i
    J_auto = 0.5 * (r**2).sum(1).mean() + 0.5 * kappa * (gx**2).sum(1).mean()
    assert float(J_auto.detach()) == pytest.approx(float(loss_gradient_objective_multi(W, X, Y, kappa)), rel=1e-12)
    # ∇J = (I + κWWᵀ)(WH − B + A W) at any W, so ∇J = 0 iff WH + AW = B
    H, B = X.T @ X / 30, Y.T @ X / 30
    g = torch.func.grad(lambda V: loss_gradient_objective_multi(V, X, Y, kappa))(W)
    A = matrix_ridge(W, X, Y, kappa)
    torch.testing.assert_close(g, (torch.eye(3) + kappa * W @ W.T) @ (W @ H + A @ W - B), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sylvester_ridge_solution(H, A, B) @ H + A @ sylvester_ridge_solution(H, A, B), B,
                               rtol=1e-9, atol=1e-11)
