"""Run profiles and device selection, defined once for every chapter and script.

A *profile* fixes the size of a run. Each chapter maps a profile to its own sizes through
:func:`by_profile`, so the four names below mean the same budget everywhere:

========  =====================================================================================
smoke     seconds on one CPU core. Used by the tests; its numbers are never quoted as results.
cpu       what a 2-core CPU machine runs in well under an hour per chapter. Committed outputs.
gpu       what one 45-minute lease on one NVIDIA H100 runs.
full      the paper's scale (as far as it is known); hours on a GPU.
========  =====================================================================================
"""

from __future__ import annotations

from typing import TypeVar

import torch

PROFILES: dict[str, str] = {
    "smoke": "seconds on one CPU core; for tests only, never quoted as results",
    "cpu": "a 2-core CPU machine, well under an hour per chapter; the committed outputs",
    "gpu": "one 45-minute lease on one NVIDIA H100",
    "full": "the paper's scale; hours on a GPU",
}

T = TypeVar("T")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise ``ValueError`` listing the known ones."""
    if profile not in PROFILES:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {profile!r}: choose one of {known} (see poisoncurv.core.profiles)")
    return profile


def by_profile(profile: str, **sizes: T) -> T:
    """Pick the value for ``profile`` from keyword arguments ``smoke=..., cpu=..., gpu=..., full=...``.

    Every profile must be given, so that a chapter cannot silently lack one.
    """
    check_profile(profile)
    missing = [p for p in PROFILES if p not in sizes]
    if missing:
        raise ValueError(f"by_profile needs a value for every profile; missing {missing}")
    extra = [p for p in sizes if p not in PROFILES]
    if extra:
        raise ValueError(f"by_profile got unknown profiles {extra}")
    return sizes[profile]


def resolve_device(device: str | torch.device) -> torch.device:
    """Return a :class:`torch.device` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises ``ValueError`` with a clear message for an unknown name or an absent GPU, before any
    work starts.
    """
    name = str(device)
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but no CUDA GPU is visible to torch; "
                "rerun with DEVICE=cpu, or on a machine with a GPU")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return dev
    raise ValueError(f"unknown device {name!r}: use 'cpu', 'cuda' or 'cuda:N'")


def device_name(device: str | torch.device) -> str:
    """Human-readable name of the hardware behind ``device`` (GPU model or CPU model and threads)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU: {_cpu_model()} ({torch.get_num_threads()} torch threads)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
