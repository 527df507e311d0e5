"""Hardware is a seed: committed lab runs retrained on another CPU model, against the spread over seeds.

CPU training is bit-reproducible only on the same CPU model with the same library versions: the vectorised kernels
PyTorch picks differ between CPUs, the rounding differs in the last bits, and over thousands of SGD steps those bits
grow into a different trajectory. :func:`compare` sets each retrained run beside its committed file and measures the
difference in units of the standard deviation over the chapter's seeds of the same quantity, so a reader sees whether
a change of machine moves a number by more than a change of seed does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisoncurv.chapters import deep_runs as dr
from poisoncurv.core import criteria
from poisoncurv.core.contract import ChapterResult, Summary
from poisoncurv.core.tables import Table
from poisoncurv.lab.config import LabConfig

QUANTITIES = {"clean_acc": "clean accuracy", "asr": "ASR", "trig_top": "λ₁ (triggered)", "clean_top": "λ₁ (clean)",
              "ratio_trig": "uᵀHu ratio (triggered)", "ratio_clean": "uᵀHu ratio (clean)"}
LOG_QUANTITIES = ("trig_top", "clean_top", "ratio_trig", "ratio_clean")   # compared on a log scale


def final_values(res: dict[str, Any], clean: dict[str, Any] | None) -> dict[str, float]:
    """The final :data:`QUANTITIES` of a run (the ratios against ``clean``, its clean reference; nan without one)."""
    last = res["epochs"][-1]
    out = {"clean_acc": float(last["clean_acc"]), "asr": float(last["asr"]), "trig_top": float(last["trig_top"][0]),
           "clean_top": float(last["clean_top"][0])}
    for p in dr.PROBE_SETS:
        out[f"ratio_{p}"] = float(dr.curvature_ratio(res, clean, p)[-1]) if clean is not None else float("nan")
    return out


def _scale(name: str, v: float) -> float:
    return float(np.log10(v)) if name in LOG_QUANTITIES else v


@dataclass(frozen=True)
class HardwareRow:
    """One committed poisoned run and its retraining: the CPU models, the values of each, and the difference in
    seed standard deviations (log10 for curvatures)."""

    key: str
    attack: str
    seed: int
    cpu_committed: str
    cpu_retrained: str
    committed: dict[str, float]
    retrained: dict[str, float]
    in_seed_sd: dict[str, float]
    verdicts: tuple[str, str]       # lag sign at clean inputs by the ratio (committed, retrained): later / earlier / ...


@dataclass(frozen=True)
class HardwareResult(ChapterResult):
    """Every retrained run against its committed file (:func:`compare`); ``run_label`` ends the table's caption."""

    sig = 2

    tag: str
    rows: tuple[HardwareRow, ...]
    n_seeds: int
    run_label: str

    def summary(self) -> Summary:
        worst = {q: max((abs(r.in_seed_sd[q]) for r in self.rows), default=float("nan")) for q in QUANTITIES}
        return {f"{self.tag}_hw_n_runs": len(self.rows), f"{self.tag}_hw_n_seeds": self.n_seeds,
                **{f"{self.tag}_hw_max_sd_{q}": v for q, v in worst.items()},
                f"{self.tag}_hw_n_sign_flips": sum(a != b for r in self.rows for a, b in [r.verdicts])}

    def table(self) -> Table:
        rows = []
        for r in self.rows:
            for q, name in QUANTITIES.items():
                rows.append([f"{r.attack}, seed {r.seed}", name, f"{r.committed[q]:.4g}", f"{r.retrained[q]:.4g}",
                             f"{r.in_seed_sd[q]:+.2f}"])
            rows.append([f"{r.attack}, seed {r.seed}", "clean-input ratio settles", *r.verdicts, "–"])
        cpus = (self.rows[0].cpu_committed, self.rows[0].cpu_retrained) if self.rows else ("one CPU", "another (none in this profile)")
        return Table(f"tbl-{self.tag}-hardware",
                     f"Committed runs trained on {cpus[0]} retrained, same configuration and code path, on "
                     f"{cpus[1]}: final values of each and the difference in standard deviations over the "
                     f"{self.n_seeds} seeds of the chapter (log10 for eigenvalues and ratios); last row: whether the "
                     r"clean-input $u^\top Hu$ ratio settles above 10 after success, before it, or never. " + self.run_label,
                     ["run", "quantity", "committed", "retrained", "difference (seed sd)"], rows)

    def tables(self) -> tuple[Table, ...]:
        return (self.table(),)


def _lag_sign(res: dict[str, Any], clean: dict[str, Any] | None) -> str:
    t = dr.times(res)
    t_s = criteria.crossing_time(t, dr.success_mask(res))
    t_v = criteria.crossing_time(t, dr.criterion(res, clean, "ratio", "clean"))
    if t_s is None:
        return "no success"
    return "never" if t_v is None else "after success" if t_v > t_s else "before success" if t_v < t_s else "same time"


def compare(runs: dr.ChapterRuns, groups: tuple[str, ...], retrained_dir: Path, tag: str, run_label: str) -> HardwareResult:
    """Every poisoned run retrained in ``retrained_dir`` (lab results files, with their clean references) against the
    committed one, in units of the seed spread of ``groups``' runs of the same attack and poison fraction; retrained
    runs that are not among ``runs`` (another profile's) are left out."""
    files = {p.stem: json.loads(p.read_text()) for p in sorted(Path(retrained_dir).glob("*.json"))}
    rows = []
    for key, res in files.items():
        cfg = LabConfig(**res["config"])
        if cfg.theta == 0 or key not in runs.results:
            continue
        committed = runs.results[key]
        clean_key = LabConfig(**{**res["config"], "theta": 0.0}).key()
        if clean_key not in files:
            raise ValueError(f"retrained run {key} has no retrained clean reference {clean_key} in {retrained_dir}")
        new = final_values(res, files[clean_key])
        old = final_values(committed, runs.clean_of(committed))
        seeds = [final_values(r, runs.clean_of(r)) for r in runs.groups(groups, attack=cfg.attack, theta=cfg.theta)]
        sd = {q: float(np.nanstd([_scale(q, s[q]) for s in seeds], ddof=1)) for q in QUANTITIES}
        diff = {q: (_scale(q, new[q]) - _scale(q, old[q])) / sd[q] if sd[q] > 0 else float("nan") for q in QUANTITIES}
        rows.append(HardwareRow(key, cfg.attack, cfg.seed, committed["provenance"]["device_name"].removeprefix("CPU: "),
                                res["provenance"]["device_name"].removeprefix("CPU: "), old, new, diff,
                                (_lag_sign(committed, runs.clean_of(committed)), _lag_sign(res, files[clean_key]))))
    if not any(LabConfig(**res["config"]).theta > 0 for res in files.values()):
        raise ValueError(f"no retrained poisoned runs in {retrained_dir}")
    n_seeds = len({r["config"]["seed"] for r in runs.groups(groups)})
    return HardwareResult(tag, tuple(rows), n_seeds, run_label)
