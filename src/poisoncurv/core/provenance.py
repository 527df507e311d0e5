"""Provenance of a run: git commit, profile, device, library versions, data source, wall time."""

from __future__ import annotations

import platform
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisoncurv import __version__
from poisoncurv.core.paths import REPO_ROOT
from poisoncurv.core.profiles import check_profile, device_name


def git_commit(root: Path = REPO_ROOT) -> str:
    """``HEAD`` commit id, with ``+dirty`` if tracked files outside ``results/`` differ from it; ``"unknown"`` outside git.

    ``results/`` is excluded: it holds outputs (a sweep writing run after run must not mark the later runs dirty).
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def short_commit(commit: str) -> str:
    """The first 8 characters of a recorded commit, keeping its ``+dirty`` mark (a table must not hide it)."""
    return commit[:8] + ("+dirty" if commit.endswith("+dirty") else "")


def training_hours(provenances: Iterable[dict[str, Any]]) -> float:
    """Hours of training behind runs with these provenances: the sum of their wall times, a training shared by several
    clean runs (``shared_training``, :func:`poisoncurv.lab.train.train_shared`) counted once."""
    seen = {_training_id(i, p): float(p["wall_time_s"]) for i, p in enumerate(provenances)}
    return sum(seen.values()) / 3600


def _training_id(i: int, p: dict[str, Any]) -> tuple[str, ...] | int:
    """Which training the ``i``-th run with provenance ``p`` came from: the keys of a shared training, else ``i``."""
    return tuple(p["shared_training"]) if p.get("shared_training") else i


def training_summary(provenances: Iterable[dict[str, Any]]) -> str:
    """Who trained a chapter's lab runs, from each run's recorded provenance: how many runs on which device, the
    torch threads when every run used the same number, how many commits, and the wall time in all (:func:`training_hours`),
    e.g. ``"183 training runs (119 on AMD EPYC, 64 on Intel Xeon; 1 torch thread each), from 9 commits, 2.4 hours of
    training"``; runs that shared a training are counted as such (``"52 lab runs in 46 trainings (...)"``)."""
    provs = list(provenances)
    devices: Counter[str] = Counter()
    threads: set[str | None] = set()
    for p in provs:
        name, _, rest = p["device_name"].removeprefix("CPU: ").partition(" (")
        devices[name] += 1
        threads.add(rest.split(" torch thread")[0] if "torch thread" in rest else None)
    where = ", ".join(f"{n} on {d}" for d, n in devices.most_common())
    if len(threads) == 1 and None not in threads:
        t = threads.pop()
        where += f"; {t} torch thread{'' if t == '1' else 's'} each"
    commits = {p["git_commit"] for p in provs}
    n_trainings = len({_training_id(i, p) for i, p in enumerate(provs)})
    what = (f"{len(provs)} training run{'' if len(provs) == 1 else 's'}" if n_trainings == len(provs)
            else f"{len(provs)} lab runs in {n_trainings} trainings")
    return (f"{what} ({where}), from {len(commits)} commit{'' if len(commits) == 1 else 's'}, "
            f"{training_hours(provs):.2g} hours of training")


def library_versions() -> dict[str, str]:
    """Versions of Python and the numerical libraries a result depends on (read from the installed packages'
    metadata, without importing them: matplotlib's import alone costs about a second)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": installed("numpy"),
            "matplotlib": installed("matplotlib"), "poisoncurv": __version__}


@dataclass
class RunRecord:
    """Started at the top of a chapter; :meth:`finish` returns the provenance dictionary."""

    profile: str
    device: str
    seed: int
    data_source: str
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        check_profile(self.profile)
        device_name(self.device)  # validates the device early

    def finish(self) -> dict[str, Any]:
        """Provenance: commit, profile, device and its hardware name, seed, data source, versions, wall time (s)."""
        return {
            "git_commit": git_commit(),
            "profile": self.profile,
            "device": self.device,
            "device_name": device_name(self.device),
            "seed": self.seed,
            "data_source": self.data_source,
            "versions": library_versions(),
            "wall_time_s": round(time.perf_counter() - self.started, 1),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }


def provenance_markdown(prov: dict[str, Any]) -> str:
    """A Markdown table of a provenance dictionary (one line per field, versions on one line)."""
    rows = ["| field | value |", "| --- | --- |"]
    for key, value in prov.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        rows.append(f"| {key} | {value} |")
    return "\n".join(rows)
