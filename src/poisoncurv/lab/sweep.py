"""Run a grid's lab runs through submitit: SLURM job arrays on a cluster, a few at a time on one machine.

:func:`sweep` skips every run whose results file is already in the cache, submits the rest through
``submitit.AutoExecutor`` (``slurm``: one job array, at most ``max_parallel`` tasks at once;
``local``: subprocesses, started as earlier ones finish so that at most ``max_parallel`` run at once;
``debug``: in this process, one after another), prints a line per finished run and returns one
:class:`Outcome` per run. Failures are not cached, so running the same sweep again retries exactly
what failed or is missing. Each run is a :class:`RunJob`: on SLURM preemption or time-out submitit
requeues it and the lab resumes from its per-epoch checkpoint. Results files are written atomically
under their configuration key (:mod:`poisoncurv.lab.cache`), so two workers finishing the same
configuration leave one complete file.

submitit is the ``sweep`` extra (``pip install 'poisoncurv[sweep]'``): it is imported when a sweep submits its first
job, so this module, and the rest of the lab, import without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from poisoncurv.core.results import read_json
from poisoncurv.lab.cache import StaleResultError, check_cached, check_writable, model_path, result_path
from poisoncurv.lab.config import LabConfig
from poisoncurv.lab.data import SOURCES, DataNotFoundError, cache_root, ensure, locate
from poisoncurv.lab.grid import MAX_RUNS, Grid, Run, load_grid
from poisoncurv.lab.runner import get, get_shared
from poisoncurv.lab.train import training_key

if TYPE_CHECKING:  # annotations only; the sweep imports submitit through _submitit()
    import submitit

EXECUTORS = ("local", "slurm", "debug")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 minutes) would kill real runs
SWEEP_EXTRA = "a sweep needs submitit: pip install 'poisoncurv[sweep]' (in a checkout: pip install '.[sweep]')"


def _submitit():
    """The ``submitit`` module, imported here (not at module level) so that only a sweep that runs jobs needs the
    ``sweep`` extra; ``ImportError`` (``name="submitit"``) whose message says how to install it."""
    try:
        import submitit
    except ImportError:
        raise ImportError(SWEEP_EXTRA, name="submitit") from None
    return submitit


@dataclass(frozen=True)
class Outcome:
    """What became of one run: ``status`` is ``done``, ``cached`` or ``failed`` (``error``: its first line)."""

    run: Run
    status: str
    error: str | None = None
    clean_acc: float | None = None
    asr: float | None = None
    wall_s: float | None = None


def error_line(text: str) -> str:
    """The line that says what went wrong: a traceback's last line, else the first non-empty line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return lines[-1] if any(line.startswith("Traceback") for line in lines) else lines[0]


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """Final clean accuracy, ASR and training wall time of a results dictionary."""
    last = res["epochs"][-1]
    return {"clean_acc": last["clean_acc"], "asr": last["asr"], "wall_s": res["provenance"]["wall_time_s"]}


class RunJob:
    """The callable submitted per job: trains (or loads) one configuration, or several clean runs that share one
    training (:func:`batches`), into the results cache.

    Returns ``{"status": "done", "runs": [summary of each]}`` or ``{"status": "failed", "error": <first line>}``.
    On preemption submitit calls :meth:`checkpoint`, which resubmits the same call; the lab then resumes from the
    checkpoint it writes after every epoch.
    """

    def __init__(self, results_dir: str | None, checkpoint_dir: str | None, threads: int):
        self.results_dir, self.checkpoint_dir, self.threads = results_dir, checkpoint_dir, threads

    def __call__(self, cfgs: tuple[LabConfig, ...], keep_model: bool = False) -> dict[str, Any]:
        torch.set_num_threads(self.threads)
        try:
            if len(cfgs) == 1:
                results = [get(cfgs[0], self.results_dir, force=False, checkpoint_dir=self.checkpoint_dir, keep_model=keep_model)]
            else:
                results = get_shared(cfgs, self.results_dir, checkpoint_dir=self.checkpoint_dir, keep_model=keep_model)
        except Exception as err:  # reported in the sweep's table; nothing is cached, so a rerun retries it
            return {"status": "failed", "error": error_line(f"{type(err).__name__}: {err}")}
        return {"status": "done", "runs": [summary(res) for res in results]}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same call: what ``submitit.helpers.Checkpointable.checkpoint`` does (submitit looks for a
        ``checkpoint`` method, not for the base class, which would need submitit at import)."""
        return _submitit().helpers.DelayedSubmission(self, *args, **kwargs)


def batches(runs: list[Run]) -> list[list[Run]]:
    """``runs`` in jobs: the clean runs (θ = 0, no filter) that differ only in their trigger
    (:func:`~poisoncurv.lab.train.training_key`) share one job and one training; every other run is a job of its own.
    Jobs in the order of their first run."""
    jobs: dict[Any, list[Run]] = {}
    for run in runs:
        jobs.setdefault(training_key(run.config), []).append(run)
    return list(jobs.values())


def cached(cfg: LabConfig, results_dir: str | os.PathLike | None, keep_model: bool = False) -> dict[str, Any] | None:
    """The cached results of ``cfg`` if a valid file for it exists (and, with ``keep_model``, its weights),
    else ``None`` (missing, corrupt or stale: the run is submitted, and a stale file makes it fail with the
    cache's message)."""
    path = result_path(cfg, results_dir)
    if not path.exists() or (keep_model and not model_path(cfg, results_dir).exists()):
        return None
    try:
        res = read_json(path)
        found = locate(cfg.dataset)
        check_cached(res, cfg, path, SOURCES[found] if found else None)
    except (ValueError, StaleResultError):
        return None
    return res


def default_parallel(threads_per_run: int) -> int:
    """``cores / threads_per_run`` (at least 1), counting the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads_per_run)


def make_executor(kind: str, folder: Path, threads_per_run: int, max_parallel: int,
                  slurm: dict[str, Any] | None = None) -> submitit.Executor:
    """A submitit ``AutoExecutor`` of ``kind`` logging to ``folder``. ``slurm``: ``partition``,
    ``gpus_per_task``, ``time`` (minutes or ``HH:MM:SS``), passed as submitit's ``slurm_*`` parameters."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor: unknown {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if kind == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ValueError("executor: slurm needs SLURM's sbatch and srun on the PATH, and this machine has none: run the "
                         "sweep on the cluster's login node, or use --executor local")
    ex = _submitit().AutoExecutor(folder=folder, cluster=kind)
    if kind == "slurm":
        params = {f"slurm_{k}": v for k, v in (slurm or {}).items() if v is not None}
        ex.update_parameters(cpus_per_task=threads_per_run, slurm_array_parallelism=max_parallel, name="poisoncurv", **params)
    elif kind == "local":
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=torch.cuda.device_count())
    return ex


def _outcomes(runs: list[Run], job: submitit.Job) -> list[Outcome]:
    try:
        out = job.result()
    except Exception as err:  # the job itself died (killed, out of memory, time-out without requeue)
        return [Outcome(run, "failed", error=error_line(str(err))) for run in runs]
    if out["status"] != "done":
        return [Outcome(run, out["status"], error=out.get("error")) for run in runs]
    return [Outcome(run, "done", **res) for run, res in zip(runs, out["runs"])]


def _report(k: int, n: int, o: Outcome) -> None:
    what = o.error if o.status == "failed" else f"acc {o.clean_acc:.3f} asr {o.asr:.3f} ({o.wall_s} s)"
    print(f"[{k}/{n}] {o.status:6s} {o.run.config.key()}  {o.run.name}  {what}", file=sys.stderr, flush=True)


def sweep(grid: Grid, executor: str = "local", max_parallel: int | None = None, threads_per_run: int = 1,
          results_dir: str | os.PathLike | None = None, checkpoint_dir: str | os.PathLike | None = None,
          log_dir: str | os.PathLike | None = None, slurm: dict[str, Any] | None = None,
          poll_s: float = 0.5) -> list[Outcome]:
    """Run every run of ``grid`` that is not cached; returns one :class:`Outcome` per run, in grid order.

    ``max_parallel`` (default :func:`default_parallel`) caps the runs in flight (SLURM: the array's
    parallelism); ``log_dir`` (default ``<data cache>/sweeps/<grid>-<profile>``) holds submitit's files.
    Before anything is submitted, every data set the runs still to do need is located (or downloaded: a missing one
    raises :class:`~poisoncurv.lab.data.DataNotFoundError`), then the results and log folders are checked writable
    (``ValueError`` naming them).
    """
    if threads_per_run < 1:
        raise ValueError(f"threads-per-run: must be >= 1, got {threads_per_run}")
    max_parallel = default_parallel(threads_per_run) if max_parallel is None else max_parallel
    if max_parallel < 1:
        raise ValueError(f"max-parallel: must be >= 1, got {max_parallel}")
    runs = grid.runs
    outcomes: dict[str, Outcome] = {}
    todo = []
    for run in runs:
        res = cached(run.config, results_dir, run.keep_model)
        if res is None:
            todo.append(run)
        else:
            outcomes[run.config.key()] = Outcome(run, "cached", **summary(res))
    ex = _executor(grid, todo, executor, max_parallel, threads_per_run, results_dir, log_dir, slurm) if todo else None
    print(f"{grid.path} [{grid.profile}]: {len(runs)} runs, {len(outcomes)} cached, {len(todo)} to run "
          f"({executor}, at most {max_parallel} at once)", file=sys.stderr, flush=True)
    if ex is not None:
        fn = RunJob(None if results_dir is None else str(results_dir),
                    None if checkpoint_dir is None else str(checkpoint_dir), threads_per_run)
        _drive(ex, fn, todo, executor, max_parallel, poll_s, outcomes)
    return [outcomes[run.config.key()] for run in runs]


def _executor(grid: Grid, todo: list[Run], executor: str, max_parallel: int, threads_per_run: int,
              results_dir: str | os.PathLike | None, log_dir: str | os.PathLike | None,
              slurm: dict[str, Any] | None) -> submitit.Executor:
    """The executor for ``todo`` after the checks that precede any submission, each failing in one line: the data sets
    are present (or downloaded; nothing is created before), the results and log folders can hold files, SLURM is there
    when asked for, submitit is installed."""
    _submitit()  # before any download or folder: without the sweep extra, fail first
    for dataset in sorted({run.config.dataset for run in todo}):
        ensure(dataset)
    folder = Path(log_dir or cache_root() / "sweeps" / f"{grid.path.stem}-{grid.profile}")
    check_writable(result_path(todo[0].config, results_dir).parent)
    check_writable(folder, "sweep log folder", "--log-dir")
    return make_executor(executor, folder, threads_per_run, max_parallel, slurm)


def _drive(ex: submitit.Executor, fn: RunJob, todo: list[Run], executor: str, max_parallel: int, poll_s: float,
           outcomes: dict[str, Outcome]) -> None:
    """Submit ``todo`` in its :func:`batches` (SLURM: one array; else a window of ``max_parallel`` jobs) and collect
    outcomes as jobs end."""
    waiting, running = batches(todo), {}
    n = len(outcomes) + len(todo)

    def args(batch: list[Run]) -> tuple[tuple[LabConfig, ...], bool]:
        return tuple(r.config for r in batch), any(r.keep_model for r in batch)

    if executor == "slurm":
        running = dict(zip(ex.map_array(fn, *zip(*map(args, waiting))), waiting))
        waiting = []
    try:
        while waiting or running:
            while waiting and len(running) < max_parallel:
                batch = waiting.pop(0)
                running[ex.submit(fn, *args(batch))] = batch
            finished = [job for job in running if job.done()]
            for job in finished:
                for o in _outcomes(running.pop(job), job):
                    outcomes[o.run.config.key()] = o
                    _report(len(outcomes), n, o)
            if not finished:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for job in running:
            job.cancel(check=False)
        print(f"interrupted: cancelled {len(running)} running job(s); rerun the same command to finish the rest",
              file=sys.stderr)
        raise


def table(outcomes: list[Outcome]) -> str:
    """The final table: one line per run (status, key, name, accuracy and ASR or the error), then the counts."""
    lines = [f"{'status':7s} {'key':16s}  {'clean_acc':>9s} {'asr':>6s}  run / error"]
    for o in outcomes:
        nums = f"{o.clean_acc:9.4f} {o.asr:6.3f}" if o.status != "failed" else f"{'-':>9s} {'-':>6s}"
        lines.append(f"{o.status:7s} {o.run.config.key()}  {nums}  {o.run.name}" + (f"\n{'':26s}{o.error}" if o.error else ""))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "cached", "failed")}
    lines.append(f"done {counts['done']}, cached {counts['cached']}, failed {counts['failed']} (of {len(outcomes)})")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _slurm_time(text: str) -> int | str:
    """Minutes (``240``) or SLURM's ``[D-]HH:MM:SS`` (``1-00:00:00``)."""
    if text.isdigit() and int(text) > 0:
        return int(text)
    if not all(part.isdigit() for part in text.replace("-", ":").split(":")):
        raise argparse.ArgumentTypeError(f"expected minutes or [D-]HH:MM:SS, got {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m poisoncurv.lab sweep GRID ...``: exit 0 when every run is done or cached, 1 when some
    failed (rerun to retry them), 2 for a bad grid or option, missing data or no submitit (before anything is submitted)."""
    ap = argparse.ArgumentParser(prog="python -m poisoncurv.lab sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", help="grid file, e.g. grids/ch05.yaml")
    ap.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | full")
    ap.add_argument("--executor", default="local", choices=EXECUTORS, help="local (default) | slurm | debug (in-process)")
    ap.add_argument("--max-parallel", type=_positive_int, default=None,
                    help="runs at once (default: cores / threads-per-run; SLURM: array parallelism)")
    ap.add_argument("--threads-per-run", type=_positive_int, default=1, help="CPU threads per run (SLURM: cpus-per-task)")
    ap.add_argument("--slurm-partition", default=None)
    ap.add_argument("--slurm-gpus-per-task", type=_positive_int, default=None)
    ap.add_argument("--slurm-time", type=_slurm_time, default=240, help="per job: minutes or [D-]HH:MM:SS (default 240); "
                    "a timed-out run is requeued and resumes from its checkpoint")
    ap.add_argument("--results-dir", default=None, help="default: results/lab")
    ap.add_argument("--checkpoint-dir", default=None, help="default: <data cache>/checkpoints (shared by the cluster's nodes)")
    ap.add_argument("--log-dir", default=None, help="submitit's files; default: <data cache>/sweeps/<grid>-<profile>")
    ap.add_argument("--yes", action="store_true", help=f"run a grid of more than {MAX_RUNS:,} runs (refused otherwise)")
    args = ap.parse_args(argv)
    try:
        grid = load_grid(args.grid, args.profile, check_device=args.executor != "slurm", max_runs=None if args.yes else MAX_RUNS)
        outcomes = sweep(grid, args.executor, args.max_parallel, args.threads_per_run, args.results_dir,
                         args.checkpoint_dir, args.log_dir,
                         {"partition": args.slurm_partition, "gpus_per_task": args.slurm_gpus_per_task, "time": args.slurm_time})
    except (ValueError, DataNotFoundError) as err:
        print(f"poisoncurv.lab sweep: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        if err.name != "submitit":
            raise
        print(f"poisoncurv.lab sweep: {err}", file=sys.stderr)
        return 2
    print(table(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
