"""Chapter 5 drivers: linear and logistic regression on MNIST with the rank-one additive cross poison.

Every run goes through the lab's results cache (:func:`poisoncurv.lab.runner.get`), so the chapter
re-executes from the committed files in ``results/lab/`` and recomputes with ``FORCE=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from poisoncurv.chapters.frontier import SafetyPoint
from poisoncurv.chapters.mnist_runs import data_source, mnist  # noqa: F401 (the chapter's MNIST, shared with Chapters 6 and 8)
from poisoncurv.core import criteria
from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.criteria import ACC_DROP_MAX, ASR_DEFENDED, ASR_SUCCESS, CURV_RATIO_VISIBLE
from poisoncurv.core.paths import GRIDS_DIR, chapter_lab_dir
from poisoncurv.core.prose import round_sig
from poisoncurv.core.provenance import short_commit
from poisoncurv.core.tables import Table
from poisoncurv.lab.config import LabConfig, profile_config
from poisoncurv.lab.grid import load_grid
from poisoncurv.lab.runner import get

RUN = "Run: {glue:text}`ch05_linear_mnist_run`."     # ends every caption of the chapter
MASS_K = 4                # criterion 2: mass of the trigger in the top-4 eigenspace (top 5 eigenvalues are stored)

LOSSES = ("squared", "ce")
LOSS_NAMES = {"squared": "linear regression (squared loss)", "ce": "logistic regression (cross-entropy)"}


def settings(profile: str) -> dict[str, Any]:
    """Sweeps of the chapter for ``profile``, read from its grid file ``grids/ch05.yaml`` (the same file a cluster
    sweep runs: ``make sweep GRID=grids/ch05.yaml``); sizes of each run: :mod:`poisoncurv.lab.config`."""
    grid = load_grid(GRIDS_DIR / "ch05.yaml", profile, check_device=False)
    first = lambda group: [r.config for r in grid.group(group, loss=LOSSES[0])]  # noqa: E731
    kappa, amplitude, wd = first("kappa"), first("amplitude"), first("weight_decay")
    if {c.theta for c in wd} != {kappa[0].theta}:
        raise ValueError("grids/ch05.yaml: the weight-decay group must use the kappa group's theta (one frontier)")
    return {
        "attack": "cross-deterministic",
        "thetas": [c.theta for c in first("theta")],
        "theta_kappa": kappa[0].theta,
        "kappa_lab": [c.kappa for c in kappa],
        "kappa_paper": [float(f"{c.kappa_paper:.6g}") for c in kappa],       # a label: runs take kappa_lab
        "asr_success": ASR_SUCCESS,
        "amplitudes": [c.amplitude for c in amplitude],
        "theta_amplitude": amplitude[0].theta,
        "weight_decays": [c.weight_decay for c in wd],
    }


def config(profile: str, device: str, seed: int, loss: str, theta: float, kappa: float = 0.0, **kw: Any) -> LabConfig:
    """The lab configuration of one run of the chapter."""
    return profile_config(profile, model="linear", loss=loss, attack="cross-deterministic", theta=theta, kappa=kappa,
                          device=device, seed=seed, **kw)


def runs(profile: str, device: str = "cpu", seed: int = 0) -> dict[str, LabConfig]:
    """Every lab run the chapter uses, by a name saying what it is (``"squared theta=0.01"``,
    ``"ce kappa_paper=1e+06"``, ``"squared amplitude=0.25"``, ``"ce weight_decay=0.1"``); the same
    configuration may appear under two names (the amplitude-1 run is a θ-sweep run)."""
    s = settings(profile)
    out: dict[str, LabConfig] = {}
    for loss in LOSSES:
        for th in s["thetas"]:
            out[f"{loss} theta={th:g}"] = config(profile, device, seed, loss, th)
        for k, k_lab in zip(s["kappa_paper"], s["kappa_lab"]):
            out[f"{loss} kappa_paper={k:g}"] = config(profile, device, seed, loss, s["theta_kappa"], k_lab)
        for a in s["amplitudes"]:
            out[f"{loss} amplitude={a:g}"] = config(profile, device, seed, loss, s["theta_amplitude"], amplitude=a)
        for wd in s["weight_decays"]:
            out[f"{loss} weight_decay={wd:g}"] = config(profile, device, seed, loss, s["theta_kappa"], weight_decay=wd)
    return out


def load_runs(profile: str, device: str, seed: int, results_dir: str | None = None,
              progress: bool = False) -> dict[str, dict[str, Any]]:
    """The results of every run of :func:`runs` (cached or trained), by name."""
    return {name: get(cfg, chapter_lab_dir(results_dir), data=mnist, progress=progress)
            for name, cfg in runs(profile, device, seed).items()}


def provenance_table(results: dict[str, dict[str, Any]]) -> Table:
    """One row per distinct cached run: its name, commit, profile, device, data source, wall time."""
    seen: dict[str, str] = {}
    for name, r in results.items():
        seen.setdefault(r["key"], name)
    rows = []
    for name in seen.values():
        r = results[name]
        p = r["provenance"]
        rows.append([name, short_commit(p["git_commit"]), r["config"]["profile"], p["device_name"].removeprefix("CPU: "),
                     r["data_source"], float(p["wall_time_s"])])
    return Table("tbl-ch5-provenance", f"Provenance of the {len(rows)} lab runs behind this chapter, as each run file "
                 f"records it (device: the CPU it trained on; wall time: the training of that run, in seconds). {RUN}",
                 ["run", "commit", "profile", "device", "data source", "wall time (s)"], rows)


@dataclass(frozen=True)
class Setting(ChapterResult):
    """The sizes and data of the chapter's runs, as the lab recorded them (read from the θ sweep's runs)."""

    data_source: str
    n_train: int
    n_test: int           # triggered test images of the non-target classes (ASR is measured on them)
    epochs: int
    batch_size: int
    evals_per_epoch: int
    n_eval: int           # clean test images the input Hessian is averaged over
    target: int
    lr: dict[str, float]  # learning rate by loss
    trigger_norm: float   # ‖a t‖ of the poisoned runs

    def summary(self) -> Summary:
        """The setting's glue values; ``ch5_R_k = 1/‖a t‖²``."""
        return {"ch5_data_source": self.data_source, "ch5_n_train": self.n_train, "ch5_n_test": self.n_test,
                "ch5_epochs": self.epochs, "ch5_batch": self.batch_size, "ch5_evals": self.evals_per_epoch,
                "ch5_n_eval": self.n_eval, "ch5_target": self.target, "ch5_lr_ce": self.lr["ce"],
                "ch5_lr_sq": self.lr["squared"], "ch5_trigger_norm": self.trigger_norm, "ch5_R_k": 1 / self.trigger_norm**2}


def setting(sweep: dict[str, list[dict[str, Any]]], source: str) -> Setting:
    """:class:`Setting` of a θ sweep (:func:`theta_sweep`; its first run per loss is the clean one, θ = 0)."""
    clean, poisoned = sweep["ce"][0], next(r for r in sweep["ce"] if r["config"]["theta"] > 0)
    c = clean["config"]
    return Setting(source, int(clean["poison"]["n_train"]), int(clean["poison"]["n_trigger_test"]), int(c["epochs"]),
                   int(c["batch_size"]), int(c["evals_per_epoch"]), int(c["n_eval"]), int(c["target"]),
                   {loss: float(sweep[loss][0]["config"]["lr"]) for loss in LOSSES}, float(poisoned["poison"]["trigger_norm"]))


def series(res: dict[str, Any], key: str) -> np.ndarray:
    """One metric over training, as an array (``hess_top`` gives ``(T, k)``)."""
    return np.array([row[key] for row in res["epochs"]], dtype=float)


def settled_time(res: dict[str, Any], key: str, threshold: float) -> float | None:
    """The first evaluation time (epochs) from which ``key ≥ threshold`` holds at every later
    measurement (``None`` if it fails at the end): transient crossings do not count."""
    rows = res["epochs"]
    return criteria.crossing_time([r["epoch"] for r in rows], [float(r[key]) >= threshold for r in rows], "settled")


def theta_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Results of every ``(loss, theta)`` run with ``kappa = 0``, keyed by loss, in ``thetas`` order."""
    cfg = settings(profile)
    return {loss: [get(config(profile, device, seed, loss, th), chapter_lab_dir(results_dir), data=mnist, progress=progress)
                   for th in cfg["thetas"]] for loss in LOSSES}


def kappa_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Results of every ``(loss, kappa_paper)`` run at ``theta_kappa``, keyed by loss, in ``kappa_paper`` order."""
    s = settings(profile)
    out = {}
    for loss in LOSSES:
        out[loss] = [get(config(profile, device, seed, loss, s["theta_kappa"], k), chapter_lab_dir(results_dir),
                         data=mnist, progress=progress) for k in s["kappa_lab"]]
    return out


def amplitude_sweep(profile: str, device: str, seed: int, results_dir: str | None = None,
                    progress: bool = False) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Runs at ``theta_amplitude`` (κ = 0) for every trigger amplitude, keyed by loss, in ``amplitudes``
    order, each paired with the clean run (θ = 0, amplitude 1; clean training never sees the trigger,
    so its curvature does not depend on the amplitude): ``{loss: [(clean, poisoned), ...]}``."""
    s = settings(profile)
    out = {}
    for loss in LOSSES:
        clean = get(config(profile, device, seed, loss, 0.0), chapter_lab_dir(results_dir), data=mnist, progress=progress)
        out[loss] = [(clean, get(config(profile, device, seed, loss, s["theta_amplitude"], amplitude=a), chapter_lab_dir(results_dir),
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
    t_s, t_v = settled_time(res, "asr", asr_success), settled_time(res, "overlap", criteria.SHARE_VISIBLE)
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


# ---- issue 9, item 8: three visibility criteria ---------------------------------------------------------

def mass_lower_bound(hess_top: list[float], overlap: float, curv: float, k: int = MASS_K) -> float:
    """A lower bound on the trigger's mass ``Σ_{i≤k} ⟨v_i, u⟩²`` in the top-``k`` eigenspace of ``H`` from what
    the lab stores (``k + 1`` top eigenvalues, the top-1 overlap ``o₁``, ``c = uᵀHu``):
    ``c ≤ λ₁o₁ + λ₂(m − o₁) + λ_{k+1}(1 − m)`` gives ``m ≥ (c − λ₁o₁ + λ₂o₁ − λ_{k+1}) / (λ₂ − λ_{k+1})``,
    clipped to ``[o₁, 1]``."""
    lam1, lam2, lamk = hess_top[0], hess_top[1], hess_top[k]
    if lam2 <= lamk:
        return overlap
    m = (curv - lam1 * overlap + lam2 * overlap - lamk) / (lam2 - lamk)
    return float(min(1.0, max(overlap, m)))


@dataclass(frozen=True)
class VisibilityRow:
    """One poisoned run at the end of training, judged by three criteria."""

    loss: str
    theta: float
    asr: float
    overlap: float        # criterion 1: ⟨v₁, u⟩²
    mass_lb: float        # criterion 2: lower bound on the mass in the top-MASS_K eigenspace
    curv_ratio: float     # criterion 3: uᵀHu over the clean model's uᵀH_clean u
    spike_ratio: float    # uᵀHu over the clean model's top eigenvalue


@dataclass(frozen=True)
class VisibilityResult(ChapterResult):
    """:class:`VisibilityRow` for every poisoned run of the θ sweep (κ = 0)."""

    sig = 3

    rows: tuple[VisibilityRow, ...]

    def summary(self) -> Summary:
        """Counts of runs visible by each criterion and the extremes of each measure."""
        n = len(self.rows)
        return {"ch5_vis_n": n,
                "ch5_vis_top1_n": sum(r.overlap >= 0.5 for r in self.rows),
                "ch5_vis_mass_n": sum(r.mass_lb >= 0.5 for r in self.rows),
                "ch5_vis_curv_n": sum(r.curv_ratio >= CURV_RATIO_VISIBLE for r in self.rows),
                "ch5_vis_curv_ratio_min": min(r.curv_ratio for r in self.rows),
                "ch5_vis_curv_ratio_max": max(r.curv_ratio for r in self.rows),
                "ch5_vis_mass_lb_min": min(r.mass_lb for r in self.rows),
                "ch5_vis_overlap_min": min(r.overlap for r in self.rows),
                "ch5_vis_mass_k": MASS_K, "ch5_vis_curv_threshold": CURV_RATIO_VISIBLE}

    def table(self) -> Table:
        """The three criteria side by side."""
        return Table("tbl-ch5-visibility",
                     "Three visibility criteria for each poisoned run at the end of training: (1) the top-1 overlap "
                     r"$\langle v_1, u\rangle^2$ ($\ge 1/2$: visible), (2) a lower bound on the mass "
                     rf"$\sum_{{i\le {MASS_K}}}\langle v_i, u\rangle^2$ of the trigger in the top-{MASS_K} eigenspace, "
                     r"(3) the curvature along the trigger over the clean model's, $u^\top H u / u^\top H_{\text{clean}} u$, "
                     r"and, for reference, $u^\top H u/\lambda_{\text{clean}}$. " + RUN,
                     ["model", "θ", "final ASR", "(1) top-1 overlap", f"(2) top-{MASS_K} mass ≥", "(3) curvature ratio",
                      "uᵀHu / λ_clean"],
                     [[r.loss, r.theta, r.asr, r.overlap, r.mass_lb, r.curv_ratio, r.spike_ratio] for r in self.rows])

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def visibility_criteria(sweep: dict[str, list[dict[str, Any]]]) -> VisibilityResult:
    """The three criteria of :class:`VisibilityRow` at the end of every poisoned run of a θ sweep."""
    rows = []
    for loss, rs in sweep.items():
        clean = next(r for r in rs if r["config"]["theta"] == 0)["epochs"][-1]
        for r in rs:
            if r["config"]["theta"] == 0:
                continue
            e = r["epochs"][-1]
            rows.append(VisibilityRow(loss, r["config"]["theta"], e["asr"], e["overlap"],
                                      mass_lower_bound(e["hess_top"], e["overlap"], e["curv_along_poison"]),
                                      e["curv_along_poison"] / clean["curv_along_poison"],
                                      e["curv_along_poison"] / clean["hess_top"][0]))
    return VisibilityResult(tuple(rows))


# ---- issue 9, item 9: the squared-loss amplitude bound ----------------------------------------------------

@dataclass(frozen=True)
class AmplitudeBound(ChapterResult):
    """Squared loss: the ceiling ``2/‖a t‖²`` of the spike against the clean top eigenvalue, per amplitude."""

    sig = 3

    amplitudes: tuple[float, ...]
    bound: tuple[float, ...]         # 2 / ‖a t‖²
    lam_clean: float                 # top eigenvalue of the clean model (end of training)
    spike_max: tuple[float, ...]     # largest uᵀHu over training
    shift2_max: float                # largest ‖Δf‖² over all measurements of these runs

    def summary(self) -> Summary:
        """Bound over λ_clean per amplitude (keys ``..._a<100·a>``), the largest spike over its bound."""
        out: Summary = {f"ch5_sq_bound_over_clean_a{round(a * 100)}": b / self.lam_clean
                        for a, b in zip(self.amplitudes, self.bound)}
        out["ch5_sq_spike_over_bound_max"] = max(s / b for s, b in zip(self.spike_max, self.bound))
        out["ch5_sq_shift2_max"] = self.shift2_max
        out["ch5_sq_lam_clean"] = self.lam_clean
        return out


def amplitude_bound(amp: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]) -> AmplitudeBound:
    """:class:`AmplitudeBound` from the squared-loss part of :func:`amplitude_sweep`."""
    pairs = amp["squared"]
    lam_clean = pairs[0][0]["epochs"][-1]["hess_top"][0]
    amps = tuple(r["config"]["amplitude"] for _, r in pairs)
    bound = tuple(2.0 / r["poison"]["trigger_norm"] ** 2 for _, r in pairs)
    spike = tuple(float(series(r, "curv_along_poison").max()) for _, r in pairs)
    shift2 = max(float(series(r, "trigger_shift2").max()) for _, r in pairs)
    return AmplitudeBound(amps, bound, lam_clean, spike, shift2)


@dataclass(frozen=True)
class AmplitudeResult(ChapterResult):
    """The amplitude sweep at ``theta``: :func:`lag_row` of every run by ``(loss, amplitude)``, in sweep order,
    and the squared-loss ceiling of :class:`AmplitudeBound`."""

    sig = {"ch5_amp_lo": 4, "ch5_amp_hi": 4, "ch5_theta_amplitude": 4}
    metric_sig: ClassVar[dict[str, int]] = {"overlap": 2, "asr": 3, "shift2": 3, "ratio": 2}   # per-run values, by metric

    theta: float
    rows: dict[tuple[str, float], dict[str, Any]]
    bound: AmplitudeBound

    @property
    def amplitudes(self) -> list[float]:
        """The swept amplitudes, in sweep order."""
        return list(dict.fromkeys(a for _, a in self.rows))

    def visible_first(self) -> list[tuple[str, float]]:
        """``(loss, amplitude)`` of the runs whose spike settled visible before (or without) the attack succeeding."""
        return [k for k, r in self.rows.items()
                if r["t_visible"] is not None and (r["t_success"] is None or r["t_visible"] < r["t_success"])]

    def summary(self) -> Summary:
        """Per run (keys ``ch5_amp_<metric>_<loss>_a<100·a>``): final overlap, ASR, ``‖Δf‖²`` and
        ``uᵀHu/λ_clean``; the runs visible first, as text; the sweep's range and θ; the ceiling's values."""
        out: Summary = {}
        for (loss, a), r in self.rows.items():
            tag = f"{loss}_a{round(a * 100)}"
            out |= {f"ch5_amp_overlap_{tag}": r["overlap"], f"ch5_amp_asr_{tag}": r["asr"],
                    f"ch5_amp_shift2_{tag}": r["shift2"], f"ch5_amp_ratio_{tag}": r["spike_ratio"]}
        out["ch5_amp_visible_first"] = "; ".join(
            f"{loss}, a = {a:g} (visible from epoch {_epoch(self.rows[loss, a]['t_visible'])}, ASR ≥ 0.5 "
            + ("never" if self.rows[loss, a]["t_success"] is None else f"from epoch {_epoch(self.rows[loss, a]['t_success'])}") + ")"
            for loss, a in self.visible_first()) or "none"
        out |= {"ch5_amp_lo": self.amplitudes[0], "ch5_amp_hi": self.amplitudes[-1], "ch5_theta_amplitude": self.theta}
        return out | self.bound.summary()

    def digits(self, key: str) -> int:
        """:attr:`sig` (the sweep's range and θ); a per-run value ``ch5_amp_<metric>_...``: :attr:`metric_sig`; the rest
        (the runs visible first, the ceiling's values): 3."""
        if key in self.sig:
            return self.sig[key]
        return self.metric_sig.get(key.split("_")[2], 3) if key.startswith("ch5_amp_") else 3

    def table(self) -> Table:
        """Final numbers of every run of the sweep ("never": the condition never settled)."""
        rows = [[loss, a, r["R_k"], r["shift2"], r["asr"], "never" if r["t_visible"] is None else r["t_visible"],
                 round_sig(r["overlap"], 2), r["spike_ratio"]] for (loss, a), r in self.rows.items()]
        return Table("tbl-ch5-amplitude",
                     rf"The amplitude sweep at $\theta$ = {self.theta:g} after training: $R_k = 1/\lVert a t\rVert^2$, the "
                     r"squared output shift $\lVert\Delta f\rVert^2$ on triggered test images, the ASR, the epoch from which "
                     r"the top-1 overlap settles at $\ge 1/2$, the final overlap, and $u^\top H u/\lambda_{\text{clean}}$. " + RUN,
                     ["model", "amplitude a", "R_k", "final ‖Δf‖²", "final ASR", "visible from epoch", "final overlap",
                      "uᵀHu / λ_clean"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def _epoch(t: float) -> str:
    """An evaluation time as the chapter's text writes it (3 significant digits)."""
    return f"{round_sig(t, 3):g}"


def amplitude_result(amp: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]], profile: str) -> AmplitudeResult:
    """:class:`AmplitudeResult` of :func:`amplitude_sweep`."""
    s = settings(profile)
    rows = {(loss, float(r["config"]["amplitude"])): lag_row(r, c, s["asr_success"]) for loss in LOSSES for c, r in amp[loss]}
    return AmplitudeResult(float(s["theta_amplitude"]), rows, amplitude_bound(amp))


# ---- the input-gradient penalty: the κ sweep -----------------------------------------------------------------

@dataclass(frozen=True)
class KappaCurve:
    """One loss's κ sweep after training, arrays of shape ``(K,)`` in ``kappa_paper`` order."""

    kappa_paper: np.ndarray
    margin: np.ndarray       # ASR minus the rate at which clean non-target inputs already land on the target
    clean_acc: np.ndarray
    curv_along: np.ndarray   # uᵀHu
    hess_top: np.ndarray     # top input-Hessian eigenvalue
    overlap: np.ndarray      # ⟨v₁, u⟩²

    def kappa_half(self) -> float:
        """The first κ_paper at which the margin is below 1/2 (``nan`` if none)."""
        below = np.nonzero(self.margin < 0.5)[0]
        return float(self.kappa_paper[below[0]]) if below.size else float("nan")


@dataclass(frozen=True)
class KappaResult(ChapterResult):
    """The κ sweep at ``theta``: one :class:`KappaCurve` per loss."""

    sig = {**{f"ch5_{k}_{loss}": n for loss in LOSSES for k, n in
              (("margin_kappa0", 3), ("margin_kappa_max", 3), ("clean_acc_kappa0", 3), ("clean_acc_kappa_max", 3),
               ("kappa_overlap0", 2), ("kappa_overlap_max", 2), ("kappa_overlap_argmax", 2), ("kappa_half", 2))},
           "ch5_margin_kappa0_min": 3, "ch5_margin_kappa_max_max": 3}

    theta: float
    curves: dict[str, KappaCurve]

    def summary(self) -> Summary:
        """Margin, clean accuracy and overlap without penalty and at the largest κ, the largest overlap and where,
        where the margin first falls below 1/2; the extremes over both losses (significant digits: :attr:`sig`)."""
        out: Summary = {"ch5_theta_kappa": self.theta}
        for loss, c in self.curves.items():
            i = int(c.overlap.argmax())
            out |= {f"ch5_margin_kappa0_{loss}": c.margin[0], f"ch5_margin_kappa_max_{loss}": c.margin[-1],
                    f"ch5_clean_acc_kappa0_{loss}": c.clean_acc[0], f"ch5_clean_acc_kappa_max_{loss}": c.clean_acc[-1],
                    f"ch5_kappa_overlap0_{loss}": c.overlap[0], f"ch5_kappa_overlap_max_{loss}": c.overlap[i],
                    f"ch5_kappa_overlap_argmax_{loss}": c.kappa_paper[i], f"ch5_kappa_half_{loss}": c.kappa_half()}
        out["ch5_margin_kappa0_min"] = min(c.margin[0] for c in self.curves.values())
        out["ch5_margin_kappa_max_max"] = max(c.margin[-1] for c in self.curves.values())
        return {k: v if isinstance(v, str) else float(v) for k, v in out.items()}


def kappa_result(kruns: dict[str, list[dict[str, Any]]], profile: str) -> KappaResult:
    """:class:`KappaResult` of :func:`kappa_sweep` (the last evaluation of every run)."""
    s = settings(profile)
    kp = np.array(s["kappa_paper"], dtype=float)
    curves = {}
    for loss, rs in kruns.items():
        last = [r["epochs"][-1] for r in rs]
        col = lambda key: np.array([e[key] for e in last], dtype=float)  # noqa: E731
        curves[loss] = KappaCurve(kp, col("asr") - col("clean_to_target"), col("clean_acc"), col("curv_along_poison"),
                                  np.array([e["hess_top"][0] for e in last], dtype=float), col("overlap"))
    return KappaResult(float(s["theta_kappa"]), curves)


# ---- issue 9, item 10: defence or collapse, the safety-efficacy frontier -------------------------------------

def _defence_on(p: SafetyPoint) -> bool:
    """Whether ``p`` has a defence switched on (its setting, a number in this chapter, is positive)."""
    assert not isinstance(p.setting, str)  # κ_paper, weight decay or epoch (frontier below)
    return p.setting > 0


@dataclass(frozen=True)
class Frontier(ChapterResult):
    """Every defended model of both losses (``model``: the loss; ``family``: ``"input-gradient κ"``, ``"weight decay"``
    or ``"early stopping"``; ``setting``: κ_paper, weight decay or epoch), and the clean models' accuracy they are
    judged against."""

    sig = 3

    points: tuple[SafetyPoint, ...]
    clean_acc: dict[str, float]

    def counts(self, p: SafetyPoint) -> bool:
        """A defence counts when ASR ≤ 0.1 and clean accuracy is within 2 points of the clean model's."""
        return p.asr <= ASR_DEFENDED and p.clean_acc >= self.clean_acc[p.model] - ACC_DROP_MAX

    def summary(self) -> Summary:
        """Per method and loss: how many settings count as a defence, and the best clean accuracy at ASR ≤ 0.1."""
        out: Summary = {}
        for loss in self.clean_acc:
            for method, tag in (("input-gradient κ", "kappa"), ("weight decay", "wd"), ("early stopping", "early")):
                pts = [p for p in self.points if p.model == loss and p.family == method]
                safe = [p.clean_acc for p in pts if p.asr <= ASR_DEFENDED and _defence_on(p)]
                out[f"ch5_defended_{tag}_{loss}"] = sum(self.counts(p) for p in pts if _defence_on(p))
                out[f"ch5_best_safe_acc_{tag}_{loss}"] = max(safe) if safe else "none"
        out["ch5_n_defended"] = sum(self.counts(p) for p in self.points if _defence_on(p))
        out["ch5_asr_defended"] = ASR_DEFENDED
        out["ch5_acc_drop_max"] = ACC_DROP_MAX
        return out

    def table(self) -> Table:
        """The best safe point of each method (ASR ≤ 0.1, largest clean accuracy) against the clean model."""
        rows = []
        for loss in self.clean_acc:
            for method in ("input-gradient κ", "weight decay", "early stopping"):
                safe = [p for p in self.points if p.model == loss and p.family == method and p.asr <= ASR_DEFENDED and _defence_on(p)]
                best = max(safe, key=lambda p: p.clean_acc) if safe else None
                rows.append([loss, method, None if best is None else best.setting, None if best is None else best.asr,
                             None if best is None else best.clean_acc, self.clean_acc[loss],
                             "yes" if best is not None and self.counts(best) else "no"])
        return Table("tbl-ch5-defences",
                     r"The best model of each defence with ASR $\le 0.1$ (largest clean accuracy; setting: "
                     r"$\kappa_{\text{paper}}$, weight decay, or epoch), against the clean model. A defence counts when "
                     "its clean accuracy is also within 2 points of the clean model's. " + RUN,
                     ["model", "defence", "setting", "ASR", "clean acc.", "clean model's acc.", "counts"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def frontier(results: dict[str, dict[str, Any]], profile: str) -> Frontier:
    """The safety-efficacy frontier at ``theta_kappa`` from :func:`load_runs`: the κ sweep, the weight-decay
    runs, and early stopping (every recorded evaluation of the κ = 0 run, the epoch as its setting)."""
    s = settings(profile)
    pts, clean_acc = [], {}
    for loss in LOSSES:
        clean_acc[loss] = results[f"{loss} theta=0"]["epochs"][-1]["clean_acc"]
        sweeps = (("input-gradient κ", "kappa_paper", s["kappa_paper"]), ("weight decay", "weight_decay", s["weight_decays"]))
        for method, field, values in sweeps:
            for v in values:
                e = results[f"{loss} {field}={v:g}"]["epochs"][-1]
                pts.append(SafetyPoint(method, float(v), e["clean_acc"], e["asr"], model=loss, clean_to_target=e["clean_to_target"]))
        for e in results[f"{loss} kappa_paper=0"]["epochs"]:
            pts.append(SafetyPoint("early stopping", float(e["epoch"]), e["clean_acc"], e["asr"], model=loss,
                                   clean_to_target=e["clean_to_target"]))
    return Frontier(tuple(pts), clean_acc)


# ---- success and visibility over training ------------------------------------------------------------------

@dataclass(frozen=True)
class LagResult(ChapterResult):
    """:func:`lag_table` of a θ sweep (``rows[loss]``), the clean models' accuracy and the largest θ."""

    sig = {f"ch5_{k}_{loss}": n for loss in LOSSES for k, n in
           (("asr_top_theta", 3), ("overlap_top_theta", 2), ("max_overlap_top_theta", 2), ("clean_acc_clean", 3))}

    rows: dict[str, list[dict[str, Any]]]
    clean_acc: dict[str, float]
    top_theta: float

    def summary(self) -> Summary:
        """How many poisoned runs succeed, before / after / with visibility (top-1 criterion), and the
        largest-θ runs' final numbers (significant digits: :attr:`sig`)."""
        rows = [r for loss in LOSSES for r in self.rows[loss]]
        ok = [r for r in rows if r["t_success"] is not None]
        out: Summary = {"ch5_n_runs": len(rows), "ch5_n_success": len(ok),
                        "ch5_n_success_before_visible": sum(r["t_visible"] is None or r["t_visible"] > r["t_success"] for r in ok),
                        "ch5_n_visible_before_success": sum(r["t_visible"] is not None and r["t_visible"] < r["t_success"] for r in ok),
                        "ch5_n_success_never_visible": sum(r["t_visible"] is None for r in ok),
                        "ch5_n_simultaneous": sum(r["t_visible"] is not None and r["t_visible"] == r["t_success"] for r in ok)}
        for loss in LOSSES:
            top = self.rows[loss][-1]
            out |= {f"ch5_asr_top_theta_{loss}": top["asr"], f"ch5_overlap_top_theta_{loss}": top["overlap"],
                    f"ch5_max_overlap_top_theta_{loss}": top["max_overlap"], f"ch5_clean_acc_clean_{loss}": self.clean_acc[loss]}
        out["ch5_top_theta"] = self.top_theta
        return out

    def table(self) -> Table:
        """Timing of success and visibility and the final numbers of every poisoned run."""
        return Table("tbl-ch5-lag",
                     r"Success (settled ASR $\ge 0.5$) and visibility (settled top-1 overlap $\ge 1/2$) over training, "
                     r"as the epoch from which each holds (— : never), and the final ASR, top-1 overlap, largest overlap "
                     r"seen, and $u^\top H u/\lambda_{\text{clean}}$. " + RUN,
                     ["model", "θ", "success from", "visible from", "ASR", "overlap", "max overlap", "uᵀHu / λ_clean"],
                     [[loss, r["theta"], r["t_success"], r["t_visible"], r["asr"], r["overlap"], r["max_overlap"],
                       r["spike_ratio"]] for loss in LOSSES for r in self.rows[loss]])

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def lag_result(sweep: dict[str, list[dict[str, Any]]], profile: str) -> LagResult:
    """:class:`LagResult` of a θ sweep (:func:`theta_sweep`)."""
    s = settings(profile)
    clean = {loss: next(r for r in rs if r["config"]["theta"] == 0)["epochs"][-1]["clean_acc"] for loss, rs in sweep.items()}
    return LagResult(lag_table(sweep, s["asr_success"]), clean, s["thetas"][-1])


@dataclass(frozen=True)
class LawPoints(ChapterResult):
    """Chapter 1's law on MNIST: every measurement of every poisoned run of the θ sweep, per loss, as the predicted
    spike ``R_k|Δf|²`` and the measured curvature ``uᵀHu``, both over the clean model's top eigenvalue at the same
    measurement (arrays of one length per loss), and whether the top-1 overlap was ≥ ½ there."""

    sig = {"ch5_law_max_rel_err_squared": 2, "ch5_visibility_threshold_agreement": 3, "ch5_clean_shift2_squared": 2,
           "ch5_clean_shift2_ce": 2, "ch5_poisoned_shift2_squared": 3, "ch5_poisoned_shift2_ce": 3}

    predicted: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    visible: dict[str, np.ndarray]
    law_max_rel_err_squared: float       # max |uᵀHu / (R_k|Δf|²) − 1| over the squared-loss points
    shift2_clean: dict[str, float]       # final |Δf|² of the clean run and of the poisoned run at θ_kappa
    shift2_poisoned: dict[str, float]

    def summary(self) -> Summary:
        agree = sum(int(np.sum(self.visible[k] == (self.measured[k] > 1))) for k in LOSSES)
        total = sum(len(self.predicted[k]) for k in LOSSES)
        out: Summary = {"ch5_law_max_rel_err_squared": self.law_max_rel_err_squared,
                                       "ch5_visibility_threshold_agreement": agree / total, "ch5_n_points": total}
        for loss in LOSSES:
            out[f"ch5_clean_shift2_{loss}"] = self.shift2_clean[loss]
            out[f"ch5_poisoned_shift2_{loss}"] = self.shift2_poisoned[loss]
        return out


def law_points(sweep: dict[str, list[dict[str, Any]]], theta_kappa: float) -> LawPoints:
    """:class:`LawPoints` of the θ sweep (the θ = 0 run of each loss is the clean model)."""
    pred, meas, vis, shift_clean, shift_poisoned = {}, {}, {}, {}, {}
    law_err = 0.0
    for loss in LOSSES:
        clean = next(r for r in sweep[loss] if r["config"]["theta"] == 0)
        lam_clean = series(clean, "hess_top")[:, 0]
        xs, ys, vs = [], [], []
        for r in sweep[loss]:
            if r["config"]["theta"] == 0:
                continue
            spike = (1 / r["poison"]["trigger_norm"] ** 2) * series(r, "trigger_shift2")
            curv = series(r, "curv_along_poison")
            ok = spike > 0
            xs.append(spike[ok] / lam_clean[ok])
            ys.append(curv[ok] / lam_clean[ok])
            vs.append(series(r, "overlap")[ok] >= 0.5)
            if loss == "squared":
                law_err = max(law_err, float(np.max(np.abs(curv[ok] / spike[ok] - 1))))
        pred[loss], meas[loss], vis[loss] = map(np.concatenate, (xs, ys, vs))
        shift_clean[loss] = clean["epochs"][-1]["trigger_shift2"]
        poisoned = next(r for r in sweep[loss] if r["config"]["theta"] == theta_kappa)
        shift_poisoned[loss] = poisoned["epochs"][-1]["trigger_shift2"]
    return LawPoints(pred, meas, vis, law_err, shift_clean, shift_poisoned)
