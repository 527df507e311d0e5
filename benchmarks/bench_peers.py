"""The input-curvature core against its peers, in one run: one input Hessian-vector product, the
top-10 eigenpairs of the mean input Hessian, and (for PyHessian, which works on parameters) the top
parameter-Hessian eigenvalue.

Every method runs in its own worker process (its own imports, memory and one-off costs); the
driver alternates the methods within each repeat (the order rotates from repeat to repeat) and
reports medians. Float32, eval mode, cross-entropy, untrained weights (torch seed 0), random N(0, 1)
inputs and random labels, the same in every process.

Methods (``--methods`` picks a subset; ``TARGET`` methods run at every ``--threads`` value, the
others at ``--peer-threads`` only):

- products ``v ↦ (1/N) Σ_b H_b v`` from a fresh forward pass: the project's ``input_hessian`` (and
  its cached-graph product, and its batched product of 10 vectors, per vector), a plain double
  backward written out (``autograd.grad`` with ``create_graph``, then ``autograd.grad``), ``torch.func``
  forward-over-reverse and reverse-over-reverse, curvlinops' ``HessianLinearOperator`` over a
  shift parameter added to every input (its Hessian is exactly the mean input Hessian) and its
  experimental ``ActivationHessianLinearOperator`` on the first layer's input (the ``N·d``
  block-diagonal Hessian, applied to ``v`` tiled and summed over examples), BackPACK's
  ``hessianfree.hvp.hessian_vector_product`` (a double backward on any tensor); each result is
  compared with the project's;
- top-10 at relative tolerance ``--tol``: ``top_eigen_block`` on ``exact_input_hessian`` (exact
  factors of a ReLU network, premise checked inside the timed call) and on ``input_hessian`` (block
  Lanczos on the autograd operator, batched double backward), ``top_eigen`` (Lanczos) on
  ``input_hessian``, scipy ``eigsh`` on ``input_hessian``, on ``exact_input_hessian`` and on
  curvlinops' shift-parameter operator; the two ``*_exact_solve`` methods time the block solver and
  ``eigsh`` alone on one exact operator built untimed in set-up (solver against solver on the same
  operator); errors against float64 eigenvalues of the exact factors,
  and true residuals ``‖H u − θ u‖/|θ|`` against the autograd operator ``input_hessian``;
- top parameter eigenvalue at 1e-3: PyHessian's ``hessian(...).eigenvalues()`` (power iteration)
  and the project's ``top_eigen(param_hessian(...), 1)``, with true residuals.

Each method is one function that builds it, registered under its name in ``REGISTRY`` (``@register(name)``);
``build(name, cfg)`` looks it up.

Usage, from the repository root: ``python -m benchmarks.bench_peers --models lenet resnet20 --threads 1 2 --out benchmarks/results``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import RESULTS, OtherCpu, environment, save, sync
from poisoncurv.core.profiles import resolve_device
from poisoncurv.core.provenance import RunRecord

SETUPS = {"lenet": ((1, 28, 28), 1000, "features.0"), "resnet20": ((3, 32, 32), 512, "conv1")}
HVP = ["gradient", "poisoncurv_hvp", "poisoncurv_hvp_cached_graph", "poisoncurv_batched10_per_vector",
       "autograd_double_backward", "torch_func_forward_over_reverse", "torch_func_reverse_over_reverse", "curvlinops_hessian_shift",
       "curvlinops_activation_hessian", "backpack_hvp"]
EIGEN = ["poisoncurv_block_exact", "poisoncurv_block_exact_solve", "poisoncurv_block_autograd", "poisoncurv_lanczos",
         "eigsh_poisoncurv", "eigsh_poisoncurv_exact", "eigsh_poisoncurv_exact_solve", "eigsh_curvlinops_hessian_shift"]
PARAM = ["pyhessian_param_top1", "poisoncurv_param_top1"]
METHODS = HVP + EIGEN + PARAM
TARGET = ["gradient", "poisoncurv_hvp", "poisoncurv_hvp_cached_graph", "poisoncurv_batched10_per_vector",
          "autograd_double_backward", "poisoncurv_block_exact", "poisoncurv_block_exact_solve",
          "poisoncurv_block_autograd", "eigsh_poisoncurv", "eigsh_poisoncurv_exact", "eigsh_poisoncurv_exact_solve"]
PACKAGE = {"curvlinops": "curvlinops-for-pytorch", "backpack": "backpack-for-pytorch", "pyhessian": "pyhessian",
           "eigsh": "scipy", "torch_func": "torch"}
NOT_RUN = {
    "torch_func_top10": "torch.func has no eigensolver; its products are timed above (an eigsh over them costs "
                        "about as many products as eigsh_poisoncurv)",
    "backpack_top10": "BackPACK has no eigensolver; its hessianfree HVP is timed above",
    "backpack_input_curvature_extensions": "none: BackPACK's second-order extensions (DiagHessian, BatchDiagHessian, "
                                           "HMP, DiagGGN, KFAC, KFLR, KFRA) compute parameter quantities only; "
                                           "backpack.hessianfree.hvp.hessian_vector_product is a double backward "
                                           "that accepts the input, benchmarked as backpack_hvp",
    "pyhessian_input_curvature": "none: pyhessian.hessian takes its vectors from model.parameters(); it is "
                                 "benchmarked on the parameter Hessian's top eigenvalue against param_hessian",
}


def make_model(name: str) -> nn.Module:
    from poisoncurv.models import LeNet, PreActResNet

    return LeNet() if name == "lenet" else PreActResNet(20)


def problem(cfg: dict[str, Any]):
    """Model, data and tangent, identical in every process."""
    device = torch.device(cfg["device"])
    shape = tuple(SETUPS[cfg["model"]][0])
    torch.manual_seed(0)
    model = make_model(cfg["model"]).to(device).eval()
    x = torch.randn(cfg["n"], *shape).to(device)
    y = torch.randint(0, 10, (cfg["n"],)).to(device)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(int(np.prod(shape)), generator=gen).to(device)
    return model, nn.CrossEntropyLoss(), x, y, v, shape


class Shift(nn.Module):
    """``model(x + shift)`` with one shift shared by every example: its Hessian in ``shift`` is the
    mean over examples of each example's input Hessian."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.model = model
        self.shift = nn.Parameter(torch.zeros(1, *shape, device=next(model.parameters()).device))

    def forward(self, x):
        return self.model(x + self.shift)


Built = tuple[Callable[[], Any], Callable[[Any], dict[str, Any]]]   # (call, finish), see build()


@dataclass
class Case:
    """One configuration's problem (:func:`problem`) and what the methods share."""

    cfg: dict[str, Any]
    model: nn.Module
    loss_fn: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor
    shape: tuple[int, ...]
    T: torch.Tensor = field(init=False)   # v for every example, shaped like x

    def __post_init__(self):
        self.T = self.v.reshape(1, *self.shape).expand_as(self.x)

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> Case:
        return cls(cfg, *problem(cfg))

    @property
    def k(self) -> int:
        return self.cfg["k"]

    @property
    def tol(self) -> float:
        return self.cfg["tol"]

    @property
    def n(self) -> int:
        return self.cfg["n"]

    def mean_vec(self, h):  # per-example products (N, *shape) -> the mean operator's product (d,)
        return h.reshape(self.n, -1).sum(0)

    def residuals_input(self, values, vectors):
        from poisoncurv.curvature import input_hessian

        U = torch.as_tensor(vectors, dtype=torch.float32, device=self.x.device)
        th = torch.as_tensor(np.asarray(values), dtype=torch.float32, device=self.x.device)
        R = (input_hessian(self.model, self.loss_fn, self.x, self.y) @ U - U * th).norm(dim=0) / th.abs()
        return {"values": [float(t) for t in np.asarray(values)], "true_rel_residuals": R.double().cpu().tolist()}

    def block_finish(self, r):
        return {**self.residuals_input(r.values.cpu().numpy(), r.vectors), "products": r.n_products,
                "converged": r.converged, "block_size": self.k}

    def param_resid(self, P, lam, u):
        u = u / u.norm()
        return {"value": float(lam), "true_rel_residual": float((P @ u - lam * u).norm() / abs(lam))}


def vec_out(h):
    return {"product": h.detach().double().cpu().tolist()}


REGISTRY: dict[str, Callable[[Case], Built]] = {}   # method name -> its builder, in METHODS order


def register(name: str):
    """Decorator: the function builds method ``name`` (``(call, finish)`` from a :class:`Case`)."""
    def add(builder: Callable[[Case], Built]) -> Callable[[Case], Built]:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        REGISTRY[name] = builder
        return builder
    return add


def build(method: str, cfg: dict[str, Any]) -> Built:
    """``(call, finish)``: ``call()`` is what is timed; ``finish(result)`` the untimed check data."""
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(REGISTRY)}")
    case = Case.of(cfg)
    import poisoncurv.curvature  # noqa: F401  (imported in every method's set-up, whichever it uses)

    return REGISTRY[method](case)


# One input HVP (HVP): products v -> (1/N) Σ_b H_b v from a fresh forward pass, each compared with poisoncurv_hvp.

@register("gradient")
def _gradient(c: Case) -> Built:
    def call():
        xr = c.x.clone().requires_grad_(True)
        return torch.autograd.grad(c.loss_fn(c.model(xr), c.y), xr)[0]
    return call, lambda r: {}


@register("poisoncurv_hvp")
def _poisoncurv_hvp(c: Case) -> Built:
    from poisoncurv.curvature import input_hessian

    return (lambda: input_hessian(c.model, c.loss_fn, c.x, c.y) @ c.v), vec_out


@register("poisoncurv_hvp_cached_graph")
def _poisoncurv_hvp_cached_graph(c: Case) -> Built:
    from poisoncurv.curvature import input_hessian

    op = input_hessian(c.model, c.loss_fn, c.x, c.y)
    op @ c.v
    return (lambda: op @ c.v), vec_out


@register("poisoncurv_batched10_per_vector")
def _poisoncurv_batched10_per_vector(c: Case) -> Built:
    from poisoncurv.curvature import input_hessian

    op = input_hessian(c.model, c.loss_fn, c.x, c.y)
    V = torch.cat([c.v[:, None], torch.randn(c.v.shape[0], 9, generator=torch.Generator().manual_seed(2)).to(c.v)], 1)
    op @ V
    return (lambda: op @ V), lambda r: {"product": r[:, 0].double().cpu().tolist(), "per_vector_of": 10}


@register("autograd_double_backward")
def _autograd_double_backward(c: Case) -> Built:
    def call():
        xr = c.x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(c.loss_fn(c.model(xr), c.y), xr, create_graph=True)
        return c.mean_vec(torch.autograd.grad(g, xr, c.T)[0])
    return call, vec_out


@register("torch_func_forward_over_reverse")
def _torch_func_forward_over_reverse(c: Case) -> Built:
    f = torch.func.grad(lambda z: c.loss_fn(c.model(z), c.y))
    return (lambda: c.mean_vec(torch.func.jvp(f, (c.x,), (c.T,))[1])), vec_out


@register("torch_func_reverse_over_reverse")
def _torch_func_reverse_over_reverse(c: Case) -> Built:
    f = torch.func.grad(lambda z: c.loss_fn(c.model(z), c.y))
    return (lambda: c.mean_vec(torch.func.vjp(f, c.x)[1](c.T)[0])), vec_out


@register("curvlinops_hessian_shift")
def _curvlinops_hessian_shift(c: Case) -> Built:
    from curvlinops import HessianLinearOperator

    sm = Shift(c.model, c.shape).eval()
    H = HessianLinearOperator(sm, c.loss_fn, [sm.shift], [(c.x, c.y)])
    return (lambda: H @ c.v), vec_out


@register("curvlinops_activation_hessian")
def _curvlinops_activation_hessian(c: Case) -> Built:
    from curvlinops.experimental import ActivationHessianLinearOperator

    A = ActivationHessianLinearOperator(c.model, c.loss_fn, (SETUPS[c.cfg["model"]][2], "input", 0),
                                        [(c.x.clone().requires_grad_(True), c.y)])
    vt = c.v.repeat(c.n)
    return (lambda: c.mean_vec(A @ vt)), vec_out


@register("backpack_hvp")
def _backpack_hvp(c: Case) -> Built:
    from backpack.hessianfree.hvp import hessian_vector_product

    def call():
        xr = c.x.clone().requires_grad_(True)
        return c.mean_vec(hessian_vector_product(c.loss_fn(c.model(xr), c.y), [xr], [c.T])[0])
    return call, vec_out


# Top k of the mean input Hessian at tolerance tol (EIGEN).

@register("poisoncurv_block_exact")
def _poisoncurv_block_exact(c: Case) -> Built:
    from poisoncurv.curvature import exact_input_hessian, top_eigen_block

    return (lambda: top_eigen_block(exact_input_hessian(c.model, c.loss_fn, c.x, c.y), c.k, tol=c.tol)), c.block_finish


@register("poisoncurv_block_exact_solve")
def _poisoncurv_block_exact_solve(c: Case) -> Built:  # the operator built once, untimed: the solve alone
    from poisoncurv.curvature import exact_input_hessian, top_eigen_block

    op = exact_input_hessian(c.model, c.loss_fn, c.x, c.y)
    return (lambda: top_eigen_block(op, c.k, tol=c.tol)), c.block_finish


@register("poisoncurv_block_autograd")
def _poisoncurv_block_autograd(c: Case) -> Built:  # block Lanczos on the autograd operator (batched double backward)
    from poisoncurv.curvature import input_hessian, top_eigen_block

    return (lambda: top_eigen_block(input_hessian(c.model, c.loss_fn, c.x, c.y), c.k, tol=c.tol)), c.block_finish


@register("poisoncurv_lanczos")
def _poisoncurv_lanczos(c: Case) -> Built:
    from poisoncurv.curvature import input_hessian, top_eigen

    def call():
        return top_eigen(input_hessian(c.model, c.loss_fn, c.x, c.y), c.k, tol=c.tol)
    return call, lambda r: {**c.residuals_input(r.values.numpy(), r.vectors), "products": r.n_products,
                            "converged": r.converged}


def _eigsh(c: Case, linop: Callable[[], Any]) -> Built:
    """scipy ``eigsh`` (ARPACK, ``which="LA"``) on the operator ``linop()`` returns, its products counted; ``linop()``
    is called inside the timed call."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    counter = {"products": 0}

    def counted(lin):
        def mv(u):
            counter["products"] += 1 if np.ndim(u) == 1 else np.shape(u)[1]
            return lin.matmat(u.reshape(lin.shape[0], -1)).reshape(np.shape(u))
        return LinearOperator(lin.shape, matvec=mv, matmat=mv, dtype=np.float64)

    def call():
        counter["products"] = 0
        op = counted(linop())  # a seeded start vector: ARPACK's own draws change between calls (a flaky accuracy check)
        v0 = np.random.default_rng(0).standard_normal(op.shape[0])
        vals, vecs = eigsh(op, k=c.k, which="LA", tol=c.tol, v0=v0)
        order = np.argsort(vals)[::-1]
        return vals[order], vecs[:, order], counter["products"]
    return call, lambda r: {**c.residuals_input(r[0], r[1]), "products": r[2]}


@register("eigsh_poisoncurv")
def _eigsh_poisoncurv(c: Case) -> Built:
    from poisoncurv.curvature import input_hessian

    return _eigsh(c, lambda: input_hessian(c.model, c.loss_fn, c.x, c.y).as_linear_operator())


@register("eigsh_poisoncurv_exact")
def _eigsh_poisoncurv_exact(c: Case) -> Built:
    from poisoncurv.curvature import exact_input_hessian

    return _eigsh(c, lambda: exact_input_hessian(c.model, c.loss_fn, c.x, c.y).as_linear_operator())


@register("eigsh_poisoncurv_exact_solve")
def _eigsh_poisoncurv_exact_solve(c: Case) -> Built:  # the operator built once, untimed: the solve alone
    from poisoncurv.curvature import exact_input_hessian

    built = exact_input_hessian(c.model, c.loss_fn, c.x, c.y).as_linear_operator()
    return _eigsh(c, lambda: built)


@register("eigsh_curvlinops_hessian_shift")
def _eigsh_curvlinops_hessian_shift(c: Case) -> Built:
    def linop():
        from curvlinops import HessianLinearOperator

        sm = Shift(c.model, c.shape).eval()
        return HessianLinearOperator(sm, c.loss_fn, [sm.shift], [(c.x, c.y)], check_deterministic=False).to_scipy(
            np.float64)
    return _eigsh(c, linop)


# Top parameter-Hessian eigenvalue at 1e-3 (PARAM), with true residuals against param_hessian.

@register("pyhessian_param_top1")
def _pyhessian_param_top1(c: Case) -> Built:
    from poisoncurv.curvature import param_hessian

    P = param_hessian(c.model, c.loss_fn, c.x, c.y)
    from pyhessian import hessian

    def call():
        c.model.zero_grad(set_to_none=True)
        h = hessian(c.model, c.loss_fn, data=(c.x, c.y), cuda=c.x.device.type == "cuda")
        vals, vecs = h.eigenvalues(maxIter=100, tol=1e-3, top_n=1)
        c.model.zero_grad(set_to_none=True)
        return vals[0], torch.cat([t.detach().reshape(-1) for t in vecs[0]])
    return call, lambda r: c.param_resid(P, *r)


@register("poisoncurv_param_top1")
def _poisoncurv_param_top1(c: Case) -> Built:
    from poisoncurv.curvature import param_hessian, top_eigen

    P = param_hessian(c.model, c.loss_fn, c.x, c.y)

    def call():
        r = top_eigen(param_hessian(c.model, c.loss_fn, c.x, c.y), 1, tol=1e-3)
        return float(r.values[0]), r.vectors[:, 0]
    return call, lambda r: {**c.param_resid(P, *r)}


def _peak_mib(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA ``max_memory_allocated``, else the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def worker(method: str, cfg: dict[str, Any], conn) -> None:
    """Wait for 'setup'; set up one method and time its first call; then time one call per 'run'."""
    try:
        torch.set_num_threads(cfg["threads"])
        device = torch.device(cfg["device"])
        if conn.recv() != "setup":
            return
        base_mib = _peak_mib(device)
        t = time.perf_counter()
        root = method.split("_")[0]
        if root in ("curvlinops", "backpack", "pyhessian"):
            __import__(root if root != "curvlinops" else "curvlinops.experimental")
        import_s = time.perf_counter() - t
        t = time.perf_counter()
        call, finish = build(method, cfg)
        setup_s = time.perf_counter() - t
        sync(device)
        t = time.perf_counter()
        result = call()
        sync(device)
        first_s = time.perf_counter() - t
        info = {"import_s": import_s, "setup_s": setup_s, "first_call_s": first_s,
                "peak_mib_before_setup": base_mib, **finish(result)}
        conn.send(("ready", info))
        while conn.recv() == "run":
            sync(device)
            t = time.perf_counter()
            call()
            sync(device)
            dt = time.perf_counter() - t
            conn.send(("time", dt, _peak_mib(device)))
    except Exception as e:  # reported in the JSON, never hidden
        conn.send(("error", f"{type(e).__name__}: {e}"))


def inline_worker(method: str, cfg: dict[str, Any]):
    """The same protocol in this process (``--isolation inline``: fast, for tests; no memory numbers)."""
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    t = time.perf_counter()
    call, finish = build(method, cfg)
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    result = call()
    sync(device)
    info = {"import_s": None, "setup_s": setup_s, "first_call_s": time.perf_counter() - t, **finish(result)}

    def run():
        sync(device)
        t = time.perf_counter()
        call()
        sync(device)
        return time.perf_counter() - t, None
    return info, run


def versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "scipy", "numpy", "curvlinops-for-pytorch", "backpack-for-pytorch", "pyhessian", "psutil"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def exact_top(cfg: dict[str, Any]) -> list[float]:
    from poisoncurv.curvature import exact_input_curvature

    model, loss_fn, x, y, _, _ = problem(cfg)
    ex = exact_input_curvature(model, loss_fn, x, y, check=False)
    J = ex.J.double().reshape(-1, ex.J.shape[2])
    LJ = (ex.Lam.double() @ ex.J.double()).reshape(-1, ex.J.shape[2])
    H64 = (J.T @ LJ) / x.shape[0]
    return torch.linalg.eigvalsh(0.5 * (H64 + H64.T)).flip(0)[: cfg["k"]].cpu().tolist()


def run_config(cfg: dict[str, Any], methods: list[str], repeats: int, isolation: str = "process") -> dict[str, Any]:
    env_start, other = environment(torch.device(cfg["device"])), OtherCpu()
    exact = exact_top(cfg)
    runners, info, procs = {}, {}, []
    if isolation == "process":
        ctx = mp.get_context("spawn")
        pipes = {}
        for m in methods:  # start every worker (their torch imports overlap), then set up one at a time
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker, args=(m, cfg, b), daemon=True)
            p.start()
            pipes[m] = a
            procs.append((p, a))
        for m in methods:
            a = pipes[m]
            a.send("setup")
            try:
                msg = a.recv()
            except EOFError:
                msg = ("error", "worker exited")
            if msg[0] == "ready":
                info[m] = msg[1]

                def run(a=a):
                    a.send("run")
                    msg = a.recv()
                    if msg[0] != "time":
                        raise RuntimeError(msg[1])
                    return msg[1], msg[2]
                runners[m] = run
            else:
                info[m] = {"error": msg[1]}
    else:
        for m in methods:
            try:
                info[m], runners[m] = inline_worker(m, cfg)
            except Exception as e:  # reported in the JSON
                info[m] = {"error": f"{type(e).__name__}: {e}"}
    times: dict[str, list[float]] = {m: [] for m in runners}
    peaks: dict[str, list[float]] = {m: [] for m in runners}
    if repeats == 0:  # one call per method (solves of minutes): its first call is its time, warm-up included
        times = {m: [info[m]["first_call_s"]] for m in runners}
        peaks = {m: [None] for m in runners}
    live = list(runners)
    for r in range(repeats):  # interleaved: every method once per repeat, the order rotated
        for m in live[r % len(live):] + live[: r % len(live)] if live else []:
            try:
                dt, peak = runners[m]()
                times[m].append(dt)
                peaks[m].append(peak)
            except Exception as e:
                info[m]["error"] = f"{type(e).__name__}: {e}"
    for p, a in procs:
        try:
            a.send("stop")
        except (BrokenPipeError, OSError):
            pass
        p.join(10)
    out: dict[str, Any] = {**{k: cfg[k] for k in ("model", "n", "threads", "k", "tol", "device")},
                           "repeats": repeats, "exact_top_float64": exact, "methods": {}}
    for m in methods:
        e = dict(info[m])
        if times.get(m):
            e["times_s"] = times[m]
            e["median_s"] = statistics.median(times[m])
            if peaks[m] and peaks[m][-1] is not None:
                e["process_peak_mib"] = max(peaks[m])
            if m == "poisoncurv_batched10_per_vector":
                e["median_s"] /= 10
        out["methods"][m] = e
    ref = out["methods"].get("poisoncurv_hvp", {}).get("product")
    for e in out["methods"].values():
        if "product" in e:
            if ref is not None:
                a, b = np.asarray(e["product"]), np.asarray(ref)
                e["rel_diff_to_poisoncurv_hvp"] = float(np.linalg.norm(a - b) / np.linalg.norm(b))
            del e["product"]
        if "values" in e:
            vals = np.asarray(e["values"])
            e["max_rel_err_vs_float64_exact"] = float(np.max(np.abs(vals - exact) / np.abs(exact)))
            e["max_true_rel_residual"] = float(max(e["true_rel_residuals"]))
    out["ratios"] = ratios(out["methods"])
    out["environment_start"], out["environment_end"] = env_start, environment(torch.device(cfg["device"]), other)
    return out


def ratios(ms: dict[str, Any]) -> dict[str, float]:
    med = {m: e["median_s"] for m, e in ms.items() if "median_s" in e}
    out = {}

    def put(name, num, den):
        if num in med and den in med:
            out[name] = med[num] / med[den]

    put("block_exact_speedup_over_eigsh_poisoncurv", "eigsh_poisoncurv", "poisoncurv_block_exact")
    put("block_exact_speedup_over_eigsh_same_exact_operator", "eigsh_poisoncurv_exact", "poisoncurv_block_exact")
    put("block_exact_solve_speedup_over_eigsh_exact_solve", "eigsh_poisoncurv_exact_solve",
        "poisoncurv_block_exact_solve")
    put("poisoncurv_hvp_over_autograd_double_backward", "poisoncurv_hvp", "autograd_double_backward")
    put("block_autograd_speedup_over_eigsh_same_autograd_operator", "eigsh_poisoncurv", "poisoncurv_block_autograd")
    put("block_exact_speedup_over_lanczos", "poisoncurv_lanczos", "poisoncurv_block_exact")
    put("block_exact_speedup_over_eigsh_curvlinops", "eigsh_curvlinops_hessian_shift", "poisoncurv_block_exact")
    put("eigsh_curvlinops_over_eigsh_poisoncurv", "eigsh_curvlinops_hessian_shift", "eigsh_poisoncurv")
    put("pyhessian_over_poisoncurv_param_top1", "pyhessian_param_top1", "poisoncurv_param_top1")
    for m in HVP[1:]:
        put(f"{m}_over_gradient", m, "gradient")
        if m != "poisoncurv_hvp":
            put(f"{m}_over_poisoncurv_hvp", m, "poisoncurv_hvp")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(SETUPS), default=sorted(SETUPS))
    p.add_argument("--n-lenet", type=int, default=1000, help="LeNet inputs (task: 1,000)")
    p.add_argument("--n-resnet20", type=int, default=512, help="PreActResNet-20 inputs (task: 512)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--peer-threads", type=int, nargs="+", default=[1],
                   help="thread counts at which the non-TARGET methods run (default 1)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved repeats after each method's first call; 0: the first call is the time")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results/)")
    p.add_argument("--isolation", choices=("process", "inline"), default="process",
                   help="process: each method in its own worker process (default); inline: all in this one (tests)")
    p.add_argument("--name", default=None, help="JSON file name without .json (default peers_<device>)")
    args = p.parse_args(argv)
    if args.repeats < 0:
        p.error(f"--repeats must be >= 0, got {args.repeats}")
    device = resolve_device(args.device)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # workers' RSS follows live tensors
    torch.set_num_threads(1)
    record = RunRecord(profile="cpu" if device.type == "cpu" else "gpu", device=str(device), seed=0,
                       data_source="random N(0,1) images and random labels; untrained weights (torch seed 0)")
    t0, other = time.perf_counter(), OtherCpu()
    payload: dict[str, Any] = {"environment_start": environment(device), "versions": versions(),
                               "dtype": "float32", "not_run": NOT_RUN, "target_methods": TARGET,
                               "task_sizes": {m: SETUPS[m][1] for m in SETUPS}, "isolation": args.isolation,
                               "memory_note": "process_peak_mib: the worker's peak resident set size (CPU, ru_maxrss, "
                                              "imports included; compare with peak_mib_before_setup) or CUDA "
                                              "max_memory_allocated", "runs": []}
    for model in args.models:
        n = args.n_lenet if model == "lenet" else args.n_resnet20
        for threads in args.threads:
            methods = [m for m in args.methods if m in TARGET or threads in args.peer_threads]
            cfg = {"model": model, "n": n, "threads": threads, "k": args.k, "tol": args.tol, "device": str(device)}
            t = time.perf_counter()
            res = run_config(cfg, methods, args.repeats, args.isolation)
            res["wall_s"] = time.perf_counter() - t
            payload["runs"].append(res)
            print(model, n, f"t{threads}", f"{res['wall_s']:.0f} s",
                  {k: round(v, 2) for k, v in res["ratios"].items()}, flush=True)
    payload["environment_end"], payload["wall_s"] = environment(device, other), time.perf_counter() - t0
    path = save(args.name or f"peers_{device.type}", record, payload, args.out)
    print("wrote", path)


if __name__ == "__main__":
    main()
