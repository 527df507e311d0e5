"""Results cache: one JSON file per configuration under ``results/lab/<config key>.json``.

:func:`get` loads the file when it exists (committed with the chapters, so re-executing a chapter
is fast and gives the same numbers) and otherwise trains and writes it atomically. ``force=True``
or the environment variable ``FORCE=1`` recomputes. A file written under another schema version,
for another configuration, from another data source than the one this machine would use, or with an
evaluation row that does not match the row schema (:data:`poisoncurv.lab.train.ROW_SCHEMA`, checked row by row
on every read) is reported with :class:`StaleResultError`, never silently reused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from poisoncurv.core.paths import LAB_RESULTS_DIR
from poisoncurv.core.results import CorruptResultError, read_json, write_json_atomic
from poisoncurv.lab.attacks import Poisoned
from poisoncurv.lab.config import NUM_CLASSES, SCHEMA_VERSION, LabConfig, validate
from poisoncurv.lab.data import SOURCES, ImageData, locate, to_float
from poisoncurv.lab.deep import Probe, make_probe
from poisoncurv.lab.filtering import filter_poisons
from poisoncurv.lab.train import build_model, checkpoint_path, prepare, row_problem, train, train_shared


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


def get(cfg: LabConfig, results_dir: str | os.PathLike | None = None, force: bool | None = None,
        data: ImageData | Callable[[], ImageData] | None = None, progress: bool = False,
        checkpoint_dir: str | os.PathLike | None = None, keep_model: bool = False, validated: bool = False) -> dict[str, Any]:
    """The results dictionary of ``cfg`` (see :func:`poisoncurv.lab.train.train`): cached or computed.

    ``data``: the data set, or a function returning it (called only if the run must be computed),
    or ``None`` (loaded by :func:`poisoncurv.lab.data.load`). When no copy of the data set is present
    at all, a cached file is used as it is (its data source is still recorded in it).
    ``keep_model``: also keep the final weights at :func:`model_path` (a cached run without them is
    recomputed; training is deterministic on the CPU, so the numbers are the same).
    ``force`` (default: :func:`force_from_env`): recompute even if cached; a filtered run's unfiltered run too.
    ``validated=True``: the caller has already run :func:`~poisoncurv.lab.config.validate` on ``cfg`` (the CLI's
    :func:`~poisoncurv.lab.config.profile_config` does); otherwise it runs here, once, and not again in training.
    """
    if not validated:
        validate(cfg)
    path = result_path(cfg, results_dir)
    force = force_from_env() if force is None else force
    if path.exists() and not force and not (keep_model and not model_path(cfg, results_dir).exists()):
        try:
            res = read_json(path)
        except CorruptResultError as err:
            raise StaleResultError(f"{path} is not valid JSON ({err.reason}), truncated or corrupt: {HOW}") from None
        if isinstance(data, ImageData):
            source = data.source
        else:
            found = locate(cfg.dataset)
            source = SOURCES[found] if found else None
        check_cached(res, cfg, path, source)
        return res
    model_dir = model_path(cfg, results_dir).parent if keep_model else None
    for folder in (path.parent, model_dir):
        if folder is not None:
            check_writable(folder)
    data = data() if callable(data) else data
    if cfg.filter == "none":
        res = train(cfg, data=data, checkpoint_dir=checkpoint_dir, progress=progress, model_dir=model_dir,
                    remove_checkpoint=False, validated=True)
    else:
        res = _filtered(cfg, results_dir, data, checkpoint_dir, progress, model_dir, force)
    _write_results([(path, res)], checkpoint_path(cfg, checkpoint_dir))
    return res


def get_shared(cfgs: tuple[LabConfig, ...], results_dir: str | os.PathLike | None = None,
               data: ImageData | Callable[[], ImageData] | None = None, progress: bool = False,
               checkpoint_dir: str | os.PathLike | None = None, keep_model: bool = False,
               validated: bool = False) -> list[dict[str, Any]]:
    """Train clean runs that differ only in their trigger once (:func:`~poisoncurv.lab.train.train_shared`) and write
    each one's results file, as :func:`get` would have written it; returns the results in order. Cached files are not
    consulted: the caller passes the runs still to do. ``validated``: as for :func:`get` (otherwise training validates
    each configuration, once)."""
    paths = [result_path(c, results_dir) for c in cfgs]
    model_dir = model_path(cfgs[0], results_dir).parent if keep_model else None
    for folder in (paths[0].parent, model_dir):
        if folder is not None:
            check_writable(folder)
    data = data() if callable(data) else data
    results = train_shared(cfgs, data=data, checkpoint_dir=checkpoint_dir, progress=progress, model_dir=model_dir,
                           remove_checkpoint=False, validated=validated)
    _write_results(list(zip(paths, results)), checkpoint_path(cfgs[0], checkpoint_dir))
    return results


def _write_results(files: list[tuple[Path, dict[str, Any]]], ckpt: Path) -> None:
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


def _filtered(cfg: LabConfig, results_dir: str | os.PathLike | None, data: ImageData | None,
              checkpoint_dir: str | os.PathLike | None, progress: bool, model_dir: Path | None, force: bool) -> dict[str, Any]:
    """Filter-then-retrain (:mod:`poisoncurv.lab.filtering`): the unfiltered run (cached with its weights unless
    ``force``), its detector's removals, then ``cfg`` trained on the rest; the results carry the removals under ``filter``."""
    base = replace(cfg, filter="none")    # valid: only a filter other than none adds conditions to cfg's
    get(base, results_dir, force=force, data=data, checkpoint_dir=checkpoint_dir, keep_model=True, validated=True)
    run = trained_run(base, results_dir, data=data)
    outcome = filter_poisons(run.model, run.poisoned, cfg.filter, base.key())
    res = train(cfg, data=data, checkpoint_dir=checkpoint_dir, progress=progress, model_dir=model_dir,
                drop=torch.from_numpy(np.nonzero(outcome.flags)[0]), remove_checkpoint=False, validated=True)
    return {**res, "filter": outcome.record()}


@dataclass(frozen=True)
class TrainedRun:
    """A kept final model (eval mode, CPU) with the poisoned data it was trained on and its probe sets."""

    model: nn.Module
    data: ImageData
    poisoned: Poisoned
    probe: Probe


def trained_run(cfg: LabConfig, results_dir: str | os.PathLike | None = None, data: ImageData | None = None) -> TrainedRun:
    """The final weights kept by ``get(cfg, keep_model=True)`` rebuilt into ``cfg``'s model, with the run's
    poisoned training set (:func:`~poisoncurv.lab.train.prepare`, deterministic) and its probe. Raises
    ``FileNotFoundError`` naming the file and the command when the weights were not kept, and :class:`StaleResultError`
    naming it and how to recompute when they cannot be loaded into the model (truncated, foreign, another model's)."""
    path = model_path(cfg, results_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the final weights of run {cfg.key()} were not kept; rerun it with "
                                f"get(cfg, keep_model=True) (grids: keep_model: true in its group)")
    data, p = prepare(cfg, data)
    model = build_model(cfg, tuple(p.x_train.shape[1:]), NUM_CLASSES[cfg.dataset]).to(p.x_train.dtype)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # truncated or foreign files fail in many ways (EOFError, RuntimeError, UnpicklingError, ...)
        raise StaleResultError(f"{path}: the kept weights of run {cfg.key()} cannot be loaded ({type(err).__name__}: "
                               f"{' '.join(str(err).split())[:160]}): {HOW}") from None
    model.eval()
    x_test = to_float(data.x_test)
    probe = make_probe(x_test, data.y_test, p.x_trigger, p.y_trigger, p.x_train, p.y_train, p.poison_idx,
                       p.source_labels, p.direction, cfg.target, cfg.n_eval)
    return TrainedRun(model, data, p, probe)
