"""Analysis shared by the deep-network chapters (6: a CNN on MNIST; 7: ResNets on CIFAR) on their lab runs.

Every run is a ``measure="deep"`` lab run (:mod:`poisoncurv.lab.deep`) of the chapter's grid file. A
poisoned run's *clean reference* is the run with the same configuration and ``theta = 0`` (same seed, same
initialisation, same trigger at test time), so curvature ratios compare the two models at the same inputs
and the same training time.

The rules (success net of the untriggered rate, never a collapsed model; visibility by criterion and settle
rule; sign tests over seeds; when a defence counts) are :mod:`poisoncurv.core.criteria`'s, stated on the pages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from poisoncurv.core import criteria, stats
from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.criteria import ACC_DROP_MAX, ASR_DEFENDED, ASR_SUCCESS, CURV_RATIO_VISIBLE  # noqa: F401 (the pages read them here)
from poisoncurv.core.prose import powers_text
from poisoncurv.core.provenance import short_commit, training_hours
from poisoncurv.core.tables import Table
from poisoncurv.lab.config import ADDED_FIELDS, LabConfig, kappa_paper, recipe
from poisoncurv.lab.data import NUM_CLASSES, ImageData
from poisoncurv.lab.grid import Grid
from poisoncurv.lab.runner import get

PROBE_SETS = {"trig": "triggered inputs", "clean": "clean inputs"}


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
        rows.append([run.name, short_commit(p["git_commit"]), r["config"]["profile"], p["device_name"].removeprefix("CPU: "),
                     r["data_source"], float(p["wall_time_s"])])
    provs = [runs.results[run.config.key()]["provenance"] for run in runs.grid.runs]
    total = training_hours(provs) * 60
    shared = ", a training shared by several clean references counted once" if any("shared_training" in p for p in provs) else ""
    dirty = sum(row[1].endswith("+dirty") for row in rows)
    note = (f" {dirty} record “+dirty”: tracked files of the repository differed from that commit while they ran." if dirty else "")
    return Table(name, f"Provenance of the {len(rows)} lab runs behind this chapter, as each run file records it "
                 f"(wall time: training and measurements of that run, in seconds; {total:.0f} minutes in all{shared}).{note} {run_label}",
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


def criterion(res: dict[str, Any], clean: dict[str, Any] | None, name: str, probe: str,
              threshold: float | None = None) -> np.ndarray:
    """Whether criterion ``name`` holds at each evaluation at ``threshold`` (default: the criterion's, from
    :data:`poisoncurv.core.criteria.VISIBILITY`); ``ratio`` needs the clean reference."""
    if name not in criteria.VISIBILITY:
        raise ValueError(f"criterion: unknown {name!r}; choose one of {', '.join(criteria.VISIBILITY)}")
    thr = criteria.VISIBILITY[name][0] if threshold is None else threshold
    if name == "ratio":
        if clean is None:
            raise ValueError(f"criterion 'ratio' needs the clean reference of run {res['key']}")
        return np.nan_to_num(curvature_ratio(res, clean, probe), nan=0.0) >= thr
    return series(res, f"{probe}_{name}") >= thr


# ---- consistency of the measurements ------------------------------------------------------------------------

@dataclass(frozen=True)
class Consistency(ChapterResult):
    """Checks that hold by construction in every run and measurement: the exact route's premise (float64 gap),
    ``overlap ≤ mass ≤ 1``, and ``uᵀHu ≤ λ₁`` (Rayleigh quotient), with the worst case over every row."""

    sig = 3

    tag: str
    premise_gap_max: float
    premise_gap_q99: float         # 99th percentile over measurements (the max can sit at one ill-conditioned point)
    n_premise_above: int           # measurements with a gap above 1e-10
    premise_above_lam1_max: float  # largest λ₁ at triggered inputs (where the gap is measured) among those (nan: none)
    premise_above_acc_max: float   # largest clean accuracy among those (nan: none)
    mass_minus_overlap_min: float
    mass_max: float
    rayleigh_excess_max: float     # max (uᵀHu − λ₁)/λ₁ over rows with λ₁ > 0
    n_rows: int

    def summary(self) -> Summary:
        return {f"{self.tag}_premise_gap_max": self.premise_gap_max, f"{self.tag}_premise_gap_q99": self.premise_gap_q99,
                f"{self.tag}_n_premise_above": self.n_premise_above,
                f"{self.tag}_premise_above_lam1_max": self.premise_above_lam1_max if self.n_premise_above else "none",
                f"{self.tag}_premise_above_acc_max": self.premise_above_acc_max if self.n_premise_above else "none",
                f"{self.tag}_mass_minus_overlap_min": self.mass_minus_overlap_min,
                f"{self.tag}_mass_max": self.mass_max, f"{self.tag}_rayleigh_excess_max": self.rayleigh_excess_max,
                f"{self.tag}_n_measurements": self.n_rows}


PREMISE_GAP_NOTED = 1e-10
"""A premise gap above this is counted (and where it sits is reported) rather than passed as rounding."""


def consistency(runs: ChapterRuns, tag: str) -> Consistency:
    gaps, dmin, mmax, excess, n = [], math.inf, 0.0, -math.inf, 0
    above_lam, above_acc = [], []
    for res in runs.results.values():
        for row in res["epochs"]:
            n += 1
            gaps.append(row["premise_gap"])
            if row["premise_gap"] > PREMISE_GAP_NOTED:
                above_lam.append(row["trig_top"][0])
                above_acc.append(row["clean_acc"])
            for p in PROBE_SETS:
                dmin = min(dmin, row[f"{p}_mass"] - row[f"{p}_overlap"])
                mmax = max(mmax, row[f"{p}_mass"])
                lam = row[f"{p}_top"][0]
                if lam > 0:
                    excess = max(excess, (row[f"{p}_curv_u"] - lam) / lam)
    g = np.asarray(gaps, dtype=float)
    return Consistency(tag, float(g.max()), float(np.quantile(g, 0.99)), int((g > PREMISE_GAP_NOTED).sum()),
                       max(above_lam, default=math.nan), max(above_acc, default=math.nan), dmin, mmax, excess, n)


# ---- the lag (E2) --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LagRow:
    """One poisoned run, one criterion at one probe set, under one definition (threshold and rule): times in
    epochs (``None``: never)."""

    attack: str
    theta: float
    seed: int
    criterion: str
    probe: str
    threshold: float
    rule: str
    t_success: float | None
    t_visible: float | None

    @property
    def lag(self) -> float | None:
        return None if self.t_success is None or self.t_visible is None else self.t_visible - self.t_success


def success_mask(res: dict[str, Any]) -> np.ndarray:
    """Success at each evaluation (:func:`poisoncurv.core.criteria.succeeds`: net ASR, never a collapsed model)."""
    return criteria.succeeds(series(res, "asr"), series(res, "clean_to_target"), series(res, "clean_acc"),
                             NUM_CLASSES[res["config"]["dataset"]])


def lag_rows(runs: ChapterRuns, groups: Iterable[str]) -> list[LagRow]:
    """:class:`LagRow` for every poisoned run of ``groups``, every criterion and probe set, under every definition
    of the robustness panel (each criterion's thresholds × the settle rules)."""
    out = []
    for res in runs.groups(groups):
        cfg = res["config"]
        if cfg["theta"] == 0:
            continue
        clean, t, ok = runs.clean_of(res), times(res), success_mask(res)
        for rule in criteria.SETTLE_RULES:
            t_s = criteria.crossing_time(t, ok, rule)
            for name, (_, panel) in criteria.VISIBILITY.items():
                for probe in PROBE_SETS:
                    for thr in panel:
                        t_v = criteria.crossing_time(t, criterion(res, clean, name, probe, thr), rule)
                        out.append(LagRow(cfg["attack"], cfg["theta"], cfg["seed"], name, probe, thr, rule, t_s, t_v))
    return out


def _or_none(v: float | None) -> float | str:
    """A mean to glue: ``"none"`` where no seed gave one."""
    return "none" if v is None else v


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _pm(values: list[float]) -> str:
    m, s = _mean_sd(values)
    return "—" if m is None else f"{m:.2f} ± {s:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}"


VERDICT_CODES = {criteria.LAG: "L", criteria.NEVER: "N", criteria.FIRST: "V", criteria.INCONCLUSIVE: "?",
                 criteria.FAILS: "F"}


@dataclass(frozen=True)
class LagResult(ChapterResult):
    """The lag of a chapter: :class:`LagRow` per poisoned seed run, criterion, probe set and definition."""

    sig = 3

    tag: str
    rows: tuple[LagRow, ...]
    run_label: str

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(r.attack for r in self.rows))

    def cell(self, attack: str, name: str, probe: str, threshold: float | None = None,
             rule: str = criteria.DEFAULT_RULE) -> list[LagRow]:
        """The seeds of one cell under one definition (default: the criterion's default threshold and rule)."""
        thr = criteria.VISIBILITY[name][0] if threshold is None else threshold
        return [r for r in self.rows if (r.attack, r.criterion, r.probe, r.threshold, r.rule) == (attack, name, probe, thr, rule)]

    def ordering(self, attack: str, name: str, probe: str, threshold: float | None = None,
                 rule: str = criteria.DEFAULT_RULE) -> criteria.Ordering:
        return criteria.ordering([(r.t_success, r.t_visible) for r in self.cell(attack, name, probe, threshold, rule)])

    def panel(self, attack: str, name: str, probe: str) -> dict[tuple[float, str], str]:
        """The cell's verdict under every definition: ``{(threshold, rule): verdict}``."""
        return {(thr, rule): self.ordering(attack, name, probe, thr, rule).verdict
                for thr in criteria.VISIBILITY[name][1] for rule in criteria.SETTLE_RULES}

    def panel_orderings(self, attack: str, name: str, probe: str) -> list[criteria.Ordering]:
        """The cell's seeds ordered under every definition of the panel."""
        return [self.ordering(attack, name, probe, thr, rule)
                for thr in criteria.VISIBILITY[name][1] for rule in criteria.SETTLE_RULES]

    def robust(self, attack: str, name: str, probe: str) -> str:
        """The verdict every definition of the panel gives, else ``depends on definition``."""
        return criteria.robust_verdict(list(self.panel(attack, name, probe).values()))

    def summary(self) -> Summary:
        """Per attack: seeds run and seeds that succeed; per cell (``<tag>_..._<attack>_<criterion>``, with ``clean_``
        for the clean inputs) the mean lag under the default definition (``none`` when no seed has one), its sign-test
        p and verdict, the verdict by first crossing (``..._first``) and across the panel (``..._panel``), and how many
        of the panel's definitions say visible first (``panel_first``) and success first (``panel_later``); counts of
        panel verdicts over the cells; and two descriptive counts that are not verdicts (no sign test): the cells, per
        probe set, where under every definition no successful seed is ever visible (``n_cells_unseen_<probe>``), and
        the cells where under every definition no seed is visible before it succeeds (``n_cells_none_earlier``)."""
        out: Summary = {}
        robust = []
        unseen = {probe: 0 for probe in PROBE_SETS}
        none_earlier = 0
        for a in self.attacks:
            base = self.cell(a, "overlap", "trig")
            out[f"{self.tag}_lag_{slug(a)}_n_seeds"] = len(base)
            out[f"{self.tag}_lag_{slug(a)}_n_success"] = sum(r.t_success is not None for r in base)
            out[f"{self.tag}_lag_{slug(a)}_theta"] = base[0].theta
            for name in criteria.VISIBILITY:
                for probe in PROBE_SETS:
                    key = f"{'' if probe == 'trig' else 'clean_'}{slug(a)}_{name}"
                    o = self.ordering(a, name, probe)
                    m, _ = _mean_sd([r.lag for r in self.cell(a, name, probe) if r.lag is not None])
                    robust.append(self.robust(a, name, probe))
                    orders = self.panel_orderings(a, name, probe)
                    unseen[probe] += all(0 < od.n_success == od.n_never for od in orders)
                    none_earlier += all(od.n_success > 0 and od.n_earlier == 0 for od in orders)
                    pan = list(self.panel(a, name, probe).values())
                    out[f"{self.tag}_panel_first_{key}"] = sum(v == criteria.FIRST for v in pan)
                    out[f"{self.tag}_panel_later_{key}"] = sum(v in (criteria.LAG, criteria.NEVER) for v in pan)
                    out[f"{self.tag}_panel_size_{key}"] = len(pan)
                    out |= {f"{self.tag}_lag_{key}": "none" if m is None else m, f"{self.tag}_verdict_{key}": o.verdict,
                            f"{self.tag}_lag_p_{key}": o.p, f"{self.tag}_lag_later_{key}": o.n_later,
                            f"{self.tag}_lag_earlier_{key}": o.n_earlier,
                            f"{self.tag}_verdict_first_{key}": self.ordering(a, name, probe, rule="first").verdict,
                            f"{self.tag}_verdict_panel_{key}": robust[-1]}
        for v in (criteria.LAG, criteria.NEVER, criteria.FIRST, criteria.INCONCLUSIVE, criteria.FAILS, criteria.NOT_ROBUST):
            out[f"{self.tag}_n_cells_{v.replace(' ', '_')}"] = robust.count(v)
        out[f"{self.tag}_n_cells"] = len(robust)
        out |= {f"{self.tag}_n_cells_unseen_{probe}": n for probe, n in unseen.items()}
        out[f"{self.tag}_n_cells_none_earlier"] = none_earlier
        return out

    def table(self) -> Table:
        rows = []
        for a in self.attacks:
            for probe in PROBE_SETS:
                for name in criteria.VISIBILITY:
                    cell = self.cell(a, name, probe)
                    o = self.ordering(a, name, probe)
                    ok = [r for r in cell if r.t_success is not None]
                    vis = [r.t_visible for r in ok if r.t_visible is not None]
                    rows.append([a, PROBE_SETS[probe], name, o.verdict, self.robust(a, name, probe), f"{o.n_success}/{o.n_seeds}",
                                 _pm([r.t_success for r in ok if r.t_success is not None]), f"{_pm(vis)} ({len(vis)})" if vis else "never",
                                 f"{o.n_later}/{o.n_earlier}/{o.n_tied}", _p(o.p)])
        return Table(f"tbl-{self.tag}-lag",
                     r"Success and visibility over training, per attack (at its $\theta$), probe set and criterion, over "
                     r"seeds, under the default definition (overlap or mass $\ge \frac12$, $u^\top Hu \ge 10\times$ the "
                     r"clean model's; success: ASR net of the untriggered rate $\ge \frac12$, never a collapsed model; both "
                     r"from the evaluation after which they hold to the end): the verdict ($p \le 0.05$, else inconclusive) and "
                     r"the verdict every definition of the robustness panel gives, then the evidence: seeds that succeed, when "
                     r"(epochs, mean ± sd), when visible (seeds in brackets), seeds visible later or never / earlier / at the same "
                     r"evaluation, and the exact sign-test $p$ of later against earlier. " + self.run_label,
                     ["attack", "probe set", "criterion", "verdict", "across the panel", "succeed", "success from",
                      "visible from", "later/earlier/tied", "p"], rows)

    def panel_table(self) -> Table:
        """Every cell's verdict under each threshold and settle rule (codes: L lag, N never visible, V visible first,
        ? inconclusive, F attack fails)."""
        rules = list(criteria.SETTLE_RULES)
        rows = []
        for a in self.attacks:
            for probe in PROBE_SETS:
                for name, (_, thresholds) in criteria.VISIBILITY.items():
                    pan = self.panel(a, name, probe)
                    rows.append([a, PROBE_SETS[probe], name, *[" ".join(VERDICT_CODES[pan[(thr, r)]] for r in rules)
                                                               for thr in thresholds], self.robust(a, name, probe)])
        return Table(f"tbl-{self.tag}-lag-panel",
                     r"The robustness panel of the lag: each cell's verdict under three thresholds (overlap and mass: "
                     r"$\frac14, \frac12, \frac34$; $u^\top Hu$: 3, 10 and 30 times the clean model's) and, within each, "
                     r"three settle rules for success and visibility alike (first crossing, two evaluations in a row, every "
                     r"later evaluation). L: lag (success first, sign test $p \le 0.05$), N: never visible in any successful "
                     r"seed ($p \le 0.05$), V: visible first ($p \le 0.05$), ?: inconclusive, F: no seed succeeds. "
                     + self.run_label,
                     ["attack", "probe set", "criterion", "low threshold", "default threshold", "high threshold",
                      "across the panel"], rows)

    def tables(self) -> tuple[Table, ...]:
        """The lag table, then the robustness panel (the order the chapter shows them)."""
        return (self.table(), self.panel_table())


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
class TopEigenResult(ChapterResult):
    """Final top eigenvalue of the poisoned models over their clean references', per attack (mean over seeds), at
    triggered and at clean inputs: ``ratios[attack][probe]``."""

    sig = 3

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
class ThetaResult(ChapterResult):
    """Final numbers of every run of the θ groups, with the clean reference's curvature for the ratios."""

    sig = 3

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

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


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
    """Final feature geometry and eNTK ratios of one attack (mean and sd over seeds), poisoned or clean. Poisoned
    rows hold only the seeds whose attack succeeds at the end (``n_seeds`` of ``n_runs``): a failed implant says
    nothing about the geometry of one that works. ``r_ratios``: ``R_poison / R_clean`` per seed kept;
    ``near_margins``: per seed kept, target → target mean minus trig → poison mean (≥ 0: a near clone in that seed)."""

    attack: str
    theta: float
    n_seeds: int
    values: dict[str, tuple[float | None, float | None]]   # FEATURES keys, R_poison, R_clean, R_ratio
    n_runs: int = 0
    r_ratios: tuple[float, ...] = ()
    near_margins: tuple[float, ...] = ()

    def near_clones(self) -> tuple[int, int, float, str]:
        """Seeds whose triggered inputs end as close to the poisons' mean as clean target images to theirs (near
        clones), seeds where they end farther, the exact sign-test p of the two counts, and the verdict (``near
        clone`` / ``apart`` at p ≤ :data:`~poisoncurv.core.criteria.P_SIGNIFICANT`, else ``inconclusive``)."""
        near, apart = sum(m >= 0 for m in self.near_margins), sum(m < 0 for m in self.near_margins)
        return near, apart, *criteria.sign_verdict(near, apart, "near clone", "apart")

    def ntk_ordering(self) -> tuple[int, int, float, str]:
        """Seeds with a flatter (``R_ratio < 1``) and a steeper eNTK around the poisons, the exact sign-test p, and the
        verdict (``flatter`` / ``steeper`` at p ≤ :data:`~poisoncurv.core.criteria.P_SIGNIFICANT`, else
        ``inconclusive``)."""
        flat, steep = sum(r < 1 for r in self.r_ratios), sum(r > 1 for r in self.r_ratios)
        return flat, steep, *criteria.sign_verdict(flat, steep, "flatter", "steeper")


@dataclass(frozen=True)
class FeatureResult(ChapterResult):
    sig = 3

    tag: str
    rows: tuple[FeatureRow, ...]
    run_label: str

    def summary(self) -> Summary:
        out: Summary = {}
        for r in self.rows:
            if r.theta == 0:
                out[f"{self.tag}_feat_clean_{slug(r.attack)}_trig_to_target"] = _or_none(r.values["feat_trig_to_target"][0])
                continue
            s = f"{self.tag}_feat_{slug(r.attack)}"
            for k in ("feat_trig_to_poison", "feat_trig_to_target", "feat_target_to_target", "feat_collapse_poison",
                      "feat_collapse_trig", "feat_collapse_clean"):
                out[f"{s}_{k.removeprefix('feat_')}"] = _or_none(r.values[k][0])
            for k in ("R_poison", "R_clean", "R_ratio"):
                out[f"{s}_{k}"] = _or_none(r.values[k][0])
            near, apart, p_near, near_verdict = r.near_clones()
            out |= {f"{s}_near_clone_n_seeds": near, f"{s}_apart_n_seeds": apart, f"{s}_near_clone_p": p_near,
                    f"{s}_near_clone": near_verdict}
            flat, steep, p, verdict = r.ntk_ordering()
            out |= {f"{s}_n_success": r.n_seeds, f"{s}_n_runs": r.n_runs, f"{s}_ntk_n_flatter": flat, f"{s}_ntk_n_steeper": steep,
                    f"{s}_ntk_p": p, f"{s}_ntk_verdict": verdict}
        poisoned = [r for r in self.rows if r.theta > 0]
        out[f"{self.tag}_n_near_clone"] = sum(r.near_clones()[3] == "near clone" for r in poisoned)
        out[f"{self.tag}_n_apart"] = sum(r.near_clones()[3] == "apart" for r in poisoned)
        out[f"{self.tag}_n_ntk_flatter"] = sum(r.ntk_ordering()[3] == "flatter" for r in poisoned)
        out[f"{self.tag}_n_ntk_steeper"] = sum(r.ntk_ordering()[3] == "steeper" for r in poisoned)
        out[f"{self.tag}_n_feature_attacks"] = len(poisoned)
        return out

    def table(self) -> Table:
        """Feature distances and collapse ratios (the eNTK ratios are :meth:`ntk_table`)."""
        rows = [[r.attack, r.theta, r.n_seeds, *[_fmt(r.values[k]) for k in FEATURES],
                 "—" if r.theta == 0 else "{}/{} (p = {:.2g})".format(*r.near_clones()[:3])] for r in self.rows]
        return Table(f"tbl-{self.tag}-features",
                     r"Penultimate features at the end of training (mean ± sd over seeds): mean distances in units of the "
                     r"clean within-class spread $\sigma_w$ (trig: triggered test inputs; target: clean target-class test "
                     r"images), and collapse ratios $\operatorname{tr}\Sigma_B/\operatorname{tr}\Sigma_W$ by true (source) "
                     r"class. $\theta = 0$: the clean model with the trigger applied at test time. Near clones: seeds whose "
                     r"triggered inputs end at most as far from the poisons' mean as clean target images from theirs / seeds "
                     r"where they end farther, and the exact sign-test $p$. " + self.run_label,
                     ["attack", "θ", "seeds", *FEATURES.values(), "near clones / apart"], rows)

    def ntk_table(self) -> Table:
        """The empirical-NTK ratios of the poisoned runs."""
        rows = []
        for r in self.rows:
            if r.theta > 0:
                flat, steep, p, verdict = r.ntk_ordering()
                rows.append([r.attack, r.theta, f"{r.n_seeds}/{r.n_runs}", *[_fmt(r.values[k]) for k in ("R_poison", "R_clean", "R_ratio")],
                             f"{flat}/{steep}", f"{p:.2g}", verdict])
        return Table(f"tbl-{self.tag}-ntk",
                     r"The eNTK ratio $R=\|\nabla_x k(x,\zeta)\|^2/k(x,\zeta)^2$ of the final model's target logit (median "
                     r"over 16 × 16 pairs; mean ± sd over seeds): triggered inputs against poisons ($R_{\text{poison}}$), "
                     r"clean target-class test against training images ($R_{\text{clean}}$), and their quotient (below 1: "
                     r"flatter around the poisons, the near-clone direction), over the seeds whose attack succeeds (of all seeds run); "
                     r"seeds flatter / steeper, the exact sign-test $p$ and what it shows. The two kinds of pair are not at "
                     r"equal distances. " + self.run_label,
                     ["attack", "θ", "seeds", "R poison", "R clean", "R poison / R clean", "flatter/steeper", "p", "shows"], rows)

    def tables(self) -> tuple[Table, ...]:
        """The feature-distance table, then the NTK one (the order the chapter shows them)."""
        return (self.table(), self.ntk_table())


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
    n_runs: dict[tuple[str, float], int] = {}
    for res in runs.groups(groups):
        cell = (res["config"]["attack"], res["config"]["theta"])
        n_runs[cell] = n_runs.get(cell, 0) + 1
        if cell[1] == 0 or success_mask(res)[-1]:
            cells.setdefault(cell, []).append(_final_values(res))
    rows = []
    for (attack, theta), vals in cells.items():
        values = {}
        for k in vals[0]:
            xs = [x for x in (v[k] for v in vals) if x is not None and math.isfinite(x)]
            values[k] = _mean_sd(xs)
        ratios = tuple(float(v["R_ratio"]) for v in vals if v["R_ratio"] is not None and math.isfinite(v["R_ratio"]))
        margins = tuple(float(v["feat_target_to_target"] - v["feat_trig_to_poison"]) for v in vals
                        if v["feat_target_to_target"] is not None and v["feat_trig_to_poison"] is not None)
        rows.append(FeatureRow(attack, theta, len(vals), values, n_runs[(attack, theta)], ratios, margins))
    rows.sort(key=lambda r: (r.attack, r.theta))
    return FeatureResult(tag, tuple(rows), run_label)


# ---- defences (E3) ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DefencePoint:
    """One defended model (or one evaluation, for early stopping) of one attack and seed, with the accuracy of the
    clean model of the same seed."""

    attack: str
    method: str          # "none", "κ", "κ + augmentation", "augmentation", "weight decay", "early stopping"
    setting: float       # κ_lab, weight decay or epoch
    augment: bool
    seed: int
    clean_acc: float
    asr: float
    clean_model_acc: float
    collapsed: bool = False   # :func:`poisoncurv.core.criteria.collapsed`: its ASR means nothing

    @property
    def counts(self) -> bool:
        return criteria.defence_counts(self.asr, self.clean_acc, self.clean_model_acc)

    def counts_under(self, asr_max: float, drop_max: float) -> bool:
        """:attr:`counts` under another definition of the panel."""
        return criteria.defence_counts(self.asr, self.clean_acc, self.clean_model_acc, asr_max, drop_max)


@dataclass(frozen=True)
class DefenceCell:
    """One defence setting of one attack over its seeds."""

    attack: str
    method: str
    setting: float
    augment: bool
    points: tuple[DefencePoint, ...]

    @property
    def n(self) -> int:
        return len(self.points)

    @property
    def asr(self) -> float:
        return float(np.mean([p.asr for p in self.points]))

    @property
    def clean_acc(self) -> float:
        return float(np.mean([p.clean_acc for p in self.points]))

    @property
    def n_counts(self) -> int:
        return sum(p.counts for p in self.points)

    @property
    def n_collapsed(self) -> int:
        return sum(p.collapsed for p in self.points)

    @property
    def verdict(self) -> str:
        return criteria.defence_verdict([p.counts for p in self.points])

    def verdict_under(self, asr_max: float, drop_max: float) -> str:
        """:attr:`verdict` under another definition of the panel."""
        return criteria.defence_verdict([p.counts_under(asr_max, drop_max) for p in self.points])

    def cost(self) -> tuple[float, float, float]:
        """Clean accuracy lost against the same seed's clean model: mean and bootstrap interval over seeds."""
        return stats.mean_ci([p.clean_model_acc - p.clean_acc for p in self.points])


@dataclass(frozen=True)
class DefenceResult(ChapterResult):
    """Every defence of every attack judged per cell over seeds (:class:`DefenceCell`), each seed's model against the
    clean model of the same seed; Chapter 8's :class:`~poisoncurv.chapters.detectors_cnn.DefenceResult` is the same idea
    for one attack, judged by intervals over the test images."""

    sig = 3

    tag: str
    cells: tuple[DefenceCell, ...]
    works: dict[str, tuple[int, int]]    # by attack: seeds where the undefended attack succeeds at the end, seeds
    batch_size: int
    run_label: str

    def kappa_paper(self, kappa_lab: float) -> float:
        """The paper's κ for a lab κ: ``κ_lab · B²`` (the per-example vs batch-mean gradient convention)."""
        return kappa_paper(kappa_lab, self.batch_size)

    @property
    def attacks(self) -> list[str]:
        return list(self.works)

    def grid(self, attack: str) -> list[DefenceCell]:
        """The κ × augmentation cells of ``attack`` (κ = 0 included), by augmentation and κ."""
        cells = [c for c in self.cells if c.attack == attack and c.method in ("none", "κ", "augmentation", "κ + augmentation")]
        return sorted(cells, key=lambda c: (c.augment, c.setting))

    def cell(self, attack: str, kappa: float, augment: bool) -> DefenceCell | None:
        return next((c for c in self.grid(attack) if c.setting == kappa and c.augment == augment), None)

    def base_cell(self, attack: str, augment: bool) -> DefenceCell:
        """The κ = 0 cell of ``attack`` (undefended, or augmentation alone), which every defence grid has."""
        c = self.cell(attack, 0.0, augment)
        assert c is not None, f"{attack}: no κ = 0 cell {'with' if augment else 'without'} augmentation"
        return c

    def clean_acc(self, attack: str) -> float:
        """The clean models' accuracy (mean over the seeds of the undefended cell)."""
        return float(np.mean([p.clean_model_acc for p in self.base_cell(attack, False).points]))

    def _ktag(self, kappa: float) -> str:
        kp = self.kappa_paper(kappa)
        return "k0" if kp == 0 else "kp" + f"{kp:.2g}".replace(".", "p").replace("e+", "e")   # 16384 -> kp1p6e04

    def first_counting(self, attack: str, augment: bool) -> str:
        """The smallest κ_paper whose κ > 0 cell counts (:func:`powers_text`), or ``none``."""
        ks = [c.setting for c in self.grid(attack) if c.augment == augment and c.setting > 0 and c.verdict == criteria.COUNTS]
        return powers_text(self.kappa_paper(min(ks))) if ks else "none"

    def e3(self, attack: str, asr_max: float = criteria.ASR_DEFENDED, drop_max: float = criteria.ACC_DROP_MAX) -> str:
        """E3 for ``attack`` under one definition of a defence that counts: ``n/a`` where the undefended attack fails
        in some seed; ``yes`` when augmentation alone does not count and some κ > 0 with it does; ``no`` when
        augmentation alone counts or no κ > 0 with it does; ``inconclusive`` otherwise."""
        n_works, n_seeds = self.works[attack]
        if n_works < n_seeds:
            return "n/a"
        g = self.grid(attack)
        aug = self.base_cell(attack, True).verdict_under(asr_max, drop_max)
        k_aug = [c.verdict_under(asr_max, drop_max) for c in g if c.setting > 0 and c.augment]
        if aug == criteria.NO_COUNT and criteria.COUNTS in k_aug:
            return "yes"
        if aug == criteria.COUNTS or (k_aug and all(v == criteria.NO_COUNT for v in k_aug)):
            return "no"
        return criteria.INCONCLUSIVE

    def e3_panel(self, attack: str) -> dict[tuple[float, float], str]:
        """:meth:`e3` under every definition of the panel: ``{(asr_max, drop_max): verdict}``."""
        return {(a, d): self.e3(attack, a, d) for a in criteria.DEFENDED_PANEL for d in criteria.ACC_DROP_PANEL}

    def e3_robust(self, attack: str) -> str:
        """The E3 verdict every definition of the panel gives, else ``depends on definition``."""
        kinds = set(self.e3_panel(attack).values())
        return kinds.pop() if len(kinds) == 1 else criteria.NOT_ROBUST

    def panel_table(self) -> Table:
        """E3 per attack under the panel's nine definitions of a defence that counts."""
        letter = {"yes": "Y", "no": "N", criteria.INCONCLUSIVE: "?", "n/a": "–"}
        rows = []
        for a in self.attacks:
            pan = self.e3_panel(a)
            rows.append([a, *[" ".join(letter[pan[(asr, d)]] for d in criteria.ACC_DROP_PANEL) for asr in criteria.DEFENDED_PANEL],
                         self.e3_robust(a)])
        drops = ", ".join(f"{100 * d:g}" for d in criteria.ACC_DROP_PANEL)
        return Table(f"tbl-{self.tag}-defence-panel",
                     r"The robustness panel of E3: its verdict per attack when a defence counts at ASR at most 0.05, 0.1 "
                     rf"(the default) or 0.2 (columns) with clean accuracy within {drops} points of the same seed's clean "
                     r"model (the three letters of each column, in that order). Y: augmentation alone does not count and "
                     r"some $\kappa > 0$ with augmentation does (E3 holds); N: augmentation alone counts, or no $\kappa > 0$ "
                     r"with it does; ?: inconclusive (a cell split between seeds); –: the undefended attack fails in some "
                     r"seed. " + self.run_label,
                     ["attack", "ASR ≤ 0.05", "ASR ≤ 0.1", "ASR ≤ 0.2", "across the panel"], rows)

    def augmentation_drop(self, attack: str, kappa: float) -> tuple[float, float, float] | None:
        """ASR without augmentation minus with it at ``kappa``, paired by seed: mean and bootstrap interval
        (``None`` unless both cells have :data:`~poisoncurv.core.criteria.MIN_SEEDS` common seeds)."""
        off, on = self.cell(attack, kappa, False), self.cell(attack, kappa, True)
        if off is None or on is None:
            return None
        a, b = {p.seed: p.asr for p in off.points}, {p.seed: p.asr for p in on.points}
        common = sorted(set(a) & set(b))
        return stats.mean_ci([a[s] - b[s] for s in common]) if len(common) >= criteria.MIN_SEEDS else None

    def summary(self) -> Summary:
        """Per attack: in how many seeds the undefended attack works; per κ × augmentation cell its mean ASR and
        accuracy, its verdict and its collapsed models over seeds; per weight-decay cell the same with its mean cost;
        how many κ > 0 cells count with and without augmentation (verdict ``counts``: every one of at least three
        seeds), the weight-decay and early-stopping cells that count, the largest augmentation drop in ASR whose
        interval excludes zero; the smallest ASR of any single run with κ > 0 (``asr_min_kappa``), the mean clean
        accuracy at the largest κ with and without augmentation (``acc_kmax_aug``, ``acc_kmax_noaug``) and that κ in
        the paper's units (``kappa_paper_max``); and E3 (``n/a`` where the undefended attack
        fails in some seed; ``yes``: augmentation alone does not count and some κ > 0 with it does; ``no``: the
        opposite holds; ``inconclusive`` otherwise), with its verdict across the panel (``e3_panel``) and how many of
        the panel's definitions say ``yes``."""
        out: Summary = {}
        for a in self.attacks:
            s = f"{self.tag}_def_{slug(a)}"
            g = self.grid(a)
            for c in g:
                t = f"{self._ktag(c.setting)}_{'aug' if c.augment else 'noaug'}"
                out |= {f"{s}_asr_{t}": c.asr, f"{s}_acc_{t}": c.clean_acc, f"{s}_verdict_{t}": c.verdict, f"{s}_n_{t}": c.n,
                        f"{s}_n_collapsed_{t}": c.n_collapsed}
            for c in self.cells:
                if c.attack == a and c.method == "weight decay":
                    t = "wd" + f"{c.setting:g}".replace(".", "p")          # 0.02 -> wd0p02
                    out |= {f"{s}_asr_{t}": c.asr, f"{s}_acc_{t}": c.clean_acc, f"{s}_cost_{t}": c.cost()[0],
                            f"{s}_verdict_{t}": c.verdict, f"{s}_n_{t}": c.n, f"{s}_n_collapsed_{t}": c.n_collapsed}
            none, aug = self.base_cell(a, False), self.base_cell(a, True)
            k_aug = [c for c in g if c.setting > 0 and c.augment]
            k_only = [c for c in g if c.setting > 0 and not c.augment]
            others = {m: [c for c in self.cells if c.attack == a and c.method == m] for m in ("weight decay", "early stopping")}
            k_max = max((c.setting for c in g), default=0.0)
            at_max = {c.augment: c.clean_acc for c in g if c.setting == k_max and k_max > 0}
            kappa_asr = [p.asr for c in g if c.setting > 0 for p in c.points]
            out |= {f"{s}_asr_min_kappa": min(kappa_asr) if kappa_asr else "none",
                    f"{s}_acc_kmax_aug": at_max.get(True, "none"), f"{s}_acc_kmax_noaug": at_max.get(False, "none"),
                    f"{s}_kappa_paper_max": self.kappa_paper(k_max) if k_max > 0 else "none"}
            n_works, n_seeds = self.works[a]
            works = n_works == n_seeds
            e3 = self.e3(a)
            drops = [(k, d) for k in sorted({c.setting for c in k_aug}) if (d := self.augmentation_drop(a, k)) and d[1] > 0]
            best = max(drops, key=lambda kd: kd[1][0]) if drops else None
            safe = [c.clean_acc for c in self.cells if c.attack == a and c.verdict == criteria.COUNTS]
            out |= {f"{s}_asr_undefended": none.asr, f"{s}_n_works": n_works, f"{s}_n_seeds": n_seeds,
                    f"{s}_attack_works": "yes" if works else "no", f"{s}_asr_aug_alone": aug.asr,
                    f"{s}_aug_alone_counts": aug.verdict,
                    f"{s}_n_kappa_aug_counts": sum(c.verdict == criteria.COUNTS for c in k_aug),
                    f"{s}_n_kappa_counts": sum(c.verdict == criteria.COUNTS for c in k_only),
                    f"{s}_n_wd_counts": sum(c.verdict == criteria.COUNTS for c in others["weight decay"]),
                    f"{s}_n_wd_seed_counts": sum(c.n_counts for c in others["weight decay"]),
                    f"{s}_n_early_counts": sum(c.verdict == criteria.COUNTS for c in others["early stopping"]),
                    f"{s}_best_safe_acc": max(safe) if safe else "none", f"{s}_clean_acc": self.clean_acc(a),
                    f"{s}_aug_drop_kappa_paper": self.kappa_paper(best[0]) if best else "none",
                    f"{s}_aug_drop": best[1][0] if best else "none", f"{s}_aug_drop_lo": best[1][1] if best else "none",
                    f"{s}_aug_drop_hi": best[1][2] if best else "none", f"{s}_e3_holds": e3,
                    f"{s}_e3_panel": self.e3_robust(a),
                    f"{s}_e3_panel_n_yes": sum(v == "yes" for v in self.e3_panel(a).values()),
                    f"{s}_e3_panel_size": len(self.e3_panel(a)),
                    f"{s}_first_counts_aug": self.first_counting(a, True), f"{s}_first_counts_noaug": self.first_counting(a, False)}
        out[f"{self.tag}_n_e3_holds"] = sum(out[f"{self.tag}_def_{slug(a)}_e3_holds"] == "yes" for a in self.attacks)
        out[f"{self.tag}_n_e3_testable"] = sum(out[f"{self.tag}_def_{slug(a)}_e3_holds"] != "n/a" for a in self.attacks)
        out[f"{self.tag}_n_defence_attacks"] = len(self.attacks)
        return out

    def table(self) -> Table:
        rows = []
        for a in self.attacks:
            for c in self.grid(a):
                m, lo, hi = c.cost()
                asr = [p.asr for p in c.points]
                asr_text = f"{c.asr:.3f}" + (f" ({min(asr):.2f}–{max(asr):.2f})" if c.n > 1 else "")
                if c.n_collapsed:
                    asr_text = "collapsed" if c.n_collapsed == c.n else f"{asr_text}; {c.n_collapsed} collapsed"
                cost = f"{100 * m:+.1f}" + (f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if c.n > 1 else "")
                kp = self.kappa_paper(c.setting)
                rows.append([a, "on" if c.augment else "off", powers_text(kp) if kp else "0", c.verdict, f"{c.n_counts}/{c.n}",
                             f"{c.clean_acc:.3f}", cost, asr_text])
        return Table(f"tbl-{self.tag}-defence",
                     r"$\kappa$ × augmentation at the end of training, over seeds: $\kappa_{\text{paper}} = B^2\kappa_{\text{lab}}$ "
                     r"(the stated assumption), the cell's verdict (every one of at least three seeds), the seeds in which the "
                     r"defence counts (ASR $\le 0.1$, clean accuracy within 2 points of the clean model's), clean accuracy "
                     r"(mean), its cost against the same seed's clean model in points (mean and 95 % bootstrap interval over "
                     r"seeds) and ASR (mean, range over seeds); a collapsed model (accuracy below twice chance, or half the "
                     r"untriggered inputs sent to the target) has no meaningful ASR. Runs with $\kappa > 0$ also cap the learning rate at "
                     r"$1/\kappa_{\text{lab}}$ and clip the gradient norm at 10. " + self.run_label,
                     ["attack", "augm.", "κ paper", "verdict", "counts / seeds", "clean acc.", "cost (points)", "ASR"], rows)

    def tables(self) -> tuple[Table, ...]:
        """The defence table, then the robustness panel (the order the chapter shows them)."""
        return (self.table(), self.panel_table())


def _seed_cells(points: list[DefencePoint]) -> tuple[DefenceCell, ...]:
    cells: dict[tuple[str, str, float, bool], list[DefencePoint]] = {}
    for p in points:
        cells.setdefault((p.attack, p.method, p.setting, p.augment), []).append(p)
    return tuple(DefenceCell(*k, tuple(sorted(v, key=lambda p: p.seed))) for k, v in cells.items())


def defence_result(runs: ChapterRuns, grids: Mapping[str, tuple[tuple[str, ...], str]], tag: str, run_label: str) -> DefenceResult:
    """Cells of every defence over seeds: ``grids`` maps each attack to (its κ × augmentation groups, its
    weight-decay group); a run in two groups counts once. Every run is judged against the clean model of its own
    seed. Early stopping: every evaluation of the undefended runs (κ = 0, no augmentation)."""
    pts, works, batch = [], {}, None
    for attack, (kgroups, wgroup) in grids.items():
        kres = list({r["key"]: r for r in runs.groups(kgroups, attack=attack)}.values())
        if not kres:
            raise ValueError(f"groups {list(kgroups)} have no runs of attack {attack!r}")
        batch = kres[0]["config"]["batch_size"]
        n_works = n_seeds = 0
        kappa_keys = {r["key"] for r in kres}
        for res in kres + runs.group(wgroup, attack=attack):
            ref = runs.clean_model(res)
            if ref is None:
                raise ValueError(f"no clean model (theta = 0) for run {res['key']} ({attack}, seed {res['config']['seed']})")
            c, last, acc0 = res["config"], res["epochs"][-1], ref["epochs"][-1]["clean_acc"]
            k = NUM_CLASSES[c["dataset"]]
            if res["key"] in kappa_keys:
                method = {(False, False): "none", (False, True): "augmentation", (True, False): "κ",
                          (True, True): "κ + augmentation"}[(c["kappa"] > 0, c["augment"])]
                setting = c["kappa"]
            else:
                method, setting = "weight decay", c["weight_decay"]
            pts.append(DefencePoint(attack, method, setting, c["augment"], c["seed"], last["clean_acc"], last["asr"], acc0,
                                    bool(criteria.collapsed(last["clean_acc"], last["clean_to_target"], k))))
            if method == "none":
                n_seeds += 1
                n_works += bool(success_mask(res)[-1])
                pts += [DefencePoint(attack, "early stopping", e["epoch"], False, c["seed"], e["clean_acc"], e["asr"], acc0,
                                     bool(criteria.collapsed(e["clean_acc"], e["clean_to_target"], k)))
                        for e in res["epochs"][1:]]
        works[attack] = (n_works, n_seeds)
    return DefenceResult(tag, _seed_cells(pts), works, int(batch or 0), run_label)
