"""Shared helpers of the curvature benchmarks: timing, peak memory, the PyHessian-style baseline,
and writing results with provenance."""

from __future__ import annotations

import os
import resource
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


class OtherCpu:
    """CPU time that other processes used since construction: the machine's busy time less this
    process's and its descendants' (alive ones through psutil, reaped ones through
    ``RUSAGE_CHILDREN``), in cores on average over the wall time. Unlike the load average (the last
    minute, this process included), it separates what else ran from the benchmark's own threads."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            own += r.ru_utime + r.ru_stime
        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                own += c.user + c.system
            except psutil.Error:  # exited between listing and reading
                pass
        return time.perf_counter(), busy, own

    def cores(self) -> float:
        """Average number of cores other processes kept busy since construction (≥ 0)."""
        (w0, b0, o0), (w1, b1, o1) = self._start, self._snapshot()
        return max(0.0, ((b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9))


def environment(device: torch.device, other: OtherCpu | None = None) -> dict[str, Any]:
    """What else was running: load average, core count, torch threads; with ``other``, the cores that
    other processes used meanwhile (``others_cpu_cores``). ``cpu_shared``: more than a quarter core used by
    others (with ``other``), else a 1-minute load average above 1 (which counts this process too)."""
    load = os.getloadavg()
    env: dict[str, Any] = {"load_average_1_5_15": list(load), "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads()}
    if other is not None:
        env["others_cpu_cores"] = other.cores()
        shared = env["others_cpu_cores"] > 0.25
    else:
        shared = load[0] > 1.0
    env["cpu_shared"] = device.type == "cpu" and shared
    return env


def save(name: str, record: RunRecord, payload: dict[str, Any], out: Path = RESULTS) -> Path:
    """Write ``<out>/<name>.json`` (default ``benchmarks/results/``) with provenance."""
    payload = {**payload, "provenance": record.finish()}
    return write_json_atomic(Path(out) / f"{name}.json", payload)
