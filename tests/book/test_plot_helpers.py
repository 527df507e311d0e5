"""The plotting functions the chapters' figure cells call (one call per cell), drawn at toy size: they draw without
error, with the panels, lines and labels the figure needs."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from poisoncurv.book import defence_figures, detector_figures, kernel_figures, linear_figures  # noqa: E402
from poisoncurv.book.figures import setup_plots  # noqa: E402
from poisoncurv.chapters import linear_mnist as ex  # noqa: E402
from poisoncurv.chapters.detectors_cnn import DefenceResult  # noqa: E402
from poisoncurv.chapters.frontier import SafetyPoint  # noqa: E402
from poisoncurv.core import criteria  # noqa: E402
from poisoncurv.detect.suite import DETECTORS  # noqa: E402


@pytest.fixture(autouse=True)
def _plots():
    setup_plots()
    yield
    plt.close("all")


def labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


def test_measured_and_law_draws_markers_then_a_line_in_their_colour():
    fig, ax = plt.subplots()
    kernel_figures.measured_and_law(ax, [1, 2], [1, 4], [1.1, 3.9], "o", label="meas", law_label="law")
    pts, line = ax.lines
    assert pts.get_marker() == "o" and pts.get_markerfacecolor() == "none" and pts.get_linestyle() == "None"
    assert line.get_linestyle() == "-" and line.get_color() == pts.get_color() and line.get_linewidth() == 1
    kernel_figures.measured_and_law(ax, [1, 2], [1, 4], [1, 4], "s", x_law=[0.5, 3])
    assert list(ax.lines[-1].get_xdata()) == [0.5, 3]


def _regime(k):
    x = np.array([0.1, 0.2, 0.4])
    return SimpleNamespace(shift_meas=x, spike_meas=k * x**2, shift_pred=x, spike_pred=k * x**2, r_over_ell=x,
                           eff=x, eff_pred=x, spike=k * x)


def test_spike_vs_efficacy_one_panel_per_kernel_a_pair_and_the_closed_form_entry():
    exact = SimpleNamespace(by_kernel={"gaussian": _regime(1), "laplace": _regime(2), "matern": _regime(3)})
    fig = kernel_figures.spike_vs_efficacy(exact)
    (ax,) = fig.axes
    assert len(ax.lines) == 3 * 2 + 1 and ax.get_xscale() == ax.get_yscale() == "log"
    assert labels(ax) == ["gaussian", "laplace", "matern", r"closed form $R_k\,\|\Delta f\|^2$"]


def test_near_clone_two_panels_direct_solve_and_closed_form_per_kernel():
    law = SimpleNamespace(by_kernel={"gaussian": _regime(1), "laplace": _regime(2)})
    fig = kernel_figures.near_clone(law)
    a, b = fig.axes
    assert len(a.lines) == len(b.lines) == 4 and b.get_yscale() == "log" and a.get_ylim() == (0, 1.05)
    assert labels(a) == ["gaussian: direct solve", "gaussian: closed form", "laplace: direct solve", "laplace: closed form"]
    assert [ax.get_title(loc="left") for ax in (a, b)] == ["(a)", "(b)"]


def _run(theta=0.0, amplitude=1.0, n=4):
    return {"config": {"theta": theta, "amplitude": amplitude},
            "epochs": [{"epoch": e, "asr": e / n, "overlap": e / (2 * n)} for e in range(n)]}


def test_dynamics_a_row_per_loss_a_line_per_theta():
    thetas = [0.0, 0.01, 0.1]
    runs = {loss: [_run(t) for t in thetas] for loss in ex.LOSSES}
    fig = linear_figures.dynamics(runs, thetas, 0.9)
    assert len(fig.axes) == 4
    assert all(len(ax.lines) == len(thetas) + 1 for ax in fig.axes)          # a line per θ and the dotted reference
    assert labels(fig.axes[1]) == ["θ = 0", "θ = 0.01", "θ = 0.1"]
    assert fig.axes[0].lines[-1].get_ydata()[0] == 0.9


def test_amplitude_a_panel_per_loss_overlap_and_asr_per_amplitude():
    amp_runs = {loss: [(None, _run(amplitude=a)) for a in (0.5, 1.0)] for loss in ex.LOSSES}
    fig = linear_figures.amplitude(amp_runs)
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 * 2 + 1 for ax in fig.axes)
    assert labels(fig.axes[0]) == ["a = 0.5", "a = 1"]
    assert fig.axes[1].get_title() == ex.LOSS_NAMES[ex.LOSSES[1]]


def test_law_scatter_visible_in_red_and_the_identity():
    arr = np.array([0.5, 2.0, 4.0])
    law = SimpleNamespace(predicted={k: arr for k in ex.LOSSES}, measured={k: arr * 1.1 for k in ex.LOSSES},
                          visible={k: arr > 1 for k in ex.LOSSES})
    fig = linear_figures.law(law)
    assert len(fig.axes) == 2 and all(len(ax.collections) == 2 and len(ax.lines) == 2 for ax in fig.axes)
    assert labels(fig.axes[0]) == ["not visible", "visible", "curvature = $R_k|\\Delta f|^2$"]


def test_kappa_three_panels_kappa_zero_a_decade_left():
    kp = np.array([0.0, 1.0, 10.0])
    curve = ex.KappaCurve(kp, np.array([1.0, 0.6, 0.1]), np.array([0.9, 0.9, 0.8]), np.array([10.0, 1.0, 0.0]),
                          np.array([20.0, 10.0, 5.0]), np.array([1.0, 0.5, 0.1]))
    fig = linear_figures.kappa(SimpleNamespace(curves={loss: curve for loss in ex.LOSSES}))
    a, b, c = fig.axes
    assert len(a.lines) == len(b.lines) == 2 and len(c.lines) == 4
    assert a.lines[0].get_xdata()[0] == pytest.approx(0.1) and c.lines[0].get_ydata()[-1] == 1e-6
    assert [ax.get_title() for ax in fig.axes] == ["(a)", "(b)", "(c)"] and c.get_yscale() == "log"


def test_frontier_a_plane_per_loss_every_method_in_the_legend():
    pts = tuple(SafetyPoint(family=m, setting=s, clean_acc=0.9 - s / 10, asr=1 - s / 2, model=loss)
                for loss in ex.LOSSES for m, _ in linear_figures.FRONTIER_METHODS for s in (0.0, 1.0))
    fig = linear_figures.frontier(SimpleNamespace(points=pts, clean_acc={loss: 0.9 for loss in ex.LOSSES}))
    assert len(fig.axes) == 2 and all(len(ax.lines) == 3 and len(ax.collections) == 1 for ax in fig.axes)
    assert labels(fig.axes[0]) == [m for m, _ in linear_figures.FRONTIER_METHODS]
    assert fig.axes[0].get_ylim() == (0, 1) and fig.axes[1].get_ylabel() == "clean test accuracy"


def test_safety_plane_skips_methods_without_cells():
    cells = [SimpleNamespace(attack=a, method=m, asr=0.05, clean_acc=0.97) for a in ("badnets", "blend")
             for m in ("κ", "none")]
    defence = SimpleNamespace(attacks=["badnets", "blend"], cells=cells, clean_acc=lambda attack: 0.98)
    fig = defence_figures.safety_plane(defence)
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)
    assert labels(fig.axes[0]) == ["κ", "none"] and fig.axes[0].lines[0].get_markersize() == 5
    assert fig.axes[1].get_title() == "blend" and fig.axes[1].get_ylabel() == "clean accuracy"


def test_trigger_without_mnist_shows_the_trigger_alone():
    fig = linear_figures.trigger(None)
    assert len(fig.axes) == 3 and [len(ax.images) for ax in fig.axes] == [0, 0, 1]


# ---- Chapter 8 (detector_figures) ----------------------------------------------------------------------------------

NAMES = list(DETECTORS)


def _aurocs(n=3, seeds=2):
    return {name: np.linspace(0.5, 1.0, n * seeds).reshape(n, seeds) - 0.01 * j for j, name in enumerate(NAMES)}


def test_auroc_per_detector_mean_and_sd_open_markers_in_order():
    fig, ax = plt.subplots()
    x, au = [0.0, 1.0, 2.0], _aurocs()
    detector_figures.auroc_per_detector(ax, x, au)
    assert len(ax.containers) == len(NAMES) and [c.get_label() for c in ax.containers] == NAMES
    lines = [c.lines[0] for c in ax.containers]
    assert [ln.get_marker() for ln in lines] == list(detector_figures.DETECTOR_MARKERS)
    assert all(ln.get_markerfacecolor() == "none" and ln.get_linestyle() == "-" for ln in lines)
    assert list(lines[1].get_ydata()) == pytest.approx(au[NAMES[1]].mean(1))
    seg = ax.containers[0].lines[2][0].get_segments()[0]            # the first error bar spans mean ± s.d.
    v = au[NAMES[0]][0]
    assert seg[:, 1] == pytest.approx([v.mean() - v.std(), v.mean() + v.std()])


def test_synthetic_detectors_oracle_null_band_and_found_line():
    syn = SimpleNamespace(separation=np.array([0.0, 1.0, 2.0]), auroc=_aurocs(), oracle_que=np.full((3, 2), 0.7),
                          null_sd=0.05)
    fig = detector_figures.synthetic(syn)
    (ax,) = fig.axes
    assert labels(ax) == ["QUE, true clean law (oracle)", "null: 1/2 ± 2 s.d. (one seed)", *NAMES]   # error bars last
    assert ax.lines[-1].get_ydata()[0] == criteria.AUROC_FOUND and ax.get_ylim() == (0.3, 1.02)
    assert ax.patches[0].get_y() == pytest.approx(0.4) and ax.patches[0].get_height() == pytest.approx(0.2)


def test_boundary_auroc_panel_then_success_and_visibility():
    a = np.array([0.1, 1.0, 10.0])
    bnd = SimpleNamespace(a=a, auroc=_aurocs(), curvature_auroc=np.full((3, 2), 0.2), success=np.full((3, 2), 0.6),
                          visible=np.zeros((3, 2)))
    fig = detector_figures.boundary(bnd)
    top, bottom = fig.axes
    assert labels(top) == ["input curvature (triggered vs clean)", *NAMES]
    assert labels(bottom) == [r"curvature $\geq\Lambda_{clean}$", "attack success"]
    assert bottom.get_xscale() == top.get_xscale() == "log"                      # shared x
    assert [ax.get_title(loc="left") for ax in (top, bottom)] == ["(a)", "(b)"]


def _detection(auroc):
    samples = {name: SimpleNamespace(auroc=auroc) for name in NAMES}
    return SimpleNamespace(samples=samples, sample=samples.__getitem__)     # as RunDetection.sample


def test_cnn_a_group_of_bars_per_attack_coloured_by_detector():
    cnn = SimpleNamespace(runs={attack: ([], [_detection(0.8), _detection(1.0)]) for attack in ("badnets", "warp")})
    fig = detector_figures.cnn(cnn)
    (ax,) = fig.axes
    assert len(ax.patches) == 2 * len(NAMES) and ax.patches[0].get_height() == pytest.approx(0.9)
    assert labels(ax) == NAMES and [t.get_text() for t in ax.get_xticklabels()] == ["badnets", "warp"]
    assert [ln.get_ydata()[0] for ln in ax.lines[-2:]] == [0.5, criteria.AUROC_FOUND]


def test_amplitude_asr_panel_and_detectors_with_model_level_scores():
    a = np.array([0.25, 0.5, 1.0])
    au = _aurocs()
    amp = SimpleNamespace(a=a, asr=lambda: np.full((3, 2), 0.9), clean_asr=lambda: np.zeros((3, 2)),
                          auroc=lambda name: au[name], model_auroc=lambda name: np.full(3, 0.75))
    fig = detector_figures.amplitude(amp)
    top, bottom = fig.axes
    assert labels(top) == ["ASR, clean models", "ASR, poisoned models"]
    assert labels(bottom) == [r"model level: $u^\top Hu$ (known trigger)", r"model level: $\lambda_1/\lambda_2$ (trigger-free)",
                              *NAMES]
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["0.25", "0.5", "1"]
    assert top.lines[-1].get_ydata()[0] == criteria.ASR_SUCCESS


def test_frontier_undefended_star_then_a_marker_per_family_on_two_panels():
    seeds = range(criteria.MIN_SEEDS)
    undefended = tuple(SafetyPoint("none", "", 0.975 + 0.005 * s, 0.94 + 0.01 * s, seed=s) for s in seeds)
    points = tuple(SafetyPoint(fam, f"{k}", 0.97 - 0.01 * k + 0.002 * s, 0.5 / (k + 1) - 0.01 * s, seed=s)
                   for fam in ("input-gradient penalty", "early stopping") for k in range(2) for s in seeds)
    points += (SafetyPoint("weight decay", "1", 0.9, 0.9, seed=0),)               # one seed: left out
    fig = detector_figures.frontier(DefenceResult("cross", undefended, points))
    a, b = fig.axes
    assert labels(a) == ["undefended", "input-gradient penalty", "early stopping", "weight decay"]
    for ax in (a, b):
        star, pen, stop, wd = ax.containers
        assert [c.lines[0].get_marker() for c in (star, pen, stop)] == ["*", "v", "o"]    # families in order
        assert pen.lines[0].get_linestyle() == "None" and stop.lines[0].get_linestyle() == "-"
        assert len(wd.lines[0].get_xdata()) == 0
    assert b.get_xlim() == (0.935, 0.992) and [ax.get_title(loc="left") for ax in (a, b)] == ["(a)", "(b)"]


def test_adaptive_both_triggers_in_colour_and_bars_per_run():
    pattern = np.zeros((28, 28))
    pattern[0, 0] = 1.0
    ratios = {"trig": np.array([4.0, 6.0]), "clean": np.array([1.0, 3.0])}
    adv = SimpleNamespace(pattern=pattern, runs={"cross θ=1%": None, "lowcurv θ=5%": None},
                          curv_ratio=lambda label, where: ratios[where])
    fig = detector_figures.adaptive(adv)
    a, b = fig.axes
    img = a.images[0].get_array()
    assert tuple(img[0, 0]) == detector_figures.LOWCURV_RGB and tuple(img[27, 0]) == (1.0, 1.0, 1.0)
    assert (img == np.array(detector_figures.CROSS_RGB)).all(-1).sum() == 9
    assert [p.get_height() for p in b.patches] == [5.0, 5.0, 2.0, 2.0] and b.get_yscale() == "log"
    assert [t.get_text() for t in b.get_xticklabels()] == ["cross\n1%", "lowcurv\n5%"]
    assert labels(b) == ["triggered inputs", "clean inputs"]
