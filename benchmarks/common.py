"""Shared helpers of the curvature benchmarks: timing, peak memory, the PyHessian-style baseline,
and writing results with provenance."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import Tensor

from poisoncurv.core.provenance import RunRecord
from poisoncurv.core.results import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median and minimum wall time (s) of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


class PeakMemory:
    """Peak memory (MiB) used while the context is open, above the level at entry.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: resident set size sampled every 2 ms by a
    thread (an estimate: allocations shorter than the sampling period can be missed; meaningful
    when glibc returns freed tensors to the system, which ``bench_curvature.py`` arranges by
    setting ``MALLOC_MMAP_THRESHOLD_``)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.proc, self.stop = psutil.Process(), threading.Event()
            self.base = self.max = self.proc.memory_info().rss
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.max = max(self.max, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.stop.set()
            self.thread.join()
            peak = max(self.max, self.proc.memory_info().rss)
        self.peak_mib = (peak - self.base) / 2**20


def power_iteration_topk(op: Any, k: int, tol: float = 1e-3, max_iter: int = 100, seed: int = 0) -> dict[str, Any]:
    """PyHessian-style baseline: for each of ``k`` eigenpairs, power iteration on the operator with
    the previously found eigenvectors projected out (deflation), stopped when the eigenvalue
    estimate changes by less than ``tol`` relative, or after ``max_iter`` products.

    PyHessian's own code normalises with ``‖v‖ + 1e-6`` and tests ``|Δλ|/(|λ| + 1e-6)``; those
    absolute epsilons are dropped here (they bias eigenvalues near 1e-6), which can only help
    the baseline converge correctly."""
    gen = torch.Generator().manual_seed(seed)
    d = op.shape[0]
    vals: list[float] = []
    vecs: list[Tensor] = []
    products = 0
    for _ in range(k):
        v = torch.randn(d, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
        lam = None
        for _ in range(max_iter):
            for u in vecs:
                v = v - (u @ v) * u
            v = v / v.norm()
            Hv = op @ v
            products += 1
            new = float(v @ Hv)
            v = Hv
            if lam is not None and abs(new - lam) <= tol * abs(lam):
                lam = new
                break
            lam = new
        for u in vecs:
            v = v - (u @ v) * u
        vecs.append(v / v.norm())
        vals.append(lam)
    return {"values": vals, "products": products}


def environment(device: torch.device) -> dict[str, Any]:
    """What else was running: load average, core count, torch threads."""
    return {"load_average_1_5_15": list(os.getloadavg()), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cpu_shared": device.type == "cpu" and os.cpu_count() is not None and os.getloadavg()[0] > 1.0}


def save(name: str, record: RunRecord, payload: dict[str, Any], out: Path = RESULTS) -> Path:
    """Write ``<out>/<name>.json`` (default ``benchmarks/results/``) with provenance."""
    payload = {**payload, "provenance": record.finish()}
    return write_json_atomic(Path(out) / f"{name}.json", payload)
