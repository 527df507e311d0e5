"""MNIST and Chapter 6's grid, shared by the chapters that read them, so that no chapter driver imports another's.

Chapter 5 (:mod:`~poisoncurv.chapters.linear_mnist`), Chapter 6 (:mod:`~poisoncurv.chapters.cnn_mnist`) and the CNN
section of Chapter 8 (:mod:`~poisoncurv.chapters.detectors_cnn`) train on MNIST, loaded once per process
(:func:`mnist`), and record where it came from (:func:`data_source`). Chapter 8 also reads Chapter 6's runs: its grid
(:func:`ch06_grid`), the groups of its seed runs (:data:`CH06_SEED_GROUPS`) and the runs of named groups
(:func:`ch06_runs`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from poisoncurv.core.paths import GRIDS_DIR
from poisoncurv.lab.data import SOURCES, ImageData, load, locate
from poisoncurv.lab.grid import Grid, Run, load_grid

CH06_GRID = GRIDS_DIR / "ch06.yaml"
CH06_SEED_GROUPS = ("seeds", "seeds_warp")     # Chapter 6's seed runs (the lag, the features, Chapter 8's detection)


def data_source() -> str:
    """The data source this machine reads MNIST from (``"MNIST, cached lab runs only"`` without a copy)."""
    found = locate("mnist")
    return f"MNIST, {SOURCES[found]}" if found else "MNIST, cached lab runs only"


@lru_cache(maxsize=1)
def mnist() -> ImageData:
    """MNIST, loaded once per process (only when a run is not in the cache)."""
    return load("mnist")


def ch06_grid(profile: str) -> Grid:
    """Chapter 6's runs for ``profile`` (``grids/ch06.yaml``)."""
    return load_grid(CH06_GRID, profile, check_device=False)


def ch06_runs(grid: Grid, names: Iterable[str]) -> list[Run]:
    """The runs of Chapter 6's groups ``names`` in ``grid`` (:func:`ch06_grid`), group after group; a group the profile
    lacks has none (the smoke and gpu profiles have no ``defence_seeds``), as in
    :meth:`poisoncurv.chapters.deep_runs.ChapterRuns.group`."""
    return [r for name in names if name in grid.groups for r in grid.group(name)]
