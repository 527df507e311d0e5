"""Chapter 8 on the MNIST CNN: detectors on Chapter 6's runs, across the trigger amplitude, every defence on one
safety-efficacy frontier, and the adaptive attacker.

Every number comes from cached lab runs (``grids/ch06.yaml`` and ``grids/ch08.yaml``, :mod:`poisoncurv.lab.cache`);
the detectors see each kept model's penultimate features of its own poisoned training set (:func:`detect_run`).
What is derived from those features, and the adaptive attacker's surrogate, is cached in turn under
``results/derived/`` (:mod:`poisoncurv.lab.derived`, kinds :data:`DETECTION` and :data:`SURROGATE`).
Each driver returns a frozen dataclass with ``summary()`` (glued numbers) and ``table()``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from poisoncurv.chapters.frontier import SafetyPoint
from poisoncurv.chapters.mnist_runs import CH06_SEED_GROUPS, ch06_grid, ch06_runs, data_source, mnist
from poisoncurv.core import criteria, stats
from poisoncurv.core.contract import ChapterResult, Summary, glue_key
from poisoncurv.core.digests import file_digest
from poisoncurv.core.paths import GRIDS_DIR, chapter_derived_dir, chapter_lab_dir
from poisoncurv.core.prose import powers_text
from poisoncurv.core.provenance import RunRecord
from poisoncurv.core.tables import Table
from poisoncurv.detect.clustering import activation_clustering
from poisoncurv.detect.metrics import roc_auc
from poisoncurv.detect.suite import DETECTORS, DetectorScore, score_detectors
from poisoncurv.lab import derived
from poisoncurv.lab.config import LabConfig
from poisoncurv.lab.data import to_float
from poisoncurv.lab.filtering import DETECTOR_OF, features, known_poisons
from poisoncurv.lab.grid import Grid, load_grid

RUN = "Run: {glue:text}`ch08_detectors_run`."   # the chapter's run label, as in detectors (one chapter, two drivers)
GRID = GRIDS_DIR / "ch08.yaml"

MODEL_SCORES = {"trig_overlap": "top-1 overlap² at triggered inputs (trigger known)",
                "trig_mass": "top-k mass at triggered inputs (trigger known)",
                "trig_curv_u": "uᵀHu at triggered inputs (trigger known)",
                "clean_overlap": "top-1 overlap² at clean inputs (trigger known)",
                "clean_outlier": "λ₁/λ₂ at clean inputs (trigger-free)",
                "spectral_gap": "max over classes of σ₁/σ₂ of the features (trigger-free)",
                "ac_flagged": "classes flagged by activation clustering (trigger-free)"}
FEATURE_SCORES = ("spectral_gap", "ac_flagged")

# Derived-results kinds (poisoncurv.lab.derived) and the version of the code computing each: bump a version whenever
# what it covers changes its numbers, and rerun the chapter (the committed files of the old version are recomputed).
DETECTION = "ch08-detection"   # detection_values: features, class_level_scores, known_poisons, score_detectors
DETECTION_VERSION = 3   # 2: the poisoned training sets rebuilt in float32 whatever the default dtype (core.dtypes);
#                         3: the files carry provenance
SURROGATE = "ch08-surrogate"   # surrogate_values: lab.adaptive's surrogate, its pattern and t'Ht of both triggers
SURROGATE_VERSION = 2   # 2: the file carries provenance


def grid(profile: str) -> Grid:
    """This chapter's lab runs for ``profile`` (``grids/ch08.yaml``)."""
    return load_grid(GRID, profile, check_device=False)


def class_level_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Trigger-free model-level scores from the sample-level detectors' per-class statistics on a model's features of
    its own training set ``(N, p)``: ``spectral_gap``, the largest over classes of ``σ₁/σ₂`` of the centred class
    features (a poison sub-population adds a direction of its own), and ``ac_flagged``, the number of classes in which
    activation clustering's smaller cluster holds under 35 % of the class (the class is flagged)."""
    gaps = []
    for c in np.unique(labels):
        Fc = features[labels == c]
        sv = np.linalg.svd(Fc - Fc.mean(0), compute_uv=False)
        gaps.append(float(sv[0] / sv[1]) if sv[1] > 0 else math.inf)
    flags = activation_clustering(features, labels).flags
    return {"spectral_gap": max(gaps), "ac_flagged": float(len(np.unique(labels[flags])))}


def _model_score(row: dict[str, Any], name: str) -> float:
    if name == "clean_outlier":
        top = row["clean_top"]
        return float(top[0] / top[1]) if top[1] > 0 else math.inf
    return float(row[name])


@dataclass(frozen=True)
class RunDetection:
    """One kept run seen by every detector: its final ``asr`` and ``clean_acc``, the model-level ``scores``
    (:data:`MODEL_SCORES`), the ``final`` row of its results (every measure of the last evaluation), and for a
    poisoned run each sample-level detector's :class:`DetectorScore` with the known ``eps`` (``None`` for a clean run)."""

    config: LabConfig
    asr: float
    clean_acc: float
    scores: dict[str, float]
    final: dict[str, Any]
    samples: dict[str, DetectorScore] | None
    eps: float | None

    def sample(self, name: str) -> DetectorScore:
        """Detector ``name``'s sample-level score (a poisoned run's; a clean run has none)."""
        assert self.samples is not None, f"run {self.config.key()} is clean: it has no sample-level scores"
        return self.samples[name]


def detection_values(cfg: LabConfig, results_dir: str | None = None) -> dict[str, Any]:
    """What :func:`detect_run` derives from the kept model's penultimate features of its own poisoned training set,
    computed from scratch (the weights must be kept): ``class_scores`` (:func:`class_level_scores`), and for a
    poisoned run each detector's ``samples[name]`` = ``{auroc, tpr, fpr}`` with the known ``eps`` (else ``None``)."""
    from poisoncurv.lab import runner

    tr = runner.trained_run(cfg, chapter_lab_dir(results_dir), data=mnist())
    feats = features(tr.model, tr.poisoned.x_train)
    y = tr.poisoned.y_train.numpy()
    out: dict[str, Any] = {"class_scores": class_level_scores(feats, y), "samples": None, "eps": None}
    if cfg.theta > 0:
        truth, eps = known_poisons(tr.poisoned)
        out["samples"] = {n: asdict(d) for n, d in score_detectors(feats, y, truth, eps, cfg.target).items()}
        out["eps"] = eps
    return out


def detect_run(cfg: LabConfig, results_dir: str | None = None, cached: bool = True) -> RunDetection:
    """:class:`RunDetection` of ``cfg`` from its cached results and kept weights (trained and kept if absent); what
    comes from the features (:func:`detection_values`) is read from ``<results_dir or results>/derived/`` (computed
    and written if absent or stale), or with ``cached=False`` computed afresh and written nowhere."""
    from poisoncurv.lab import cache, runner

    lab = chapter_lab_dir(results_dir)
    res = runner.get(cfg, lab, data=mnist, keep_model=True)
    last = res["epochs"][-1]
    if cached:
        inputs = {"weights_sha256": file_digest(cache.model_path(cfg, lab)), "data_source": res["data_source"]}
        d = derived.get(DETECTION, cfg.key(), DETECTION_VERSION, lambda: detection_values(cfg, results_dir),
                        chapter_derived_dir(results_dir), inputs=inputs,
                        record=RunRecord(cfg.profile, "cpu", cfg.seed, res["data_source"]))
    else:
        d = detection_values(cfg, results_dir)
    scores = {**{n: _model_score(last, n) for n in MODEL_SCORES if n not in FEATURE_SCORES},
              **{n: float(d["class_scores"][n]) for n in FEATURE_SCORES}}
    if cfg.theta == 0:
        return RunDetection(cfg, last["asr"], last["clean_acc"], scores, last, None, None)
    samples = {n: DetectorScore(*(float(d["samples"][n][f]) for f in ("auroc", "tpr", "fpr"))) for n in DETECTORS}
    return RunDetection(cfg, last["asr"], last["clean_acc"], scores, last, samples, float(d["eps"]))


def model_auroc(clean: list[RunDetection], poisoned: list[RunDetection], name: str) -> float:
    """ROC-AUC of model-level score ``name`` for poisoned against clean models."""
    v = [r.scores[name] for r in clean + poisoned]
    return float(roc_auc(np.array(v), np.array([False] * len(clean) + [True] * len(poisoned))))


def model_test(clean: list[RunDetection], poisoned: list[RunDetection], name: str) -> stats.AurocTest:
    """:func:`model_auroc` with its sample sizes, exact permutation p and bootstrap interval."""
    return stats.auroc_test([r.scores[name] for r in clean], [r.scores[name] for r in poisoned])


def model_cells(test: stats.AurocTest) -> list[Any]:
    """Table cells of a model-level test: AUROC, its design and p, interval, and what it shows."""
    return [test.auroc, f"{test.n_pos} v {test.n_neg}", f"{test.p:.2g}", f"[{test.lo:.2f}, {test.hi:.2f}]",
            criteria.separation(test)]


MODEL_COLUMNS = ["AUROC", "poisoned v clean", "p", "95 % interval", "shows"]
MODEL_CAPTION = (r"$p$: the exact one-sided permutation p of the AUROC (the share of all ways to call that many of the models "
                 r"poisoned that rank at least as well; its floor is $1/\binom{n_p + n_c}{n_p}$, 0.05 for 3 v 3); the interval "
                 r"resamples models within each side. A score *separates* when $p \le 0.05$ and *does not separate* only when "
                 r"its interval lies below 0.75; otherwise the design shows neither.")


def sample_auroc(poisoned: list[RunDetection], name: str) -> np.ndarray:
    """Sample-level detector ``name``'s AUROC on each poisoned run ``(runs,)``."""
    return np.array([r.sample(name).auroc for r in poisoned])


# ---- Chapter 6's runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CNNDetection(ChapterResult):
    """Chapter 6's seed runs seen by the detectors: ``runs[attack]`` = ``(clean, poisoned)`` lists of
    :class:`RunDetection` over seeds."""

    sig = 3

    runs: dict[str, tuple[list[RunDetection], list[RunDetection]]]

    def model_auroc(self, attack: str, name: str) -> float:
        return model_auroc(*self.runs[attack], name)

    def model_test(self, attack: str, name: str) -> stats.AurocTest:
        return model_test(*self.runs[attack], name)

    def summary(self) -> Summary:
        out: Summary = {}
        means = []
        for a, (_, poisoned) in self.runs.items():
            k = a.replace("-", "_")
            for name in DETECTORS:
                means.append(float(sample_auroc(poisoned, name).mean()))
                out[f"ch8_cnn_auroc_{glue_key(name)}_{k}"] = means[-1]
            out[f"ch8_cnn_asr_{k}"] = float(np.mean([r.asr for r in poisoned]))
            for name in MODEL_SCORES:
                t = self.model_test(a, name)
                out[f"ch8_cnn_model_auroc_{name}_{k}"] = t.auroc
                out[f"ch8_cnn_model_p_{name}_{k}"] = t.p
                out[f"ch8_cnn_model_shows_{name}_{k}"] = criteria.separation(t)
            out[f"ch8_cnn_n_clean_{k}"], out[f"ch8_cnn_n_poisoned_{k}"] = len(self.runs[a][0]), len(self.runs[a][1])
        out["ch8_cnn_n_cells_found"] = sum(m >= criteria.AUROC_FOUND for m in means)
        out["ch8_cnn_n_cells"] = len(means)
        out["ch8_cnn_n_models"] = sum(len(p) for _, p in self.runs.values())
        return out

    def table(self) -> Table:
        rows = []
        for a, (_, poisoned) in self.runs.items():
            for name in DETECTORS:
                au = sample_auroc(poisoned, name)
                tp, fp = (np.array([getattr(r.sample(name), f) for r in poisoned]) for f in ("tpr", "fpr"))
                rows.append([a, name, f"{au.mean():.3f} ± {au.std():.3f}", float(tp.mean()), float(fp.mean()), len(poisoned)])
        return Table("tbl-ch8-cnn",
                     r"Sample-level detectors on Chapter 6's poisoned CNNs: ROC-AUC of each detector's scores within the target "
                     r"class (mean ± sd over seeds) and the TPR and FPR of its removals, on the penultimate features of each "
                     r"model's own poisoned training set, with the known $\varepsilon$. " + RUN,
                     ["attack", "detector", "AUROC", "TPR", "FPR", "models"], rows)

    def model_table(self) -> Table:
        rows = [[a, text, *model_cells(self.model_test(a, name))]
                for a in self.runs for name, text in MODEL_SCORES.items()]
        return Table("tbl-ch8-cnn-models",
                     r"Model-level detection on Chapter 6's CNNs: ROC-AUC of each final-model score for poisoned against clean "
                     r"models (the clean models are the $\theta = 0$ runs of the same seeds, measured with the same trigger; "
                     r"every attack's clean models are the same trainings). " + MODEL_CAPTION + " " + RUN,
                     ["attack", "score", *MODEL_COLUMNS], rows)

    def tables(self) -> tuple[Table, ...]:
        """The detection table, then the model-level one (the order the chapter shows them)."""
        return (self.table(), self.model_table())


def _split(runs: list[RunDetection]) -> tuple[list[RunDetection], list[RunDetection]]:
    return [r for r in runs if r.config.theta == 0], [r for r in runs if r.config.theta > 0]


def cnn_detection(profile: str, results_dir: str | None = None) -> CNNDetection:
    """:class:`CNNDetection` from Chapter 6's seed runs of ``profile`` (cached with their final weights, or trained)."""

    configs = {r.config.key(): r.config for r in ch06_runs(ch06_grid(profile), CH06_SEED_GROUPS)}
    by_attack: dict[str, list[RunDetection]] = {}
    for cfg in configs.values():
        by_attack.setdefault(cfg.attack, []).append(detect_run(cfg, results_dir))
    return CNNDetection({a: _split(v) for a, v in by_attack.items()})


# ---- across the trigger amplitude -------------------------------------------------------------------------


@dataclass(frozen=True)
class CNNBoundary(ChapterResult):
    """The deterministic cross at amplitude ``a`` ``(A,)`` (a poison lies ``trigger_norm = 3a`` from its source):
    ``runs[i]`` = ``(clean, poisoned)`` over seeds at ``a[i]``; ``nearest_clean``: the median distance from a clean
    training image to its nearest other training image (the scale the trigger's distance is compared with)."""

    sig = 3

    a: np.ndarray
    runs: tuple[tuple[list[RunDetection], list[RunDetection]], ...]
    trigger_norm: np.ndarray
    nearest_clean: float

    def asr(self) -> np.ndarray:
        """Final ASR of the poisoned runs ``(A, seeds)``."""
        return np.array([[r.asr for r in p] for _, p in self.runs])

    def clean_asr(self) -> np.ndarray:
        """How often the trigger alone moves a clean model to the target ``(A, seeds)``."""
        return np.array([[r.asr for r in c] for c, _ in self.runs])

    def auroc(self, name: str) -> np.ndarray:
        """Sample-level detector ``name``'s AUROC ``(A, seeds)``."""
        return np.array([sample_auroc(p, name) for _, p in self.runs])

    def model_auroc(self, name: str) -> np.ndarray:
        """Model-level score ``name``'s AUROC over seeds ``(A,)``."""
        return np.array([model_auroc(c, p, name) for c, p in self.runs])

    def model_tests(self, name: str) -> list[stats.AurocTest]:
        """:func:`model_test` of score ``name`` at each amplitude."""
        return [model_test(c, p, name) for c, p in self.runs]

    def works(self) -> np.ndarray:
        """Amplitudes at which the attack works (mean ASR ≥ :data:`~poisoncurv.core.criteria.ASR_SUCCESS`), bool ``(A,)``."""
        return self.asr().mean(1) >= criteria.ASR_SUCCESS

    def summary(self) -> Summary:
        works = self.works()
        i_min = int(np.argmax(works)) if works.any() else len(self.a) - 1
        out: Summary = {
            "ch8_amp_min": float(self.a[0]), "ch8_amp_max": float(self.a[-1]),
            "ch8_amp_asr_min": float(self.asr()[0].mean()), "ch8_amp_asr_max": float(self.asr()[-1].mean()),
            "ch8_amp_clean_asr_max": float(self.clean_asr().mean(1).max()),
            "ch8_amp_works": int(works.any()), "ch8_amp_succ": float(self.a[i_min]),
            "ch8_amp_asr_succ": float(self.asr()[i_min].mean()),
            "ch8_amp_norm_succ": float(self.trigger_norm[i_min]), "ch8_amp_nearest_clean": self.nearest_clean,
            "ch8_amp_norm_ratio_succ": float(self.trigger_norm[i_min] / self.nearest_clean),
            "ch8_amp_seeds": len(self.runs[0][1]),
        }
        found = 0
        for name in DETECTORS:
            au = self.auroc(name).mean(1)
            out[f"ch8_amp_auroc_{glue_key(name)}_succ"] = float(au[i_min])
            out[f"ch8_amp_auroc_{glue_key(name)}_min"] = float(au[0])
            found += au[i_min] >= criteria.AUROC_FOUND
            # detector failing while the attack works: the largest amplitude with ASR ≥ ASR_SUCCESS and AUROC < AUROC_FOUND
            blind = works & (au < criteria.AUROC_FOUND)
            out[f"ch8_amp_blind_{glue_key(name)}"] = float(self.a[blind].max()) if blind.any() else 0.0
        out["ch8_amp_n_found_succ"] = int(found)
        for name in MODEL_SCORES:
            tests = self.model_tests(name)
            m, p = np.array([t.auroc for t in tests]), np.array([t.p for t in tests])
            out[f"ch8_amp_model_{name}_succ"] = float(m[i_min])
            out[f"ch8_amp_model_p_{name}_succ"] = float(p[i_min])
            if works.any():
                out[f"ch8_amp_model_{name}_min_works"] = float(m[works].min())
                out[f"ch8_amp_model_{name}_max_works"] = float(m[works].max())
                out[f"ch8_amp_model_p_{name}_max_works"] = float(p[works].max())
                out[f"ch8_amp_model_n_separates_{name}"] = sum(criteria.separation(t) == "separates" for t, w in zip(tests, works) if w)
        out["ch8_amp_n_works"] = int(works.sum())
        out["ch8_amp_n_clean"], out["ch8_amp_n_poisoned"] = len(self.runs[0][0]), len(self.runs[0][1])
        # the clean models' accuracy across seeds (θ = 0: the same training at every amplitude)
        out["ch8_amp_clean_acc_sd"] = float(np.std([r.clean_acc for r in self.runs[0][0]]))
        return out

    def table(self) -> Table:
        rows = []
        for i, a in enumerate(self.a):
            rows.append([float(a), float(self.trigger_norm[i]), f"{self.asr()[i].mean():.3f} ± {self.asr()[i].std():.3f}",
                         float(self.clean_asr()[i].mean()),
                         *[float(self.auroc(n)[i].mean()) for n in DETECTORS],
                         *[self.model_tests(n)[i].text() for n in ("trig_curv_u", "clean_outlier", "spectral_gap")]])
        return Table("tbl-ch8-amplitude",
                     r"The deterministic cross on the MNIST CNN from far to near its source: amplitude $a$, the poison's distance "
                     r"$3a$ from its source, the ASR of the poisoned models ($\theta = 1\,\%$, mean ± sd over seeds), the trigger's "
                     r"ASR on the clean models, each sample-level detector's ROC-AUC within the target class (mean over seeds), "
                     r"and three model-level AUROCs over seeds (poisoned against clean models, with the exact permutation $p$; one set of "
                     r"clean trainings serves every amplitude). " + RUN,
                     ["a", "distance", "ASR", "ASR (clean model)", *DETECTORS, "uᵀHu (known trigger)", "λ₁/λ₂ (trigger-free)",
                      "σ₁/σ₂ (trigger-free)"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def nearest_clean_distance(x: torch.Tensor, n: int = 1000) -> float:
    """Median over the first ``n`` images of ``x`` ``(N, ...)`` of the distance to the nearest other image of ``x``."""
    flat = x.flatten(1).double()
    d = torch.cdist(flat[:n], flat)
    d[torch.arange(min(n, len(flat))), torch.arange(min(n, len(flat)))] = math.inf
    return float(d.min(1).values.median())


def cnn_boundary(profile: str, results_dir: str | None = None) -> CNNBoundary:
    """:class:`CNNBoundary` from the ``amplitude`` group of ``grids/ch08.yaml``."""
    from poisoncurv.lab import runner

    runs = grid(profile).group("amplitude")
    a = np.array(sorted({r.config.amplitude for r in runs}))
    det = {r.config.key(): detect_run(r.config, results_dir) for r in runs}
    per_a = tuple(_split([det[r.config.key()] for r in runs if r.config.amplitude == ai]) for ai in a)
    lab = chapter_lab_dir(results_dir)
    norms = np.array([runner.get(p[0].config, lab, data=mnist)["poison"]["trigger_norm"] for _, p in per_a])
    first = runs[0].config
    data = mnist().subset(first.n_train, first.n_test, first.seed)
    return CNNBoundary(a, per_a, norms, nearest_clean_distance(to_float(data.x_train)))


# ---- defences on one frontier -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DefenceCell:
    """One defence setting over seeds (a cell of :class:`DefenceResult`): ``points[i]`` is judged against
    ``undefended[i]``, the model of its seed trained without any defence."""

    family: str
    setting: str
    points: tuple[SafetyPoint, ...]
    undefended: tuple[SafetyPoint, ...]

    @property
    def n(self) -> int:
        return len(self.points)

    def _mean(self, field: str) -> float:
        return float(np.mean([getattr(p, field) for p in self.points]))

    clean_acc = property(lambda self: self._mean("clean_acc"), doc="Mean clean accuracy over the seeds.")
    asr = property(lambda self: self._mean("asr"), doc="Mean ASR over the seeds.")
    tpr = property(lambda self: self._mean("tpr"), doc="Mean share of the poisons a filter removed (NaN: no filter).")
    fpr = property(lambda self: self._mean("fpr"), doc="Mean share of the clean examples a filter removed.")

    def spread(self, field: str) -> tuple[float, float]:
        """``(mean − min, max − mean)`` of ``field`` (``"clean_acc"`` or ``"asr"``) over the seeds: error bars."""
        v = [getattr(p, field) for p in self.points]
        return float(np.mean(v) - min(v)), float(max(v) - np.mean(v))

    def cost(self) -> tuple[float, float, float]:
        """Clean accuracy lost against the same seed's undefended model: the mean over seeds, and the envelope of the
        seeds' 95 % intervals (the lowest lower end, the highest upper end; :meth:`~poisoncurv.chapters.frontier.SafetyPoint.cost`)."""
        c = np.array([p.cost(u) for p, u in zip(self.points, self.undefended)])
        return float(c[:, 0].mean()), float(c[:, 1].min()), float(c[:, 2].max())

    def asr_interval(self) -> tuple[float, float]:
        """The envelope of the seeds' Wilson intervals of the ASR (:meth:`~poisoncurv.chapters.frontier.SafetyPoint.asr_interval`)."""
        a = np.array([p.asr_interval() for p in self.points])
        return float(a[:, 0].min()), float(a[:, 1].max())

    def calls(self) -> list[str]:
        """Each seed's :func:`~poisoncurv.core.criteria.frontier_call`, in seed order."""
        return [p.call(u) for p, u in zip(self.points, self.undefended)]

    @property
    def call(self) -> str:
        """:func:`~poisoncurv.core.criteria.seeds_call` of :meth:`calls`."""
        return criteria.seeds_call(self.calls())


@dataclass(frozen=True)
class DefenceResult(ChapterResult):
    """Every defence against one attack, judged per cell over seeds (the points of the chapter's frontier figure):
    ``undefended`` holds the model of each seed without any defence, ``points`` every defended model of every seed;
    its glue keys start ``ch8_<tag>_``."""

    sig = 3

    attack: str
    undefended: tuple[SafetyPoint, ...]
    points: tuple[SafetyPoint, ...]
    tag: str = "fr"

    @property
    def seeds(self) -> list[int]:
        return [u.seed for u in self.undefended]

    def families(self) -> list[str]:
        return list(dict.fromkeys(p.family for p in self.points))

    def cells(self, family: str | None = None) -> list[DefenceCell]:
        """The cells (one per family and setting, in order of appearance), of ``family`` only if given."""
        by_seed = {u.seed: u for u in self.undefended}
        groups: dict[tuple[str, str], list[SafetyPoint]] = {}
        for p in self.points:
            if family is None or p.family == family:
                groups.setdefault((p.family, _setting(p)), []).append(p)
        cells = []
        for (fam, setting), pts in groups.items():
            pts = sorted(pts, key=lambda p: p.seed)
            cells.append(DefenceCell(fam, setting, tuple(pts), tuple(by_seed[p.seed] for p in pts)))
        return cells

    @property
    def clean_acc(self) -> float:
        return float(np.mean([u.clean_acc for u in self.undefended]))

    @property
    def asr(self) -> float:
        return float(np.mean([u.asr for u in self.undefended]))

    def best_free(self, family: str) -> DefenceCell | None:
        """The family's lowest-ASR cell (mean over seeds) whose mean cost is at most
        :data:`~poisoncurv.core.criteria.ACC_BUDGET`, among cells with at least
        :data:`~poisoncurv.core.criteria.MIN_SEEDS` seeds (``None``: none)."""
        ok = [c for c in self.cells(family) if c.n >= criteria.MIN_SEEDS and c.cost()[0] <= criteria.ACC_BUDGET]
        return min(ok, key=lambda c: c.asr) if ok else None

    def cheapest_safe(self, family: str) -> DefenceCell | None:
        """The family's highest-accuracy cell with mean ASR ≤ :data:`~poisoncurv.core.criteria.ASR_DEFENDED`, among
        cells with at least :data:`~poisoncurv.core.criteria.MIN_SEEDS` seeds (``None``: the family never gets there)."""
        ok = [c for c in self.cells(family) if c.n >= criteria.MIN_SEEDS and c.asr <= criteria.ASR_DEFENDED]
        return max(ok, key=lambda c: c.clean_acc) if ok else None

    def summary(self) -> Summary:
        """The undefended models' mean accuracy and ASR; per family the setting, mean ASR, mean cost and call of
        :meth:`best_free` and the setting and accuracy of :meth:`cheapest_safe`; how many families have a free cell whose
        mean ASR is at most 0.1 (point estimates) and how many a cell whose call is ``free and safe`` (and per family
        the settings of those cells, or ``none``); per filter its call, highest ASR, lowest TPR and mean cost over
        seeds; the filters' extreme TPR, FPR and ASR over all seeds; the seed count."""
        tag = self.tag
        out: Summary = {f"ch8_{tag}_acc_none": self.clean_acc, f"ch8_{tag}_asr_none": self.asr,
                                             f"ch8_{tag}_n_seeds": len(self.undefended)}
        n_free_safe = n_solid = 0
        for fam in self.families():
            free, safe = self.best_free(fam), self.cheapest_safe(fam)
            if free:     # (absent keys, not NaN: a family with no such cell has nothing to glue)
                out[f"ch8_{tag}_free_asr_{glue_key(fam)}"] = free.asr
                out[f"ch8_{tag}_free_call_{glue_key(fam)}"] = free.call
                out[f"ch8_{tag}_free_setting_{glue_key(fam)}"] = free.setting
                out[f"ch8_{tag}_free_cost_{glue_key(fam)}"] = free.cost()[0]
            if safe:
                out[f"ch8_{tag}_safe_acc_{glue_key(fam)}"] = safe.clean_acc
                out[f"ch8_{tag}_safe_setting_{glue_key(fam)}"] = safe.setting
            solid = [c.setting for c in self.cells(fam) if c.call == criteria.FREE_SAFE]
            out[f"ch8_{tag}_solid_settings_{glue_key(fam)}"] = ", ".join(solid) or "none"
            n_free_safe += bool(free and free.asr <= criteria.ASR_DEFENDED)
            n_solid += bool(solid)
        out[f"ch8_{tag}_n_free_safe"] = n_free_safe
        out[f"ch8_{tag}_n_free_safe_solid"] = n_solid
        for c in self.cells("filter-then-retrain"):
            k = glue_key(c.setting)
            out |= {f"ch8_{tag}_filter_call_{k}": c.call, f"ch8_{tag}_filter_asr_max_{k}": max(p.asr for p in c.points),
                    f"ch8_{tag}_filter_tpr_min_{k}": min(p.tpr for p in c.points), f"ch8_{tag}_filter_cost_{k}": c.cost()[0]}
        filters = [p for p in self.points if not math.isnan(p.tpr)]
        if filters:
            out[f"ch8_{tag}_filter_min_tpr"] = min(p.tpr for p in filters)
            out[f"ch8_{tag}_filter_max_asr"] = max(p.asr for p in filters)
            out[f"ch8_{tag}_filter_min_fpr"] = min(p.fpr for p in filters)
            out[f"ch8_{tag}_filter_max_fpr"] = max(p.fpr for p in filters)
        out[f"ch8_{tag}_n_families"] = len(self.families())
        return out

    def table(self) -> Table:
        """One row per cell (the undefended models first): defence, setting, the call over seeds, seeds, mean clean
        accuracy, mean cost and ASR each with the envelope of the seeds' intervals, and the filters' TPR and FPR (means)."""
        none = DefenceCell("none", "undefended", self.undefended, self.undefended)
        a_lo, a_hi = none.asr_interval()
        rows = [["none", "undefended", "–", none.n, f"{none.clean_acc:.3f}", "–", f"{none.asr:.3f} [{a_lo:.3f}, {a_hi:.3f}]",
                 "–", "–"]]
        for c in self.cells():
            m, lo, hi = c.cost()
            cost = f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            a_lo, a_hi = c.asr_interval()
            call = c.call
            if call == criteria.SEEDS_DISAGREE:
                counts = {k: c.calls().count(k) for k in dict.fromkeys(c.calls())}
                call += " (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"
            rows.append([c.family, c.setting, call, c.n, f"{c.clean_acc:.3f}", cost, f"{c.asr:.3f} [{a_lo:.3f}, {a_hi:.3f}]",
                         *(("–", "–") if math.isnan(c.tpr) else (f"{c.tpr:.3f}", f"{c.fpr:.3f}"))])
        return Table("tbl-ch8-frontier",
                     r"Every setting of {numref}`fig-ch8-frontier`: the defence, its setting, the seeds, the final clean "
                     r"accuracy and ASR, and for the filters the share of poisons (TPR) and of clean examples (FPR) removed."
                     " Means over seeds. Cost: clean accuracy lost against the undefended model of the "
                     "same seed, in points. In brackets, from the lowest lower end to the highest upper end of the seeds' 95 % "
                     "intervals over their test images (Newcombe's for the cost, Wilson's for the ASR). Call: a seed's model is "
                     "free and safe when its cost's interval stays within 1 point and its ASR's at or below 0.1, not free / "
                     "not safe when one interval lies wholly outside, otherwise within noise; a setting's call is the one "
                     "every seed makes (at least three seeds). " + RUN,
                     ["defence", "setting", "call", "seeds", "clean accuracy", "cost (points)", "ASR", "TPR", "FPR"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def _setting(p: SafetyPoint) -> str:
    """``p``'s setting, in words in this chapter (:func:`_point`)."""
    assert isinstance(p.setting, str)
    return p.setting


def _point(family: str, setting: str, res: dict[str, Any], row: dict[str, Any] | None = None) -> SafetyPoint:
    """The point of run ``res`` at its last evaluation (or at ``row``, one of its evaluations)."""
    last = row or res["epochs"][-1]
    f = res.get("filter") or {}
    return SafetyPoint(family, setting, last["clean_acc"], last["asr"], f.get("tpr", math.nan), f.get("fpr", math.nan),
                         _n_test(res), res["poison"]["n_trigger_test"], int(res["config"]["seed"]))


def _n_test(res: dict[str, Any]) -> int:
    n = res["config"]["n_test"]
    return int(n) if n else 10_000


def filter_points(runs: list, results_dir: str | None) -> list[SafetyPoint]:
    """One point per filter run of a grid group (detector names as in :data:`DETECTORS`)."""
    from poisoncurv.lab import runner

    lab = chapter_lab_dir(results_dir)
    return [_point("filter-then-retrain", DETECTOR_OF[r.config.filter], runner.get(r.config, lab, data=mnist))
            for r in runs]


def frontier(profile: str, results_dir: str | None = None) -> DefenceResult:
    """The stochastic cross (θ = 1 %) of Chapter 6's defence groups over the seeds of ``frontier_base``: κ with and
    without augmentation (``defence`` and ``defence_seeds``), weight decay, early stopping (every epoch of each
    undefended run) and this chapter's filter-then-retrain runs. Runs of seeds outside ``frontier_base`` are left out."""
    from poisoncurv.lab import runner

    lab = chapter_lab_dir(results_dir)
    g6, g8 = ch06_grid(profile), grid(profile)
    get = lambda cfg: runner.get(cfg, lab, data=mnist)  # noqa: E731
    bases = [r.config for r in g8.group("frontier_base")]
    seeds = {c.seed for c in bases}
    undefended, pts = [], []
    for base in bases:
        none = get(base)
        undefended.append(_point("none", "undefended", none))
        pts += [_point("early stopping", f"epoch {row['epoch']:g}", none, row) for row in none["epochs"][1:-1]]
    defences = {r.config.key(): r.config for r in ch06_runs(g6, ("defence", "defence_seeds")) if r.config.attack == bases[0].attack}
    for c in sorted(defences.values(), key=lambda c: (c.augment, c.kappa, c.seed)):
        if (c.kappa == 0 and not c.augment) or c.seed not in seeds:
            continue
        fam = ("augmentation" if c.kappa == 0 else "penalty + augmentation") if c.augment else "input-gradient penalty"
        pts.append(_point(fam, f"κ_paper = {powers_text(c.kappa_paper)}" if c.kappa else "shifts ≤ 2 px", get(c)))
    pts += [_point("weight decay", f"wd = {r.config.weight_decay:g}", get(r.config)) for r in ch06_runs(g6, ("weight_decay",))
            if r.config.seed in seeds]
    pts += [p for p in filter_points(g8.group("filter"), results_dir) if p.seed in seeds]
    return DefenceResult(bases[0].attack, tuple(undefended), tuple(pts))


def lab_results(profile: str, results_dir: str | None = None) -> list[dict[str, Any]]:
    """The results of every lab run this chapter reads, once each: the runs of ``grids/ch08.yaml`` and Chapter 6's
    defence groups behind the frontier."""
    from poisoncurv.lab import runner

    lab = chapter_lab_dir(results_dir)
    configs = [r.config for r in grid(profile).runs] + [r.config for r in ch06_runs(ch06_grid(profile),
                                                                                  ("defence", "defence_seeds", "weight_decay"))]
    return list({c.key(): runner.get(c, lab, data=mnist) for c in configs}.values())


# ---- the adaptive attacker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adaptive(ChapterResult):
    """The low-curvature trigger (``lowcurv``) against the cross of the same norm and amplitude (``a = 1``):
    ``runs[label]`` = ``(clean, poisoned)`` over seeds, one label per attack and poison fraction (``"cross θ=1%"``,
    ``"lowcurv θ=5%"``, ...); ``surrogate_curv[attack]`` = ``tᵀ H̄ t`` on the attacker's surrogate (seed 0);
    ``defence``: the input-gradient penalty against ``lowcurv`` at ``defended`` (with the undefended run first);
    ``filters``: each detector's filter-then-retrain against it there; ``pattern``: the trigger ``(28, 28)`` of seed 0."""

    sig = 3

    runs: dict[str, tuple[list[RunDetection], list[RunDetection]]]
    surrogate_curv: dict[str, float]
    defended: str
    defence: tuple[SafetyPoint, ...]
    filters: tuple[SafetyPoint, ...]
    pattern: np.ndarray

    def curv_ratio(self, label: str, where: str = "trig") -> np.ndarray:
        """``uᵀHu`` of each poisoned model over the clean model of the same seed, at ``where`` inputs ``(seeds,)``."""
        clean, poisoned = self.runs[label]
        ref = {r.config.seed: r.final for r in clean}
        return np.array([r.final[f"{where}_curv_u"] / ref[r.config.seed][f"{where}_curv_u"] for r in poisoned])

    def asr(self, label: str) -> np.ndarray:
        return np.array([r.asr for r in self.runs[label][1]])

    def summary(self) -> Summary:
        out: Summary = {}
        for label, (clean, poisoned) in self.runs.items():
            k = glue_key(label.replace("θ=", "theta "))
            out[f"ch8_adv_asr_{k}"] = float(self.asr(label).mean())
            out[f"ch8_adv_asr_min_{k}"] = float(self.asr(label).min())
            out[f"ch8_adv_acc_{k}"] = float(np.mean([r.clean_acc for r in poisoned]))
            out[f"ch8_adv_ratio_trig_{k}"] = float(np.median(self.curv_ratio(label, "trig")))
            out[f"ch8_adv_ratio_clean_{k}"] = float(np.median(self.curv_ratio(label, "clean")))
            for where in ("trig", "clean"):     # absolute uᵀHu (the ratios divide by clean models' values near zero)
                out[f"ch8_adv_curv_{where}_{k}"] = float(np.median([r.final[f"{where}_curv_u"] for r in poisoned]))
                out[f"ch8_adv_curv_{where}_clean_model_{k}"] = float(np.median([r.final[f"{where}_curv_u"] for r in clean]))
            out[f"ch8_adv_clean_overlap_max_{k}"] = float(max(r.final["clean_overlap"] for r in poisoned))
            for name in MODEL_SCORES:
                t = model_test(clean, poisoned, name)
                out[f"ch8_adv_model_{name}_{k}"] = t.auroc
                out[f"ch8_adv_model_p_{name}_{k}"] = t.p
            out[f"ch8_adv_n_seeds_{k}"] = len(poisoned)
            for name in DETECTORS:
                out[f"ch8_adv_auroc_{glue_key(name)}_{k}"] = float(sample_auroc(poisoned, name).mean())
        for attack, v in self.surrogate_curv.items():
            out[f"ch8_adv_surrogate_{glue_key(attack)}"] = v
        out["ch8_adv_surrogate_ratio"] = self.surrogate_curv["cross-deterministic"] / self.surrogate_curv["lowcurv"]
        out["ch8_adv_defended"] = self.defended
        safe = [p for p in self.defence if p.asr <= criteria.ASR_DEFENDED]
        if safe:
            out["ch8_adv_kappa_safe_acc"] = max(p.clean_acc for p in safe)
        out["ch8_adv_kappa_min_asr"] = min(p.asr for p in self.defence)
        for p in self.defence[1:]:
            out[f"ch8_adv_kappa_{_setting(p).split('= ')[1].replace('+', '')}_asr"] = p.asr
            out[f"ch8_adv_kappa_{_setting(p).split('= ')[1].replace('+', '')}_acc"] = p.clean_acc
        out["ch8_adv_acc_none"], out["ch8_adv_asr_none"] = self.defence[0].clean_acc, self.defence[0].asr
        for p in self.filters:
            for field in ("asr", "tpr", "fpr", "clean_acc"):
                out[f"ch8_adv_filter_{field}_{glue_key(_setting(p))}"] = getattr(p, field)
        out["ch8_adv_filter_max_asr"] = max(p.asr for p in self.filters)
        return out

    def table(self) -> Table:
        rows = []
        for label, (clean, poisoned) in self.runs.items():
            rows.append([label, f"{self.asr(label).mean():.3f} (min {self.asr(label).min():.3f})",
                         float(np.median(self.curv_ratio(label, "trig"))), float(np.median(self.curv_ratio(label, "clean"))),
                         *[model_test(clean, poisoned, n).text() for n in ("trig_curv_u", "trig_overlap", "clean_outlier")],
                         *[float(sample_auroc(poisoned, n).mean()) for n in DETECTORS]])
        return Table("tbl-ch8-adaptive",
                     r"The adaptive attacker's low-curvature trigger against the cross (both 9 pixels at amplitude $a = 1$, so "
                     r"the same distance 3 from the source), by poison fraction: the ASR (mean over seeds, and the lowest), the "
                     r"median over seeds of $u^\top H u$ of the poisoned model over the clean model's at triggered and at clean "
                     r"inputs, three model-level AUROCs over seeds (poisoned against clean models, with the exact permutation $p$) and "
                     r"each sample-level detector's AUROC. " + RUN,
                     ["trigger", "ASR", "uᵀHu ratio (triggered)", "uᵀHu ratio (clean)", "uᵀHu AUROC", "overlap AUROC",
                      "λ₁/λ₂ AUROC", *DETECTORS], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def _label(cfg: LabConfig) -> str:
    return f"{'cross' if cfg.attack == 'cross-deterministic' else cfg.attack} θ={100 * cfg.theta:g}%"


def adaptive(profile: str, results_dir: str | None = None) -> Adaptive:
    """:class:`Adaptive` from the ``adaptive``, ``adaptive_defence`` and ``adaptive_filter`` groups of ``grids/ch08.yaml``
    (the cross is the ``amplitude`` group's ``a = 1``)."""
    from poisoncurv.lab import runner

    g = grid(profile)
    lab = chapter_lab_dir(results_dir)
    runs: dict[str, tuple[list[RunDetection], list[RunDetection]]] = {}
    for configs in ([r.config for r in g.group("amplitude") if r.config.amplitude == 1.0],
                    [r.config for r in g.group("adaptive")]):
        det = [detect_run(c, results_dir) for c in configs]
        clean = [d for d in det if d.config.theta == 0]
        for theta in sorted({d.config.theta for d in det} - {0.0}):
            poisoned = [d for d in det if d.config.theta == theta]
            runs[_label(poisoned[0].config)] = (clean, poisoned)
    first = g.group("adaptive")[0].config
    s = derived.get(SURROGATE, first.key(), SURROGATE_VERSION, lambda: surrogate_values(first),
                    chapter_derived_dir(results_dir), record=RunRecord(first.profile, "cpu", first.seed, data_source()))
    surrogate = {a: float(s["curv"][a]) for a in ("cross-deterministic", "lowcurv")}
    defended = g.group("adaptive_defence")[0].config
    undefended = replace(defended, kappa=0.0)
    defence = tuple([_point("none", "undefended", runner.get(undefended, lab, data=mnist))]
                    + [_point("input-gradient penalty", f"κ_paper = {r.config.kappa_paper:g}",
                              runner.get(r.config, lab, data=mnist)) for r in g.group("adaptive_defence")])
    return Adaptive(runs, surrogate, _label(defended), defence, tuple(filter_points(g.group("adaptive_filter"), results_dir)),
                    pattern_from_pixels(s["pixels"]))


def surrogate_values(cfg: LabConfig) -> dict[str, Any]:
    """The adaptive attacker's view for run ``cfg`` (``lowcurv``), computed from scratch as
    :func:`~poisoncurv.lab.adaptive.lowcurv_pattern` builds it: its surrogate's mean input Hessian ``H̄``, the trigger's
    ``pixels`` (flat indices of the ones of the 0/1 pattern, ascending) and ``curv[attack]`` = ``tᵀ H̄ t`` for the
    cross and the low-curvature trigger ``t``."""
    from poisoncurv.lab.adaptive import lowcurv_pattern, surrogate_hessian
    from poisoncurv.lab.attacks import cross_pattern

    data = mnist().subset(cfg.n_train, cfg.n_test, cfg.seed)
    x, y = to_float(data.x_train), data.y_train
    H = surrogate_hessian(x, y, cfg.seed)          # the attacker's surrogate, as lowcurv_pattern builds it
    t = lowcurv_pattern(x, y, cfg.seed, H).flatten().double()
    c = cross_pattern((1, 28, 28)).flatten().double()
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("the lowcurv pattern is not 0/1: its pixels do not describe it")
    return {"pixels": torch.nonzero(t).flatten().tolist(),
            "curv": {"cross-deterministic": float(c @ H @ c), "lowcurv": float(t @ H @ t)}}


def pattern_from_pixels(pixels: list[int], shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The 0/1 trigger ``shape`` (float64) with ones at the flat indices ``pixels``."""
    t = np.zeros(math.prod(shape))
    t[np.asarray(pixels, dtype=np.int64)] = 1.0
    return t.reshape(shape)
