"""Training on poisoned data with the input-gradient penalty, per-epoch metrics, checkpoints and resume.

Objective per mini-batch of ``B`` examples:

    J(w) = mean_b ℓ_b + (κ/2) · mean_b |∇_x ℓ_b|²,

the penalty computed by double backpropagation (``create_graph=True``). Note the convention: the
gradient is that of each example's *own* loss. Implementations that differentiate the batch-mean
loss with respect to the batch get ``∇_{x_b} L = g_b / B``, hence a penalty ``B²`` times smaller
per example (``B`` times smaller when the squared norms are summed rather than averaged): their κ
corresponds to ``κ / B`` (or ``κ / B²``) here.

Every epoch uses its own seeded generator (order and augmentation), so a run resumed from a
checkpoint (written atomically after every epoch) replays exactly what an uninterrupted run does. A checkpoint
carries its run's key and a schema version and is checked before it is trusted (:func:`_checkpoint_problem`); one
that fails is discarded with a warning and the run starts over.

The training steps (never the measurements, which run the eager float32 model and form curvature in float64 in
:mod:`poisoncurv.lab.deep`) run as the configuration says: ``precision`` (fp32, or bf16 autocast) and ``compile``
(``torch.compile`` for κ = 0 only: the double backward of κ > 0 is not supported by it), with channels-last memory
for ``convnet*`` and, on CUDA, the ResNets (:func:`train_mode`). On the CPU, runs are bit-reproducible on one CPU
model. The mode that ran is recorded in the results' ``provenance`` (``train_mode``, ``train_precision``).

Clean runs that differ only in the trigger they measure train identically; :func:`train_shared` trains them once and
measures each (a sweep groups them, :func:`poisoncurv.lab.sweep.batches`).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from poisoncurv.core.dtypes import DRAW_DTYPE, default_dtype
from poisoncurv.core.profiles import device_name, resolve_device
from poisoncurv.core.provenance import git_commit, library_versions
from poisoncurv.core.results import atomic_target
from poisoncurv.curvature import check_eval_mode
from poisoncurv.lab.attacks import Poisoned, poison
from poisoncurv.lab.config import NUM_CLASSES, SCHEMA_VERSION, WARMUP, LabConfig, validate
from poisoncurv.lab.data import ImageData, cache_root, load, to_float
from poisoncurv.lab.deep import Probe, final_measures, make_probe, measure_deep
from poisoncurv.lab.spectra import SquaredLoss, spectral_metrics
from poisoncurv.models import MLP, ConvNet, LeNet, LinearModel, PreActResNet


def build_model(cfg: LabConfig, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of ``cfg`` for inputs of ``shape`` ``(C, H, W)``, initialised from seed ``cfg.seed`` in float32 whatever
    the default dtype (:mod:`poisoncurv.core.dtypes`); linear models start at zero."""
    torch.manual_seed(cfg.seed)
    with default_dtype(DRAW_DTYPE):
        return _new_model(cfg, shape, num_classes)


def _new_model(cfg: LabConfig, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if cfg.model == "linear":
        model = LinearModel(math.prod(shape), num_classes)
        nn.init.zeros_(model.linear.weight)
        nn.init.zeros_(model.linear.bias)
        return model
    if cfg.model == "mlp":
        return MLP(math.prod(shape), (256, 256), num_classes)
    if cfg.model == "lenet":
        return LeNet(num_classes, shape[0])
    if cfg.model.startswith("convnet"):
        return ConvNet(int(cfg.model.removeprefix("convnet")), num_classes, shape[0])
    return PreActResNet(int(cfg.model.removeprefix("preresnet")), num_classes, shape[0])


def make_loss(cfg: LabConfig, training: bool = False) -> nn.Module:
    """Cross-entropy (mean) or :class:`SquaredLoss` on one-hot targets; for ``training``, the cross-entropy with the
    run's label smoothing (every measurement uses the plain loss)."""
    if cfg.loss != "ce":
        return SquaredLoss()
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing if training else 0.0)


@dataclass(frozen=True)
class TrainMode:
    """How the training steps run: ``compiled`` (``torch.compile`` of the model), ``bf16`` (autocast) and
    ``channels_last`` (memory format of the model and its inputs)."""

    compiled: bool = False
    bf16: bool = False
    channels_last: bool = False

    def provenance(self, compiled_ran: bool) -> dict[str, str]:
        """``{"train_mode": "compiled" | "eager", "train_precision": "bf16" | "fp32", "memory_format": ...}``."""
        return {"train_mode": "compiled" if compiled_ran else "eager", "train_precision": "bf16" if self.bf16 else "fp32",
                "memory_format": "channels_last" if self.channels_last else "contiguous"}


def train_mode(cfg: LabConfig, device: torch.device) -> TrainMode:
    """The configuration's ``precision`` and ``compile`` (compiled at κ = 0 only), and channels-last for ``convnet*``
    (1.6× faster steps on one CPU thread, 570 against 350 images a second at batch 512, Intel Xeon) and, on CUDA,
    for ``preresnet*``."""
    return TrainMode(compiled=cfg.compile and cfg.kappa == 0, bf16=cfg.precision == "bf16",
                     channels_last=cfg.model.startswith("convnet") or (device.type == "cuda" and cfg.model.startswith("preresnet")))


class TrainForward:
    """The forward pass of the training steps: ``torch.compile(model)`` when ``compiled``, else ``model``
    itself. If compilation fails (no compiler toolchain, unsupported operator) it warns once and runs eager
    from then on; ``compiled_ran`` says whether every step ran compiled."""

    def __init__(self, model: nn.Module, compiled: bool):
        self.model, self.compiled_ran = model, compiled
        self.fn: Callable[[Tensor], Tensor] = torch.compile(model) if compiled else model

    def __call__(self, x: Tensor) -> Tensor:
        if not self.compiled_ran:
            return self.model(x)
        try:
            return self.fn(x)
        except Exception as err:  # inductor/dynamo raise many types (BackendCompilerFailed, Unsupported, ...)
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {' '.join(str(err).split())[:200]}); training "
                          f"eager instead", stacklevel=2)
            self.compiled_ran, self.fn = False, self.model
            return self.model(x)


def autocast(mode: TrainMode, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``mode.bf16``, else a context that does nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16)


def penalised_loss(model: Callable[[Tensor], Tensor], loss_fn: nn.Module, x: Tensor, y: Tensor,
                   kappa: float) -> tuple[Tensor, Tensor]:
    """``(mean_b ℓ_b, (κ/2) mean_b |∇_x ℓ_b|²)`` with a graph through both (double backprop when κ > 0)."""
    if kappa == 0:
        return loss_fn(model(x), y), torch.zeros((), dtype=x.dtype, device=x.device)
    x = x.detach().requires_grad_(True)
    loss = loss_fn(model(x), y)
    (g,) = torch.autograd.grad(loss * len(x), x, create_graph=True)  # row b: ∇_{x_b} ℓ_b
    return loss, 0.5 * kappa * g.flatten(1).pow(2).sum(1).mean()


def augment(x: Tensor, dataset: str, gen: torch.Generator) -> Tensor:
    """Random shifts with zero padding (MNIST: up to 2 pixels) or random crop (padding 4) and
    horizontal flip (CIFAR), drawn per image from ``gen``; ``x`` ``(B, C, H, W)``."""
    pad = 2 if dataset == "mnist" else 4
    B, _, H, W = x.shape
    xp = nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(H, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, :]
    out = xp[torch.arange(B, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if dataset != "mnist":
        flip = (torch.rand(B, generator=gen, dtype=DRAW_DTYPE) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out.contiguous()


class Progress:
    """tqdm when installed and wanted, else a counter printed to stderr; silent when ``enabled`` is false."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.enabled, self.total, self.desc, self.bar, self.n = enabled, total, desc, None, 0
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, leave=False)
            except ImportError:
                pass

    def update(self, info: str = "") -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(info)
        elif self.enabled:
            print(f"{self.desc}: epoch {self.n}/{self.total} {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


EVAL_BATCH = 250  # images per forward pass in evaluation: faster than 1,000 on one CPU thread (cache-sized)


def _logits(model: nn.Module, x: Tensor, batch: int = EVAL_BATCH) -> Tensor:
    """Outputs ``(N, C)`` of ``model`` on ``x`` ``(N, ...)`` under ``torch.inference_mode``, in ``ceil(N/batch)``
    near-equal chunks (each at least ``batch/2`` images, or all ``N``). The CPU kernels compute each example on its
    own at these sizes, so the outputs do not depend on ``batch``; a chunk of a few images would take other matrix
    kernels, whose rounding differs (tested)."""
    with torch.inference_mode():
        return torch.cat([model(xb) for xb in x.tensor_split(max(1, math.ceil(len(x) / batch)))])


def _hit_rate(logits: Tensor, y: Tensor | int) -> float:
    """Fraction of rows of ``logits`` ``(N, C)`` whose argmax is ``y`` (labels ``(N,)`` or one class); 0 for no rows."""
    return int((logits.argmax(1) == y).sum()) / max(len(logits), 1)


def evaluate(model: nn.Module, loss_fn: nn.Module, cfg: LabConfig, p: Poisoned, f_test: Tensor, y_test: Tensor,
             x_src: Tensor, x_eval: Tensor, y_eval: Tensor, probe: Probe | None = None) -> dict[str, Any]:
    """Clean accuracy, ASR (fraction of triggered non-target test images classified as the target),
    the same fraction without the trigger (``clean_to_target``: ASR means little when it is high), the squared
    trigger shift of the outputs ``mean_b |f(T(x_b)) − f(x_b)|²`` over the triggered test set, then
    :func:`spectral_metrics` on the evaluation batch (``basic``) or robust accuracy (triggered inputs still given
    their true class) and :func:`~poisoncurv.lab.deep.measure_deep` on ``probe`` (``deep``). The model must be in
    eval mode (:func:`evaluate_all` puts it there and back).

    ``f_test`` ``(N, C)`` are the eval-mode outputs :func:`_logits` of the model on the test set ``x_test`` (computed
    once for all the triggers of a shared training); ``x_src`` must be ``x_test[y_test != cfg.target]``, the sources of
    ``p.x_trigger`` row by row: the test set's outputs and one forward pass of the triggered set give every rate."""
    check_eval_mode(model)
    f_trig = _logits(model, p.x_trigger)
    f_src = f_test[y_test != cfg.target]
    if len(f_src) != len(x_src) or len(f_src) != len(f_trig):
        raise ValueError(f"x_src: {len(x_src)} images, {len(f_src)} non-target test images, {len(f_trig)} triggered: "
                         f"x_src must be the non-target test images, the sources of the triggered set")
    out = {"clean_acc": _hit_rate(f_test, y_test), "asr": _hit_rate(f_trig, cfg.target),
           "clean_to_target": _hit_rate(f_src, cfg.target),
           "trigger_shift2": float((f_trig - f_src).pow(2).sum()) / max(len(f_src), 1)}
    if probe is None:
        out.update(spectral_metrics(model, loss_fn, x_eval, y_eval, p.direction.to(x_eval), cfg.top_k))
    else:
        out["robust_acc"] = _hit_rate(f_trig, p.y_trigger)
        out.update(measure_deep(model, loss_fn, probe, cfg.top_k))
    return out


def train_fit(model: nn.Module, x: Tensor, y: Tensor, poison_idx: Tensor) -> dict[str, float]:
    """How well the final model (eval mode) fits its training set as trained: ``acc`` over every example with its
    training label, ``acc_clean`` over the clean examples, ``acc_poison`` over the poisons (their target label;
    NaN without poisons)."""
    hit = _logits(model, x).argmax(1) == y
    is_poison = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    is_poison[poison_idx] = True
    return {"acc": float(hit.double().mean()), "acc_clean": float(hit[~is_poison].double().mean()),
            "acc_poison": float(hit[is_poison].double().mean()) if bool(is_poison.any()) else math.nan}


_NUMBER = frozenset((int, float))
_NONFINITE = ("nan", "inf", "-inf")  # non-finite floats as results files write them (poisoncurv.core.results)
_MISSING = object()
_LIST = "a list of numbers"
# The kinds of value in an evaluation row: the Python types each takes (bool is not a number here).
ROW_KINDS: dict[str, frozenset[type]] = {"a number": _NUMBER, "a number or null": _NUMBER | {type(None)},
                                         "true or false": frozenset((bool,)), _LIST: frozenset((list,))}
_COMMON_ROW = {"epoch": "a number", "train_loss": "a number or null", "penalty": "a number or null",
               **dict.fromkeys(("clean_acc", "asr", "clean_to_target", "trigger_shift2"), "a number")}
_CURVATURE = {"top": _LIST, **dict.fromkeys(("overlap", "mass", "curv_u", "fisher_top"), "a number")}
# The fields of one evaluation row (the epoch, the losses and what evaluate measures) and their kinds, by cfg.measure.
ROW_SCHEMA: dict[str, dict[str, str]] = {
    "basic": {**_COMMON_ROW, "hess_top": _LIST, "overlap": "a number", "curv_along_poison": "a number",
              "fisher_top": "a number", "visible": "true or false"},
    "deep": {**_COMMON_ROW, "robust_acc": "a number", "premise_gap": "a number",
             **{f"{at}_{k}": kind for at in ("clean", "trig") for k, kind in _CURVATURE.items()},
             **dict.fromkeys(("feat_sigma_w", "feat_trig_to_target", "feat_trig_to_source", "feat_target_to_target",
                              "feat_collapse_clean", "feat_collapse_trig", "feat_trig_to_poison", "feat_poison_to_target",
                              "feat_collapse_poison"), "a number or null")},
}


def _fits(value: Any, kind: str) -> bool:
    """Whether ``value`` is of ``kind`` (a key of :data:`ROW_KINDS`); non-finite floats written as text count as numbers."""
    if kind == _LIST:
        return isinstance(value, list) and all(_fits(v, "a number") for v in value)
    return type(value) in ROW_KINDS[kind] or (kind != "true or false" and isinstance(value, str) and value in _NONFINITE)


def row_problem(row: Any, measure: str) -> str | None:
    """What is wrong with evaluation row ``row`` of a ``measure`` run against :data:`ROW_SCHEMA` (``"<field> is
    missing"``, ``"<field> is <value>, expected <kind>"``), or ``None``. Extra fields are allowed."""
    if not isinstance(row, dict):
        return f"is {type(row).__name__}, not a mapping of fields"
    for field, kind in ROW_SCHEMA[measure].items():
        value = row.get(field, _MISSING)
        if type(value) in ROW_KINDS[kind] and (kind != _LIST or set(map(type, value)) <= _NUMBER):
            continue  # the common case without a call: this runs on every read of a cached result
        if value is _MISSING:
            return f"{field} is missing"
        if not _fits(value, kind):
            return f"{field} is {repr(value)[:40]}, expected {kind}"
    return None


def prepare(cfg: LabConfig, data: ImageData | None = None) -> tuple[ImageData, Poisoned]:
    """Load (or take) the data, take the profile's subset and poison it."""
    data = (data or load(cfg.dataset)).subset(cfg.n_train, cfg.n_test, cfg.seed)
    p = poison(to_float(data.x_train), data.y_train, to_float(data.x_test), data.y_test, cfg.attack, cfg.theta,
               cfg.target, cfg.amplitude, cfg.warp_strength, cfg.seed)
    return data, p


CLIP_NORM = 10.0


def step_size(cfg: LabConfig) -> float:
    """The SGD learning rate: ``min(lr, 1/κ)``. The penalty adds curvature about ``κ·E|r|²`` (≤ 2κ for a
    linear model near its optimum, ``r`` the output residual) in the weights; heavy-ball SGD with
    momentum 0.9 is stable below a step of 3.8 over the top curvature. Away from the optimum the
    penalty's curvature also grows like ``κ|W|²E|x|²``, so with κ > 0 the gradient norm is clipped
    at :data:`CLIP_NORM` as well (never active in the runs without penalty)."""
    return min(cfg.lr, 1.0 / cfg.kappa) if cfg.kappa > 0 else cfg.lr


def _lr_factor(cfg: LabConfig, step: int, total: int) -> float:
    """The schedule's multiplier of the learning rate at ``step`` of ``total`` (module :mod:`~poisoncurv.lab.config`)."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total))
    rise = WARMUP * total
    return step / rise if step < rise else max(0.0, (total - step) / (total - rise))


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


CHECKPOINT_VERSION = 1  # what a checkpoint holds; one without this version or its run's key is never resumed


def _rows_problem(rows: Any, expected: list[float], measure: str, done: int) -> str | None:
    """Why ``rows`` are not a run's evaluation rows after ``done`` epochs (their epochs ``expected``), or ``None``."""
    if not isinstance(rows, list) or [r.get("epoch") if isinstance(r, dict) else r for r in rows] != expected:
        return (f"holds evaluation rows that are not this run's ({len(rows) if isinstance(rows, list) else 0} rows; after "
                f"{done} epochs it has {len(expected)}, at epochs {expected[0]} to {expected[-1]})")
    for i, row in enumerate(rows):
        problem = row_problem(row, measure)
        if problem is not None:
            return f"holds a bad evaluation row ({i}: {problem})"
    return None


def _checkpoint_problem(state: Any, cfgs: tuple[LabConfig, ...], stamps: list[float]) -> str | None:
    """Why checkpoint contents ``state`` cannot resume the training of ``cfgs`` (one run, or clean runs sharing one
    training, the first owning the checkpoint), or ``None``: no key or schema version (an older or foreign file),
    another schema or run, completed epochs outside ``[0, epochs]``, or evaluation rows (of each configuration) that are
    not its rows after those epochs (``stamps``: the epochs of all the run's rows, the first at 0)."""
    cfg = cfgs[0]
    if not isinstance(state, dict) or "key" not in state or "schema_version" not in state:
        return "carries no run key and schema version (an older or foreign file)"
    if state["schema_version"] != CHECKPOINT_VERSION:
        return f"has schema version {state['schema_version']!r}, the code writes {CHECKPOINT_VERSION}"
    if state["key"] != cfg.key():
        return f"belongs to run {state['key']!r}, not {cfg.key()}"
    done = state.get("completed_epochs")
    if type(done) is not int or not 0 <= done <= cfg.epochs:
        return f"claims {done!r} completed epochs; the run has {cfg.epochs}"
    expected = stamps[:1 + done * (len(stamps) - 1) // cfg.epochs]
    shared = state.get("shared_rows", {})
    if not isinstance(shared, dict) or set(shared) != {c.key() for c in cfgs[1:]}:
        return (f"measures runs {sorted(shared) if isinstance(shared, dict) else shared!r} besides its own, not "
                f"{sorted(c.key() for c in cfgs[1:])}")
    for rows in (state.get("rows"), *(shared[c.key()] for c in cfgs[1:])):
        problem = _rows_problem(rows, expected, cfg.measure, done)
        if problem is not None:
            return problem
    return None


def _resume(ckpt: Path, cfgs: tuple[LabConfig, ...], stamps: list[float], device: torch.device, model: nn.Module,
            opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler) -> tuple[list[list[dict[str, Any]]], int, float] | None:
    """Load checkpoint ``ckpt`` of the training of ``cfgs`` into ``model``, ``opt``, ``sched`` and return ``(rows of each
    configuration, completed epochs, wall time so far)``; ``None`` with one warning naming the file and the fault if it
    cannot be read or fails :func:`_checkpoint_problem` (then the caller discards it and starts the run over)."""
    try:
        state = torch.load(ckpt, map_location=device, weights_only=True)
        problem = _checkpoint_problem(state, cfgs, stamps)
        if problem is None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            rows = [list(state["rows"])] + [list(state.get("shared_rows", {})[c.key()]) for c in cfgs[1:]]
            return rows, state["completed_epochs"], float(state["wall_time_s"])
    except Exception as err:  # truncated or foreign files fail in many ways (EOFError, RuntimeError, KeyError, ...)
        problem = f"is unreadable ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    warnings.warn(f"checkpoint {ckpt} {problem}; discarding it and starting the run over", stacklevel=3)
    return None


def _remove_temporaries(ckpt: Path) -> None:
    """Delete the temporary files of checkpoint ``ckpt`` (:func:`~poisoncurv.core.results.atomic_target`'s
    ``.<key>.*.tmp``) that a write killed midway left, with one warning; a run calls it when it starts."""
    stale = sorted(ckpt.parent.glob(f".{ckpt.stem}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        warnings.warn(f"removed {len(stale)} temporary file(s) of {ckpt.name} in {ckpt.parent} left by an interrupted "
                      f"checkpoint write", stacklevel=3)


def checkpoint_path(cfg: LabConfig, checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """Where the run's checkpoint lives: ``<checkpoint_dir or data cache/checkpoints>/<config key>.pt``."""
    return Path(checkpoint_dir or cache_root() / "checkpoints") / f"{cfg.key()}.pt"


def train(cfg: LabConfig, data: ImageData | None = None, checkpoint_dir: str | os.PathLike | None = None,
          progress: bool = True, max_epochs: int | None = None,
          model_dir: str | os.PathLike | None = None, drop: Tensor | None = None,
          remove_checkpoint: bool = True, validated: bool = False) -> dict[str, Any] | None:
    """Run ``cfg`` (resuming from its checkpoint if one exists) and return the results dictionary:
    ``schema_version``, ``config``, ``key``, ``data_source``, ``poison`` (indices, counts, trigger norm),
    ``epochs`` (one row of metrics at epoch 0 and after every ``1/evals_per_epoch`` of an epoch; the
    ``epoch`` field is fractional), ``train_fit`` (:func:`train_fit`) and ``provenance``.

    ``max_epochs`` stops after that many epochs *in this call* and returns ``None`` (the checkpoint
    stays; call again to continue), e.g. to fit a time-limited lease. On the CPU, training runs on
    one thread (restored afterwards): bit-reproducible, and faster than contended threads.
    ``model_dir``: where to keep the final weights (``<model_dir>/<config key>.pt``, a state dict), e.g.
    for detectors that need the trained model; ``None`` keeps nothing. ``measure="deep"`` adds ``final``
    (:func:`~poisoncurv.lab.deep.final_measures`). ``drop``: indices of the poisoned training set to leave
    out (a filter-then-retrain defence, :mod:`poisoncurv.lab.filtering`); ``poison`` then counts the survivors.
    ``remove_checkpoint=False`` leaves the finished run's checkpoint for the caller to remove once the results are
    safely written (:func:`poisoncurv.lab.runner.get`); a call that finds a finished checkpoint rebuilds the results
    from it without training. ``validated=True``: the caller has already run
    :func:`~poisoncurv.lab.config.validate` on ``cfg`` (the lab's entry points validate once, before any work).
    """
    out = train_shared((cfg,), data, checkpoint_dir, progress, max_epochs, model_dir, drop, remove_checkpoint, validated)
    return None if out is None else out[0]


# The fields that change only what a clean run (θ = 0) measures, never how it trains: its trigger.
TRIGGER_FIELDS = ("attack", "amplitude", "warp_strength")


def training_key(cfg: LabConfig) -> LabConfig | str:
    """What decides how ``cfg`` trains: a clean run (θ = 0, no filter) with its trigger fields at their defaults, so the
    clean runs that can share a training (:func:`train_shared`) have one key; any other run, its own configuration key."""
    if cfg.theta == 0 and cfg.filter == "none":
        return replace(cfg, **{f: getattr(LabConfig, f) for f in TRIGGER_FIELDS})
    return cfg.key()


def shared_training_problem(cfgs: tuple[LabConfig, ...]) -> str | None:
    """Why the configurations ``cfgs`` cannot share one training (:func:`train_shared`), or ``None``: more than one
    needs every one to be a clean run (θ = 0, no filter) equal to the first in every field but :data:`TRIGGER_FIELDS`."""
    if not cfgs:
        return "no configurations"
    if len({c.key() for c in cfgs}) != len(cfgs):
        return "a configuration appears twice"
    if len(cfgs) == 1:
        return None
    first = cfgs[0]
    for c in cfgs:
        if c.theta != 0 or c.filter != "none":
            return f"run {c.key()} trains on poisons (theta {c.theta}, filter {c.filter!r}); only clean runs share a training"
        if training_key(c) != training_key(first):
            return f"run {c.key()} differs from {first.key()} in more than its trigger ({', '.join(TRIGGER_FIELDS)})"
    return None


def train_shared(cfgs: tuple[LabConfig, ...], data: ImageData | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, progress: bool = True, max_epochs: int | None = None,
                 model_dir: str | os.PathLike | None = None, drop: Tensor | None = None,
                 remove_checkpoint: bool = True, validated: bool = False) -> list[dict[str, Any]] | None:
    """:func:`train` for several configurations that train identically (:func:`shared_training_problem`: clean runs
    that differ only in the trigger they measure): one training, evaluated for each at every mark; one results
    dictionary per configuration, in order, each the same as training it alone gives (tested). The checkpoint is the
    first configuration's and holds every configuration's rows. ``validated``: as for :func:`train`."""
    for c in () if validated else cfgs:
        validate(c)
    problem = shared_training_problem(tuple(cfgs))
    if problem is not None:
        raise ValueError(f"shared training: {problem}")
    cfg = cfgs[0]
    if (cfg.filter != "none") != (drop is not None):
        raise ValueError(f"filter: {cfg.filter!r} with drop {'given' if drop is not None else 'None'}: a filtered run takes the "
                         f"indices its detector removes (poisoncurv.lab.runner.get computes them); an unfiltered run takes none")
    if model_dir is not None and (Path(model_dir) / f"{cfg.key()}.pt").resolve() == checkpoint_path(cfg, checkpoint_dir).resolve():
        raise ValueError(f"model_dir and checkpoint_dir: both {Path(model_dir)}: the kept weights and the checkpoint would be "
                         f"one file, deleted when the run finishes; give them different folders")
    device = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train(tuple(cfgs), device, data, checkpoint_dir, progress, max_epochs, model_dir, drop, remove_checkpoint)
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class _Measured:
    """What one configuration of a training measures: its poisoned sets (triggered test set, direction), the sources
    of its triggered images ``x_src`` and its deep-measurement probe (``None`` for ``basic``)."""

    cfg: LabConfig
    p: Poisoned
    x_src: Tensor
    probe: Probe | None


def evaluate_all(model: nn.Module, loss_fn: nn.Module, views: list[_Measured], x_test: Tensor, y_test: Tensor,
                 x_eval: Tensor, y_eval: Tensor) -> list[dict[str, Any]]:
    """One evaluation (:func:`evaluate`) for each configuration of a training, from one forward pass of the test set
    ``x_test`` ``(N, C, H, W)``, all in eval mode; leaves the model in train mode."""
    model.eval()
    try:
        f_test = _logits(model, x_test)
        return [evaluate(model, loss_fn, v.cfg, v.p, f_test, y_test, v.x_src, x_eval, y_eval, v.probe) for v in views]
    finally:
        model.train()


def eval_marks(cfg: LabConfig, steps_per_epoch: int) -> list[int]:
    """The steps of an epoch (1-based, ascending) after which a run is evaluated: ``cfg.evals_per_epoch`` near-equal
    parts of the epoch (fewer when the epoch has fewer steps). A run is also evaluated once before training."""
    return sorted({round(j * steps_per_epoch / cfg.evals_per_epoch) for j in range(1, cfg.evals_per_epoch + 1)})


def _train(cfgs: tuple[LabConfig, ...], device: torch.device, data: ImageData | None,
           checkpoint_dir: str | os.PathLike | None, progress: bool, max_epochs: int | None,
           model_dir: str | os.PathLike | None, drop: Tensor | None = None,
           remove_checkpoint: bool = True) -> list[dict[str, Any]] | None:
    started = time.perf_counter()
    cfg = cfgs[0]
    raw = data or load(cfg.dataset)
    data, p = prepare(cfg, raw)
    if drop is not None:
        p = p.without(drop)
    x_tr, y_tr = p.x_train.to(device), p.y_train.to(device)
    x_test, y_test = to_float(data.x_test).to(device), data.y_test.to(device)
    if cfg.n_eval > len(x_test):
        raise ValueError(f"n_eval: got {cfg.n_eval}; allowed: at most {len(x_test)} (the test images used)")
    x_eval, y_eval = x_test[:cfg.n_eval], y_test[:cfg.n_eval]
    views = []
    for c in cfgs:
        pc = p if c is cfg else prepare(c, raw)[1]
        if not (pc.x_train.equal(p.x_train) and pc.y_train.equal(p.y_train)):
            raise ValueError(f"shared training: run {c.key()} poisons its training set differently from {cfg.key()}")
        pc = replace(pc, x_trigger=pc.x_trigger.to(device), y_trigger=pc.y_trigger.to(device), direction=pc.direction.to(device))
        probe = None
        if c.measure == "deep":
            probe = make_probe(x_test, y_test, pc.x_trigger, pc.y_trigger, x_tr, y_tr, pc.poison_idx.to(device),
                               pc.source_labels.to(device), pc.direction, c.target, c.n_eval)
        views.append(_Measured(c, pc, x_test[y_test != c.target], probe))
    loss_fn, train_loss_fn = make_loss(cfg), make_loss(cfg, training=True)
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)

    mode = train_mode(cfg, device)
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format

    def setup() -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        net = build_model(cfg, tuple(x_tr.shape[1:]), NUM_CLASSES[cfg.dataset])
        # torch's stub of Module.to takes memory_format only alone; at run time it goes with device and dtype
        net = net.to(device=device, dtype=x_tr.dtype, memory_format=fmt)  # type: ignore[call-overload]
        sgd = torch.optim.SGD(net.parameters(), lr=step_size(cfg), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                              nesterov=cfg.nesterov)
        return net, sgd, torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: _lr_factor(cfg, s, cfg.epochs * steps_per_epoch))

    def measure(epoch: float, loss: float | None, pen: float | None) -> list[dict[str, Any]]:
        return [{"epoch": round(epoch, 6), "train_loss": loss, "penalty": pen, **row}
                for row in evaluate_all(model, loss_fn, views, x_test, y_test, x_eval, y_eval)]

    marks = eval_marks(cfg, steps_per_epoch)
    stamps = [0] + [round(e + m / steps_per_epoch, 6) for e in range(cfg.epochs) for m in marks]  # the rows' epochs, as measure writes them
    ckpt = checkpoint_path(cfg, checkpoint_dir)
    _remove_temporaries(ckpt)
    model, opt, sched = setup()
    resumed = _resume(ckpt, cfgs, stamps, device, model, opt, sched) if ckpt.exists() else None
    if resumed is not None:
        rows, first, prior_time = resumed
    else:
        if ckpt.exists():  # unreadable or not this run's: discarded, start over from a fresh model
            ckpt.unlink()
            model, opt, sched = setup()
        rows, first, prior_time = [[r] for r in measure(0, None, None)], 0, 0.0
    forward = TrainForward(model, mode.compiled)
    bar = Progress(cfg.epochs, progress, f"{cfg.model}/{'+'.join(c.attack for c in cfgs)} θ={cfg.theta} κ={cfg.kappa:g}")
    bar.n = first
    for epoch in range(first, cfg.epochs):
        if max_epochs is not None and epoch - first >= max_epochs:
            bar.close()
            return None
        gen = torch.Generator().manual_seed(1_000_003 * cfg.seed + epoch)
        order = torch.randperm(len(x_tr), generator=gen).to(device)
        tot_loss = tot_pen = 0.0
        n_since = 0
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb = augment(x_tr[idx], cfg.dataset, gen) if cfg.augment else x_tr[idx]
            with autocast(mode, device):
                loss, pen = penalised_loss(forward, train_loss_fn, xb.contiguous(memory_format=fmt), y_tr[idx], cfg.kappa)
            opt.zero_grad(set_to_none=True)
            (loss + pen).backward()
            if cfg.kappa > 0:
                nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            sched.step()
            tot_loss, tot_pen, n_since = tot_loss + loss.item(), tot_pen + pen.item(), n_since + 1
            if not math.isfinite(tot_loss + tot_pen):
                raise FloatingPointError(f"kappa: training diverged at epoch {epoch}, step {i} (loss or penalty not finite with "
                                         f"kappa={cfg.kappa:g}, lr={step_size(cfg):g}): choose a smaller "
                                         f"{'kappa' if cfg.kappa > 0 else 'lr (--set lr=...)'}")
            if i + 1 in marks:
                for r, row in zip(rows, measure(epoch + (i + 1) / steps_per_epoch, tot_loss / n_since, tot_pen / n_since)):
                    r.append(row)
                tot_loss = tot_pen = 0.0
                n_since = 0
        _save_atomic({"schema_version": CHECKPOINT_VERSION, "key": cfg.key(), "model": model.state_dict(),
                      "opt": opt.state_dict(), "sched": sched.state_dict(), "rows": rows[0],
                      "shared_rows": {c.key(): r for c, r in zip(cfgs[1:], rows[1:])}, "completed_epochs": epoch + 1,
                      "wall_time_s": prior_time + time.perf_counter() - started}, ckpt)
        bar.update(f"acc {rows[0][-1]['clean_acc']:.3f} asr {rows[0][-1]['asr']:.3f}")
    bar.close()
    model.eval()
    if model_dir is not None:
        for c in cfgs:
            _save_atomic(model.state_dict(), Path(model_dir) / f"{c.key()}.pt")
    fit = train_fit(model, x_tr, y_tr, p.poison_idx.to(device))
    prov = {"git_commit": git_commit(), "device_name": device_name(device), "versions": library_versions(),
            **mode.provenance(forward.compiled_ran), "wall_time_s": round(prior_time + time.perf_counter() - started, 1),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **({"shared_training": [c.key() for c in cfgs]} if len(cfgs) > 1 else {})}
    results = [{
        "schema_version": SCHEMA_VERSION, "config": asdict(v.cfg), "key": v.cfg.key(), "data_source": data.source,
        "poison": {"n_train": len(y_tr), "n_poison": len(v.p.poison_idx), "poison_idx": v.p.poison_idx.tolist(),
                   "source_labels": v.p.source_labels.tolist(), "target": v.p.target, "n_trigger_test": len(v.p.y_trigger),
                   "trigger_norm": _trigger_norm(v.p, v.x_src)},
        "epochs": r,
        "train_fit": fit,
        **({"final": final_measures(model, v.probe)} if v.probe is not None else {}),
        "provenance": prov,
    } for v, r in zip(views, rows)]
    if remove_checkpoint:
        ckpt.unlink(missing_ok=True)
    return results


def _trigger_norm(p: Poisoned, x_src: Tensor) -> float:
    """RMS norm of the change the test trigger makes, ``sqrt(mean_b |T(x_b) − x_b|²)`` (``a·|t|`` for the crosses)."""
    return float((p.x_trigger - x_src).flatten(1).pow(2).sum(1).mean().sqrt())
