"""Benchmark the input-curvature core on LeNet (MNIST-shaped) or PreActResNet-20 (CIFAR-shaped).

Random N(0, 1) images, random labels and untrained weights (timings do not depend on training).
Three measurements, each with its peak memory:

1. one input Hessian-vector product (double backward; forward-over-reverse) vs one input gradient,
   and the cost of a product once the first-order graph is cached (what Lanczos pays per step);
2. top-10 eigenpairs of the mean input Hessian at 1e-3 relative accuracy: Lanczos vs the
   PyHessian-style deflated power iteration on the same operator (stopping tolerance 1e-3 as in
   PyHessian, and 1e-4), and the exact route; errors
   measured against the exact eigenvalues (exact route, float64 accumulation, ``eigvalsh``);
3. every example's exact spectrum: exact route (C backward passes, C×C eigenproblems) on the whole
   batch vs the dense route (d products, d×d ``eigvalsh``) on a subset, extrapolated linearly in
   the number of examples (the dense route's cost is per example).

Usage, from the repository root: ``python -m benchmarks.bench_curvature --model lenet --device cpu`` (see README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from benchmarks.common import OtherCpu, PeakMemory, environment, power_iteration_topk, save, sync, timed
from poisoncurv.core.profiles import resolve_device
from poisoncurv.core.provenance import RunRecord
from poisoncurv.curvature import exact_input_curvature, input_hessian, per_example_input_hessian, premise_gap, top_eigen
from poisoncurv.models import LeNet, PreActResNet

SETUPS = {  # model, input shape, batch of the task, CPU sizes for parts 2 and 3
    "lenet": (lambda: LeNet(), (1, 28, 28), 1000, {"eigen": 200, "dense": 4}),
    "resnet20": (lambda: PreActResNet(20), (3, 32, 32), 512, {"eigen": 32, "dense": 1}),
}


def hvp_vs_grad(model, loss_fn, x, y, device, repeats):
    """Part 1: times (s) and peak memory (MiB) of one input gradient and one input HVP."""
    v = torch.randn(x[0].numel(), device=device)

    def grad():
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(loss_fn(model(xr), y), xr)

    runs = {"gradient": grad}
    for method in ("double_backward", "forward_over_reverse"):
        runs[f"hvp_{method}"] = (lambda m: lambda: input_hessian(model, loss_fn, x, y, method=m,
                                                                   cache_graph=False) @ v)(method)
    cached = input_hessian(model, loss_fn, x, y)
    cached @ v
    runs["hvp_cached_graph_product"] = lambda: cached @ v
    out = {}
    for name, fn in runs.items():
        with PeakMemory(device) as mem:
            out[name] = timed(fn, device, repeats)
        out[name]["peak_mib"] = round(mem.peak_mib, 1)
    g = out["gradient"]["median_s"]
    best = min(("double_backward", "forward_over_reverse"), key=lambda m: out[f"hvp_{m}"]["median_s"])
    out["faster_method"] = best
    out["hvp_over_gradient"] = out[f"hvp_{best}"]["median_s"] / g
    out["hvp_over_gradient_other_method"] = {m: out[f"hvp_{m}"]["median_s"] / g
                                             for m in ("double_backward", "forward_over_reverse")}
    out["cached_product_over_gradient"] = out["hvp_cached_graph_product"]["median_s"] / g
    out["target_hvp_over_gradient_max"] = 3.0
    return out


def rel_errors(values, exact):
    return [abs(float(a) - float(b)) / abs(float(b)) for a, b in zip(values, exact)]


def top10(model, loss_fn, x, y, device, k=10, tol=1e-3):
    """Part 2: Lanczos vs deflated power iteration vs exact route for the top-k of the mean input Hessian."""
    ex = exact_input_curvature(model, loss_fn, x, y, check=False)
    H64 = torch.einsum("bci,bce,bej->ij", ex.J.double(), ex.Lam.double(), ex.J.double()) / x.shape[0]
    exact = torch.linalg.eigvalsh(H64).flip(0)[:k].cpu()
    out = {"n_examples": x.shape[0], "k": k, "tol": tol, "exact_top": exact.tolist()}

    def run(name, fn):
        with PeakMemory(device) as mem:
            sync(device)
            t = time.perf_counter()
            res = fn()
            sync(device)
            dt = time.perf_counter() - t
        return res, {"time_s": dt, "peak_mib": round(mem.peak_mib, 1)}

    res, stats = run("lanczos", lambda: top_eigen(input_hessian(model, loss_fn, x, y), k, tol=tol))
    out["lanczos"] = {**stats, "products": res.n_products, "converged": res.converged,
                      "max_rel_err": max(rel_errors(res.values, exact))}
    for name, ptol in (("power_iteration_baseline", tol), ("power_iteration_baseline_tight", tol / 10)):
        res, stats = run("power", lambda: power_iteration_topk(input_hessian(model, loss_fn, x, y), k, tol=ptol))
        out[name] = {**stats, "stop_tol": ptol, "products": res["products"],
                     "max_rel_err": max(rel_errors(res["values"], exact)),
                     "rel_err_each": rel_errors(res["values"], exact)}

    def exact_route():
        e = exact_input_curvature(model, loss_fn, x, y, check=False)
        return torch.linalg.eigvalsh(e.dense()).flip(0)[:k]

    vals, stats = run("exact", exact_route)
    out["exact_route_dense_average"] = {**stats, "max_rel_err": max(rel_errors(vals.cpu(), exact))}
    out["lanczos_speedup_over_baseline"] = out["power_iteration_baseline"]["time_s"] / out["lanczos"]["time_s"]
    out["lanczos_speedup_over_tight_baseline"] = (out["power_iteration_baseline_tight"]["time_s"]
                                                  / out["lanczos"]["time_s"])
    out["note"] = ("baseline stops when the eigenvalue estimate changes by < stop_tol relative (PyHessian's rule, "
                   "tol 1e-3, at most 100 products per eigenpair); that rule does not guarantee 1e-3 accuracy, so "
                   "a run with stop_tol = tol/10 is timed too. Lanczos stops when every residual is <= tol·|θ|.")
    out["target_speedup_min"] = 3.0
    return out


def exact_vs_dense(model, loss_fn, x, y, device, n_dense):
    """Part 3: every example's spectrum, exact route on all examples vs dense route on a subset."""
    out = {"n_examples": x.shape[0], "n_dense_subset": n_dense, "d": x[0].numel()}
    with PeakMemory(device) as mem:
        sync(device)
        t = time.perf_counter()
        vals = exact_input_curvature(model, loss_fn, x, y, check=False).eigvals()
        sync(device)
        out["exact_time_s"] = time.perf_counter() - t
    out["exact_peak_mib"] = round(mem.peak_mib, 1)
    t = time.perf_counter()
    out["premise_gap"] = premise_gap(model, loss_fn, x, y)
    out["premise_check_time_s"] = time.perf_counter() - t
    with PeakMemory(device) as mem:
        sync(device)
        t = time.perf_counter()
        dense = torch.linalg.eigvalsh(per_example_input_hessian(model, loss_fn, x[:n_dense], y[:n_dense]).dense())
        sync(device)
        out["dense_subset_time_s"] = time.perf_counter() - t
    out["dense_peak_mib"] = round(mem.peak_mib, 1)
    C = vals.shape[1]
    top = dense.flip(-1)[:, :C]
    scale = top[:, :1].abs()
    out["max_abs_diff_over_lambda_max"] = float(((top - vals[:n_dense]).abs() / scale).max())
    out["dense_rest_over_lambda_max"] = float((dense.flip(-1)[:, C:].abs() / scale).max())
    out["dense_time_extrapolated_s"] = out["dense_subset_time_s"] * x.shape[0] / n_dense
    out["speedup_exact_over_dense"] = out["dense_time_extrapolated_s"] / out["exact_time_s"]
    out["extrapolation"] = (f"dense route measured on {n_dense} example(s) and scaled by {x.shape[0]}/{n_dense}: its "
                            "cost (d batched products and one d×d eigvalsh per example) is linear in the examples")
    out["target_speedup_min"] = 100.0
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(SETUPS), required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, help="examples for part 1 and part 3's exact route (default: the task's size)")
    p.add_argument("--n-eigen", type=int, help="examples for part 2 (default: the task's size on cuda, reduced on cpu)")
    p.add_argument("--n-dense", type=int, help="examples for the dense route in part 3 (default 4 LeNet, 1 ResNet)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on cores shared with other jobs, 2 threads spin and run "
                        "up to 40x slower)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    make, shape, n_task, cpu_sizes = SETUPS[args.model]
    n = args.n or n_task
    n_eigen = args.n_eigen or (n_task if device.type == "cuda" else cpu_sizes["eigen"])
    n_dense = args.n_dense or cpu_sizes["dense"]
    record = RunRecord(profile="cpu" if device.type == "cpu" else "gpu", device=str(device), seed=args.seed,
                       data_source="random N(0,1) images and random labels; untrained weights (torch seed)")
    torch.manual_seed(args.seed)
    model = make().to(device).eval()
    x = torch.randn(n, *shape, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    loss_fn = nn.CrossEntropyLoss()
    payload = {
        "model": args.model, "input_shape": list(shape), "n_task": n_task, "dtype": "float32",
        "sizes": {"part1_hvp_vs_grad": n, "part2_top10": n_eigen, "part3_exact": n, "part3_dense_subset": n_dense},
        "sizes_note": (f"part 2 uses {n_eigen} of the task's {n_task} examples on CPU to keep the run to minutes"
                       if n_eigen < n_task else "task sizes"),
        "environment": environment(device),
    }
    other = OtherCpu()
    payload["hvp_vs_gradient"] = hvp_vs_grad(model, loss_fn, x, y, device, args.repeats)
    print("part 1", {k: v for k, v in payload["hvp_vs_gradient"].items() if "over" in k}, flush=True)
    payload["top10"] = top10(model, loss_fn, x[:n_eigen], y[:n_eigen], device)
    print("part 2 speedup", payload["top10"]["lanczos_speedup_over_baseline"], flush=True)
    payload["exact_vs_dense"] = exact_vs_dense(model, loss_fn, x, y, device, n_dense)
    print("part 3 speedup", payload["exact_vs_dense"]["speedup_exact_over_dense"], flush=True)
    payload["environment_end"] = environment(device, other)
    path = save(f"{args.model}_{device.type}", record, payload)
    print("wrote", path)


if __name__ == "__main__":
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc: serve every allocation >= 64 KiB by mmap and unmap it on free, so that the resident
        # set size follows the live tensors and its sampled peak measures each phase's memory
        # started again the way it was started: by module name under ``python -m`` (the package's imports need it)
        how = ["-m", __spec__.name] if __spec__ is not None else [sys.argv[0]]
        os.execve(sys.executable, [sys.executable, *how, *sys.argv[1:]], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    main()
