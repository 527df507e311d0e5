"""Chapter 6 drivers: a LeNet-style ReLU CNN on exact MNIST, four attacks, the lag, near clones in feature
space, and κ × augmentation.

The runs are the grid file ``grids/ch06.yaml`` (the same file a cluster sweep runs: ``make sweep
GRID=grids/ch06.yaml``); every number comes from the lab's cached results (:mod:`poisoncurv.lab.cache`) through
the shared analysis of :mod:`poisoncurv.chapters.deep_runs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.chapters import hardware as hw
from poisoncurv.chapters import mnist_runs
from poisoncurv.chapters.mnist_runs import data_source, mnist  # noqa: F401 (the chapter's MNIST, shared with Chapters 5 and 8)
from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.paths import RESULTS_DIR, chapter_lab_dir
from poisoncurv.core.tables import Table
from poisoncurv.lab.config import kappa_paper
from poisoncurv.lab.grid import Grid

TAG = "ch6"
RUN = "Run: {glue:text}`ch06_cnn_mnist_run`."   # ends every caption of the chapter
GRID = mnist_runs.CH06_GRID                   # grids/ch06.yaml (Chapter 8 reads it too, through mnist_runs)
SEED_GROUPS = mnist_runs.CH06_SEED_GROUPS
THETA_GROUPS = ("theta", "warp_theta")
HARDWARE_DIR = RESULTS_DIR / "hardware" / "xeon"   # committed AMD EPYC runs retrained on an Intel Xeon
DEFENCES = {"cross-stochastic": (("defence", "defence_seeds"), "weight_decay"),
            "warp": (("defence_warp", "defence_seeds_warp"), "weight_decay_warp")}


def grid(profile: str) -> Grid:
    """The chapter's runs for ``profile``."""
    return mnist_runs.ch06_grid(profile)


def load_runs(profile: str, device: str = "cpu", results_dir: str | None = None, progress: bool = False) -> dr.ChapterRuns:
    """Every run of the chapter (cached, or trained and cached)."""
    return dr.load_runs(grid(profile), device, chapter_lab_dir(results_dir), mnist, progress)


@dataclass(frozen=True)
class Setting(ChapterResult):
    """What every run shares, for the page: sizes, schedule and the attacks' parameters."""

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
    n_seeds: int
    attacks: tuple[str, ...]
    thetas: tuple[float, ...]
    kappas: tuple[float, ...]
    data_source: str

    def summary(self) -> Summary:
        out: Summary = {f"{TAG}_{k}": getattr(self, k) for k in (
            "n_eval", "epochs", "evals_per_epoch", "batch_size", "lr", "weight_decay", "top_k", "target", "warp_strength",
            "n_runs", "n_seeds")}
        out[f"{TAG}_n_train"] = self.n_train or "all 60000"
        out[f"{TAG}_n_test"] = self.n_test or "all 10000"
        out[f"{TAG}_n_attacks"] = len(self.attacks)
        out[f"{TAG}_thetas"] = ", ".join(f"{100 * t:g} %" for t in self.thetas if t > 0)
        out[f"{TAG}_kappas"] = ", ".join(f"{k:g}" for k in self.kappas)
        out[f"{TAG}_kappas_paper"] = ", ".join(f"{kappa_paper(k, self.batch_size):g}" for k in self.kappas)
        out[f"{TAG}_data_source"] = self.data_source
        return out


def setting(profile: str, source: str) -> Setting:
    g = grid(profile)
    c = g.runs[0].config
    seeds = {r.config.seed for name in SEED_GROUPS if name in g.groups for r in g.group(name)}
    return Setting(c.n_train, c.n_test, c.n_eval, c.epochs, c.evals_per_epoch, c.batch_size, c.lr, c.weight_decay, c.top_k,
                   c.target, c.warp_strength, len(g.runs), len(seeds), tuple(dict.fromkeys(r.config.attack for r in g.group("theta"))),
                   tuple(sorted({r.config.theta for name in THETA_GROUPS if name in g.groups for r in g.group(name)})),
                   tuple(sorted({r.config.kappa for r in g.group("defence")})), source)


def lag(runs: dr.ChapterRuns) -> dr.LagResult:
    """The lag (E2) over the seed runs of every attack."""
    return dr.lag_result(runs, SEED_GROUPS, TAG, RUN)


def top_eigen(runs: dr.ChapterRuns) -> dr.TopEigenResult:
    """Final λ₁ of the poisoned seed runs over their clean references', at triggered and clean inputs."""
    return dr.top_eigen_result(runs, SEED_GROUPS, TAG)


def thetas(runs: dr.ChapterRuns) -> dr.ThetaResult:
    """Every attack at every θ (seed 0)."""
    return dr.theta_result(runs, THETA_GROUPS, TAG, RUN)


def features(runs: dr.ChapterRuns) -> dr.FeatureResult:
    """Feature geometry and eNTK ratios of the seed runs."""
    return dr.feature_result(runs, SEED_GROUPS, TAG, RUN)


def defences(runs: dr.ChapterRuns) -> dr.DefenceResult:
    """κ × augmentation, weight decay and early stopping for the stochastic cross and the warp."""
    return dr.defence_result(runs, DEFENCES, TAG, RUN)


def hardware(runs: dr.ChapterRuns) -> hw.HardwareResult:
    """Committed seed runs retrained on another CPU model (``results/hardware/xeon/``) against the seed spread."""
    return hw.compare(runs, SEED_GROUPS, HARDWARE_DIR, TAG, RUN)


def provenance(runs: dr.ChapterRuns) -> Table:
    return dr.provenance_table(runs, "tbl-ch6-provenance", RUN)


def consistency(runs: dr.ChapterRuns) -> dr.Consistency:
    return dr.consistency(runs, TAG)
