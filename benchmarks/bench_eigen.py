"""Top-10 eigensolvers and single products on the project's own input-Hessian operator.

Compares, on the same operator (float32, eval mode, cross-entropy, untrained weights, random
N(0, 1) inputs and labels): ``top_eigen_block`` (block Lanczos on batched products), ``top_eigen``
(Lanczos, one product per step) and scipy's ``eigsh`` (ARPACK, the operator wrapped as a
``LinearOperator``), all at relative tolerance 1e-3, errors against the exact route's float64
eigenvalues; and one input HVP from a fresh operator against a plain double backward and an
input gradient. Medians of interleaved repeats; the machine's load average at start and end.

Usage, from the repository root: ``python -m benchmarks.bench_eigen --model lenet --n 200 --threads 1 --out benchmarks/results``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from torch import nn

from benchmarks.common import RESULTS, OtherCpu, environment, save, sync
from poisoncurv.core.profiles import resolve_device
from poisoncurv.core.provenance import RunRecord
from poisoncurv.curvature import exact_input_curvature, input_hessian, top_eigen, top_eigen_block
from poisoncurv.models import LeNet, PreActResNet

SETUPS = {"lenet": (lambda: LeNet(), (1, 28, 28)), "resnet20": (lambda: PreActResNet(20), (3, 32, 32))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(SETUPS), required=True)
    p.add_argument("--n", type=int, default=200, help="examples")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results/)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    record = RunRecord(profile="cpu" if device.type == "cpu" else "gpu", device=str(device), seed=0,
                       data_source="random N(0,1) images and random labels; untrained weights (torch seed 0)")
    env_start, other = environment(device), OtherCpu()
    torch.manual_seed(0)
    make, shape = SETUPS[args.model]
    model = make().to(device).eval()
    x, y = torch.randn(args.n, *shape, device=device), torch.randint(0, 10, (args.n,), device=device)
    loss_fn = nn.CrossEntropyLoss()
    t = time.perf_counter()
    ex = exact_input_curvature(model, loss_fn, x, y, check=False)
    H64 = torch.einsum("bci,bce,bej->ij", ex.J.double(), ex.Lam.double(), ex.J.double()) / args.n
    exact = torch.linalg.eigvalsh(H64).flip(0)[: args.k].cpu().numpy()
    first_call_s = time.perf_counter() - t
    v = torch.randn(x[0].numel(), device=device)

    def grad():
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(loss_fn(model(xr), y), xr)

    def plain_double_backward():
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(model(xr), y), xr, create_graph=True)
        torch.autograd.grad(g, xr, v.reshape(1, *shape).expand_as(xr))

    def eig_block():
        return top_eigen_block(input_hessian(model, loss_fn, x, y), args.k, tol=args.tol)

    def eig_lanczos():
        return top_eigen(input_hessian(model, loss_fn, x, y), args.k, tol=args.tol)

    def eig_eigsh():
        op = input_hessian(model, loss_fn, x, y)
        vals = eigsh(op.as_linear_operator(), k=args.k, which="LA", tol=args.tol)[0]
        return np.sort(vals)[::-1]

    runs = {"gradient": grad, "hvp_plain_double_backward": plain_double_backward,
            "hvp_input_hessian_fresh_operator": lambda: input_hessian(model, loss_fn, x, y) @ v,
            "top10_block_lanczos": eig_block, "top10_lanczos": eig_lanczos, "top10_eigsh": eig_eigsh}
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for name, fn in runs.items():  # warm-up, and the accuracy of each solver
        results[name] = fn()
    for _ in range(args.repeats):  # interleaved repeats
        for name, fn in runs.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    out = {"model": args.model, "n_examples": args.n, "input_shape": list(shape), "threads": args.threads,
           "k": args.k, "tol": args.tol, "repeats": args.repeats, "dtype": "float32",
           "first_exact_call_s_including_one_off_costs": first_call_s,
           "times_s": times, "median_s": med, "exact_top": exact.tolist()}
    for name in ("top10_block_lanczos", "top10_lanczos", "top10_eigsh"):
        r = results[name]
        vals = r if isinstance(r, np.ndarray) else r.values.numpy()
        out[f"{name}_max_rel_err"] = float(np.max(np.abs(vals - exact) / np.abs(exact)))
        if not isinstance(r, np.ndarray):
            out[f"{name}_products"], out[f"{name}_converged"] = r.n_products, r.converged
    out["block_speedup_over_eigsh"] = med["top10_eigsh"] / med["top10_block_lanczos"]
    out["block_speedup_over_lanczos"] = med["top10_lanczos"] / med["top10_block_lanczos"]
    out["hvp_over_plain_double_backward"] = med["hvp_input_hessian_fresh_operator"] / med["hvp_plain_double_backward"]
    out["hvp_over_gradient"] = med["hvp_input_hessian_fresh_operator"] / med["gradient"]
    out["environment_start"], out["environment_end"] = env_start, environment(device, other)
    path = save(f"eigen_{args.model}_n{args.n}_t{args.threads}_{device.type}", record, out, args.out)
    print({k: v for k, v in out.items() if "speedup" in k or "over" in k or "err" in k}, "\nwrote", path)


if __name__ == "__main__":
    main()
