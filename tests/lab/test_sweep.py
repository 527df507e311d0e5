"""Sweeps through submitit: debug and local executors, kill and rerun, SLURM against stub commands, concurrent writers."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lab_files import idx_bytes

import poisoncurv
from poisoncurv.lab.__main__ import main as cli
from poisoncurv.lab.config import SCHEMA_VERSION
from poisoncurv.lab.data import SOURCES
from poisoncurv.lab.grid import load_grid
from poisoncurv.lab.sweep import RunJob, sweep

GRID = """
base: {model: linear, attack: cross-deterministic, device: cpu}
profiles:
  smoke:
    groups:
      g: {axes: {loss: [squared, ce], theta: [0.02, 0.1]}}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Synthetic MNIST (noisy class prototypes) in torchvision's layout, and the environment workers inherit."""
    rng = np.random.default_rng(0)
    protos = rng.random((10, 28, 28))
    raw = tmp_path / "data" / "mnist-download" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 700), ("t10k", 350)):
        y = np.arange(n) % 10
        x = np.clip(protos[y] + 0.5 * rng.random((n, 28, 28)), 0, 1) * 255
        x[:, 20:, 20:] = 0
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(x))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(y))
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    monkeypatch.setenv("PYTHONPATH", str(Path(poisoncurv.__file__).parents[1]))
    monkeypatch.delenv("FORCE", raising=False)
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID)
    return tmp_path, grid


def numbers(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text())["epochs"] for p in sorted(folder.glob("*.json"))}


@pytest.mark.slow
def test_debug_then_local_give_the_same_numbers_and_rerun_is_cached(env):
    tmp, grid_path = env
    grid = load_grid(grid_path, "smoke")
    out = sweep(grid, "debug", results_dir=tmp / "a", checkpoint_dir=tmp / "ck", log_dir=tmp / "log")
    assert [o.status for o in out] == ["done"] * 4
    assert sorted(numbers(tmp / "a")) == sorted(c.key() for c in grid.configs())
    assert [o.status for o in sweep(grid, "debug", results_dir=tmp / "a", log_dir=tmp / "log")] == ["cached"] * 4
    local = sweep(grid, "local", max_parallel=2, results_dir=tmp / "b", checkpoint_dir=tmp / "ck", log_dir=tmp / "log2")
    assert [o.status for o in local] == ["done"] * 4
    assert numbers(tmp / "b") == numbers(tmp / "a")
    assert not list((tmp / "ck").glob("*.pt"))


def test_kept_models_are_written_and_a_missing_one_is_recomputed(env):
    tmp, grid_path = env
    grid_path.write_text(GRID.replace("0.1]}}", "0.1]}, keep_model: true}"))
    grid = load_grid(grid_path, "smoke")
    assert all(r.keep_model for r in grid.runs)
    out = sweep(grid, "debug", results_dir=tmp / "a", checkpoint_dir=tmp / "ck", log_dir=tmp / "log")
    assert [o.status for o in out] == ["done"] * 4
    models = sorted((tmp / "a" / "models").glob("*.pt"))
    assert [p.stem for p in models] == sorted(c.key() for c in grid.configs())
    first = grid.runs[0].config
    import torch

    from poisoncurv.lab.train import build_model
    net = build_model(first, (1, 28, 28), 10)
    net.load_state_dict(torch.load(tmp / "a" / "models" / f"{first.key()}.pt", weights_only=True))
    (tmp / "a" / "models" / f"{first.key()}.pt").unlink()
    again = sweep(grid, "debug", results_dir=tmp / "a", log_dir=tmp / "log")
    assert [o.status for o in again] == ["done"] + ["cached"] * 3
    assert (tmp / "a" / "models" / f"{first.key()}.pt").exists()


def test_a_failed_run_is_reported_and_retried(env):
    tmp, grid_path = env
    grid = load_grid(grid_path, "smoke")
    stale = tmp / "res" / f"{grid.runs[1].config.key()}.json"
    stale.parent.mkdir()
    fields = {k: None for k in ("config", "data_source", "poison", "epochs", "provenance")}
    stale.write_text(json.dumps({"schema_version": -1, "key": "x", **fields}))      # a file from an older schema
    out = sweep(grid, "debug", results_dir=tmp / "res", checkpoint_dir=tmp / "ck", log_dir=tmp / "log")
    assert [o.status for o in out] == ["done", "failed", "done", "done"]
    assert out[1].error.startswith("StaleResultError:") and "schema version -1" in out[1].error
    stale.unlink()
    again = sweep(grid, "debug", results_dir=tmp / "res", checkpoint_dir=tmp / "ck", log_dir=tmp / "log")
    assert [o.status for o in again] == ["cached", "done", "cached", "cached"]


@pytest.mark.slow
def test_killed_sweep_resumes_with_the_numbers_of_an_uninterrupted_one(env):
    tmp, grid_path = env
    sweep(load_grid(grid_path, "smoke"), "debug", results_dir=tmp / "whole", checkpoint_dir=tmp / "ck0", log_dir=tmp / "l0")
    cmd = [sys.executable, "-m", "poisoncurv.lab", "sweep", str(grid_path), "--profile", "smoke", "--executor", "local",
           "--max-parallel", "1", "--results-dir", str(tmp / "cut"), "--checkpoint-dir", str(tmp / "ck"), "--log-dir", str(tmp / "l1")]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (list((tmp / "cut").glob("*.json")) and list((tmp / "ck").glob("*.pt"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid-run
    proc.wait()
    assert 1 <= len(list((tmp / "cut").glob("*.json"))) < 4
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert numbers(tmp / "cut") == numbers(tmp / "whole")


STUB_SBATCH = """#!{py}
# stub sbatch: run the script in the background, array tasks one after another, states in $STUB_SLURM_STATE
import os, re, subprocess, sys
from pathlib import Path
state = Path(os.environ["STUB_SLURM_STATE"])
state.mkdir(exist_ok=True)
if sys.argv[1] == "--run":
    job, script = sys.argv[2], sys.argv[3]
    m = re.search(r"^#SBATCH --array=(\\d+)-(\\d+)", Path(script).read_text(), re.M)
    for t in (range(int(m[1]), int(m[2]) + 1) if m else [None]):
        jid = job if t is None else f"{{job}}_{{t}}"
        (state / jid).write_text("RUNNING")
        env = {{**os.environ, "SLURM_JOB_ID": str(int(job) + (t or 0) + 1), "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
               "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}}
        if t is not None:
            env.update(SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(t))
        rc = subprocess.run(["bash", script], env=env).returncode
        (state / jid).write_text("COMPLETED" if rc == 0 else "FAILED")
else:
    job = str(1000 * (1 + len(list(state.glob("job*")))))
    (state / f"job{{job}}").write_text("")
    subprocess.Popen([sys.executable, __file__, "--run", job, sys.argv[-1]], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {{job}}")
"""
STUB_SRUN = """#!{py}
# stub srun: --output/--error with SLURM's %A %a %j %t patterns, then the command
import os, subprocess, sys
args, files = sys.argv[1:], {{}}
while args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        files[flag] = args.pop(0)
sub = lambda p: (p.replace("%A", os.environ.get("SLURM_ARRAY_JOB_ID", "")).replace("%a", os.environ.get("SLURM_ARRAY_TASK_ID", ""))
                 .replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0"))
with open(sub(files["--output"]), "a") as out, open(sub(files.get("--error", files["--output"])), "a") as err:
    sys.exit(subprocess.run(args, stdout=out, stderr=err).returncode)
"""
STUB_SACCT = """#!{py}
import os
from pathlib import Path
print("JobID|State|NodeList")
for f in sorted(Path(os.environ["STUB_SLURM_STATE"]).glob("[0-9]*")):
    print(f"{{f.name}}|{{f.read_text()}}|localhost")
"""
STUB_SCANCEL = """#!{py}
import os, sys
from pathlib import Path
for jid in (a for a in sys.argv[1:] if a[0].isdigit()):
    (Path(os.environ["STUB_SLURM_STATE"]) / jid).write_text("CANCELLED")
"""
STUB_SQUEUE = """#!{py}
print("JOBID STATE")
"""


@pytest.mark.slow
def test_slurm_path_runs_the_generated_sbatch_script(env, monkeypatch):
    tmp, grid_path = env
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", STUB_SBATCH), ("srun", STUB_SRUN), ("sacct", STUB_SACCT), ("scancel", STUB_SCANCEL),
                       ("squeue", STUB_SQUEUE)):
        (bin_dir / name).write_text(text.format(py=sys.executable))
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_SLURM_STATE", str(tmp / "state"))
    args = [str(grid_path), "--profile", "smoke", "--executor", "slurm", "--max-parallel", "2", "--slurm-partition", "gpu",
            "--slurm-time", "30", "--results-dir", str(tmp / "res"), "--checkpoint-dir", str(tmp / "ck"), "--log-dir", str(tmp / "log")]
    assert cli(["sweep", *args]) == 0
    script = next((tmp / "log").glob("*submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --partition=gpu" in script and "#SBATCH --time=30" in script
    tasks = sorted((tmp / "state").glob("[0-9]*_*"))
    deadline = time.time() + 60  # the stub marks the last task when its script exits, just after its result appears
    while time.time() < deadline and any(f.read_text() == "RUNNING" for f in tasks):
        time.sleep(0.1)
    assert len(tasks) == 4 and all(f.read_text() == "COMPLETED" for f in tasks)
    sweep(load_grid(grid_path, "smoke"), "debug", results_dir=tmp / "ref", checkpoint_dir=tmp / "ck", log_dir=tmp / "l0")
    assert numbers(tmp / "res") == numbers(tmp / "ref")


@pytest.mark.slow
def test_two_workers_finishing_the_same_configuration_leave_one_valid_file(env):
    tmp, grid_path = env
    cfg = load_grid(grid_path, "smoke").runs[0].config
    code = (f"import pickle, sys; from poisoncurv.lab.sweep import RunJob; cfg = pickle.loads(bytes.fromhex(sys.argv[1])); "
            f"r = RunJob({str(tmp / 'res')!r}, sys.argv[2], 1)((cfg,)); assert r['status'] == 'done', r")
    import pickle

    procs = [subprocess.Popen([sys.executable, "-c", code, pickle.dumps(cfg).hex(), str(tmp / f"ck{i}")]) for i in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    files = sorted(p.name for p in (tmp / "res").iterdir())
    assert files == [f"{cfg.key()}.json"]  # no temporary file left behind
    assert json.loads((tmp / "res" / files[0]).read_text())["key"] == cfg.key()
    assert RunJob(str(tmp / "res"), None, 1)((cfg,))["status"] == "done"  # and it loads as a valid cached result


def test_bad_grid_fails_before_any_submission(env, capsys):
    tmp, _ = env
    bad = tmp / "bad.yaml"
    bad.write_text("profiles: {smoke: {groups: {a: {axes: {loss: [ce], thetaa: [0.1]}}}}}")
    assert cli(["sweep", str(bad), "--profile", "smoke", "--executor", "local", "--log-dir", str(tmp / "log")]) == 2
    assert "thetaa" in capsys.readouterr().err
    assert not (tmp / "log").exists()


def test_a_cached_file_with_a_bad_row_is_reported_in_the_table(env, capsys):
    """A results file that passes the top-level checks but not the row schema: one failed line naming it, no abort."""
    tmp, grid_path = env
    grid_path.write_text(GRID.replace("[squared, ce], theta: [0.02, 0.1]", "[ce], theta: [0.1]"))
    cfg = load_grid(grid_path, "smoke").runs[0].config
    bad = tmp / "res" / f"{cfg.key()}.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "key": cfg.key(), "config": {}, "poison": {},
                               "data_source": SOURCES["download"], "provenance": {}, "epochs": [{"epoch": 0}]}))
    assert cli(["sweep", str(grid_path), "--profile", "smoke", "--executor", "debug", "--results-dir", str(tmp / "res"),
                "--log-dir", str(tmp / "log")]) == 1
    out = capsys.readouterr().out
    assert "failed 1 (of 1)" in out and str(bad) in out and "epochs[0]: train_loss is missing" in out and "--force" in out


def test_clean_runs_of_several_triggers_share_one_job_and_give_what_each_alone_gives(env):
    """Clean references (θ = 0) that differ only in their trigger train once (one job, one training); each results
    file holds the numbers of the run trained alone; the poisoned runs are jobs of their own."""
    from poisoncurv.lab.runner import get
    from poisoncurv.lab.sweep import batches

    tmp, grid_path = env
    grid_path.write_text(GRID.replace("{axes: {loss: [squared, ce], theta: [0.02, 0.1]}}",
                                      "{base: {loss: ce}, axes: {attack: [cross-deterministic, badnets, warp], theta: [0.0, 0.1]}}"))
    grid = load_grid(grid_path, "smoke")
    jobs = batches(grid.runs)
    assert sorted(len(j) for j in jobs) == [1, 1, 1, 3] and {r.config.theta for r in max(jobs, key=len)} == {0.0}
    out = sweep(grid, "debug", results_dir=tmp / "a", checkpoint_dir=tmp / "ck", log_dir=tmp / "log")
    assert [o.status for o in out] == ["done"] * 6
    shared = numbers(tmp / "a")
    for run in max(jobs, key=len):
        alone = get(run.config, tmp / "b", checkpoint_dir=tmp / "ck")
        assert shared[run.config.key()] == alone["epochs"]
        prov = json.loads((tmp / "a" / f"{run.config.key()}.json").read_text())["provenance"]
        assert prov["shared_training"] == [r.config.key() for r in max(jobs, key=len)]
    assert not list((tmp / "ck").glob("*.pt"))


def test_a_preempted_job_is_resubmitted_with_the_same_call():
    """What submitit calls on preemption or time-out (it looks for a ``checkpoint`` method): the same job, same arguments."""
    import submitit

    fn = RunJob("res", "ck", 2)
    delayed = fn.checkpoint(("cfg",), keep_model=True)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is fn and delayed.args == (("cfg",),) and delayed.kwargs == {"keep_model": True}
    assert delayed._checkpoint_function() is not None  # submitit's own lookup finds the method
