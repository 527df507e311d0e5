"""Chapter 2: near clones, the detectability boundary and the lag, against direct solves and closed forms."""

import numpy as np
import pytest
import torch

from poisoncurv.chapters import near_clones as ex
from poisoncurv.core.fitting import loglog_slope
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
    # the law bounds the local slopes on r <= r_max by r_max²/ℓ² (efficacy) and twice that (spike)
    bound = (smoke["r_law"][-1]) ** 2
    assert abs(g.eff_slope) < bound and abs(g.spike_slope - 2) < 2 * bound
    np.testing.assert_allclose(g.spike, g.spike_pred, rtol=1e-10)
    lap = ex.near_clone_law("laplace", smoke, seed=0)
    assert abs(lap.spike_slope) < 0.1  # R_k = 1/ℓ² for the Laplace kernel: no near-clone regime


def test_phase_diagram_boundary_is_the_remark(smoke):
    ph = ex.phase_diagram(smoke, seed=0)
    s = ph.summary()
    assert ph.direct_max_rel_gap < 1e-10
    assert s["ch2_visible_below_r_vis_limit"] == 0 and s["ch2_r_vis_limit_rel_err"] < 1e-10
    # r_vis(m) decreases to its m → ∞ limit, so no grid point below the limit is visible, on any grid
    assert np.all(ph.r_vis[np.isfinite(ph.r_vis)] >= ph.r_vis_limit)
    assert (ph.success & ~ph.visible).any() and (ph.success & ph.visible).any()
    assert ph.r_succ_limit == pytest.approx(np.sqrt(2 * np.log(1 / smoke["success_margin"])), rel=1e-14)


def test_lag_grows_as_query_approaches_trigger(smoke):
    lg = ex.lag_gaussian(smoke, seed=0)
    assert lg.crossing_max_rel_err < 1e-10 and lg.euler_rel_gap < 1e-3
    lag = lg.lag
    both = np.isfinite(lag)
    assert both.any() and np.all(np.diff(lag[both]) < 0)     # lag decreases with r where both happen
    first_finite = int(np.argmax(both))
    assert first_finite > 0 and np.isinf(lg.t_vis[:first_finite]).all()   # never visible closer in
    r = lg.r_over_ell * smoke["lengthscale"]
    np.testing.assert_array_equal(np.isfinite(lg.t_vis[r < 1]), r[r < 1] > lg.r_vis)


def test_crossing_time_is_a_root_not_an_interpolation():
    t = np.logspace(-3, 2, 20)
    rate, level = 3.0, 0.7
    f = lambda v: -np.expm1(-rate * v) - level  # noqa: E731
    got = ex.crossing_time(f, t, f(t))
    assert got == pytest.approx(-np.log1p(-level) / rate, rel=1e-14)
    assert ex.crossing_time(f, t, np.full(20, -1.0)) == np.inf


def test_linear_lag_is_the_same_for_every_source(smoke):
    lin = ex.lag_linear(smoke, seed=0)
    assert lin.primal_rel_gap < 1e-2
    for a in lin.t_succ:
        lag = lin.lag(a)
        assert np.isfinite(lag).all() and np.ptp(lag) < 1e-12
    # lag ≤ 0 exactly when |t| sqrt(Λ_clean) ≤ τ
    thr = lin.summary()["ch2_linear_norm_threshold"]
    for a in lin.t_succ:
        assert (lin.lag(a)[0] <= 0) == (lin.trigger_norm[a] <= thr)


def test_trigger_geometry_far_setting_is_flagged(smoke):
    geo = ex.trigger_geometry(smoke, seed=0)
    s = geo.summary()
    assert s["ch2_geo_far_flagged"] == 1.0 and s["ch2_geo_far_clean_curvature"] == 0.0
    assert geo.table().name == "tbl-ch2-trigger-geometry" and len(geo.table().rows) == 2 * len(smoke["trigger_amplitudes"])


def test_relu_ntk_ratio_does_not_vanish(smoke):
    relu = ex.relu_ntk_curvature(smoke, seed=0)
    s = relu.summary()
    assert s["ch2_relu_autograd_max_rel_err"] < 1e-10 and s["ch2_relu_tangential_limit_rel_err"] < 1e-5
    assert s["ch2_relu_min_Rk"] > 0.5 and abs(s["ch2_relu_Rk_slope_small_r"]) < 0.01
    assert s["ch2_relu_ntk_rel_gap"] < 0.1


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
