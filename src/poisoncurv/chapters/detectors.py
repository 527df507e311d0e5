"""Chapter 8 drivers: sample-level detectors on known-answer data, and all detectors across the near-clone boundary.

The boundary sweep reuses Chapter 2's realistic trigger geometry (:func:`.near_clones.trigger_geometry`):
Gaussian clean data, Gaussian-kernel KRR, and ``m`` dirty-label poisons ``x_s + a ℓ t`` stamped on clean
training inputs of the non-target classes (``t``: unit vector on ``patch`` coordinates the clean data leave at
zero). The amplitude ``a`` moves the poisons from near clones of their clean sources (``a → 0``) to far from
the data. The detectors see the exact kernel features of the poisoned training set (uncentred kernel PCA of
its Gram matrix, :func:`kernel_features`). Each driver returns a frozen dataclass with ``summary()`` (glued
numbers) and, where the chapter shows one, ``table()``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from poisoncurv.core.contract import ChapterResult, Summary, glue_key
from poisoncurv.core.criteria import AUROC_FOUND
from poisoncurv.core.digests import json_key
from poisoncurv.core.dtypes import THEORY_DTYPE as DTYPE
from poisoncurv.core.paths import chapter_derived_dir
from poisoncurv.core.profiles import by_profile
from poisoncurv.core.provenance import RunRecord
from poisoncurv.core.tables import Table
from poisoncurv.detect.metrics import roc_auc
from poisoncurv.detect.spectre import que_scores
from poisoncurv.detect.suite import DETECTORS, SPECTRE_ALPHA, score_detectors
from poisoncurv.detect.synthetic import gaussian_mixture
from poisoncurv.krr.kernels import Kernel, fit_krr, make_kernel
from poisoncurv.krr.synthetic import clean_data, target_vector
from poisoncurv.krr.visibility import bulk_edge, target_margin, top_gn_eigenvalue
from poisoncurv.lab import derived

TARGET = 1      # the attacker's target class, as in Chapter 2
RUN = "Run: {glue:text}`ch08_detectors_run`."
# The boundary sweep's points as a derived result (poisoncurv.lab.derived, keyed by sweep_key): bump the version
# whenever boundary_point, kernel_features or the detectors change what they compute, and rerun the chapter.
BOUNDARY = "ch08-kernel-boundary"
BOUNDARY_VERSION = 2   # 2: the file carries provenance


def settings(profile: str) -> dict[str, Any]:
    """Sizes of every sweep in the chapter for ``profile``."""
    return {
        "profile": profile,
        # known-answer mixtures (as tests/detect): two classes of N(0, I_p), eps of the second shifted
        "syn_p": 20, "syn_n_class": 300, "syn_eps": 0.1,
        "syn_separations": by_profile(profile, smoke=[0.0, 4.0, 8.0], cpu=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
                                      gpu=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0], full=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]),
        "syn_seeds": by_profile(profile, smoke=2, cpu=10, gpu=20, full=20),
        # the boundary: Chapter 2's trigger geometry
        "n_clean": by_profile(profile, smoke=150, cpu=400, gpu=1000, full=2000),
        "n_test": by_profile(profile, smoke=60, cpu=200, gpu=500, full=1000),
        "d": 10, "n_classes": 3, "patch": 3,
        "lengthscale": 3.0, "ridge": 3.0, "edge_quantile": 0.95, "success_margin": 0.5,
        "m": 30,
        "n_features": 64,
        "amplitudes": by_profile(profile, smoke=[0.1, 1.0, 1000.0], cpu=[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 1000.0],
                                 gpu=[0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 1000.0],
                                 full=[0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 1000.0]),
        "boundary_seeds": by_profile(profile, smoke=2, cpu=8, gpu=20, full=40),
    }


@dataclass(frozen=True)
class Setting(ChapterResult):
    """The sizes the chapter's text quotes, from the profile's settings ``cfg``."""

    cfg: dict[str, Any]

    def summary(self) -> Summary:
        cfg = self.cfg
        return {"ch8_syn_p": cfg["syn_p"], "ch8_syn_n_class": cfg["syn_n_class"], "ch8_syn_eps": cfg["syn_eps"],
                "ch8_syn_seeds": cfg["syn_seeds"], "ch8_n_clean": cfg["n_clean"], "ch8_n_test": cfg["n_test"],
                "ch8_m": cfg["m"], "ch8_ell": cfg["lengthscale"], "ch8_ridge": cfg["ridge"], "ch8_n_features": cfg["n_features"],
                "ch8_seeds": cfg["boundary_seeds"], "ch8_auroc_found": AUROC_FOUND}


# ---------------------------------------------------------------------------------------------------------
# known-answer mixtures


@dataclass(frozen=True)
class SyntheticCheck(ChapterResult):
    """AUROC (within the poisons' class) of each detector against the sub-cluster's ``separation``: ``auroc[name]``
    is ``(len(separation), seeds)``; ``oracle_que``: QUE scores whitened with the true clean law ``N(0, I)`` instead
    of SPECTRE's robust estimate; ``null_sd``: the AUROC's standard deviation when nothing separates the poisons."""

    sig = 3

    separation: np.ndarray
    auroc: dict[str, np.ndarray]
    oracle_que: np.ndarray
    null_sd: float

    def summary(self) -> Summary:
        null = self.separation == 0
        means = {k: v.mean(1) for k, v in self.auroc.items()}
        found = [self.separation[m >= AUROC_FOUND].min() if (m >= AUROC_FOUND).any() else math.inf for m in means.values()]
        dev = float(max(abs(m[null][0] - 0.5) for m in means.values()))
        mean_sd = self.null_sd / math.sqrt(self.auroc_seeds)
        return {"ch8_syn_null_max_dev": dev, "ch8_syn_null_max_z": dev / mean_sd,
                "ch8_syn_null_sd": self.null_sd, "ch8_syn_null_mean_sd": mean_sd,
                "ch8_syn_far_min_auroc": float(min(m[-1] for m in means.values())),
                "ch8_syn_far_separation": float(self.separation[-1]),
                "ch8_syn_found_max_separation": float(max(found)),
                "ch8_syn_mid_separation": float(self.separation[self.mid]),
                "ch8_syn_spectre_mid": float(means["SPECTRE"][self.mid]),
                "ch8_syn_oracle_mid": float(self.oracle_que.mean(1)[self.mid])}

    @property
    def mid(self) -> int:
        """Index of the smallest separation at which the oracle-whitened QUE reaches the found threshold."""
        return int(np.argmax(self.oracle_que.mean(1) >= AUROC_FOUND))

    @property
    def auroc_seeds(self) -> int:
        return next(iter(self.auroc.values())).shape[1]


def synthetic_check(cfg: dict[str, Any], seed: int) -> SyntheticCheck:
    """Every detector on :func:`~poisoncurv.detect.synthetic.gaussian_mixture` for each separation and seed."""
    seps, eps = np.array(cfg["syn_separations"], dtype=float), cfg["syn_eps"]
    auroc = {name: np.zeros((len(seps), cfg["syn_seeds"])) for name in DETECTORS}
    oracle = np.zeros((len(seps), cfg["syn_seeds"]))
    for i, sep in enumerate(seps):
        for j in range(cfg["syn_seeds"]):
            F, y, poison = gaussian_mixture(1000 * seed + j, float(sep), cfg["syn_p"], cfg["syn_n_class"], eps)
            for name, score in score_detectors(F, y, poison, eps, scored_class=int(y[poison][0])).items():
                auroc[name][i, j] = score.auroc
            inside = y == y[poison][0]
            oracle[i, j] = roc_auc(que_scores(F[inside], SPECTRE_ALPHA), poison[inside])
    n_pos = int(eps * cfg["syn_n_class"])
    n_neg = cfg["syn_n_class"] - n_pos
    return SyntheticCheck(seps, auroc, oracle, math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg)))


# ---------------------------------------------------------------------------------------------------------
# across the near-clone boundary


def kernel_features(kernel: Kernel, X: Tensor, n_features: int) -> np.ndarray:
    """Uncentred kernel PCA of ``X`` ``(n, d)``: ``Φ = V_p Λ_p^{1/2}`` ``(n, p)`` from the top ``p`` eigenpairs of
    the Gram matrix, so ``ΦΦᵀ`` is the best rank-``p`` approximation of ``K`` (``ΦΦᵀ = K`` when ``p = n``)."""
    if not 1 <= n_features <= X.shape[0]:
        raise ValueError(f"n_features must lie in [1, n] = [1, {X.shape[0]}], got {n_features}")
    evals, evecs = torch.linalg.eigh(kernel(X, X))
    top = evals.flip(0)[:n_features].clamp(min=0)
    return (evecs.flip(1)[:, :n_features] * top.sqrt()).numpy()


@dataclass(frozen=True)
class BoundarySweep(ChapterResult):
    """Attack, sample-level detectors and input curvature against the trigger amplitude ``a`` (in ℓ).

    Arrays are ``(len(a), seeds)``: ``success`` (fraction of triggered test inputs of the non-target classes with
    target margin ``≥ τ``), ``margin_shift`` (mean change of that margin from the clean model), ``auroc[name]``,
    ``tpr[name]``, ``fpr[name]`` per sample-level detector, ``visible`` (fraction of triggered inputs where the
    poisoned model's ``λ_max(JᵀJ)`` reaches ``Λ_clean``), ``curvature_auroc`` (that curvature separating
    triggered from clean test inputs) and ``nearest_clean`` (median distance of a poison to its nearest clean
    training input, in ℓ).
    """

    sig = 3

    a: np.ndarray
    success: np.ndarray
    margin_shift: np.ndarray
    auroc: dict[str, np.ndarray]
    tpr: dict[str, np.ndarray]
    fpr: dict[str, np.ndarray]
    visible: np.ndarray
    curvature_auroc: np.ndarray
    nearest_clean: np.ndarray
    eps: float

    @property
    def succeeds(self) -> np.ndarray:
        """Whether the attack succeeds on half of the triggered inputs (seed mean), per amplitude."""
        return self.success.mean(1) >= 0.5

    def summary(self) -> Summary:
        k = int(np.argmax(self.succeeds)) if self.succeeds.any() else len(self.a) - 1
        out: Summary = {"ch8_eps": self.eps, "ch8_a_min": float(self.a[0]), "ch8_a_far": float(self.a[-1]),
                                       "ch8_a_succ": float(self.a[k]), "ch8_succ_found": int(self.succeeds.any()),
                                       "ch8_nearest_clean_near": float(np.median(self.nearest_clean[0]))}
        for label, i in (("near", 0), ("at_succ", k), ("far", -1)):
            out[f"ch8_success_{label}"] = float(self.success[i].mean())
            out[f"ch8_visible_{label}"] = float(self.visible[i].mean())
            out[f"ch8_curv_auroc_{label}"] = float(self.curvature_auroc[i].mean())
        for name, v in self.auroc.items():
            key = glue_key(name)
            out[f"ch8_auroc_{key}_near"] = float(v[0].mean())
            out[f"ch8_auroc_{key}_at_succ"] = float(v[k].mean())
            out[f"ch8_auroc_{key}_far"] = float(v[-1].mean())
            out[f"ch8_tpr_{key}_at_succ"] = float(self.tpr[name][k].mean())
            out[f"ch8_fpr_{key}_at_succ"] = float(self.fpr[name][k].mean())
        means = np.array([v.mean(1) for v in self.auroc.values()])          # (detectors, len(a))
        out["ch8_best_auroc_at_succ"] = float(means[:, k].max())
        out["ch8_n_found_at_succ"] = int((means[:, k] >= AUROC_FOUND).sum())
        out["ch8_n_found_far"] = int((means[:, -1] >= AUROC_FOUND).sum())
        return out

    def table(self) -> Table:
        names = list(self.auroc)
        return Table("tbl-ch8-boundary",
                     f"Across the near-clone boundary (KRR, Gaussian kernel): per trigger amplitude $a$ (a poison's distance to its "
                     f"clean source, in $\\ell$), the attack's success rate and the mean change of the target margin at triggered "
                     f"inputs, each sample-level detector's ROC-AUC within the target class (kernel features; known "
                     f"$\\varepsilon = {self.eps:.3g}$), and the input-curvature criterion: the fraction of triggered inputs whose "
                     f"top Gauss–Newton eigenvalue reaches $\\Lambda_{{\\text{{clean}}}}$ and its ROC-AUC against clean inputs. "
                     f"Means over {self.success.shape[1]} seeds. " + RUN,
                     ["$a/\\ell$", "success", "margin shift", *[f"AUROC {n}" for n in names], "curvature visible",
                      "curvature AUROC"],
                     [[float(a), float(self.success[i].mean()), float(self.margin_shift[i].mean()),
                       *[float(self.auroc[n][i].mean()) for n in names], float(self.visible[i].mean()),
                       float(self.curvature_auroc[i].mean())] for i, a in enumerate(self.a)])

    def rates_table(self) -> Table:
        """TPR and FPR of each detector's removals near, at the attack's threshold and far."""
        k = int(np.argmax(self.succeeds)) if self.succeeds.any() else len(self.a) - 1
        cols = {"near": 0, "threshold": k, "far": len(self.a) - 1}
        return Table("tbl-ch8-rates",
                     f"True- and false-positive rates of each sample-level detector's removals over the whole poisoned training "
                     f"set, at the nearest clones ($a/\\ell = {self.a[0]:g}$), at the attack's threshold ($a/\\ell = {self.a[k]:g}$) "
                     f"and far from the data ($a/\\ell = {self.a[-1]:g}$); means over {self.success.shape[1]} seeds. " + RUN,
                     ["detector", *[f"{rate} {where}" for where in cols for rate in ("TPR", "FPR")]],
                     [[n, *[float(r[n][i].mean()) for i in cols.values() for r in (self.tpr, self.fpr)]] for n in self.auroc])

    def tables(self) -> tuple[Table, ...]:
        """The AUROC table, then the rates (the order the chapter shows them)."""
        return (self.table(), self.rates_table())


def boundary_point(cfg: dict[str, Any], a: float, seed: int) -> dict[str, Any]:
    """One amplitude ``a`` (in ℓ) and seed: attack success, detectors' scores and the curvature criterion."""
    ell, m, patch = cfg["lengthscale"], cfg["m"], cfg["patch"]
    kernel = make_kernel("gaussian", ell)
    X, Y = clean_data(cfg["n_clean"], cfg["d"], cfg["n_classes"], seed)
    Xt, Yt = clean_data(cfg["n_test"], cfg["d"], cfg["n_classes"], seed + 10)
    X[:, -patch:], Xt[:, -patch:] = 0.0, 0.0
    t = torch.zeros(cfg["d"], dtype=DTYPE)
    t[-patch:] = 1.0 / math.sqrt(patch)
    sources = torch.nonzero(Y.argmax(1) != TARGET)[:m, 0]
    if len(sources) < m:
        raise ValueError(f"m = {m} poisons need {m} clean inputs outside the target class, found {len(sources)}")
    poisons = X[sources] + a * ell * t
    Xp = torch.cat([X, poisons])
    Yp = torch.cat([Y, target_vector(cfg["n_classes"], TARGET, X).expand(m, -1)])
    clean, poisoned = fit_krr(kernel, X, Y, cfg["ridge"]), fit_krr(kernel, Xp, Yp, cfg["ridge"])
    queries = Xt[Yt.argmax(1) != TARGET]
    xq = queries + a * ell * t
    margin = target_margin(poisoned.predict(xq), TARGET)
    lam = float(bulk_edge(clean.jacobian(Xt), cfg["edge_quantile"]))
    curv_trig, curv_clean = top_gn_eigenvalue(poisoned.jacobian(xq)), top_gn_eigenvalue(poisoned.jacobian(queries))
    labels = Yp.argmax(1).numpy()
    is_poison = np.r_[np.zeros(len(X), bool), np.ones(m, bool)]
    eps = m / int((labels == TARGET).sum())
    scores = score_detectors(kernel_features(kernel, Xp, cfg["n_features"]), labels, is_poison, eps, TARGET)
    return {"success": float((margin >= cfg["success_margin"]).double().mean()),
            "margin_shift": float((margin - target_margin(clean.predict(xq), TARGET)).mean()),
            "scores": scores, "visible": float((curv_trig >= lam).double().mean()),
            "curvature_auroc": roc_auc(torch.cat([curv_trig, curv_clean]).numpy(),
                                       np.r_[np.ones(len(xq), bool), np.zeros(len(queries), bool)]),
            "nearest_clean": float(torch.cdist(poisons, X).min(1).values.median() / ell), "eps": eps}


def sweep_key(cfg: dict[str, Any], seed: int) -> str:
    """16 hex digits of SHA-256 of the settings ``cfg`` and ``seed``: the boundary sweep's derived-results key."""
    return json_key({"settings": cfg, "seed": seed})


def _sweep_points(cfg: dict[str, Any], seed: int) -> list[list[dict[str, Any]]]:
    """:func:`boundary_point` for every amplitude and seed, JSON-ready (each detector's score as a dict)."""
    return [[{k: ({n: asdict(d) for n, d in v.items()} if k == "scores" else float(v))
              for k, v in boundary_point(cfg, float(ai), 100 * seed + j).items()}
             for j in range(cfg["boundary_seeds"])] for ai in cfg["amplitudes"]]


def boundary_sweep(cfg: dict[str, Any], seed: int, results_dir: str | None = None, cached: bool = False) -> BoundarySweep:
    """:func:`boundary_point` for every amplitude of ``cfg["amplitudes"]`` and ``boundary_seeds`` seeds from ``seed``.

    ``cached=True``: the points are a derived result (:data:`BOUNDARY`, :func:`sweep_key`) read from
    ``<results_dir or results>/derived/`` (computed and written when absent or of another version)."""
    a = np.array(cfg["amplitudes"], dtype=float)
    if cached:
        record = RunRecord(cfg["profile"], "cpu", seed, "synthetic kernel-model data (seeded)")
        pts = derived.get(BOUNDARY, sweep_key(cfg, seed), BOUNDARY_VERSION, lambda: {"points": _sweep_points(cfg, seed)},
                          chapter_derived_dir(results_dir), record=record)["points"]
    else:
        pts = _sweep_points(cfg, seed)

    def grid(key: str) -> np.ndarray:
        return np.array([[float(p[key]) for p in row] for row in pts])

    def per_detector(field: str) -> dict[str, np.ndarray]:
        return {n: np.array([[float(p["scores"][n][field]) for p in row] for row in pts]) for n in DETECTORS}

    return BoundarySweep(a, grid("success"), grid("margin_shift"), per_detector("auroc"), per_detector("tpr"),
                         per_detector("fpr"), grid("visible"), grid("curvature_auroc"), grid("nearest_clean"),
                         float(grid("eps").mean()))
