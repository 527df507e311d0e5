"""GPU check for one short lease: at most ``--budget-s`` (default 480 s) on one CUDA GPU.

**Untested on a GPU.** Written in a session that had no GPU (1 December 2026): only its CPU-side parts are
tested (the immediate failure without a GPU, the projection, the epoch timer and the smoke runs on a tiny CPU
model, ``tests/benchmarks/test_gpu_check.py``). The first run on a GPU is its first real test.

What it measures, in this order, each part skipped (and marked so) once the budget is spent:

1. a CIFAR training epoch (50 000 images, augmentation on, the lab's own training step:
   :func:`poisoncurv.lab.train.penalised_loss` in the configuration's mode, bf16 autocast, channels-last) of the
   network of each GPU profile of ``grids/ch07.yaml`` (``gpu``: ConvNet-64 at batch 512; ``full``: PreAct-ResNet-110
   at batch 128) for κ = 0 eager and compiled and κ > 0 eager (compiled graphs have no double backward). Median step
   time × steps per epoch; the first steps (compilation, cuDNN autotuning) are timed apart. Data: the CIFAR-10 copy
   when present, else random images (the timing does not depend on the pixels; the JSON says which);
2. one ``measure="deep"`` evaluation of each network at its profile's ``n_eval``, on CIFAR-10 (exact Jacobians) and,
   for ``full``, CIFAR-100 (Lanczos on Hessian-vector products), random weights;
3. the curvature benchmarks on CUDA at small sizes (``bench_curvature.py``, ``bench_eigen.py``; they write
   their own JSON files beside this one), then, with two minutes left, ``bench_peers.py``'s target methods
   (the block solver on the exact and on the autograd operator against ``eigsh`` on each) for LeNet on
   1,000 inputs and PreActResNet-20 on 128, two repeats (``peers_cuda.json``), and with 90 s left ``bench_lab.py``
   (one epoch of a Chapter 6 lab run against a plain training loop, ``lab_ch06_e1_v4_t1_cuda.json``);
4. the smoke profiles of the Chapter 6 and 7 grids (``grids/ch06.yaml``, ``grids/ch07.yaml``) trained on
   CUDA into a temporary folder (the committed results and notebooks are not touched), on random data where a
   data set is absent, then each chapter's driver (lag, θ, feature and defence analyses) on those runs.

It writes ``benchmarks/results/gpu_check.json`` (atomically, with provenance) and prints the projected
wall time of the ``gpu`` and ``full`` profiles of ``grids/ch07.yaml`` on one such GPU, from the epoch and
evaluation times (:func:`project`: runs one after another; a sweep that runs several small ConvNet runs at once on one
GPU, ``make sweep ... MAX_PARALLEL=4``, takes less). Without a GPU it stops at once with exit status 2.

Usage: ``make gpu-check`` or ``python -m benchmarks.gpu_check [--budget-s 480] [--out PATH]`` from the repository root.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from poisoncurv.core.paths import GRIDS_DIR
from poisoncurv.core.provenance import RunRecord
from poisoncurv.core.results import write_json_atomic
from poisoncurv.lab.config import NUM_CLASSES, LabConfig
from poisoncurv.lab.data import ImageData, load, locate, to_float
from poisoncurv.lab.deep import make_probe
from poisoncurv.lab.grid import load_grid
from poisoncurv.lab.runner import get
from poisoncurv.lab.train import (
    TrainForward,
    augment,
    autocast,
    build_model,
    evaluate,
    make_loss,
    penalised_loss,
    prepare,
    train_mode,
    training_key,
)

OUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"
EVAL_N = 256   # probe inputs of the timed evaluation (the gpu profile's n_eval)
SYNTHETIC = "random uint8 images, labels i mod C (no copy of the data set here; timings do not depend on pixels)"


def require_cuda() -> torch.device:
    """The first CUDA device, or ``SystemExit(2)`` with a message saying that none is visible."""
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False, torch {torch.__version__}, "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')!r}). Run it on a machine with an "
              f"NVIDIA GPU and a CUDA build of torch; nothing was measured.", file=sys.stderr)
        raise SystemExit(2)
    return torch.device("cuda")


def dataset_or_synthetic(name: str, n_train: int, n_test: int, shape: tuple[int, ...]) -> ImageData:
    """The data set ``name`` if a copy is present here (no download), else random images of ``shape``
    ``(C, H, W)`` with labels ``i mod classes`` and the source :data:`SYNTHETIC`."""
    if locate(name) is not None:
        return load(name, download=False)
    gen = torch.Generator().manual_seed(0)
    classes = NUM_CLASSES[name]

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8), torch.arange(n) % classes

    return ImageData(name, *draw(n_train), *draw(n_test), classes, SYNTHETIC)


def epoch_time(cfg: LabConfig, device: torch.device, data: ImageData, compiled: bool, steps: int = 20,
               warmup: int = 3) -> dict[str, Any]:
    """Time the lab's training step for ``cfg`` (its GPU mode, with ``compiled`` forced) on ``device``:
    ``{"step_s", "epoch_s" (median step × steps per epoch of the full training split), "warmup_s",
    **mode provenance}``, or ``{"error": first line}`` if a step fails (e.g. compiled double backward)."""
    mode = replace(train_mode(cfg, device), compiled=compiled)
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    x = to_float(data.x_train[: 4 * cfg.batch_size]).to(device)
    y = data.y_train[: 4 * cfg.batch_size].to(device)
    model = build_model(cfg, tuple(x.shape[1:]), data.num_classes).to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward, loss_fn, gen = TrainForward(model, mode.compiled), make_loss(cfg), torch.Generator().manual_seed(0)
    times = []
    try:
        for _ in range(warmup + steps):
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen).to(device)
            _sync(device)
            t = time.perf_counter()
            xb = augment(x[idx], cfg.dataset, gen) if cfg.augment else x[idx]
            with autocast(mode, device):
                loss, pen = penalised_loss(forward, loss_fn, xb.contiguous(memory_format=fmt), y[idx], cfg.kappa)
            opt.zero_grad(set_to_none=True)
            (loss + pen).backward()
            opt.step()
            _sync(device)
            times.append(time.perf_counter() - t)
    except Exception as err:  # compiled double backward and compiler failures raise many types
        return {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}", "compiled_requested": compiled}
    step = statistics.median(times[warmup:])
    per_epoch = math.ceil(50000 / cfg.batch_size)
    return {"step_s": step, "epoch_s": step * per_epoch, "steps_per_epoch": per_epoch, "warmup_s": sum(times[:warmup]),
            "compiled_requested": compiled, **mode.provenance(forward.compiled_ran)}


def eval_time(cfg: LabConfig, device: torch.device, data: ImageData) -> dict[str, Any]:
    """Wall time of one evaluation of ``cfg`` (``measure="deep"``: accuracies, ASR, spectra at ``n_eval`` clean
    and triggered inputs, feature geometry) with random weights on ``device``."""
    data, p = prepare(cfg, data)
    x_test, y_test = to_float(data.x_test).to(device), data.y_test.to(device)
    x_tr, y_tr = p.x_train.to(device), p.y_train.to(device)
    p = replace(p, x_trigger=p.x_trigger.to(device), y_trigger=p.y_trigger.to(device), direction=p.direction.to(device))
    probe = make_probe(x_test, y_test, p.x_trigger, p.y_trigger, x_tr, y_tr, p.poison_idx.to(device),
                       p.source_labels.to(device), p.direction, cfg.target, cfg.n_eval)
    model = build_model(cfg, tuple(x_tr.shape[1:]), data.num_classes).to(device)
    x_src = x_test[y_test != cfg.target]
    _sync(device)
    t = time.perf_counter()
    out = evaluate(model, make_loss(cfg), cfg, p, x_test, y_test, x_src, x_test[:cfg.n_eval], y_test[:cfg.n_eval], probe)
    _sync(device)
    return {"eval_s": time.perf_counter() - t, "n_eval": cfg.n_eval, "classes": data.num_classes,
            "trig_top1": out["trig_top"][0], "data_source": data.source}


def project(configs: list[LabConfig], epoch_s: dict[tuple[str, bool], float], eval_s: dict[tuple[str, str], float],
            eval_n: int) -> dict[str, Any]:
    """Projected wall time of ``configs`` run one after another on one GPU: per run, ``epochs × epoch_s[(model, κ > 0)]``
    (``epoch_s`` for 50 000 training images at the run's batch size, scaled by the run's ``n_train``) plus
    ``(epochs × evals_per_epoch + 1)`` evaluations of ``eval_s[(model, dataset)]`` each (measured at ``eval_n`` probe
    inputs, scaled by the run's ``n_eval``); a shared training of clean references counts once, with its extra
    evaluations. Returns ``{"runs", "trainings", "hours", "per_run_hours": {min, median, max}}``."""
    per_run, trainings = [], {}
    for c in configs:
        evals = (c.epochs * c.evals_per_epoch + 1) * eval_s[(c.model, c.dataset)] * c.n_eval / eval_n
        train_s = c.epochs * epoch_s[(c.model, c.kappa > 0)] * (c.n_train or 50000) / 50000
        shared = training_key(c)
        per_run.append(evals + (0.0 if shared in trainings else train_s))
        trainings[shared] = True
    hours = [s / 3600 for s in per_run]
    return {"runs": len(configs), "trainings": len(trainings), "hours": sum(hours),
            "per_run_hours": {"min": min(hours), "median": statistics.median(hours), "max": max(hours)} if hours else None}


def smoke_runs(device: torch.device, grids: tuple[str, ...] = ("ch06", "ch07"),
               remaining: Callable[[], float] = lambda: math.inf) -> dict[str, Any]:
    """Train every run of each grid's ``smoke`` profile on ``device`` into a temporary results folder, then run the
    chapter's driver on them (:func:`driver_check`). Returns ``{"runs": one record per run (wall time, accuracy, ASR,
    training mode, data source) or its error, "drivers": {grid: driver_check's record}}``; runs stop when
    ``remaining()`` < 30 s, and a grid with a skipped run skips its driver."""
    runs, drivers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        lab = Path(tmp) / "lab"   # where the drivers look (their results_dir/lab)
        for name in grids:
            complete = True
            for run in load_grid(GRIDS_DIR / f"{name}.yaml", "smoke", check_device=False).runs:
                cfg = replace(run.config, device=str(device))
                if remaining() < 30:
                    runs.append({"grid": name, "key": cfg.key(), "skipped": "time budget"})
                    complete = False
                    continue
                shape = (1, 28, 28) if cfg.dataset == "mnist" else (3, 32, 32)
                data = dataset_or_synthetic(cfg.dataset, cfg.n_train or 600, cfg.n_test or 300, shape)
                t = time.perf_counter()
                try:
                    res = get(cfg, results_dir=lab, force=True, data=data, checkpoint_dir=tmp, keep_model=run.keep_model)
                except Exception as err:  # any failure on the GPU path is what this check is for
                    runs.append({"grid": name, "key": cfg.key(), "error": f"{type(err).__name__}: {str(err)[:300]}"})
                    complete = False
                    continue
                last, prov = res["epochs"][-1], res["provenance"]
                runs.append({"grid": name, "key": cfg.key(), "attack": cfg.attack, "theta": cfg.theta, "kappa": cfg.kappa,
                             "wall_s": round(time.perf_counter() - t, 2), "clean_acc": last["clean_acc"], "asr": last["asr"],
                             "data_source": res["data_source"],
                             **{k: prov.get(k) for k in ("train_mode", "train_precision", "memory_format")}})
            drivers[name] = driver_check(name, str(device), tmp) if complete else {"skipped": "runs missing"}
    return {"runs": runs, "drivers": drivers}


# each chapter's driver and the analyses of it that glue values
DRIVERS = {"ch06": ("cnn_mnist", ("lag", "thetas", "features", "defences")),
           "ch07": ("resnet_cifar", ("fits", "lag", "features", "defences"))}


def driver_check(grid: str, device: str, results_dir: str) -> dict[str, Any]:
    """The chapter driver of ``grid`` on its smoke runs cached in ``<results_dir>/lab`` (trained on ``device``): the
    number of values its analyses (:data:`DRIVERS`) glue, or the error."""
    name, analyses = DRIVERS[grid]
    mod = importlib.import_module(f"poisoncurv.chapters.{name}")
    t = time.perf_counter()
    try:
        runs = mod.load_runs("smoke", device, results_dir)
        runs = runs["cifar10"] if isinstance(runs, dict) else runs
        n = sum(len(getattr(mod, f)(runs).summary()) for f in analyses)
    except Exception as err:  # the analysis of GPU-trained runs is what this check is for
        return {"driver": name, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    return {"driver": name, "glued_values": n, "wall_s": round(time.perf_counter() - t, 2)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peers_benchmark(out_dir: Path) -> dict[str, Any]:
    from benchmarks import bench_peers

    t, threads = time.perf_counter(), torch.get_num_threads()
    bench_peers.main(["--models", "lenet", "resnet20", "--n-resnet20", "128", "--threads", "1", "--methods",
                      *bench_peers.TARGET, "--repeats", "2", "--device", "cuda", "--out", str(out_dir)])
    torch.set_num_threads(threads)  # bench_peers.main sets its driver process to one thread
    return {"bench_peers_s": round(time.perf_counter() - t, 1), "file": f"{out_dir.name}/peers_cuda.json"}


def _lab_benchmark(out_dir: Path) -> dict[str, Any]:
    """``bench_lab.py`` on CUDA: one epoch of the Chapter 6 configuration by the lab against the plain loop, twice."""
    from benchmarks import bench_lab

    t = time.perf_counter()
    bench_lab.main(["--device", "cuda", "--epochs", "1", "--repeats", "2", "--out", str(out_dir)])
    return {"bench_lab_s": round(time.perf_counter() - t, 1), "file": f"{out_dir.name}/lab_ch06_e1_v4_t1_cuda.json"}


def _curvature_benchmarks(out_dir: Path) -> dict[str, Any]:
    from benchmarks import bench_curvature, bench_eigen

    t = time.perf_counter()
    bench_curvature.main(["--model", "resnet20", "--device", "cuda", "--n", "128", "--n-eigen", "128", "--repeats", "2"])
    t_curv = time.perf_counter() - t
    bench_eigen.main(["--model", "resnet20", "--device", "cuda", "--n", "128", "--repeats", "2", "--out", str(out_dir)])
    return {"bench_curvature_s": round(t_curv, 1), "bench_eigen_s": round(time.perf_counter() - t - t_curv, 1),
            "files": ["benchmarks/results/resnet20_cuda.json", f"{out_dir.name}/eigen_resnet20_n128_t1_cuda.json"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new parts after this many seconds")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    device = require_cuda()
    start = time.perf_counter()

    def remaining() -> float:
        return args.budget_s - (time.perf_counter() - start)

    cifar = dataset_or_synthetic("cifar10", 512, 512, (3, 32, 32))
    record = RunRecord(profile="gpu", device=str(device), seed=0, data_source=cifar.source)
    report: dict[str, Any] = {"budget_s": args.budget_s, "epochs": {}, "evals": {}}
    profiles = {p: load_grid(GRIDS_DIR / "ch07.yaml", p, check_device=False) for p in ("gpu", "full")}
    for g in profiles.values():
        c = g.runs[0].config
        kappa_pos = next(r.config.kappa for r in g.group("defence") if r.config.kappa > 0)
        for label, kappa, compiled, need in (("k0_eager", 0.0, False, 30), ("k0_compiled", 0.0, True, 150),
                                             ("kpos_eager", kappa_pos, False, 30)):
            key = f"{c.model}/{label}"
            if remaining() < need:
                report["epochs"][key] = {"skipped": "time budget"}
                continue
            cfg = replace(c, dataset="cifar10", kappa=kappa, augment=True, device="cuda")
            report["epochs"][key] = epoch_time(cfg, device, cifar, compiled)
            print(key, report["epochs"][key], flush=True)
        for name in sorted({r.config.dataset for r in g.runs}):
            key = f"{c.model}/{name}"
            if remaining() < 60:
                report["evals"][key] = {"skipped": "time budget"}
                continue
            cfg = replace(c, dataset=name, measure="deep", n_eval=EVAL_N, theta=0.01, attack="cross-stochastic", device="cuda")
            report["evals"][key] = eval_time(cfg, device, dataset_or_synthetic(name, 2000, 2000, (3, 32, 32)))
            print("eval", key, report["evals"][key], flush=True)
    report["curvature"] = _curvature_benchmarks(args.out.parent) if remaining() > 150 else {"skipped": "time budget"}
    report["peers"] = _peers_benchmark(args.out.parent) if remaining() > 120 else {"skipped": "time budget"}
    report["lab"] = _lab_benchmark(args.out.parent) if remaining() > 90 else {"skipped": "time budget"}
    report["smoke"] = smoke_runs(device, remaining=remaining)
    ep, report["projection"] = report["epochs"], {}
    for p, g in profiles.items():
        model = g.runs[0].config.model

        def best(*labels: str, model: str = model) -> float | None:
            return min((ep[f"{model}/{lb}"]["epoch_s"] for lb in labels if "epoch_s" in ep.get(f"{model}/{lb}", {})), default=None)

        epoch_s = {(model, False): best("k0_eager", "k0_compiled"), (model, True): best("kpos_eager")}
        eval_s = {(model, d): report["evals"].get(f"{model}/{d}", {}).get("eval_s") for d in {r.config.dataset for r in g.runs}}
        if None in epoch_s.values() or None in eval_s.values():
            report["projection"][p] = {"skipped": "epoch or evaluation times missing"}
            continue
        proj = report["projection"][p] = project(g.configs(), epoch_s, eval_s, EVAL_N)
        print(f"projected ch07 {p} profile: {proj['runs']} runs in {proj['trainings']} trainings, {proj['hours']:.2f} GPU-hours "
              f"one after another on one such GPU (median run {proj['per_run_hours']['median'] * 3600:.0f} s)", flush=True)
    report["data_note"] = "CIFAR-10 copy" if cifar.source != SYNTHETIC else f"synthetic fallback: {SYNTHETIC}"
    report["provenance"] = record.finish()
    write_json_atomic(args.out, report)
    print("wrote", args.out, f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
