"""Chapter 7 drivers: a ReLU ConvNet that learns CIFAR-10 (the ``cpu`` and ``gpu`` profiles; the ``full`` profile is
the paper's PreResNet-110 on CIFAR-10 and CIFAR-100): how well the clean references fit, the lag over seeds, near clones
in feature space, and κ × augmentation against weight decay and early stopping; Chapter 6's measurements on CIFAR.

The runs are the grid file ``grids/ch07.yaml`` (``make sweep GRID=grids/ch07.yaml``); every number comes from the lab's
cached results through the shared analysis of :mod:`poisoncurv.chapters.deep_runs`, applied to each data set's runs
separately (:func:`by_dataset`). CIFAR-100 (``full`` only) has no offline copy: :func:`preflight` stops with one message
(where the files go, how to get them) before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.core import criteria, stats
from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.paths import GRIDS_DIR, chapter_lab_dir
from poisoncurv.core.prose import powers_text
from poisoncurv.core.provenance import training_hours
from poisoncurv.core.tables import Table
from poisoncurv.lab.cache import result_path
from poisoncurv.lab.config import NUM_CLASSES, SPLIT_SIZES, kappa_paper
from poisoncurv.lab.data import SOURCES, ImageData, ensure, load, locate
from poisoncurv.lab.grid import Grid, load_grid
from poisoncurv.lab.train import build_model

TAG = "ch7"
RUN = "Run: {glue:text}`ch07_resnet_cifar_run`."   # ends every caption of the chapter
GRID = GRIDS_DIR / "ch07.yaml"
SEED_GROUPS = ("attacks",)
DEFENCE_GROUPS = {"defence": "cross-stochastic", "defence_det": "cross-deterministic", "defence_warp": "warp"}
DATASETS = ("cifar10", "cifar100")
MARKERS = {"trig_overlap": "overlap (trig)", "trig_mass": "mass (trig)", "trig_curv_u": "uᵀHu (trig)"}
CIFAR100_HOW = ("python -m poisoncurv.lab.data cifar100  # on a machine with internet\n"
                "make rerun CHAPTER=ch07_resnet_cifar PROFILE=gpu DEVICE=cuda")


def grid(profile: str) -> Grid:
    """The chapter's runs for ``profile``."""
    return load_grid(GRID, profile, check_device=False)


def datasets(profile: str) -> tuple[str, ...]:
    """The data sets the profile's grid trains on, in :data:`DATASETS` order."""
    used = {r.config.dataset for r in grid(profile).runs}
    return tuple(d for d in DATASETS if d in used)


def data_source(profile: str) -> str:
    """Where each data set of the profile is read from, e.g. ``"CIFAR-10: JPEG copy (q75), ..."``."""
    parts = []
    for d in datasets(profile):
        found = locate(d)
        parts.append(f"{d}: {SOURCES[found] if found else 'cached lab runs only'}")
    return "; ".join(parts)


@lru_cache(maxsize=2)
def cifar(name: str) -> ImageData:
    """A CIFAR data set, loaded once per process (only when a run is not in the cache)."""
    return load(name)


def preflight(g: Grid, results_dir: Path | None = None) -> None:
    """Locate (or download) every data set that a run without a results file needs, before any training; raises
    :class:`~poisoncurv.lab.data.DataNotFoundError` naming the expected files and the command that gets them."""
    for d in sorted({r.config.dataset for r in g.runs if not result_path(r.config, results_dir).exists()}):
        ensure(d)


def by_dataset(g: Grid, dataset: str) -> Grid:
    """``g`` restricted to the runs of ``dataset`` (groups left empty are dropped)."""
    groups = {n: [r for r in rs if r.config.dataset == dataset] for n, rs in g.groups.items()}
    return replace(g, groups={n: rs for n, rs in groups.items() if rs})


def load_runs(profile: str, device: str = "cpu", results_dir: str | None = None,
              progress: bool = False) -> dict[str, dr.ChapterRuns]:
    """Every run of the chapter (cached, or trained and cached), by data set; :func:`preflight` first."""
    g, lab = grid(profile), chapter_lab_dir(results_dir)
    preflight(g, lab)
    return {d: dr.load_runs(by_dataset(g, d), device, lab, partial(cifar, d), progress) for d in datasets(profile)}


def model_label(model: str) -> str:
    """``convnet40`` → ``ConvNet-40``, ``preresnet110`` → ``PreResNet-110``."""
    for prefix, name in (("convnet", "ConvNet"), ("preresnet", "PreResNet")):
        if model.startswith(prefix):
            return f"{name}-{model.removeprefix(prefix)}"
    return model


@dataclass(frozen=True)
class Setting(ChapterResult):
    """What the runs share, for the page: the model, the E2 runs' sizes and schedule, each attack's θ, the augmented
    clean reference's epochs, and the E3 runs' subset, schedule, κ and weight decays."""

    model: str
    n_params: int
    precision: str
    datasets: tuple[str, ...]
    n_train: int | None
    n_test: int | None
    n_eval: int
    epochs: int
    evals_per_epoch: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    warp_strength: float
    n_runs: int
    n_seeds: int
    thetas: tuple[tuple[str, float], ...]      # (attack, θ) of the E2 runs
    aug_epochs: int | None                      # the augmented clean reference (None: not in the profile)
    def_n_train: int | None
    def_epochs: int
    def_batch_size: int
    def_n_seeds: int
    kappas: tuple[float, ...]
    weight_decays: tuple[float, ...]
    data_source: str

    @property
    def attacks(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.thetas)

    @property
    def has_cifar100(self) -> bool:
        return "cifar100" in self.datasets

    def summary(self) -> Summary:
        out: Summary = {f"{TAG}_{k}": getattr(self, k) for k in (
            "n_params", "n_eval", "epochs", "evals_per_epoch", "batch_size", "lr", "weight_decay", "label_smoothing",
            "warp_strength", "n_runs", "n_seeds", "def_epochs", "def_batch_size", "def_n_seeds")}
        out[f"{TAG}_model"] = model_label(self.model)
        out[f"{TAG}_precision"] = "bf16 autocast" if self.precision == "bf16" else "float32"
        out[f"{TAG}_n_train"] = self.n_train or "all 50,000"
        out[f"{TAG}_n_test"] = self.n_test or "all 10,000"
        out[f"{TAG}_def_n_train"] = self.def_n_train or "all 50,000"
        out[f"{TAG}_aug_epochs"] = self.aug_epochs or "none"
        for attack, theta in self.thetas:
            out[f"{TAG}_theta_{dr.slug(attack)}"] = f"{100 * theta:g} %"
        out[f"{TAG}_attacks"] = ", ".join(self.attacks)
        out[f"{TAG}_datasets"] = ", ".join(self.datasets)
        out[f"{TAG}_kappas"] = ", ".join(f"{k:g}" for k in self.kappas)
        out[f"{TAG}_kappas_paper"] = ", ".join(powers_text(kappa_paper(k, self.def_batch_size)) if k > 0 else "0" for k in self.kappas)
        out[f"{TAG}_weight_decays"] = ", ".join(f"{w:g}" for w in self.weight_decays)
        out[f"{TAG}_data_source"] = self.data_source
        out[f"{TAG}_cifar100_note"] = (
            "CIFAR-100 results follow below (every table computed from its runs as for CIFAR-10)." if self.has_cifar100 else
            "The committed outputs have no CIFAR-100 results: this profile trains on CIFAR-10 only, and no copy of "
            "CIFAR-100 exists where they were computed.")
        return out


def setting(profile: str, data_source: str) -> Setting:
    g = grid(profile)
    attacks = g.group("attacks")
    c = attacks[0].config
    thetas = tuple(dict.fromkeys((r.config.attack, r.config.theta) for r in attacks if r.config.theta > 0))
    if len({a for a, _ in thetas}) != len(thetas):
        raise ValueError(f"grid {GRID}: profile {profile!r} must poison each attack at one θ in group 'attacks', found {thetas}")
    aug = g.group("clean_aug") if "clean_aug" in g.groups else []
    d = g.group("defence")[0].config
    n_params = sum(p.numel() for p in build_model(c, (3, 32, 32), NUM_CLASSES[c.dataset]).parameters())
    return Setting(c.model, n_params, c.precision, datasets(profile), c.n_train, c.n_test, c.n_eval, c.epochs,
                   c.evals_per_epoch, c.batch_size, c.lr, c.weight_decay, c.label_smoothing, c.warp_strength, len(g.runs),
                   len({r.config.seed for r in attacks}), thetas, aug[0].config.epochs if aug else None, d.n_train, d.epochs,
                   d.batch_size, len({r.config.seed for r in g.group("defence")}),
                   tuple(sorted({r.config.kappa for r in g.group("defence")})),
                   tuple(sorted({r.config.weight_decay for r in g.group("weight_decay")})) if "weight_decay" in g.groups else (),
                   data_source)


@dataclass(frozen=True)
class FitRow:
    """One model at the end of training: test accuracy on ``n_test`` images with its Wilson interval, and training
    accuracy on its clean examples and on its poisons (their target label; ``None`` without poisons)."""

    group: str
    attack: str
    theta: float
    augment: bool
    seed: int
    test_acc: float
    test_lo: float
    test_hi: float
    n_test: int
    train_acc_clean: float
    train_acc_poison: float | None
    epochs: int


@dataclass(frozen=True)
class FitResult(ChapterResult):
    """How well the models of the E2 runs and the augmented clean reference fit: the clean references against the
    targets of :data:`poisoncurv.core.criteria.CIFAR_ACC_TARGET` and ``CIFAR_ACC_TARGET_AUG`` (every seed's final test
    accuracy at least the target), and how close each model gets to zero training error."""

    sig = 3

    tag: str
    rows: tuple[FitRow, ...]
    run_label: str

    def clean(self, augment: bool) -> list[FitRow]:
        """The clean references (θ = 0) with or without augmentation, one per seed (the attacks share them)."""
        return list({r.seed: r for r in self.rows if r.theta == 0 and r.augment == augment}.values())

    def summary(self) -> Summary:
        out: Summary = {}
        for aug, target, name in ((False, criteria.CIFAR_ACC_TARGET, "clean"), (True, criteria.CIFAR_ACC_TARGET_AUG, "clean_aug")):
            rows = self.clean(aug)
            if not rows:
                continue
            accs = [r.test_acc for r in rows]
            out[f"{self.tag}_{name}_n_seeds"] = len(rows)
            out[f"{self.tag}_{name}_acc_mean"] = float(np.mean(accs))
            out[f"{self.tag}_{name}_acc_min"] = min(accs)
            out[f"{self.tag}_{name}_acc_lo_min"] = min(r.test_lo for r in rows)
            out[f"{self.tag}_{name}_acc_target"] = target
            out[f"{self.tag}_{name}_n_meet_target"] = sum(a >= target for a in accs)
            out[f"{self.tag}_{name}_meets_target"] = "yes" if min(accs) >= target else "no"
            out[f"{self.tag}_{name}_train_acc_min"] = min(r.train_acc_clean for r in rows)
            out[f"{self.tag}_{name}_epochs"] = rows[0].epochs
        poisoned = [r for r in self.rows if r.theta > 0]
        if poisoned:
            out[f"{self.tag}_poisoned_train_acc_clean_min"] = min(r.train_acc_clean for r in poisoned)
            out[f"{self.tag}_poisoned_train_acc_poison_min"] = min(r.train_acc_poison for r in poisoned if r.train_acc_poison is not None)
        return out

    def table(self) -> Table:
        """One row per (attack, θ, augmentation) over its seeds: test accuracy mean with the envelope of the seeds'
        Wilson intervals, and training accuracy (clean examples, poisons) mean and minimum."""
        cells: dict[tuple[str, float, bool], list[FitRow]] = {}
        for r in self.rows:
            cells.setdefault(("clean" if r.theta == 0 else r.attack, r.theta, r.augment), []).append(r)
        rows = []
        for (attack, theta, aug), rs in cells.items():
            poison = [r.train_acc_poison for r in rs if r.train_acc_poison is not None]
            rows.append([attack, f"{100 * theta:g} %", "on" if aug else "off", len(rs), rs[0].epochs,
                         f"{np.mean([r.test_acc for r in rs]):.3f} [{min(r.test_lo for r in rs):.3f}, {max(r.test_hi for r in rs):.3f}]",
                         f"{np.mean([r.train_acc_clean for r in rs]):.4f} (min {min(r.train_acc_clean for r in rs):.4f})",
                         f"{np.mean(poison):.4f} (min {min(poison):.4f})" if poison else "—"])
        n_test = self.rows[0].n_test
        return Table(f"tbl-{self.tag}-fit",
                     f"How well the models fit, at the end of training: test accuracy on {n_test:,} test images (mean over "
                     f"seeds, in brackets the envelope of the seeds' 95 % Wilson intervals) and training accuracy on the clean "
                     f"training examples and on the poisons (their target label). The clean references (θ = 0) are shared "
                     f"by the three attacks. " + self.run_label,
                     ["model", "θ", "augmentation", "seeds", "epochs", "test accuracy", "train acc. (clean)",
                      "train acc. (poisons)"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def fits(runs: dr.ChapterRuns, dataset: str = "cifar10") -> FitResult:
    """:class:`FitResult` of the E2 runs and the augmented clean reference."""
    rows = []
    for name in ("attacks", "clean_aug"):
        for res in runs.group(name):
            c, last, fit = res["config"], res["epochs"][-1], res["train_fit"]
            n = c["n_test"] or SPLIT_SIZES[c["dataset"]][1]
            lo, hi = stats.wilson_ci(last["clean_acc"], n)
            poison = fit["acc_poison"]
            rows.append(FitRow(name, c["attack"], c["theta"], c["augment"], c["seed"], last["clean_acc"], lo, hi, n,
                               fit["acc_clean"], None if poison in ("nan", None) or poison != poison else float(poison),
                               c["epochs"]))
    return FitResult(_tag(dataset), tuple(rows), RUN)


def _tag(dataset: str) -> str:
    """Glue-key prefix: ``ch7`` for CIFAR-10, ``ch7_c100`` for CIFAR-100."""
    return TAG if dataset == "cifar10" else f"{TAG}_c100"


def lag(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.LagResult:
    """The lag (E2) of every attack over its seeds."""
    return dr.lag_result(runs, SEED_GROUPS, _tag(dataset), RUN)


def top_eigen(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.TopEigenResult:
    """Final λ₁ of the poisoned seed runs over their clean references', at triggered and clean inputs."""
    return dr.top_eigen_result(runs, SEED_GROUPS, _tag(dataset))


def features(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.FeatureResult:
    """Feature geometry and eNTK ratios at the end of training."""
    return dr.feature_result(runs, SEED_GROUPS, _tag(dataset), RUN)


def defences(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.DefenceResult:
    """κ × augmentation (and early stopping) for every attack with a defence group in the profile."""
    grids = {attack: ((name,), "weight_decay") for name, attack in DEFENCE_GROUPS.items() if name in runs.grid.groups}
    return dr.defence_result(runs, grids, _tag(dataset), RUN)


@dataclass(frozen=True)
class Provenance(ChapterResult):
    """The training behind the chapter: its hours over every data set's runs (glued) and their provenance table."""

    sig = 2

    hours: float
    runs_table: Table

    def summary(self) -> Summary:
        return {f"{TAG}_training_hours": self.hours}

    def tables(self) -> tuple[Table, ...]:
        return (self.runs_table,)


def provenance(runs: dict[str, dr.ChapterRuns]) -> Provenance:
    """The hours of training and one provenance table over every data set's runs."""
    first = next(iter(runs.values()))
    merged = dr.ChapterRuns(replace(first.grid, groups={f"{d}/{n}": rs for d, r in runs.items() for n, rs in r.grid.groups.items()}),
                            {k: v for r in runs.values() for k, v in r.results.items()})
    hours = training_hours(r["provenance"] for d in runs.values() for r in d.results.values())
    return Provenance(hours, dr.provenance_table(merged, "tbl-ch7-provenance", RUN))


def consistency(runs: dict[str, dr.ChapterRuns]) -> dr.Consistency:
    merged = dr.ChapterRuns(next(iter(runs.values())).grid, {k: v for r in runs.values() for k, v in r.results.items()})
    return dr.consistency(merged, TAG)


@dataclass(frozen=True)
class MarkerOrder(ChapterResult):
    """How consistently each spectral marker at the end of training orders with κ, per attack and augmentation:
    Kendall's τ between κ and the marker over the κ > 0 cells and the undefended one (``None`` with fewer than
    three cells). The paper reports a less consistent ordering for deterministic poisons (E3)."""

    sig = 3

    tag: str
    rows: tuple[tuple[str, bool, str, float | None], ...]   # attack, augment, marker key, τ
    run_label: str

    def summary(self) -> Summary:
        out: Summary = {}
        for attack in dict.fromkeys(r[0] for r in self.rows):
            taus = [abs(t) for a, _, _, t in self.rows if a == attack and t is not None]
            out[f"{self.tag}_order_{dr.slug(attack)}_mean_abs_tau"] = float(np.mean(taus)) if taus else "none"
        return out

    def table(self) -> Table:
        return Table(f"tbl-{self.tag}-order",
                     r"Ordering of the spectral markers with $\kappa$ at the end of training: Kendall's $\tau$ between "
                     r"$\kappa$ and each marker over the cells of one attack and augmentation setting ($|\tau| = 1$: a "
                     r"monotone ordering). " + self.run_label,
                     ["attack", "augmentation", "marker", "Kendall τ"],
                     [[a, "on" if aug else "off", MARKERS[m], "—" if t is None else t] for a, aug, m, t in self.rows])

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def marker_order(runs: dr.ChapterRuns, dataset: str = "cifar10") -> MarkerOrder:
    rows = []
    for name, attack in DEFENCE_GROUPS.items():
        if name not in runs.grid.groups:
            continue
        for aug in (False, True):
            res = sorted(runs.group(name, augment=aug), key=lambda r: r["config"]["kappa"])
            k = [r["config"]["kappa"] for r in res]
            for m in MARKERS:
                v = [r["epochs"][-1][m] for r in res]
                tau = float(kendalltau(k, v).statistic) if len(res) >= 3 and len(set(v)) > 1 else None
                rows.append((attack, aug, m, tau))
    return MarkerOrder(_tag(dataset), tuple(rows), RUN)
