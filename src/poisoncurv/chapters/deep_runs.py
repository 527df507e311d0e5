"""Analysis shared by the deep-network chapters (6: a CNN on MNIST; 7: ResNets on CIFAR) on their lab runs.

Every run is a ``measure="deep"`` lab run (:mod:`poisoncurv.lab.deep`) of the chapter's grid file. A
poisoned run's *clean reference* is the run with the same configuration and ``theta = 0`` (same seed, same
initialisation, same trigger at test time), so curvature ratios compare the two models at the same inputs
and the same training time.

Definitions used by every table (the companion's own, stated on the pages):

* **success**: ASR ≥ :data:`ASR_SUCCESS` at every evaluation from some time on (the *settled* time);
* **visible** by a criterion, at a probe set (``trig``: triggered test inputs; ``clean``: clean test inputs),
  from the settled time of that criterion: ``overlap`` (top-1 overlap² ≥ ½), ``mass`` (share of the poison
  direction in the top-k eigenspace ≥ ½), ``ratio`` (``uᵀHu`` at least :data:`CURV_RATIO_VISIBLE` times the
  clean reference's);
* **lag** = visible − success (epochs): positive when the attack works before the defender can see it;
* a **defence counts** when ASR ≤ :data:`ASR_DEFENDED` and clean accuracy is within :data:`ACC_DROP_MAX` of the
  clean model's (``theta = 0``, κ = 0, no augmentation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from poisoncurv.book.tables import Table
from poisoncurv.core.fitting import settled_time
from poisoncurv.lab.cache import get
from poisoncurv.lab.config import ADDED_FIELDS, LabConfig, recipe
from poisoncurv.lab.data import ImageData
from poisoncurv.lab.grid import Grid

ASR_SUCCESS = 0.5          # success: ASR settles at or above one half
ASR_DEFENDED = 0.1         # a defence counts when ASR <= 0.1 ...
ACC_DROP_MAX = 0.02        # ... and clean accuracy is within 2 points of the clean model's
CURV_RATIO_VISIBLE = 10.0  # criterion "ratio": curvature along the poison at least 10x the clean model's
CRITERIA = {"overlap": r"top-1 overlap$^2 \ge \frac12$", "mass": r"top-$k$ mass $\ge \frac12$",
            "ratio": r"$u^\top H u \ge 10\times$ clean"}
PROBE_SETS = {"trig": "triggered inputs", "clean": "clean inputs"}
Summary = dict[str, float | int | str]


def slug(attack: str) -> str:
    """An attack's name as a glue-key fragment (``cross-stochastic`` → ``cross_stochastic``)."""
    return attack.replace("-", "_")


@dataclass(frozen=True)
class ChapterRuns:
    """The results of every run of a chapter's grid, by configuration key."""

    grid: Grid
    results: dict[str, dict[str, Any]]

    def of(self, cfg: LabConfig) -> dict[str, Any] | None:
        """The results of ``cfg`` (``None`` when it is not one of the chapter's runs)."""
        return self.results.get(cfg.key())

    def group(self, name: str, **match: Any) -> list[dict[str, Any]]:
        """Results of group ``name`` (grid order) whose configuration has the ``match`` values; ``[]`` when the
        profile has no such group."""
        if name not in self.grid.groups:
            return []
        return [self.results[r.config.key()] for r in self.grid.group(name, **match)]

    def groups(self, names: Iterable[str], **match: Any) -> list[dict[str, Any]]:
        """:meth:`group` over several groups, concatenated."""
        return [res for name in names for res in self.group(name, **match)]

    def clean_of(self, res: dict[str, Any]) -> dict[str, Any] | None:
        """The clean reference of a run: its configuration with ``theta = 0`` (``None`` if not run)."""
        return self.of(replace(LabConfig(**res["config"]), theta=0.0))

    def clean_model(self, res: dict[str, Any]) -> dict[str, Any] | None:
        """The undefended clean model of a run: its configuration with ``theta = 0``, κ = 0, no augmentation and
        the recipe's weight decay, measured at any evaluation schedule (evaluations do not change training)."""
        want = {**ADDED_FIELDS, **res["config"], "theta": 0.0, "kappa": 0.0, "augment": False}
        ignore = ("evals_per_epoch", "weight_decay")
        for r in self.results.values():
            c = {**ADDED_FIELDS, **r["config"]}     # files written before a field existed hold its default
            default_wd = recipe(c["model"], c["loss"])["weight_decay"]
            if all(c.get(k) == v for k, v in want.items() if k not in ignore) and c["weight_decay"] == default_wd:
                return r
        return None


def load_runs(grid: Grid, device: str, lab_dir: Path | None, data: Callable[[], ImageData],
              progress: bool = False) -> ChapterRuns:
    """Every run of ``grid`` from the cache (or trained; on ``device`` when it differs from the grid's),
    keeping final weights where the grid asks (``keep_model``)."""
    results = {}
    for run in grid.runs:
        cfg = run.config if run.config.device == device else replace(run.config, device=device)
        res = get(cfg, lab_dir, data=data, progress=progress, keep_model=run.keep_model)
        results[run.config.key()] = res
    return ChapterRuns(grid, results)


def provenance_table(runs: ChapterRuns, name: str, run_label: str) -> Table:
    """One row per run: its grid name, commit, profile, device, data source and wall time."""
    rows = []
    for run in runs.grid.runs:
        r = runs.results[run.config.key()]
        p = r["provenance"]
        rows.append([run.name, p["git_commit"][:8], r["config"]["profile"], p["device_name"].removeprefix("CPU: "),
                     r["data_source"], float(p["wall_time_s"])])
    total = sum(row[-1] for row in rows) / 60
    return Table(name, f"Provenance of the {len(rows)} lab runs behind this chapter, as each run file records it "
                 f"(wall time: training and measurements of that run, in seconds; {total:.0f} minutes in all). {run_label}",
                 ["run", "commit", "profile", "device", "data source", "wall time (s)"], rows)


# ---- series over training -------------------------------------------------------------------------------

def series(res: dict[str, Any], key: str) -> np.ndarray:
    """One metric over training (``None`` → nan); list-valued metrics give ``(T, k)``."""
    return np.array([np.nan if row.get(key) is None else row[key] for row in res["epochs"]], dtype=float)


def times(res: dict[str, Any]) -> np.ndarray:
    """Evaluation times in epochs ``(T,)``."""
    return series(res, "epoch")


def curvature_ratio(res: dict[str, Any], clean: dict[str, Any], probe: str) -> np.ndarray:
    """``uᵀHu`` of the run over its clean reference's at each evaluation, at probe set ``probe`` (nan where the
    reference's is zero)."""
    a, b = series(res, f"{probe}_curv_u"), series(clean, f"{probe}_curv_u")
    if a.shape != b.shape:
        raise ValueError(f"run {res['key']} and its clean reference {clean['key']} have different evaluation times")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def criterion(res: dict[str, Any], clean: dict[str, Any] | None, name: str, probe: str) -> np.ndarray:
    """Whether criterion ``name`` holds at each evaluation (``ratio`` needs the clean reference)."""
    if name == "overlap":
        return series(res, f"{probe}_overlap") >= 0.5
    if name == "mass":
        return series(res, f"{probe}_mass") >= 0.5
    if name == "ratio":
        if clean is None:
            raise ValueError(f"criterion 'ratio' needs the clean reference of run {res['key']}")
        return np.nan_to_num(curvature_ratio(res, clean, probe), nan=0.0) >= CURV_RATIO_VISIBLE
    raise ValueError(f"criterion: unknown {name!r}; choose one of {', '.join(CRITERIA)}")


# ---- consistency of the measurements ------------------------------------------------------------------------

@dataclass(frozen=True)
class Consistency:
    """Checks that hold by construction in every run and measurement: the exact route's premise (float64 gap),
    ``overlap ≤ mass ≤ 1``, and ``uᵀHu ≤ λ₁`` (Rayleigh quotient), with the worst case over every row."""

    tag: str
    premise_gap_max: float
    premise_gap_q99: float         # 99th percentile over measurements (the max can sit at one ill-conditioned point)
    n_premise_above: int           # measurements with a gap above 1e-10
    mass_minus_overlap_min: float
    mass_max: float
    rayleigh_excess_max: float     # max (uᵀHu − λ₁)/λ₁ over rows with λ₁ > 0
    n_rows: int

    def summary(self) -> Summary:
        return {f"{self.tag}_premise_gap_max": self.premise_gap_max, f"{self.tag}_premise_gap_q99": self.premise_gap_q99,
                f"{self.tag}_n_premise_above": self.n_premise_above, f"{self.tag}_mass_minus_overlap_min": self.mass_minus_overlap_min,
                f"{self.tag}_mass_max": self.mass_max, f"{self.tag}_rayleigh_excess_max": self.rayleigh_excess_max,
                f"{self.tag}_n_measurements": self.n_rows}


def consistency(runs: ChapterRuns, tag: str) -> Consistency:
    gaps, dmin, mmax, excess, n = [], math.inf, 0.0, -math.inf, 0
    for res in runs.results.values():
        for row in res["epochs"]:
            n += 1
            gaps.append(row["premise_gap"])
            for p in PROBE_SETS:
                dmin = min(dmin, row[f"{p}_mass"] - row[f"{p}_overlap"])
                mmax = max(mmax, row[f"{p}_mass"])
                lam = row[f"{p}_top"][0]
                if lam > 0:
                    excess = max(excess, (row[f"{p}_curv_u"] - lam) / lam)
    g = np.asarray(gaps, dtype=float)
    return Consistency(tag, float(g.max()), float(np.quantile(g, 0.99)), int((g > 1e-10).sum()), dmin, mmax, excess, n)


# ---- the lag (E2) --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LagRow:
    """One poisoned run, one criterion at one probe set: times in epochs (``None``: never)."""

    attack: str
    theta: float
    seed: int
    criterion: str
    probe: str
    t_success: float | None
    t_visible: float | None

    @property
    def lag(self) -> float | None:
        return None if self.t_success is None or self.t_visible is None else self.t_visible - self.t_success


def lag_rows(runs: ChapterRuns, groups: Iterable[str]) -> list[LagRow]:
    """:class:`LagRow` for every poisoned run of ``groups``, every criterion and probe set."""
    out = []
    for res in runs.groups(groups):
        cfg = res["config"]
        if cfg["theta"] == 0:
            continue
        clean = runs.clean_of(res)
        t = times(res)
        t_s = settled_time(t, series(res, "asr") >= ASR_SUCCESS)
        for name in CRITERIA:
            for probe in PROBE_SETS:
                t_v = settled_time(t, criterion(res, clean, name, probe))
                out.append(LagRow(cfg["attack"], cfg["theta"], cfg["seed"], name, probe, t_s, t_v))
    return out


def verdict(rows: list[LagRow]) -> str:
    """What a cell's seeds support: ``attack fails`` (no seed succeeds), ``never visible``, ``lag`` (every
    successful seed is visible later or never), ``visible first``, ``simultaneous``, or ``mixed``."""
    ok = [r for r in rows if r.t_success is not None]
    if not ok:
        return "attack fails"
    if all(r.t_visible is None for r in ok):
        return "never visible"
    if all(r.t_visible is None or r.t_visible > r.t_success for r in ok):
        return "lag"
    if all(r.t_visible is not None and r.t_visible < r.t_success for r in ok):
        return "visible first"
    if all(r.t_visible == r.t_success for r in ok):
        return "simultaneous"
    return "mixed"


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _pm(values: list[float]) -> str:
    m, s = _mean_sd(values)
    return "—" if m is None else f"{m:.2f} ± {s:.2f}"


@dataclass(frozen=True)
class LagResult:
    """The lag table of a chapter: :class:`LagRow` per poisoned seed run, grouped by attack, criterion and set."""

    tag: str
    rows: tuple[LagRow, ...]
    run_label: str

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(r.attack for r in self.rows))

    def cell(self, attack: str, name: str, probe: str) -> list[LagRow]:
        return [r for r in self.rows if r.attack == attack and r.criterion == name and r.probe == probe]

    def summary(self) -> Summary:
        """Per attack: seeds run and seeds that succeed, and for each criterion the mean lag (``none`` when no seed
        has one) and the verdict, at the triggered inputs (``<tag>_lag_<attack>_<criterion>``) and at the clean inputs
        (``<tag>_lag_clean_...``); counts of verdicts over every cell."""
        out: Summary = {}
        verdicts = []
        for a in self.attacks:
            base = self.cell(a, "overlap", "trig")
            out[f"{self.tag}_lag_{slug(a)}_n_seeds"] = len(base)
            out[f"{self.tag}_lag_{slug(a)}_n_success"] = sum(r.t_success is not None for r in base)
            out[f"{self.tag}_lag_{slug(a)}_theta"] = base[0].theta
            for name in CRITERIA:
                for probe in PROBE_SETS:
                    cell = self.cell(a, name, probe)
                    verdicts.append(verdict(cell))
                    m, _ = _mean_sd([r.lag for r in cell if r.lag is not None])
                    where = "" if probe == "trig" else "clean_"
                    out[f"{self.tag}_lag_{where}{slug(a)}_{name}"] = "none" if m is None else m
                    out[f"{self.tag}_verdict_{where}{slug(a)}_{name}"] = verdicts[-1]
        for v in ("lag", "never visible", "visible first", "simultaneous", "mixed", "attack fails"):
            out[f"{self.tag}_n_cells_{v.replace(' ', '_')}"] = verdicts.count(v)
        out[f"{self.tag}_n_cells"] = len(verdicts)
        return out

    def table(self) -> Table:
        rows = []
        for a in self.attacks:
            for probe in PROBE_SETS:
                for name in CRITERIA:
                    cell = self.cell(a, name, probe)
                    ok = [r for r in cell if r.t_success is not None]
                    vis = [r.t_visible for r in ok if r.t_visible is not None]
                    rows.append([a, cell[0].theta, PROBE_SETS[probe], CRITERIA[name], f"{len(ok)}/{len(cell)}",
                                 _pm([r.t_success for r in ok]), f"{_pm(vis)} ({len(vis)})" if vis else "never",
                                 _pm([r.lag for r in ok if r.lag is not None]), verdict(cell)])
        return Table(f"tbl-{self.tag}-lag",
                     r"Success and visibility over training, per attack (at its $\theta$), probe set and criterion, over "
                     r"seeds: seeds that succeed (ASR settles $\ge \frac12$), when (epochs, mean ± sd over the successful "
                     r"seeds), when the criterion settles (number of seeds in brackets), the lag (visible − success) and "
                     r"what the seeds support. " + self.run_label,
                     ["attack", "θ", "probe set", "criterion", "succeed", "success from", "visible from", "lag", "verdict"],
                     rows)


def lag_result(runs: ChapterRuns, groups: Iterable[str], tag: str, run_label: str) -> LagResult:
    return LagResult(tag, tuple(lag_rows(runs, groups)), run_label)


# ---- curves over training (figures) ---------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    """A metric over training across seeds: times ``(T,)``, mean, min and max ``(T,)``."""

    t: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def lag_theta(runs: ChapterRuns, groups: Iterable[str], attack: str) -> float:
    """The poison fraction of ``attack``'s poisoned runs in ``groups`` (the seed groups hold one per attack)."""
    thetas = {r["config"]["theta"] for r in runs.groups(groups, attack=attack) if r["config"]["theta"] > 0}
    if len(thetas) != 1:
        raise ValueError(f"attack {attack!r}: expected one poison fraction in groups {list(groups)}, found {sorted(thetas)}")
    return thetas.pop()


def band(runs: ChapterRuns, groups: Iterable[str], attack: str, theta: float,
         metric: Callable[[dict[str, Any], dict[str, Any] | None], np.ndarray]) -> Band:
    """``metric(run, clean reference)`` over the seed runs of ``attack`` at ``theta`` (``theta = 0``: the clean runs)."""
    res = [r for r in runs.groups(groups, attack=attack, theta=theta)]
    if not res:
        raise ValueError(f"no runs of attack {attack!r} at theta={theta} in groups {list(groups)}")
    values = np.stack([metric(r, runs.clean_of(r)) for r in res])
    with warnings.catch_warnings():  # a time where every seed is nan (e.g. a zero reference curvature) stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return Band(times(res[0]), np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0))


def metric(key: str, index: int | None = None) -> Callable[[dict[str, Any], dict[str, Any] | None], np.ndarray]:
    """A :func:`band` metric reading ``key`` (element ``index`` of list-valued metrics such as ``trig_top``)."""
    def read(res: dict[str, Any], _clean: dict[str, Any] | None) -> np.ndarray:
        s = series(res, key)
        return s[:, index] if index is not None else s
    return read


def ratio_metric(probe: str) -> Callable[[dict[str, Any], dict[str, Any] | None], np.ndarray]:
    """A :func:`band` metric: :func:`curvature_ratio` at ``probe`` against the clean reference."""
    def read(res: dict[str, Any], clean: dict[str, Any] | None) -> np.ndarray:
        if clean is None:
            raise ValueError(f"run {res['key']} has no clean reference among the chapter's runs")
        return curvature_ratio(res, clean, probe)
    return read


@dataclass(frozen=True)
class TopEigenResult:
    """Final top eigenvalue of the poisoned models over their clean references', per attack (mean over seeds), at
    triggered and at clean inputs: ``ratios[attack][probe]``."""

    tag: str
    ratios: dict[str, dict[str, float]]

    def summary(self) -> Summary:
        return {f"{self.tag}_lam1_ratio_{p}_{slug(a)}": v for a, r in self.ratios.items() for p, v in r.items()}


def top_eigen_result(runs: ChapterRuns, groups: Iterable[str], tag: str) -> TopEigenResult:
    cells: dict[str, dict[str, list[float]]] = {}
    for res in runs.groups(groups):
        clean = runs.clean_of(res)
        if res["config"]["theta"] == 0 or clean is None:
            continue
        cell = cells.setdefault(res["config"]["attack"], {p: [] for p in PROBE_SETS})
        for p in PROBE_SETS:
            cell[p].append(res["epochs"][-1][f"{p}_top"][0] / clean["epochs"][-1][f"{p}_top"][0])
    return TopEigenResult(tag, {a: {p: float(np.mean(v)) for p, v in c.items()} for a, c in cells.items()})


# ---- attacks × θ -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThetaResult:
    """Final numbers of every run of the θ groups, with the clean reference's curvature for the ratios."""

    tag: str
    rows: tuple[dict[str, Any], ...]
    run_label: str

    def summary(self) -> Summary:
        """Final ASR of every (attack, θ > 0) run and the largest final triggered-input overlap."""
        out: Summary = {}
        for r in self.rows:
            if r["theta"] > 0:
                out[f"{self.tag}_asr_{slug(r['attack'])}_{r['n_poison']}"] = r["asr"]
        out[f"{self.tag}_n_theta_runs"] = sum(r["theta"] > 0 for r in self.rows)
        out[f"{self.tag}_n_theta_success"] = sum(r["theta"] > 0 and r["asr"] >= ASR_SUCCESS for r in self.rows)
        return out

    def table(self) -> Table:
        cols = ["attack", "θ", "poisons", "acc.", "ASR", "robust", "overlap trig", "mass trig", "ratio trig",
                "overlap clean", "ratio clean"]
        keys = ["attack", "theta", "n_poison", "clean_acc", "asr", "robust_acc", "trig_overlap", "trig_mass", "trig_ratio",
                "clean_overlap", "clean_ratio"]
        return Table(f"tbl-{self.tag}-theta",
                     r"Every attack at every poison fraction $\theta$ (seed 0) at the end of training: clean accuracy, ASR, "
                     r"robust accuracy (triggered inputs still given their true class), and at triggered (trig) and clean "
                     r"test inputs the top-1 overlap$^2$, the top-$k$ mass of the poison direction and $u^\top H u$ over the "
                     r"clean model's. " + self.run_label, cols, [[r[k] for k in keys] for r in self.rows])


def theta_result(runs: ChapterRuns, groups: Iterable[str], tag: str, run_label: str) -> ThetaResult:
    rows = []
    for res in runs.groups(groups):
        last, clean = res["epochs"][-1], runs.clean_of(res)
        ratio = {p: (float(curvature_ratio(res, clean, p)[-1]) if clean is not None and res["config"]["theta"] > 0 else None)
                 for p in PROBE_SETS}
        rows.append({"attack": res["config"]["attack"], "theta": res["config"]["theta"], "n_poison": res["poison"]["n_poison"],
                     "clean_acc": last["clean_acc"], "asr": last["asr"], "robust_acc": last["robust_acc"],
                     "trig_overlap": last["trig_overlap"], "trig_mass": last["trig_mass"], "trig_ratio": ratio["trig"],
                     "clean_overlap": last["clean_overlap"], "clean_ratio": ratio["clean"]})
    return ThetaResult(tag, tuple(rows), run_label)


# ---- near clones in feature space and the eNTK ------------------------------------------------------------

FEATURES = {"feat_trig_to_poison": "trig → poison mean", "feat_trig_to_target": "trig → target mean",
            "feat_trig_to_source": "trig → own-class mean", "feat_target_to_target": "target → target mean",
            "feat_collapse_clean": "collapse (clean)", "feat_collapse_poison": "collapse (poisons)",
            "feat_collapse_trig": "collapse (trig)"}


@dataclass(frozen=True)
class FeatureRow:
    """Final feature geometry and eNTK ratios of one attack (mean and sd over seeds), poisoned or clean."""

    attack: str
    theta: float
    n_seeds: int
    values: dict[str, tuple[float | None, float | None]]   # FEATURES keys, R_poison, R_clean, R_ratio

    @property
    def near_clone(self) -> bool | None:
        """Triggered inputs sit as close to the poisons' mean as clean target images to their own class mean."""
        a, b = self.values["feat_trig_to_poison"][0], self.values["feat_target_to_target"][0]
        return None if a is None or b is None else a <= b


@dataclass(frozen=True)
class FeatureResult:
    tag: str
    rows: tuple[FeatureRow, ...]
    run_label: str

    def summary(self) -> Summary:
        out: Summary = {}
        for r in self.rows:
            if r.theta == 0:
                out[f"{self.tag}_feat_clean_{slug(r.attack)}_trig_to_target"] = r.values["feat_trig_to_target"][0]
                continue
            s = f"{self.tag}_feat_{slug(r.attack)}"
            for k in ("feat_trig_to_poison", "feat_trig_to_target", "feat_target_to_target", "feat_collapse_poison",
                      "feat_collapse_trig", "feat_collapse_clean"):
                out[f"{s}_{k.removeprefix('feat_')}"] = r.values[k][0] if r.values[k][0] is not None else "none"
            for k in ("R_poison", "R_clean", "R_ratio"):
                out[f"{s}_{k}"] = r.values[k][0] if r.values[k][0] is not None else "none"
            out[f"{s}_near_clone"] = "yes" if r.near_clone else "no"
        poisoned = [r for r in self.rows if r.theta > 0]
        out[f"{self.tag}_n_near_clone"] = sum(bool(r.near_clone) for r in poisoned)
        out[f"{self.tag}_n_ntk_flatter"] = sum(r.values["R_ratio"][0] is not None and r.values["R_ratio"][0] < 1 for r in poisoned)
        out[f"{self.tag}_n_feature_attacks"] = len(poisoned)
        return out

    def table(self) -> Table:
        """Feature distances and collapse ratios (the eNTK ratios are :meth:`ntk_table`)."""
        rows = [[r.attack, r.theta, r.n_seeds, *[_fmt(r.values[k]) for k in FEATURES]] for r in self.rows]
        return Table(f"tbl-{self.tag}-features",
                     r"Penultimate features at the end of training (mean ± sd over seeds): mean distances in units of the "
                     r"clean within-class spread $\sigma_w$ (trig: triggered test inputs; target: clean target-class test "
                     r"images), and collapse ratios $\operatorname{tr}\Sigma_B/\operatorname{tr}\Sigma_W$ by true (source) "
                     r"class. $\theta = 0$: the clean model with the trigger applied at test time. " + self.run_label,
                     ["attack", "θ", "seeds", *FEATURES.values()], rows)

    def ntk_table(self) -> Table:
        """The empirical-NTK ratios of the poisoned runs."""
        rows = [[r.attack, r.theta, r.n_seeds, *[_fmt(r.values[k]) for k in ("R_poison", "R_clean", "R_ratio")]]
                for r in self.rows if r.theta > 0]
        return Table(f"tbl-{self.tag}-ntk",
                     r"The eNTK ratio $R=\|\nabla_x k(x,\zeta)\|^2/k(x,\zeta)^2$ of the final model's target logit (median "
                     r"over 16 × 16 pairs; mean ± sd over seeds): triggered inputs against poisons ($R_{\text{poison}}$), "
                     r"clean target-class test against training images ($R_{\text{clean}}$), and their quotient (below 1: "
                     r"flatter around the poisons, the near-clone direction). " + self.run_label,
                     ["attack", "θ", "seeds", "R poison", "R clean", "R poison / R clean"], rows)


def _fmt(v: tuple[float | None, float | None]) -> str:
    return "—" if v[0] is None else (f"{v[0]:.3g} ± {v[1]:.2g}" if v[1] else f"{v[0]:.3g}")


def _final_values(res: dict[str, Any]) -> dict[str, float | None]:
    last, fin = res["epochs"][-1], res.get("final", {})
    out = {k: last.get(k) for k in FEATURES}
    rp = (fin.get("ntk_poison") or {}).get("R_median")
    rc = (fin.get("ntk_clean") or {}).get("R_median")
    out.update(R_poison=rp, R_clean=rc, R_ratio=None if rp is None or not rc else rp / rc)
    return out


def feature_result(runs: ChapterRuns, groups: Iterable[str], tag: str, run_label: str) -> FeatureResult:
    """:class:`FeatureRow` per attack and θ of the seed groups (clean runs included)."""
    cells: dict[tuple[str, float], list[dict[str, float | None]]] = {}
    for res in runs.groups(groups):
        cells.setdefault((res["config"]["attack"], res["config"]["theta"]), []).append(_final_values(res))
    rows = []
    for (attack, theta), vals in cells.items():
        values = {}
        for k in vals[0]:
            xs = [v[k] for v in vals if v[k] is not None and math.isfinite(v[k])]
            values[k] = _mean_sd(xs)
        rows.append(FeatureRow(attack, theta, len(vals), values))
    rows.sort(key=lambda r: (r.attack, r.theta))
    return FeatureResult(tag, tuple(rows), run_label)


# ---- defences (E3) ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DefencePoint:
    """One defended model (or one evaluation, for early stopping) of one attack."""

    attack: str
    method: str          # "κ", "κ + augmentation", "augmentation", "weight decay", "early stopping"
    setting: float       # κ_lab, weight decay or epoch
    augment: bool
    clean_acc: float
    asr: float


@dataclass(frozen=True)
class DefenceResult:
    tag: str
    points: tuple[DefencePoint, ...]
    clean_acc: dict[str, float]          # the clean model's accuracy, by attack (same model: reported once)
    batch_size: int
    run_label: str

    def counts(self, p: DefencePoint) -> bool:
        """ASR ≤ :data:`ASR_DEFENDED` and clean accuracy within :data:`ACC_DROP_MAX` of the clean model's."""
        return p.asr <= ASR_DEFENDED and p.clean_acc >= self.clean_acc[p.attack] - ACC_DROP_MAX

    def kappa_paper(self, kappa_lab: float) -> float:
        """The paper's κ for a lab κ: ``κ_lab · B²`` (the per-example vs batch-mean gradient convention)."""
        return kappa_lab * self.batch_size**2

    @property
    def attacks(self) -> list[str]:
        return list(self.clean_acc)

    def grid(self, attack: str) -> list[DefencePoint]:
        return [p for p in self.points if p.attack == attack and p.method in ("none", "κ", "augmentation", "κ + augmentation")]

    def summary(self) -> Summary:
        """Per attack: the undefended ASR and whether the attack works undefended (ASR ≥ :data:`ASR_SUCCESS`; if
        not, no cell can show a defence), whether augmentation alone counts, how many κ > 0 cells count with and
        without augmentation, the best clean accuracy among counting cells; and the E3 verdict (``n/a`` where the
        undefended attack fails): augmentation alone does not count and some κ > 0 with augmentation does."""
        out: Summary = {}
        for a in self.attacks:
            s = f"{self.tag}_def_{slug(a)}"
            g = self.grid(a)
            none = next(p for p in g if p.setting == 0 and not p.augment)
            aug = next(p for p in g if p.setting == 0 and p.augment)
            k_aug = [p for p in g if p.setting > 0 and p.augment]
            k_only = [p for p in g if p.setting > 0 and not p.augment]
            wd = [p for p in self.points if p.attack == a and p.method == "weight decay"]
            early = [p for p in self.points if p.attack == a and p.method == "early stopping"]
            for p in g:
                kp = self.kappa_paper(p.setting)
                tag = f"kp{round(math.log10(kp))}" if kp > 0 else "k0"
                out[f"{s}_asr_{tag}_{'aug' if p.augment else 'noaug'}"] = p.asr
                out[f"{s}_acc_{tag}_{'aug' if p.augment else 'noaug'}"] = p.clean_acc
            safe = [p.clean_acc for p in g + wd if self.counts(p)]
            works = none.asr >= ASR_SUCCESS
            out |= {f"{s}_asr_undefended": none.asr, f"{s}_attack_works": "yes" if works else "no", f"{s}_asr_aug_alone": aug.asr,
                    f"{s}_aug_alone_counts": "yes" if self.counts(aug) else "no",
                    f"{s}_n_kappa_aug_counts": sum(map(self.counts, k_aug)), f"{s}_n_kappa_counts": sum(map(self.counts, k_only)),
                    f"{s}_n_wd_counts": sum(map(self.counts, wd)), f"{s}_n_early_counts": sum(map(self.counts, early)),
                    f"{s}_best_safe_acc": max(safe) if safe else "none",
                    f"{s}_clean_acc": self.clean_acc[a],
                    f"{s}_e3_holds": "n/a" if not works else ("yes" if not self.counts(aug) and any(map(self.counts, k_aug)) else "no")}
        out[f"{self.tag}_n_e3_holds"] = sum(out[f"{self.tag}_def_{slug(a)}_e3_holds"] == "yes" for a in self.attacks)
        out[f"{self.tag}_n_e3_testable"] = sum(out[f"{self.tag}_def_{slug(a)}_e3_holds"] != "n/a" for a in self.attacks)
        out[f"{self.tag}_n_defence_attacks"] = len(self.attacks)
        return out

    def table(self) -> Table:
        rows = []
        for a in self.attacks:
            for p in sorted(self.grid(a), key=lambda p: (p.augment, p.setting)):
                rows.append([a, "on" if p.augment else "off", p.setting, self.kappa_paper(p.setting), p.clean_acc, p.asr,
                             "yes" if self.counts(p) else "no"])
        return Table(f"tbl-{self.tag}-defence",
                     r"$\kappa$ × augmentation at the end of training: clean accuracy and ASR per cell, with $\kappa$ in the "
                     r"lab's per-example convention and the paper's ($\kappa_{\text{paper}} = B^2\kappa_{\text{lab}}$, the "
                     r"stated assumption). A defence counts when ASR $\le 0.1$ and clean accuracy is within 2 points of the "
                     r"clean model's. " + self.run_label,
                     ["attack", "augmentation", "κ (lab)", "κ (paper)", "clean acc.", "ASR", "counts"], rows)


def defence_result(runs: ChapterRuns, grids: dict[str, tuple[str, str]], tag: str, run_label: str) -> DefenceResult:
    """Points of every defence: ``grids`` maps each attack to its (κ × augmentation group, weight-decay group).
    Early stopping: every evaluation of the undefended run (κ = 0, no augmentation) of the κ group."""
    pts, clean_acc, batch = [], {}, None
    for attack, (kgroup, wgroup) in grids.items():
        kres = runs.group(kgroup, attack=attack)
        if not kres:
            raise ValueError(f"group {kgroup!r} has no runs of attack {attack!r}")
        ref = runs.clean_model(kres[0])
        if ref is None:
            raise ValueError(f"no clean model (theta = 0) for the runs of group {kgroup!r}")
        clean_acc[attack] = ref["epochs"][-1]["clean_acc"]
        batch = kres[0]["config"]["batch_size"]
        for res in kres:
            c, last = res["config"], res["epochs"][-1]
            method = {(False, False): "none", (False, True): "augmentation", (True, False): "κ", (True, True): "κ + augmentation"}[
                (c["kappa"] > 0, c["augment"])]
            pts.append(DefencePoint(attack, method, c["kappa"], c["augment"], last["clean_acc"], last["asr"]))
            if c["kappa"] == 0 and not c["augment"]:
                pts += [DefencePoint(attack, "early stopping", e["epoch"], False, e["clean_acc"], e["asr"])
                        for e in res["epochs"][1:]]
        for res in runs.group(wgroup, attack=attack):
            last = res["epochs"][-1]
            pts.append(DefencePoint(attack, "weight decay", res["config"]["weight_decay"], False, last["clean_acc"], last["asr"]))
    return DefenceResult(tag, tuple(pts), clean_acc, int(batch or 0), run_label)
