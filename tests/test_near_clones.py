"""Chapter 2: near clones, the detectability boundary and the lag, against direct solves and closed forms."""

import numpy as np
import pytest
import torch

from poisoncurv.chapters import near_clones as ex
from poisoncurv.chapters.krr_clones import loglog_slope
from poisoncurv.krr.clean_clones import crossover_eps, limit_shift, pair_effect, small_eps_coefficient
from poisoncurv.krr.clones import add_clones, effective_curvature_ratio, measure_effect, scalar_gain
from poisoncurv.krr.flow import euler_alpha, first_crossing, krr_flow, saturation_time
from poisoncurv.krr.kernels import GaussianKernel, fit_krr
from poisoncurv.krr.visibility import bulk_edge, target_margin, top_gn_eigenvalue


@pytest.fixture(scope="module")
def smoke():
    return ex.settings("smoke")


def test_flow_closed_form_matches_euler_and_converges_to_krr():
    X, Y, kernel = torch.randn(30, 3), torch.randn(30, 2), GaussianKernel(1.0)
    flow = krr_flow(kernel, X, Y, 0.5)
    a_flow = flow.alpha(torch.tensor([0.7, 1e4]))
    # Euler's global error is first order in the step: halving it halves the gap
    gaps = [float((euler_alpha(kernel, X, Y, 0.5, 0.7, n) - a_flow[0]).norm() / a_flow[0].norm()) for n in (2000, 4000)]
    assert gaps[0] < 1e-3 and gaps[1] / gaps[0] == pytest.approx(0.5, abs=0.02)
    torch.testing.assert_close(a_flow[1], fit_krr(kernel, X, Y, 0.5).alpha, rtol=1e-10, atol=1e-12)
    # Jacobian of the flow against finite differences of its predictions
    x, h, t = torch.randn(2, 3), 1e-6, torch.tensor([0.3])
    fd = torch.stack([(flow.predict(x + h * e, t) - flow.predict(x - h * e, t))[0] / (2 * h) for e in torch.eye(3)], -1)
    torch.testing.assert_close(flow.jacobian(x, t)[0], fd, rtol=1e-6, atol=1e-8)


def test_far_clones_grow_as_one_minus_exponential():
    X, Y = torch.randn(40, 4), torch.randn(40, 2)
    zeta, y_t, m, ridge, kernel = torch.tensor([2000.0, 0, 0, 0]), torch.tensor([0.0, 1.0]), 7, 0.4, GaussianKernel(1.0)
    Xp, Yp = add_clones(X, Y, zeta, y_t, m)
    t = torch.tensor([0.01, 0.1, 1.0])
    x0 = zeta[None] + torch.tensor([[0.3, 0.2, 0, 0]])
    shift = krr_flow(kernel, Xp, Yp, ridge).predict(x0, t) - krr_flow(kernel, X, Y, ridge).predict(x0, t)
    k0 = float(kernel(x0, zeta[None]))
    expect = k0 * scalar_gain(m, ridge, 1.0) * (1 - torch.exp(-(ridge + m) * t))
    torch.testing.assert_close(shift[:, 0, 1], expect, rtol=1e-10, atol=0)
    # crossing times of that curve in closed form
    level = 0.5 / (k0 * scalar_gain(m, ridge, 1.0))
    t_star = float(saturation_time(level, ridge + m))
    assert k0 * scalar_gain(m, ridge, 1.0) * (1 - np.exp(-(ridge + m) * t_star)) == pytest.approx(0.5, rel=1e-12)


def test_first_crossing_and_saturation_time():
    t = np.logspace(-2, 2, 41)
    assert first_crossing(t, np.log(t), np.log(0.5)) == pytest.approx(0.5, rel=1e-12)  # exact for values linear in log t
    assert first_crossing(t, np.ones_like(t), 2.0) == float("inf")
    assert first_crossing(t, np.ones_like(t), 0.5) == 0.0
    np.testing.assert_array_equal(saturation_time(np.array([-1.0, 0.0, 1.0, 2.0]), 3.0), [0.0, 0.0, np.inf, np.inf])


def test_detector_quantities():
    J = torch.randn(5, 3, 4)
    lam = torch.linalg.eigvalsh(J.transpose(1, 2) @ J)[:, -1]
    torch.testing.assert_close(top_gn_eigenvalue(J), lam, rtol=1e-10, atol=1e-12)
    assert float(bulk_edge(J, 1.0)) == pytest.approx(float(lam.max()))
    f = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.2, 0.6]])
    torch.testing.assert_close(target_margin(f, 1), torch.tensor([0.6, -0.4]))
    with pytest.raises(ValueError, match="quantile"):
        bulk_edge(J, 0.0)
    with pytest.raises(ValueError, match="target class"):
        target_margin(f, 3)


def test_gaussian_near_clone_slopes(smoke):
    g = ex.near_clone_law("gaussian", smoke, seed=0)
    assert abs(g["eff_slope"]) < 0.05 and abs(g["spike_slope"] - 2) < 0.05
    np.testing.assert_allclose(g["spike"], g["spike_pred"], rtol=1e-10)
    lap = ex.near_clone_law("laplace", smoke, seed=0)
    assert abs(lap["spike_slope"]) < 0.1  # R_k = 1/ℓ² for the Laplace kernel: no near-clone regime


def test_phase_diagram_boundary_is_the_remark(smoke):
    ph = ex.phase_diagram(smoke, seed=0)
    assert ph["direct_max_rel_gap"] < 1e-10
    # visible exactly where |Δf|² ≥ Λ_clean / R_k, and some successful attacks are invisible
    np.testing.assert_array_equal(ph["visible"], ph["eff"] ** 2 >= ph["Lambda_clean"] / ph["R_k"][None, :])
    assert (ph["success"] & ~ph["visible"]).any() and (ph["success"] & ph["visible"]).any()


def test_lag_grows_as_query_approaches_trigger(smoke):
    lg = ex.lag_gaussian(smoke, seed=0)
    assert lg["crossing_max_rel_err"] < 1e-2 and lg["euler_rel_gap"] < 1e-2
    both = np.isfinite(lg["lag"])
    assert both.any() and np.all(np.diff(lg["lag"][both]) < 0)     # lag decreases with r where both happen
    first_finite = int(np.argmax(both))
    assert first_finite > 0 and np.isinf(lg["t_vis"][:first_finite]).all()   # never visible closer in
    r_vis = ex.visibility_radius(lg["Lambda_clean"], smoke["lengthscale"], scalar_gain(smoke["m_near"], smoke["ridge"], 1.0))
    r = lg["r_over_ell"] * smoke["lengthscale"]
    np.testing.assert_array_equal(np.isfinite(lg["t_vis"][r < 1]), r[r < 1] > r_vis)


def test_linear_lag_is_the_same_for_every_source(smoke):
    lin = ex.lag_linear(smoke, seed=0)
    assert lin["primal_rel_gap"] < 1e-2
    for a in lin["patch_values"]:
        lag = lin[f"t_vis_{a}"] - lin[f"t_succ_{a}"]
        assert np.isfinite(lag).all() and np.ptp(lag) < 1e-12


def test_overlap_puts_a_floor_under_the_curvature_ratio():
    X, kernel, ridge = torch.randn(80, 3), GaussianKernel(1.0), 0.5
    zeta, u = torch.tensor([0.3, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    floor = float(effective_curvature_ratio(kernel, X, ridge, zeta[None], zeta)[0])
    assert floor > 1e-4
    R = effective_curvature_ratio(kernel, X, ridge, zeta[None] + torch.tensor([[1e-5], [1e-1]]) * u, zeta)
    assert float(R[0]) == pytest.approx(floor, rel=1e-3)      # R_eff → R_eff(ζ) > 0, not r²/ℓ⁴ → 0
    assert abs(float(R[1]) - 1e-2) > 0.1 * 1e-2                # and far from the no-overlap value r²/ℓ⁴


def test_pair_closed_form_against_direct_solve():
    ell, ridge, m = 1.0, 0.01, 5
    y_c, y_p = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    x_c, u = torch.zeros(3), torch.tensor([0.6, 0.8, 0.0])
    eps = np.array([1e-3, 0.05, 0.3])
    cf = pair_effect(eps, m, ridge, ell, y_c, y_p)
    kernel = GaussianKernel(ell)
    for j, e in enumerate(eps):
        x_p = x_c + float(e) * u
        Xp, Yp = add_clones(x_c[None], torch.tensor(y_c)[None], x_p, torch.tensor(y_p), m)
        eff = measure_effect(kernel, x_c[None], torch.tensor(y_c)[None], Xp, Yp, ridge, torch.stack([x_p, x_c]))
        np.testing.assert_allclose(eff.shift[0].numpy(), cf.shift_poison[j], rtol=1e-9)
        np.testing.assert_allclose(eff.shift[1].numpy(), cf.shift_clean[j], rtol=1e-9)
        np.testing.assert_allclose(float(eff.spike[0]), cf.aligned[j], rtol=1e-8)


def test_pair_limits_and_crossover():
    ell, ridge, m = 1.3, 0.01, 5
    y_c, y_p = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    e_star = crossover_eps(m, ridge, ell)
    tiny = pair_effect(np.array([1e-4 * e_star]), m, ridge, ell, y_c, y_p)
    np.testing.assert_allclose(tiny.shift_poison[0], limit_shift(m, ridge, y_c, y_p), rtol=1e-6)
    A = small_eps_coefficient(m, ridge, y_c, y_p)
    assert tiny.aligned[0] / ((1e-4 * e_star) ** 2 / ell**4) == pytest.approx(A, rel=1e-6)
    below = np.array([1e-3, 1e-2]) * e_star
    assert loglog_slope(below, pair_effect(below, m, ridge, ell, y_c, y_p).aligned) == pytest.approx(2, abs=0.01)
    # with a smaller ridge, ε* ≪ ℓ and between them the curvature *rises* as ε falls, like 1/ε²
    above = np.array([10, 30]) * crossover_eps(m, 1e-6, ell)
    assert loglog_slope(above, pair_effect(above, m, 1e-6, ell, y_c, y_p).aligned) == pytest.approx(-2, abs=0.05)
    with pytest.raises(ValueError, match="ridge"):
        pair_effect(below, m, 0.0, ell, y_c, y_p)
