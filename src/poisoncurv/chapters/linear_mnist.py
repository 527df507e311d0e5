"""Chapter 5 drivers: linear and logistic regression on MNIST with the rank-one additive cross poison.

Every run goes through the lab's results cache (:func:`poisoncurv.lab.cache.get`), so the chapter
re-executes from the committed files in ``results/lab/`` and recomputes with ``FORCE=1``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from poisoncurv.core.profiles import by_profile
from poisoncurv.lab.cache import get
from poisoncurv.lab.config import LabConfig, profile_config
from poisoncurv.lab.data import ImageData, load

LOSSES = ("squared", "ce")
LOSS_NAMES = {"squared": "linear regression (squared loss)", "ce": "logistic regression (cross-entropy)"}
KAPPA_PAPER = (0.0, 1e2, 1e3, 1e4, 1e5, 1e6)


def settings(profile: str) -> dict[str, Any]:
    """Sweeps of the chapter for ``profile`` (sizes of each run: :mod:`poisoncurv.lab.config`)."""
    return {
        "attack": "cross-deterministic",
        "thetas": by_profile(profile, smoke=[0.0, 0.02, 0.1], cpu=[0.0, 0.001, 0.003, 0.01, 0.03],
                             gpu=[0.0, 0.0005, 0.001, 0.003, 0.01, 0.03, 0.1], full=[0.0, 0.0005, 0.001, 0.003, 0.01, 0.03, 0.1]),
        "theta_kappa": by_profile(profile, smoke=0.1, cpu=0.01, gpu=0.01, full=0.01),
        "kappa_paper": list(KAPPA_PAPER),
        "asr_success": 0.5,
        "amplitudes": by_profile(profile, smoke=[0.25, 1.0], cpu=[0.25, 0.5, 1.0], gpu=[0.125, 0.25, 0.5, 1.0, 2.0],
                                 full=[0.125, 0.25, 0.5, 1.0, 2.0]),
        "theta_amplitude": by_profile(profile, smoke=0.1, cpu=0.01, gpu=0.01, full=0.01),
    }


def kappa_lab(kappa_paper: float, batch_size: int) -> float:
    """The paper's κ in this lab's per-example convention, assuming the paper penalises the mean over
    the batch of ``|∇_{x_b} L|²`` with ``L`` the batch-*mean* loss: ``∇_{x_b} L = g_b / B``, so
    ``κ_paper · mean_b |g_b / B|² = (κ_paper / B²) · mean_b |g_b|²``."""
    return kappa_paper / batch_size**2


def config(profile: str, device: str, seed: int, loss: str, theta: float, kappa: float = 0.0, **kw: Any) -> LabConfig:
    """The lab configuration of one run of the chapter."""
    return profile_config(profile, model="linear", loss=loss, attack="cross-deterministic", theta=theta, kappa=kappa,
                          device=device, seed=seed, **kw)


@lru_cache(maxsize=1)
def mnist() -> ImageData:
    """MNIST, loaded once per process (only when a run is not in the cache)."""
    return load("mnist")


def series(res: dict[str, Any], key: str) -> np.ndarray:
    """One metric over training, as an array (``hess_top`` gives ``(T, k)``)."""
    return np.array([row[key] for row in res["epochs"]], dtype=float)


def settled_time(res: dict[str, Any], key: str, threshold: float) -> float | None:
    """The first evaluation time (epochs) from which ``key ≥ threshold`` holds at every later
    measurement (``None`` if it fails at the end): transient crossings do not count."""
    rows = res["epochs"]
    ok = [float(r[key]) >= threshold for r in rows]
    if not ok[-1]:
        return None
    i = len(ok) - 1
    while i > 0 and ok[i - 1]:
        i -= 1
    return float(rows[i]["epoch"])


def lab_dir(results_dir: str | None) -> Path | None:
    """Where the lab's run files go: ``<results_dir>/lab`` when a chapter writes its results somewhere
    (``make rerun``: ``results/``; the tests: a temporary folder), else the default ``results/lab``."""
    return None if results_dir is None else Path(results_dir) / "lab"


def theta_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Results of every ``(loss, theta)`` run with ``kappa = 0``, keyed by loss, in ``thetas`` order."""
    cfg = settings(profile)
    return {loss: [get(config(profile, device, seed, loss, th), lab_dir(results_dir), data=mnist, progress=progress)
                   for th in cfg["thetas"]] for loss in LOSSES}


def kappa_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Results of every ``(loss, kappa_paper)`` run at ``theta_kappa``, keyed by loss, in ``kappa_paper`` order."""
    s = settings(profile)
    out = {}
    for loss in LOSSES:
        B = config(profile, device, seed, loss, s["theta_kappa"]).batch_size
        out[loss] = [get(config(profile, device, seed, loss, s["theta_kappa"], kappa_lab(k, B)), lab_dir(results_dir),
                         data=mnist, progress=progress) for k in s["kappa_paper"]]
    return out


def amplitude_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                    progress: bool = False) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Runs at ``theta_amplitude`` (κ = 0) for every trigger amplitude, keyed by loss, in ``amplitudes``
    order, each paired with the clean run (θ = 0, amplitude 1; clean training never sees the trigger,
    so its curvature does not depend on the amplitude): ``{loss: [(clean, poisoned), ...]}``."""
    s = settings(profile)
    out = {}
    for loss in LOSSES:
        clean = get(config(profile, device, seed, loss, 0.0), lab_dir(results_dir), data=mnist, progress=progress)
        out[loss] = [(clean, get(config(profile, device, seed, loss, s["theta_amplitude"], amplitude=a), lab_dir(results_dir),
                                 data=mnist, progress=progress)) for a in s["amplitudes"]]
    return out


def lag_row(res: dict[str, Any], clean: dict[str, Any], asr_success: float) -> dict[str, Any]:
    """Timing of success and visibility for one run, and the Chapter 1 law at the end of training.

    ``t_success``: time from which ASR ≥ ``asr_success``; ``t_visible``: time from which the top
    input-Hessian eigenvector has squared overlap ≥ 1/2 with the trigger (both :func:`settled_time`);
    ``lag = t_visible − t_success``; ``max_overlap``: the largest overlap seen at any time.
    ``law_ratio``: curvature along the trigger over ``R_k·|Δf|²`` with ``R_k = 1/|a t|²`` and ``|Δf|²``
    the mean squared output shift on triggered test images (exactly 1 for the squared loss);
    ``threshold_ratio``: ``R_k·|Δf|²`` over the clean run's top eigenvalue at the same time (the spike
    stands out of the clean bulk when this exceeds 1: Remark 3.5's condition); ``spike_ratio``: the
    measured curvature along the trigger over the same clean eigenvalue (equal for the squared loss).
    """
    last, last_clean = res["epochs"][-1], clean["epochs"][-1]
    R_k = 1.0 / res["poison"]["trigger_norm"] ** 2
    t_s, t_v = settled_time(res, "asr", asr_success), settled_time(res, "overlap", 0.5)
    return {
        "theta": res["config"]["theta"], "n_poison": res["poison"]["n_poison"],
        "t_success": t_s, "t_visible": t_v, "lag": None if t_s is None or t_v is None else t_v - t_s,
        "asr": last["asr"], "clean_acc": last["clean_acc"], "overlap": last["overlap"],
        "max_overlap": float(series(res, "overlap").max()), "hess_top": last["hess_top"][0],
        "curv_along_poison": last["curv_along_poison"], "shift2": last["trigger_shift2"], "R_k": R_k,
        "law_ratio": last["curv_along_poison"] / (R_k * last["trigger_shift2"]) if last["trigger_shift2"] > 0 else float("nan"),
        "threshold_ratio": R_k * last["trigger_shift2"] / last_clean["hess_top"][0],
        "spike_ratio": last["curv_along_poison"] / last_clean["hess_top"][0],
        "fisher_top": last["fisher_top"],
    }


def lag_table(sweep: dict[str, list[dict[str, Any]]], asr_success: float) -> dict[str, list[dict[str, Any]]]:
    """:func:`lag_row` for every poisoned run (``theta > 0``) of a θ sweep, against its loss's clean run."""
    out = {}
    for loss, runs in sweep.items():
        clean = next(r for r in runs if r["config"]["theta"] == 0)
        out[loss] = [lag_row(r, clean, asr_success) for r in runs if r["config"]["theta"] > 0]
    return out
