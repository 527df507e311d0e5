"""Chapter 7 drivers: pre-activation ResNets on CIFAR-10 (and CIFAR-100 where a copy exists), the lag, near clones in
feature space, and κ × augmentation: Chapter 6's measurements on bigger models.

The runs are the grid file ``grids/ch07.yaml`` (``make sweep GRID=grids/ch07.yaml``); every number comes from the lab's
cached results through the shared analysis of :mod:`poisoncurv.chapters.deep_runs`, applied to each data set's runs
separately (:func:`by_dataset`). The ``cpu`` profile is CIFAR-10 only; ``gpu`` and ``full`` add CIFAR-100, which has
no offline copy: :func:`preflight` stops with one message (where the files go, how to get them) before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.core.paths import GRIDS_DIR, chapter_lab_dir
from poisoncurv.core.tables import Table
from poisoncurv.lab.attacks import apply_trigger, poison_direction
from poisoncurv.lab.cache import result_path
from poisoncurv.lab.data import SOURCES, ImageData, ensure, load, locate, to_float
from poisoncurv.lab.grid import Grid, load_grid

TAG = "ch7"
# ends every caption of the chapter: model, data, epochs, then profile and device
RUN = ("PreResNet-{glue:text}`ch7_depth` on {glue:text}`ch7_data_source`, {glue:text}`ch7_epochs` epochs. "
       "Run: {glue:text}`ch07_resnet_cifar_run`.")
GRID = GRIDS_DIR / "ch07.yaml"
SEED_GROUPS = ("attacks",)
THETA_GROUPS = ("attacks",)
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
    return {d: dr.load_runs(by_dataset(g, d), device, lab, lambda d=d: cifar(d), progress) for d in datasets(profile)}


@dataclass(frozen=True)
class Setting:
    """What every run shares, for the page: model, sizes, schedule and the attacks' parameters."""

    model: str
    datasets: tuple[str, ...]
    n_train: int | None
    n_test: int | None
    n_eval: int
    epochs: int
    evals_per_epoch: int
    batch_size: int
    lr: float
    weight_decay: float
    top_k: int
    target: int
    warp_strength: float
    n_runs: int
    attacks: tuple[str, ...]
    theta: float
    kappas: tuple[float, ...]
    data_source: str

    @property
    def has_cifar100(self) -> bool:
        return "cifar100" in self.datasets

    def summary(self) -> dr.Summary:
        out: dr.Summary = {f"{TAG}_{k}": getattr(self, k) for k in (
            "model", "n_eval", "epochs", "evals_per_epoch", "batch_size", "lr", "weight_decay", "top_k", "target",
            "warp_strength", "n_runs")}
        out[f"{TAG}_depth"] = int(self.model.removeprefix("preresnet"))
        out[f"{TAG}_n_train"] = self.n_train or "all 50000"
        out[f"{TAG}_n_test"] = self.n_test or "all 10000"
        out[f"{TAG}_theta"] = f"{100 * self.theta:g} %"
        out[f"{TAG}_attacks"] = ", ".join(self.attacks)
        out[f"{TAG}_datasets"] = ", ".join(self.datasets)
        out[f"{TAG}_kappas"] = ", ".join(f"{k:g}" for k in self.kappas)
        out[f"{TAG}_kappas_paper"] = ", ".join(f"{k * self.batch_size ** 2:g}" for k in self.kappas)
        out[f"{TAG}_data_source"] = self.data_source
        out[f"{TAG}_cifar100"] = "yes" if self.has_cifar100 else "no"
        out[f"{TAG}_cifar100_note"] = (
            "CIFAR-100 results follow below (every table computed from its runs as for CIFAR-10)." if self.has_cifar100 else
            "The committed outputs have no CIFAR-100 results: this profile trains on CIFAR-10 only, and no copy of "
            "CIFAR-100 exists where they were computed.")
        return out


def setting(profile: str, data_source: str) -> Setting:
    g = grid(profile)
    c = g.runs[0].config
    thetas = {r.config.theta for r in g.group("attacks") if r.config.theta > 0}
    if len(thetas) != 1:
        raise ValueError(f"grid {GRID}: profile {profile!r} must poison at one θ in group 'attacks', found {sorted(thetas)}")
    return Setting(c.model, datasets(profile), c.n_train, c.n_test, c.n_eval, c.epochs, c.evals_per_epoch, c.batch_size, c.lr,
                   c.weight_decay, c.top_k, c.target, c.warp_strength, len(g.runs),
                   tuple(dict.fromkeys(r.config.attack for r in g.group("attacks"))), thetas.pop(),
                   tuple(sorted({r.config.kappa for r in g.group("defence")})), data_source)


def _tag(dataset: str) -> str:
    """Glue-key prefix: ``ch7`` for CIFAR-10, ``ch7_c100`` for CIFAR-100."""
    return TAG if dataset == "cifar10" else f"{TAG}_c100"


def lag(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.LagResult:
    """The lag (E2) of every attack (one seed each: no seed spread in this chapter)."""
    return dr.lag_result(runs, SEED_GROUPS, _tag(dataset), RUN)


def thetas(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.ThetaResult:
    """Every attack at its θ and its clean reference, final numbers."""
    return dr.theta_result(runs, THETA_GROUPS, _tag(dataset), RUN)


def features(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.FeatureResult:
    """Feature geometry and eNTK ratios at the end of training."""
    return dr.feature_result(runs, SEED_GROUPS, _tag(dataset), RUN)


def defences(runs: dr.ChapterRuns, dataset: str = "cifar10") -> dr.DefenceResult:
    """κ × augmentation (and early stopping) for every attack with a defence group in the profile."""
    grids = {attack: ((name,), "weight_decay") for name, attack in DEFENCE_GROUPS.items() if name in runs.grid.groups}
    return dr.defence_result(runs, grids, _tag(dataset), RUN)


def provenance(runs: dict[str, dr.ChapterRuns]) -> Table:
    """One provenance table over every data set's runs."""
    first = next(iter(runs.values()))
    merged = dr.ChapterRuns(replace(first.grid, groups={f"{d}/{n}": rs for d, r in runs.items() for n, rs in r.grid.groups.items()}),
                            {k: v for r in runs.values() for k, v in r.results.items()})
    return dr.provenance_table(merged, "tbl-ch7-provenance", RUN)


def consistency(runs: dict[str, dr.ChapterRuns]) -> dr.Consistency:
    merged = dr.ChapterRuns(next(iter(runs.values())).grid, {k: v for r in runs.values() for k, v in r.results.items()})
    return dr.consistency(merged, TAG)


@dataclass(frozen=True)
class MarkerOrder:
    """How consistently each spectral marker at the end of training orders with κ, per attack and augmentation:
    Kendall's τ between κ and the marker over the κ > 0 cells and the undefended one (``None`` with fewer than
    three cells). The paper reports a less consistent ordering for deterministic poisons (E3)."""

    tag: str
    rows: tuple[tuple[str, bool, str, float | None], ...]   # attack, augment, marker key, τ
    run_label: str

    def summary(self) -> dr.Summary:
        out: dr.Summary = {}
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


@dataclass(frozen=True)
class Gallery:
    """Each attack's trigger on one test image ``(32, 32, 3)`` and its poison direction ``u`` averaged over the
    colour channels ``(32, 32)`` (the unit mean change over ``n_sources`` test images; the cross for the crosses)."""

    clean: np.ndarray
    triggered: dict[str, np.ndarray]
    direction: dict[str, np.ndarray]
    n_sources: int


def gallery(data: ImageData | None, attacks: tuple[str, ...], warp_strength: float, seed: int = 0, n_sources: int = 500) -> Gallery | None:
    """:class:`Gallery` from the first test images of ``data`` (``None`` without a copy of the data set)."""
    if data is None:
        return None
    x = to_float(data.x_test[:n_sources])
    trig = {a: apply_trigger(a, x[:1], 1.0, warp_strength, seed)[0].permute(1, 2, 0).clamp(0, 1).numpy() for a in attacks}
    u = {a: poison_direction(a, x, 1.0, warp_strength, seed).reshape(3, 32, 32).mean(0).numpy() for a in attacks}
    return Gallery(x[0].permute(1, 2, 0).numpy(), trig, u, len(x))
