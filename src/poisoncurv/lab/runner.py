"""Runs behind the results cache: :func:`get` reads a run's results file (:mod:`poisoncurv.lab.cache`) or trains it
and writes the file; :func:`get_shared` trains clean runs that differ only in their trigger once; a filter-then-retrain
run trains its unfiltered run (kept with its weights) first; :func:`trained_run` rebuilds a kept final model.
Checkpoints (:func:`~poisoncurv.lab.train.checkpoint_path`) are deleted once the results files are written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from poisoncurv.lab.attacks import Poisoned
from poisoncurv.lab.cache import (
    HOW,
    StaleResultError,
    check_writable,
    force_from_env,
    is_cached,
    model_path,
    read_result,
    result_path,
    write_results,
)
from poisoncurv.lab.config import NUM_CLASSES, LabConfig, validate
from poisoncurv.lab.data import ImageData, to_float
from poisoncurv.lab.deep import Probe, make_probe
from poisoncurv.lab.filtering import filter_poisons
from poisoncurv.lab.train import build_model, checkpoint_path, prepare, train, train_shared


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
    if is_cached(cfg, results_dir, force, keep_model):
        return read_result(cfg, path, data)
    model_dir = model_path(cfg, results_dir).parent if keep_model else None
    for folder in (path.parent, model_dir):
        if folder is not None:
            check_writable(folder)
    data = data() if callable(data) else data
    if cfg.filter == "none":
        res = train(cfg, data=data, checkpoint_dir=checkpoint_dir, progress=progress, model_dir=model_dir,
                    remove_checkpoint=False, validated=True)
        assert res is not None  # no max_epochs: train runs to the end
    else:
        res = _filtered(cfg, results_dir, data, checkpoint_dir, progress, model_dir, force)
    write_results([(path, res)], checkpoint_path(cfg, checkpoint_dir))
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
    assert results is not None  # no max_epochs: training runs to the end
    write_results(list(zip(paths, results)), checkpoint_path(cfgs[0], checkpoint_dir))
    return results


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
    assert res is not None  # no max_epochs: train runs to the end
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
