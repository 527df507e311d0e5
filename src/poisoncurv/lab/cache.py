"""Results cache: one JSON file per configuration under ``results/lab/<config key>.json``.

Where the files live (:func:`result_path`, :func:`model_path`), whether a run is cached (:func:`is_cached`; ``force=True``
or the environment variable ``FORCE=1`` recomputes), reading and checking a file (:func:`read_result`) and writing
finished runs atomically (:func:`write_results`). What decides to train, and trains, is
:mod:`poisoncurv.lab.runner` (:func:`~poisoncurv.lab.runner.get` loads the file when it exists, committed with the
chapters, so re-executing a chapter is fast and gives the same numbers). A file written under another schema version,
for another configuration, from another data source than the one this machine would use, or with an
evaluation row that does not match the row schema (:data:`poisoncurv.lab.train.ROW_SCHEMA`, checked row by row
on every read) is reported with :class:`StaleResultError`, never silently reused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poisoncurv.core.paths import LAB_RESULTS_DIR
from poisoncurv.core.results import CorruptResultError, read_json, write_json_atomic
from poisoncurv.lab.config import SCHEMA_VERSION, LabConfig
from poisoncurv.lab.data import SOURCES, ImageData, locate
from poisoncurv.lab.train import row_problem


class StaleResultError(RuntimeError):
    """A cached results file does not match the code's schema, the configuration or the data source."""


class ResultWriteError(RuntimeError):
    """A finished run's results could not be written; its checkpoint is kept, so a second call writes them untrained."""


def check_writable(folder: Path, what: str = "results folder", option: str = "--results-dir") -> None:
    """Create ``folder`` if needed and write a scratch file in it; ``ValueError`` naming the folder (``what``) and the
    option that sets it if it cannot hold files (a file in its place, no permission, a read-only or full file system),
    before any training starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".writable-"):
            pass
    except OSError as err:
        raise ValueError(f"{what} {folder} cannot hold files ({err.strerror or type(err).__name__}): "
                         f"choose another {option} or free space there") from None


def result_path(cfg: LabConfig, results_dir: str | os.PathLike | None = None) -> Path:
    """``<results_dir or results/lab>/<cfg.key()>.json``."""
    return Path(results_dir or LAB_RESULTS_DIR) / f"{cfg.key()}.json"


def force_from_env() -> bool:
    """Whether the environment asks to recompute what is cached (``FORCE`` set to 1, true or yes)."""
    return os.environ.get("FORCE", "").strip().lower() in ("1", "true", "yes")


HOW = "recompute with force=True (chapters: FORCE=1 make rerun ...; CLI: --force)"
FIELDS = ("schema_version", "config", "key", "data_source", "poison", "epochs", "provenance")


def check_cached(res: Any, cfg: LabConfig, path: Path, data_source: str | None) -> None:
    """Raise :class:`StaleResultError` (saying how to recompute) if ``res`` cannot stand for ``cfg`` here."""
    how = HOW
    missing = [f for f in FIELDS if f not in res] if isinstance(res, dict) else list(FIELDS)
    if missing:
        raise StaleResultError(f"{path} is not a lab results file (missing {', '.join(missing)}): {how}")
    if res.get("schema_version") != SCHEMA_VERSION:
        raise StaleResultError(f"{path} has schema version {res.get('schema_version')}, the code writes "
                               f"{SCHEMA_VERSION}: {how}")
    if res.get("key") != cfg.key():
        raise StaleResultError(f"{path} holds configuration {res.get('key')}, not {cfg.key()}: {how}")
    if data_source is not None and res.get("data_source") != data_source:
        raise StaleResultError(f"{path} was computed from '{res.get('data_source')}' but this machine reads "
                               f"'{data_source}': {how}, or point POISONCURV_SHARED_DATA / POISONCURV_DATA at the same data")
    check_rows(res["epochs"], cfg.measure, path)


def check_rows(rows: Any, measure: str, path: Path) -> None:
    """Raise :class:`StaleResultError` naming ``path``, the row and the field unless ``rows`` is a non-empty list of
    evaluation rows of a ``measure`` run (:data:`~poisoncurv.lab.train.ROW_SCHEMA`)."""
    if not isinstance(rows, list) or not rows:
        raise StaleResultError(f"{path}: epochs is {repr(rows)[:40]}, not a list of evaluation rows: {HOW}")
    for i, row in enumerate(rows):
        problem = row_problem(row, measure)
        if problem is not None:
            raise StaleResultError(f"{path}: evaluation row epochs[{i}]: {problem} (a {measure!r} run): {HOW}")


def model_path(cfg: LabConfig, results_dir: str | os.PathLike | None = None) -> Path:
    """``<results_dir or results/lab>/models/<cfg.key()>.pt``: the final weights kept by ``get(keep_model=True)``."""
    return Path(results_dir or LAB_RESULTS_DIR) / "models" / f"{cfg.key()}.pt"


def read_result(cfg: LabConfig, path: Path, data: ImageData | Callable[[], ImageData] | None = None) -> dict[str, Any]:
    """The results file ``path`` of ``cfg``, checked (:func:`check_cached`) against the data source this machine would
    use: ``data``'s when it is a data set, else the copy :func:`~poisoncurv.lab.data.locate` finds (none: not checked).
    Raises :class:`StaleResultError` saying how to recompute when it is corrupt or cannot stand for ``cfg`` here."""
    try:
        res = read_json(path)
    except CorruptResultError as err:
        raise StaleResultError(f"{path} is not valid JSON ({err.reason}), truncated or corrupt: {HOW}") from None
    source: str | None  # None: no copy of the data here, nothing to check against
    if isinstance(data, ImageData):
        source = data.source
    else:
        found = locate(cfg.dataset)
        source = SOURCES[found] if found else None
    check_cached(res, cfg, path, source)
    return res


def is_cached(cfg: LabConfig, results_dir: str | os.PathLike | None, force: bool, keep_model: bool) -> bool:
    """Whether :func:`~poisoncurv.lab.runner.get` reads ``cfg``'s results file rather than training: it exists, ``force``
    is off, and the final weights are kept when ``keep_model`` asks for them."""
    return (result_path(cfg, results_dir).exists() and not force
            and not (keep_model and not model_path(cfg, results_dir).exists()))


def write_results(files: list[tuple[Path, dict[str, Any]]], ckpt: Path) -> None:
    """Write each ``(path, results)`` atomically, then delete the training's checkpoint ``ckpt``; a write that fails
    raises :class:`ResultWriteError` and keeps the checkpoint, so the same command writes them again without training."""
    for path, res in files:
        try:
            write_json_atomic(path, res)
        except OSError as err:
            raise ResultWriteError(f"{path}: the results could not be written ({err.strerror or type(err).__name__}); the "
                                   f"trained run{'s are' if len(files) > 1 else ' is'} kept in {ckpt}: run the same command "
                                   f"again once the folder can be written to, and it writes them without training") from None
    ckpt.unlink(missing_ok=True)
