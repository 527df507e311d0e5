"""One lab run's configuration: fields, validation (before any work), hash, and profile sizes.

Validation lives here only: :func:`validate` checks every field's type and range (and sizes
against the full data set, :data:`SPLIT_SIZES`) with one line naming the field, the value and what
is allowed. Entry points: :func:`config_from_fields` (a plain ``{field: value}`` dict: CLI,
grid files, Python callers; stable name and signature), :func:`profile_config` (a profile's sizes
plus overrides) and :func:`parse_value` (command-line text to a field's type, for ``--set``).

Training recipe (SGD with momentum, one learning-rate schedule per run), by model:

=============  =====  ==============  ======  =============  ========  ======================================
model          lr     momentum        wd      schedule       label     init
                                                             smooth.
=============  =====  ==============  ======  =============  ========  ======================================
linear + ce    0.05   0.9             0       constant       0         zeros (logistic regression from W = 0)
linear + sq    0.01   0.9             0       constant       0         zeros (least squares from W = 0)
mlp, lenet     0.05   0.9             5e-4    cosine         0         PyTorch default
preresnet*     0.1    0.9             5e-4    cosine         0         PyTorch default
convnet*       0.4    0.9 (Nesterov)  5e-4    onecycle       0.2       PyTorch default
=============  =====  ==============  ======  =============  ========  ======================================

``onecycle``: the learning rate rises linearly from 0 to ``lr`` over the first :data:`WARMUP` of the steps and falls
linearly to 0 over the rest (Page's DAWNBench schedule). Label smoothing changes the training loss only: every
measurement uses the plain cross-entropy (whose Hessian in the outputs is the same, ``diag p − ppᵀ``).

Training steps run in fp32 unless ``precision: bf16`` (bf16 autocast, on the CPU as on CUDA; 2.2× faster plain steps and
1.5× faster penalised ones for ``convnet32`` on one thread of a Xeon with AMX) and ``compile: true``
(``torch.compile``, κ = 0 only); both enter the configuration key, and measurements are never autocast.

With the input-gradient penalty the learning rate is capped at ``1/κ`` (see
:func:`poisoncurv.lab.train.step_size`).

Sizes per profile (:func:`profile_config`; ``None`` = the whole split):

=========  ==========================================  =====================================
profile    MNIST (linear, mlp, lenet)                   CIFAR (preresnet)
=========  ==========================================  =====================================
smoke      600 train / 300 test, 200 for spectra,       256 / 128, 64 for spectra, 1 epoch,
           6 epochs, batch 50, 2 evaluations per epoch  PreResNet-20
cpu        20000 / 10000, 1000 for spectra, 8 epochs,   5000 / 1000, 200, 5 epochs, PreResNet-20
           batch 100, 4 evaluations per epoch
           (lenet: 10000 / 2000)
gpu        60000 / 10000, 2000, 30 epochs, batch 128,   50000 / 10000, 500, 45 epochs, PreResNet-20
           4 evaluations per epoch
full       60000 / 10000, 5000, 90 epochs, batch 128    50000 / 10000, 1000, 90 epochs, PreResNet-110
=========  ==========================================  =====================================
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, get_args, get_type_hints

from poisoncurv.core.digests import json_key
from poisoncurv.core.profiles import by_profile, check_profile, resolve_device
from poisoncurv.lab.attacks import check_attack
from poisoncurv.lab.data import check_dataset

SCHEMA_VERSION = 1
MODELS = ("linear", "mlp", "lenet", "preresnet8", "preresnet20", "preresnet110",
          "convnet16", "convnet32", "convnet40", "convnet48", "convnet64")
LOSSES = ("ce", "squared")
SCHEDULES = ("constant", "cosine", "onecycle")
WARMUP = 0.2                 # onecycle: the share of the steps over which the learning rate rises
MEASURES = ("basic", "deep")
PRECISIONS = ("fp32", "bf16")  # of the training steps (autocast); every measurement runs in the data's dtype
# filter-then-retrain defences (poisoncurv.lab.filtering): the sample-level detector run on the unfiltered model's features
FILTERS = ("none", "spectral", "spectral-uncentred", "ac", "spectre")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}


@dataclass(frozen=True)
class LabConfig:
    """Everything that determines a run's numbers (``profile`` is a label; sizes are explicit).

    ``kappa`` multiplies the per-example penalty ``(kappa/2)·mean_b |∇_x ℓ_b|²`` (see
    :mod:`poisoncurv.lab.train`); ``theta = 0`` is the clean reference run of ``attack``'s trigger.
    ``filter``: ``none``, or the sample-level detector of a filter-then-retrain defence (:mod:`poisoncurv.lab.filtering`):
    the same run without the filter is trained first, the detector removes what it flags from the training set, and
    this run trains from scratch on the rest.
    ``precision``: ``fp32``, or ``bf16`` for training steps under bf16 autocast (measurements stay in the data's
    dtype); ``compile``: the training forward through ``torch.compile`` (κ = 0 only: compiled graphs do not support
    the penalty's double backward; where compilation fails the run trains eager and its provenance says so).
    ``measure``: ``basic`` (accuracy, ASR and Lanczos spectra at clean inputs) or ``deep`` (adds robust
    accuracy, exact spectra at clean and triggered inputs, feature geometry and the final model's eNTK;
    :mod:`poisoncurv.lab.deep`; models piecewise linear in the input only).
    """

    dataset: str = "mnist"
    model: str = "linear"
    loss: str = "ce"
    attack: str = "cross-deterministic"
    theta: float = 0.01
    kappa: float = 0.0
    target: int = 1
    amplitude: float = 1.0
    warp_strength: float = 0.02
    augment: bool = False
    n_train: int | None = None
    n_test: int | None = None
    n_eval: int = 1000
    epochs: int = 10
    evals_per_epoch: int = 1
    batch_size: int = 100
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    label_smoothing: float = 0.0
    precision: str = "fp32"
    compile: bool = False
    top_k: int = 5
    seed: int = 0
    device: str = "cpu"
    profile: str = "cpu"
    measure: str = "basic"
    filter: str = "none"

    def key(self) -> str:
        """Short stable hash (16 hex digits) of every field: the results file's name. Fields added after
        the first results were cached (:data:`ADDED_FIELDS`) enter the hash only when they differ from
        their default, so older files keep their names."""
        return json_key({k: v for k, v in asdict(self).items() if ADDED_FIELDS.get(k, object()) != v})

    @property
    def kappa_paper(self) -> float:
        """This run's ``kappa`` in the paper's convention: :func:`kappa_paper` of ``kappa`` and ``batch_size``."""
        return kappa_paper(self.kappa, self.batch_size)


def kappa_paper(kappa_lab: float, batch_size: int) -> float:
    """The paper's κ for a lab κ, ``κ_paper = κ_lab · B²`` (the stated assumption: the paper penalises the mean over the
    batch of ``|∇_{x_b} L|²`` with ``L`` the batch-*mean* loss, so ``∇_{x_b} L = g_b / B``, while the lab penalises the
    per-example ``mean_b |g_b|²``). The one place the conversion is written; :func:`kappa_lab` is its inverse."""
    return kappa_lab * batch_size**2


def kappa_lab(kappa_paper: float, batch_size: int) -> float:
    """The lab's κ for a paper κ, ``κ_lab = κ_paper / B²`` (the inverse of :func:`kappa_paper`)."""
    return kappa_paper / batch_size**2


# Images per split of the full data sets, and the input dimension C·H·W (sizes beyond them are refused).
SPLIT_SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "cifar100": (50000, 10000)}
INPUT_DIM = {"mnist": 28 * 28, "cifar10": 3 * 32 * 32, "cifar100": 3 * 32 * 32}
_HINTS = get_type_hints(LabConfig)
# Fields added after the first cached results, with their defaults (left out of the key at the default).
ADDED_FIELDS: dict[str, Any] = {"measure": "basic", "filter": "none", "nesterov": False, "label_smoothing": 0.0,
                                "precision": "fp32", "compile": False}


def _base_type(name: str) -> tuple[type, bool]:
    """``(type, optional)`` of field ``name`` from its annotation (``int | None`` -> ``(int, True)``)."""
    hint = _HINTS[name]
    args = [a for a in get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), bool(args)


def _check_type(name: str, value: Any) -> None:
    """Raise ``ValueError`` (field, value, what is allowed) unless ``value`` has field ``name``'s type."""
    kind, optional = _base_type(name)
    if optional and value is None:
        return
    ok = {bool: value is True or value is False,
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          str: isinstance(value, str)}[kind]
    if not ok:
        allowed = {bool: "True or False", int: "an integer", float: "a finite number", str: "a string"}[kind]
        raise ValueError(f"{name}: got {value!r}; allowed: {allowed}{' or None (all)' if optional else ''}")


def parse_value(name: str, text: str) -> Any:
    """Field ``name``'s value from command-line text (``--set name=text``), by the field's type:
    ``true/false/yes/no/1/0`` for booleans, ``none`` for optional sizes; anything else is passed on as
    text (or a literal) and type-checked by :func:`validate`."""
    known = {f.name for f in fields(LabConfig)}
    if name not in known:
        raise ValueError(f"--set {name}: unknown configuration field; known: {', '.join(sorted(known))}")
    kind, optional = _base_type(name)
    low = text.strip().lower()
    if optional and low in ("none", "null", "all"):
        return None
    if kind is bool and low in ("true", "yes", "1", "false", "no", "0"):
        return low in ("true", "yes", "1")
    if kind is str:
        return text.strip()
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _choose(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: unknown {value!r}; choose one of {', '.join(choices)}")


def validate(cfg: LabConfig) -> LabConfig:
    """Return ``cfg`` or raise ``ValueError`` naming the first bad field, its value and what is allowed.

    Checks every field's type and range, sizes against the full data set (:data:`SPLIT_SIZES`) and
    the device. No data are read: call it before any work.
    """
    for f in fields(LabConfig):
        _check_type(f.name, getattr(cfg, f.name))
    check_dataset(cfg.dataset)
    check_attack(cfg.attack)
    try:
        check_profile(cfg.profile)
    except ValueError as err:
        raise ValueError(f"profile: {err}") from None
    _choose("model", cfg.model, MODELS)
    _choose("loss", cfg.loss, LOSSES)
    _choose("schedule", cfg.schedule, SCHEDULES)
    _choose("measure", cfg.measure, MEASURES)
    _choose("precision", cfg.precision, PRECISIONS)
    if cfg.measure == "deep" and (cfg.model == "linear" or cfg.loss != "ce"):
        raise ValueError(f"measure: 'deep' needs a network with hidden features (mlp, lenet, preresnet*, convnet*) and loss 'ce', "
                         f"got model {cfg.model!r}, loss {cfg.loss!r}")
    _choose("filter", cfg.filter, FILTERS)
    if cfg.filter != "none" and (cfg.theta == 0 or cfg.model == "linear"):
        raise ValueError(f"filter: {cfg.filter!r} needs poisons (theta > 0, got {cfg.theta}) and a network with hidden "
                         f"features (mlp, lenet, preresnet*, convnet*; got {cfg.model!r})")
    if cfg.attack == "lowcurv" and cfg.dataset != "mnist":
        raise ValueError(f"attack: 'lowcurv' (its surrogate is a LeNet) takes mnist, not {cfg.dataset}")
    if cfg.model == "lenet" and cfg.dataset != "mnist":
        raise ValueError(f"model: lenet takes 1×28×28 MNIST images, not {cfg.dataset}")
    if cfg.model.startswith(("preresnet", "convnet")) and cfg.dataset == "mnist":
        raise ValueError(f"model: {cfg.model} takes 3×32×32 CIFAR images, not mnist")
    if not 0 <= cfg.theta < 1:
        raise ValueError(f"theta: poison fraction must be in [0, 1) (0 = clean reference run), got {cfg.theta!r}")
    if not cfg.kappa >= 0:
        raise ValueError(f"kappa: penalty weight must be a finite number >= 0, got {cfg.kappa!r}")
    if not 0 <= cfg.seed < 2**32:
        raise ValueError(f"seed: got {cfg.seed}; allowed: an integer in [0, 2**32)")
    if not 0 <= cfg.target < NUM_CLASSES[cfg.dataset]:
        raise ValueError(f"target: class {cfg.target} outside 0..{NUM_CLASSES[cfg.dataset] - 1}")
    for name in ("epochs", "evals_per_epoch", "batch_size", "n_eval", "top_k", "n_train", "n_test"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}: got {value!r}; allowed: an integer >= 1{' or None (all)' if name.startswith('n_t') else ''}")
    n_train, n_test = SPLIT_SIZES[cfg.dataset]
    for name, most in (("n_train", n_train), ("n_test", n_test), ("n_eval", cfg.n_test or n_test)):
        if getattr(cfg, name) is not None and getattr(cfg, name) > most:
            raise ValueError(f"{name}: got {getattr(cfg, name)}; allowed: at most {most} "
                             f"({'n_test' if name == 'n_eval' and cfg.n_test else cfg.dataset + ' ' + name[2:]} images)")
    if cfg.batch_size > (cfg.n_train or n_train):
        raise ValueError(f"batch_size: got {cfg.batch_size}; allowed: at most n_train = {cfg.n_train or n_train}")
    rank = NUM_CLASSES[cfg.dataset] if cfg.model == "linear" else INPUT_DIM[cfg.dataset]
    if cfg.top_k > rank:
        raise ValueError(f"top_k: got {cfg.top_k}; allowed: at most {rank} "
                         f"({'the number of classes, the rank of a linear model' if cfg.model == 'linear' else 'the input dimension'})")
    checks = (("lr", cfg.lr > 0, "a number > 0"), ("momentum", 0 <= cfg.momentum < 1, "a number in [0, 1)"),
              ("weight_decay", cfg.weight_decay >= 0, "a number >= 0"), ("amplitude", cfg.amplitude > 0, "a number > 0"),
              ("label_smoothing", 0 <= cfg.label_smoothing < 1 and (cfg.label_smoothing == 0 or cfg.loss == "ce"),
               "a number in [0, 1), and 0 unless loss is 'ce'"),
              ("warp_strength", cfg.warp_strength >= 0, "a number >= 0"))
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{name}: got {getattr(cfg, name)!r}; allowed: {allowed}")
    try:
        resolve_device(cfg.device)
    except ValueError as err:
        raise ValueError(f"device: {err}") from None
    return cfg


def config_from_fields(values: dict[str, Any]) -> LabConfig:
    """The validated :class:`LabConfig` with the given field values (the others at their defaults).

    The single entry point for configurations from outside Python code (CLI ``--set``, grid files):
    unknown names, wrong types and out-of-range values raise ``ValueError`` with one line naming the
    field, the value and what is allowed, before any data are read. Stable API.
    """
    known = {f.name for f in fields(LabConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown configuration field(s) {unknown}; known: {', '.join(sorted(known))}")
    for name, value in values.items():
        _check_type(name, value)
    return validate(LabConfig(**values))


def recipe(model: str, loss: str) -> dict[str, Any]:
    """The SGD recipe of the module docstring for ``model`` and ``loss``."""
    if model == "linear":
        return {"lr": 0.05 if loss == "ce" else 0.01, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"}
    if model.startswith("convnet"):
        return {"lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
                "label_smoothing": 0.2}
    lr = 0.1 if model.startswith("preresnet") else 0.05
    return {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}


def profile_config(profile: str, /, **overrides: Any) -> LabConfig:
    """A validated :class:`LabConfig` with the sizes and recipe of ``profile`` (see the module
    docstring), then ``overrides`` (any field; unknown names raise ``ValueError``)."""
    try:
        check_profile(profile)
    except ValueError as err:
        raise ValueError(f"profile: {err}") from None
    if "profile" in overrides and overrides["profile"] != profile:
        raise ValueError(f"profile: got {overrides['profile']!r} as an override; allowed: the profile argument only "
                         f"(CLI: --profile), which also sets the sizes")
    for name in ("dataset", "model", "loss"):
        if name in overrides:
            _check_type(name, overrides[name])
    dataset = overrides.get("dataset", "mnist")
    if dataset not in SPLIT_SIZES:
        check_dataset(dataset)
    model = overrides.get("model", "linear" if dataset == "mnist" else "preresnet20")
    loss = overrides.get("loss", "ce")
    sizes: dict[str, Any]  # the profile's sizes (full CIFAR also names its model)
    if dataset == "mnist":
        sizes = by_profile(profile,
                           smoke=dict(n_train=600, n_test=300, n_eval=200, epochs=6, batch_size=50, evals_per_epoch=2),
                           cpu=dict(n_train=10000 if model == "lenet" else 20000, n_test=2000 if model == "lenet" else None,
                                    n_eval=1000, epochs=8, batch_size=100, evals_per_epoch=4),
                           gpu=dict(n_train=None, n_test=None, n_eval=2000, epochs=30, batch_size=128, evals_per_epoch=4),
                           full=dict(n_train=None, n_test=None, n_eval=5000, epochs=90, batch_size=128))
        augment_default = False
    else:
        sizes = by_profile(profile,
                           smoke=dict(n_train=256, n_test=128, n_eval=64, epochs=1, batch_size=64),
                           cpu=dict(n_train=5000, n_test=1000, n_eval=200, epochs=5, batch_size=128),
                           gpu=dict(n_train=None, n_test=None, n_eval=500, epochs=45, batch_size=128),
                           full=dict(n_train=None, n_test=None, n_eval=1000, epochs=90, batch_size=128, model="preresnet110"))
        model = overrides.get("model", sizes.pop("model", model))
        sizes.pop("model", None)
        augment_default = True
    base = {"dataset": dataset, "model": model, "loss": loss, "augment": augment_default, "profile": profile,
            **recipe(model, loss), **sizes}
    return config_from_fields({**base, **overrides})
