"""One lab run's configuration: fields, validation (before any work), hash, and profile sizes.

Training recipe (SGD with momentum, one learning-rate schedule per run), by model:

=============  =====  ========  ======  =============  ===========================================
model          lr     momentum  wd      schedule       init
=============  =====  ========  ======  =============  ===========================================
linear + ce    0.05   0.9       0       constant       zeros (logistic regression from W = 0)
linear + sq    0.01   0.9       0       constant       zeros (least squares from W = 0)
mlp, lenet     0.05   0.9       5e-4    cosine         PyTorch default
preresnet*     0.1    0.9       5e-4    cosine         PyTorch default
=============  =====  ========  ======  =============  ===========================================

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

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from poisoncurv.core.profiles import by_profile, check_profile, resolve_device
from poisoncurv.lab.attacks import check_attack
from poisoncurv.lab.data import check_dataset

SCHEMA_VERSION = 1
MODELS = ("linear", "mlp", "lenet", "preresnet20", "preresnet110")
LOSSES = ("ce", "squared")
SCHEDULES = ("constant", "cosine")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}


@dataclass(frozen=True)
class LabConfig:
    """Everything that determines a run's numbers (``profile`` is a label; sizes are explicit).

    ``kappa`` multiplies the per-example penalty ``(kappa/2)·mean_b |∇_x ℓ_b|²`` (see
    :mod:`poisoncurv.lab.train`); ``theta = 0`` is the clean reference run of ``attack``'s trigger.
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
    weight_decay: float = 0.0
    schedule: str = "constant"
    top_k: int = 5
    seed: int = 0
    device: str = "cpu"
    profile: str = "cpu"

    def key(self) -> str:
        """Short stable hash (16 hex digits) of every field: the results file's name."""
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validate(cfg: LabConfig) -> LabConfig:
    """Return ``cfg`` or raise ``ValueError`` naming the first bad field (checks the device too)."""
    check_dataset(cfg.dataset)
    check_attack(cfg.attack)
    check_profile(cfg.profile)
    if cfg.model not in MODELS:
        raise ValueError(f"model: unknown {cfg.model!r}; choose one of {', '.join(MODELS)}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss: unknown {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule: unknown {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg.model == "lenet" and cfg.dataset != "mnist":
        raise ValueError(f"model: lenet takes 1×28×28 MNIST images, not {cfg.dataset}")
    if cfg.model.startswith("preresnet") and cfg.dataset == "mnist":
        raise ValueError("model: preresnet takes 3×32×32 CIFAR images, not mnist")
    if not (isinstance(cfg.theta, (int, float)) and 0 <= cfg.theta < 1):
        raise ValueError(f"theta: poison fraction must be in [0, 1) (0 = clean reference run), got {cfg.theta!r}")
    if not (isinstance(cfg.kappa, (int, float)) and math.isfinite(cfg.kappa) and cfg.kappa >= 0):
        raise ValueError(f"kappa: penalty weight must be a finite number >= 0, got {cfg.kappa!r}")
    if not 0 <= cfg.target < NUM_CLASSES[cfg.dataset]:
        raise ValueError(f"target: class {cfg.target} outside 0..{NUM_CLASSES[cfg.dataset] - 1}")
    for name in ("epochs", "evals_per_epoch", "batch_size", "n_eval", "top_k"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name}: must be >= 1, got {getattr(cfg, name)!r}")
    for name in ("n_train", "n_test"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"{name}: must be >= 1 or None (all), got {getattr(cfg, name)!r}")
    if not cfg.lr > 0:
        raise ValueError(f"lr: must be > 0, got {cfg.lr!r}")
    if not (cfg.amplitude > 0 and cfg.warp_strength >= 0):
        raise ValueError("amplitude: must be > 0 (and warp_strength >= 0)")
    try:
        resolve_device(cfg.device)
    except ValueError as err:
        raise ValueError(f"device: {err}") from None
    return cfg


def recipe(model: str, loss: str) -> dict[str, Any]:
    """The SGD recipe of the module docstring for ``model`` and ``loss``."""
    if model == "linear":
        return {"lr": 0.05 if loss == "ce" else 0.01, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"}
    lr = 0.1 if model.startswith("preresnet") else 0.05
    return {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}


def profile_config(profile: str, **overrides: Any) -> LabConfig:
    """A validated :class:`LabConfig` with the sizes and recipe of ``profile`` (see the module
    docstring), then ``overrides`` (any field; unknown names raise ``ValueError``)."""
    check_profile(profile)
    known = {f.name for f in fields(LabConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; known: {sorted(known)}")
    dataset = overrides.get("dataset", "mnist")
    model = overrides.get("model", "linear" if dataset == "mnist" else "preresnet20")
    loss = overrides.get("loss", "ce")
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
    return validate(replace(LabConfig(), **{**base, **overrides}))
