"""A lab run against a plain PyTorch loop that trains the same model on the same data.

One process, interleaved repeats. The lab run is :func:`poisoncurv.lab.train.train` on a Chapter 6 configuration
(``grids/ch06.yaml``, cpu profile: LeNet, 20,000 exact-MNIST images, batch 100, ``measure: deep`` at 4 evaluations
an epoch, the stochastic cross at θ = 1 %, seed 0; ``--epochs`` shortens it), everything included: the subset and its
poisons, the probe sets, every evaluation (accuracy, ASR, trigger shift, exact input-Hessian spectra at clean and
triggered inputs, feature geometry), the final eNTK, the per-epoch checkpoint and the provenance. The plain loop
takes the same poisoned training set (built untimed), the same model initialisation, per-epoch orders, SGD with
momentum, weight decay and learning-rate schedule, and does nothing else. Both keep their final weights, which must be
equal: the measurements do not touch the training.

The lab's time is split by wrapping its evaluation (``evaluate_all``, of which ``measure_deep``), the final eNTK and the
final training fit; the rest is training, set-up and bookkeeping. A third loop, the plain one plus the forward passes
that clean accuracy and ASR need at the lab's evaluation marks and the final training fit (``plain_run`` with
``rates_on``), gives the floor of any lab run that reports those rates: ``rates_floor_over_plain``. A second part times
training steps with the input-gradient penalty (κ > 0, double backward) against steps without it on the same batches.

Usage, from the repository root: ``python -m benchmarks.bench_lab [--epochs 2] [--repeats 5] [--threads 1] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import RESULTS, OtherCpu, environment, save, sync
from poisoncurv.core.paths import GRIDS_DIR
from poisoncurv.core.profiles import resolve_device
from poisoncurv.core.provenance import RunRecord
from poisoncurv.lab import deep
from poisoncurv.lab import train as lab_train
from poisoncurv.lab.config import NUM_CLASSES, LabConfig
from poisoncurv.lab.data import ImageData, load, to_float
from poisoncurv.lab.grid import load_grid


def ch06_config(epochs: int, device: str = "cpu", **sizes: int | None) -> LabConfig:
    """The cpu-profile run of ``grids/ch06.yaml``'s ``seeds`` group with the stochastic cross at θ = 1 %, seed 0, for
    ``epochs`` on ``device``; ``sizes`` (``evals_per_epoch``, ``n_train``, ``n_test``, ``n_eval``) replace the grid's
    where given (the tests run it small)."""
    runs = [r.config for r in load_grid(GRIDS_DIR / "ch06.yaml", "cpu", check_device=False).group("seeds")]
    cfg = next(c for c in runs if c.attack == "cross-stochastic" and c.theta == 0.01 and c.seed == 0)
    return replace(cfg, epochs=epochs, device=device, **{k: v for k, v in sizes.items() if v is not None})


class Stopwatch:
    """Wraps ``module.name`` so that the seconds spent inside it add up in ``seconds`` (restored by :meth:`undo`)."""

    def __init__(self, module: Any, name: str):
        self.module, self.name, self.fn, self.seconds, self.calls = module, name, getattr(module, name), 0.0, 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return self.fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        setattr(module, name, timed)

    def undo(self) -> None:
        setattr(self.module, self.name, self.fn)


def lab_run(cfg: LabConfig, data: ImageData, work: Path) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Seconds of one lab run (``total``, ``evaluate``, ``measure_deep``, ``final_eNTK``, ``train_fit``) and its final
    weights."""
    watches = [Stopwatch(lab_train, "evaluate_all"), Stopwatch(lab_train, "measure_deep"),
               Stopwatch(lab_train, "final_measures"), Stopwatch(lab_train, "train_fit")]
    t = time.perf_counter()
    try:
        res = lab_train.train(cfg, data=data, checkpoint_dir=work / "ckpt", progress=False, model_dir=work / "models")
    finally:
        for w in watches:
            w.undo()
    total = time.perf_counter() - t
    ev, md, fin, fit = watches
    weights = torch.load(work / "models" / f"{cfg.key()}.pt", map_location="cpu", weights_only=True)
    return ({"total": total, "evaluate": ev.seconds, "measure_deep": md.seconds, "final_eNTK": fin.seconds,
             "train_fit": fit.seconds,
             "evaluations": ev.calls, "rows": len(res["epochs"])}, weights)


def plain_run(cfg: LabConfig, x: torch.Tensor, y: torch.Tensor,
              rates_on: tuple[torch.Tensor, ...] = ()) -> tuple[float, dict[str, torch.Tensor]]:
    """Seconds of the plain loop on the poisoned training set ``x`` ``(N, C, H, W)``, ``y`` ``(N,)``, and its weights:
    the lab's model, orders, optimiser and schedule, nothing else. With ``rates_on`` (the test set and the triggered
    set) it also makes the forward passes that clean accuracy and ASR need, in eval mode at the lab's evaluation marks
    (:func:`~poisoncurv.lab.train.eval_marks`, and before training), and the final model's pass over the training set
    (the training fit): the least any run reporting those rates at those marks must add to the plain loop."""
    sync(x.device)
    t = time.perf_counter()
    model = lab_train.build_model(cfg, tuple(x.shape[1:]), NUM_CLASSES[cfg.dataset]).to(device=x.device, dtype=x.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lab_train.step_size(cfg), momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    steps = math.ceil(len(x) / cfg.batch_size)
    total = cfg.epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lab_train._lr_factor(cfg, s, total))
    loss_fn = nn.CrossEntropyLoss()

    def rates(images: tuple[torch.Tensor, ...]) -> None:
        model.eval()
        for im in images:
            lab_train._logits(model, im)
        model.train()

    marks = set(lab_train.eval_marks(cfg, steps)) if rates_on else set()
    rates(rates_on)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1_000_003 * cfg.seed + epoch)).to(x.device)
        for i in range(steps):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if i + 1 in marks:
                rates(rates_on)
    if rates_on:
        rates((x,))
    sync(x.device)
    return time.perf_counter() - t, {k: v.cpu() for k, v in model.state_dict().items()}


def penalty_steps(cfg: LabConfig, x: torch.Tensor, y: torch.Tensor, kappa: float, n_steps: int) -> float:
    """Median seconds of one training step (forward, penalised loss, backward, SGD) with ``kappa`` over ``n_steps``."""
    model = lab_train.build_model(cfg, tuple(x.shape[1:]), NUM_CLASSES[cfg.dataset]).to(device=x.device, dtype=x.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=cfg.momentum)
    loss_fn, times = nn.CrossEntropyLoss(), []
    for i in range(n_steps + 2):
        xb, yb = x[i * cfg.batch_size:(i + 1) * cfg.batch_size], y[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        sync(x.device)
        t = time.perf_counter()
        loss, pen = lab_train.penalised_loss(model, loss_fn, xb, yb, kappa)
        opt.zero_grad(set_to_none=True)
        (loss + pen).backward()
        if kappa > 0:
            nn.utils.clip_grad_norm_(model.parameters(), lab_train.CLIP_NORM)
        opt.step()
        sync(x.device)
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(ratios: list[float]) -> dict[str, float]:
    """``median``, ``min`` and ``max`` of per-repeat ratios."""
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--evals-per-epoch", type=int, default=None, help="default: the grid's (4)")
    for size in ("n-train", "n-test", "n-eval"):
        p.add_argument(f"--{size}", type=int, default=None, help="default: the grid's")
    p.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA the lab trains in its GPU mode, bf16 and "
                   "compiled, the plain loop in float32 eager: final weights differ there)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the plain loop (the lab trains on one)")
    p.add_argument("--kappa", type=float, default=0.01, help="κ (lab convention) of the penalty timing (0.01: κ_paper 1e2)")
    p.add_argument("--penalty-steps", type=int, default=40)
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results/)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = ch06_config(args.epochs, args.device, evals_per_epoch=args.evals_per_epoch, n_train=args.n_train,
                      n_test=args.n_test, n_eval=args.n_eval)
    data = load(cfg.dataset)
    record = RunRecord(profile="cpu", device=str(device), seed=cfg.seed, data_source=data.source)
    env_start, other = environment(device), OtherCpu()
    subset, poisoned = lab_train.prepare(cfg, data)
    x, y = poisoned.x_train.to(device), poisoned.y_train.to(device)
    x_test = to_float(subset.x_test).to(device)
    rates_on = (x_test, poisoned.x_trigger.to(device))
    lab_times: list[dict[str, float]] = []
    plain_times: list[float] = []
    rates_times: list[float] = []
    same_weights = True
    for _ in range(args.repeats):  # interleaved: lab, plain, plain with the rates' passes, lab, ...
        with tempfile.TemporaryDirectory() as work:
            times, w_lab = lab_run(cfg, data, Path(work))
        lab_times.append(times)
        t, w_plain = plain_run(cfg, x, y)
        plain_times.append(t)
        t, w_rates = plain_run(cfg, x, y, rates_on)
        rates_times.append(t)
        same_weights &= all(torch.equal(w_lab[k], w_plain[k]) and torch.equal(w_rates[k], w_plain[k]) for k in w_plain)
    lab_med = {k: statistics.median(r[k] for r in lab_times) for k in lab_times[0]}
    plain_med, rates_med = statistics.median(plain_times), statistics.median(rates_times)
    measured = lab_med["evaluate"] + lab_med["final_eNTK"] + lab_med["train_fit"]
    step0 = penalty_steps(cfg, x, y, 0.0, args.penalty_steps)
    step_k = penalty_steps(cfg, x, y, args.kappa, args.penalty_steps)
    out = {"config": asdict(cfg), "key": cfg.key(), "repeats": args.repeats,
           "lab_times_s": lab_times, "plain_times_s": plain_times, "lab_median_s": lab_med, "plain_median_s": plain_med,
           "lab_over_plain": lab_med["total"] / plain_med, "target_lab_over_plain": 1.5,
           "plain_with_rates_times_s": rates_times, "plain_with_rates_median_s": rates_med,
           "rates_floor_over_plain": rates_med / plain_med,
           # the same ratios repeat by repeat (each lab run and loop beside the plain loop it ran next to): median, range
           "paired_over_plain": {name: paired([r / p for r, p in zip(times, plain_times)]) for name, times in
                                 (("lab", [r["total"] for r in lab_times]), ("rates_floor", rates_times))},
           "measurement_share_of_lab_run": measured / lab_med["total"],
           "per_evaluation_s": lab_med["evaluate"] / lab_med["evaluations"],
           "measure_deep_per_evaluation_s": lab_med["measure_deep"] / lab_med["evaluations"],
           "plain_per_evaluation_interval_s": plain_med / (cfg.epochs * cfg.evals_per_epoch),
           "final_weights_equal": same_weights if device.type == "cpu" else None,
           "step_s_kappa0": step0, f"step_s_kappa{args.kappa:g}": step_k, "penalty_step_over_plain_step": step_k / step0,
           "deep_route": {"dense_max": deep.DENSE_MAX, "n_eval": cfg.n_eval, "top_k": cfg.top_k}}
    out["environment_start"], out["environment_end"] = env_start, environment(device, other)
    path = save(f"lab_ch06_e{args.epochs}_v{cfg.evals_per_epoch}_t{args.threads}_{device.type}", record, out, args.out)
    print({k: v for k, v in out.items() if k in ("lab_median_s", "plain_median_s", "lab_over_plain", "rates_floor_over_plain",
                                                "measurement_share_of_lab_run", "final_weights_equal", "paired_over_plain",
                                                "penalty_step_over_plain_step")}, "\nwrote", path)


if __name__ == "__main__":
    main()
