"""Lanczos and LAPACK top eigenpairs, SLQ spectral densities and the overlap, against exact spectra."""

import numpy as np
import pytest
import torch
from dense_ops import Dense, shared_spectra, with_spectrum
from scipy.sparse.linalg import eigsh
from torch import nn

from poisoncurv.curvature import dense_top_eigen, input_hessian, overlap, spectral_density, top_eigen

SPECTRA = shared_spectra() | {
    "top_1_rest_1e-7": torch.cat([torch.linspace(1.0, 0.5, 4), 1e-7 * torch.linspace(1.0, 0.2, 296)]),
}


@pytest.mark.parametrize("name", SPECTRA)
def test_top10_matches_eigh(name):
    op = with_spectrum(SPECTRA[name].double())
    res = top_eigen(op, 10, tol=1e-8)
    exact, U = torch.linalg.eigh(op.A)
    exact, U = exact.flip(0)[:10], U.flip(1)[:, :10]
    assert res.converged
    assert float(((res.values - exact).abs() / exact.abs()).max()) <= 1e-6
    assert float(res.residuals.max()) <= 1e-8 * float(exact.abs().max()) + 1e-300
    # eigenvectors: orthonormal and aligned with eigh's where the gaps allow
    torch.testing.assert_close(res.vectors.T @ res.vectors, torch.eye(10), atol=1e-10, rtol=0)
    if name == "decaying":
        assert float(overlap(res.vectors, U[:, 0])[0]) == pytest.approx(1.0, abs=1e-10)


def test_rank_deficient_operator_breaks_down_cleanly():
    ev = torch.cat([torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01]), torch.zeros(191)])
    res = top_eigen(with_spectrum(ev), 10)
    assert res.n_products <= 12 and res.converged  # Krylov space exhausted after rank + 1 products
    torch.testing.assert_close(res.values[:9], ev[:9], rtol=1e-10, atol=0)
    assert abs(float(res.values[9])) <= 1e-13


def test_repeated_top_eigenvalue_found_after_restart():
    ev = torch.cat([torch.full((3,), 2.0), torch.tensor([1.0]), torch.zeros(26)])
    res = top_eigen(with_spectrum(ev), 4, tol=1e-10)
    torch.testing.assert_close(res.values, ev[:4], rtol=1e-10, atol=0)


def test_against_scipy_eigsh_on_a_network_operator():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    op = input_hessian(model, nn.CrossEntropyLoss(), x, y)
    ref = np.sort(eigsh(op.as_linear_operator(), k=6, which="LA", tol=1e-12)[0])[::-1]
    res = top_eigen(op, 6, tol=1e-10)
    np.testing.assert_allclose(res.values.numpy(), ref, rtol=1e-8)


def test_spectral_density_wasserstein_to_exact():
    """SLQ measure vs the uniform measure on the exact eigenvalues, Wasserstein-1 distance."""
    d = 400
    spectra = {"uniform": torch.rand(d), "marchenko_pastur": torch.linalg.eigvalsh(
        (lambda G: G.T @ G / 800)(torch.randn(800, d))), "two_clusters": torch.cat([torch.full((350,), 0.01),
                                                                                   1 + 0.1 * torch.rand(50)])}
    for name, ev in spectra.items():
        measure = spectral_density(with_spectrum(ev), n_probes=20, n_steps=40)
        spread = float(ev.max() - ev.min())
        w1 = measure.wasserstein1(ev.numpy())
        assert w1 <= 0.02 * spread, name
        assert measure.weights.sum() == pytest.approx(1.0, abs=1e-12)
        grid = np.linspace(float(ev.min()) - 1, float(ev.max()) + 1, 4001)
        assert np.trapezoid(measure.density(grid, 0.05 * spread), grid) == pytest.approx(1.0, abs=1e-6)
        # the mass above the cluster gap matches the exact fraction
        if name == "two_clusters":
            assert measure.weights[measure.nodes > 0.5].sum() == pytest.approx(50 / d, abs=0.03)


@pytest.mark.parametrize("name", SPECTRA)
def test_dense_top_eigen_is_the_top_of_a_full_eigh(name):
    """The k largest pairs of LAPACK's syevr are the top of the full eigh, descending, to rounding (the lab's exact
    route switched from one to the other: cached runs stay valid only if they agree)."""
    A = with_spectrum(SPECTRA[name].double()).A
    vals, vecs = dense_top_eigen(A, 6)
    full, U = torch.linalg.eigh(A)
    full, U = full.flip(0)[:6], U.flip(1)[:, :6]
    assert vals.dtype == vecs.dtype == torch.float64 and vecs.shape == (A.shape[0], 6)
    torch.testing.assert_close(vals, full, rtol=1e-12, atol=1e-15 * float(full[0]))
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(A @ vecs, vecs * vals, atol=1e-12 * float(full[0]), rtol=0)   # eigenpairs, in this order
    if name == "decaying":   # a simple top: the same vector up to sign
        assert float(overlap(vecs[:, :1], U[:, 0])[0]) == pytest.approx(1.0, abs=1e-12)


def test_dense_top_eigen_errors():
    with pytest.raises(ValueError, match="k must be between 1 and d = 4"):
        dense_top_eigen(torch.eye(4), 5)
    with pytest.raises(ValueError, match="square"):
        dense_top_eigen(torch.zeros(3, 4), 1)


def test_overlap_is_squared_cosine():
    u = torch.tensor([1.0, 0.0, 0.0])
    V = torch.tensor([[2.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(overlap(V, u), torch.tensor([1.0, 0.5]))
    assert float(overlap(V[:, 1], u.reshape(1, 3))) == pytest.approx(0.5)


def test_eigen_errors():
    op = with_spectrum(torch.rand(5))
    with pytest.raises(ValueError, match="k must be between 1 and d = 5"):
        top_eigen(op, 6)
    with pytest.raises(ValueError, match="k must be"):
        top_eigen(op, 0)
    with pytest.raises(ValueError, match="square"):
        top_eigen(Dense(torch.randn(3, 4)), 1)
    with pytest.raises(ValueError, match="tol"):
        top_eigen(op, 2, tol=0)
    with pytest.raises(ValueError, match="d = 3"):
        overlap(torch.randn(4), torch.randn(3))
    with pytest.raises(ValueError, match="zero vector"):
        overlap(torch.zeros(3), torch.randn(3))
    with pytest.raises(ValueError, match="n_probes"):
        spectral_density(op, n_probes=0)
