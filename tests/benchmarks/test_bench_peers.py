"""benchmarks/bench_peers.py at tiny sizes: every method's entry in the JSON, inline and in worker processes."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import bench_peers as bench
from poisoncurv.core.paths import REPO_ROOT

PEERS = ("curvlinops-for-pytorch", "backpack-for-pytorch", "pyhessian", "torch", "scipy")


def run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_peers", "--models", "lenet", "--n-lenet", "4",
                           "--repeats", "1", "--out", str(tmp_path), "--name", "peers", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "peers.json").read_text())


def test_the_registry_holds_exactly_the_listed_methods():
    assert list(bench.REGISTRY) == bench.METHODS == bench.HVP + bench.EIGEN + bench.PARAM  # same names, same order
    assert len(set(bench.METHODS)) == len(bench.METHODS) == 20 and set(bench.TARGET) <= set(bench.REGISTRY)
    with pytest.raises(ValueError, match="registered twice"):
        bench.register("gradient")(lambda case: None)


def test_an_unknown_method_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError) as err:
        bench.build("poisoncurv_hvpp", {})  # refused before the problem is built (an empty configuration)
    msg = str(err.value)
    assert msg.startswith("unknown method 'poisoncurv_hvpp'; known methods: gradient, poisoncurv_hvp, ") and "\n" not in msg
    assert msg.endswith(", ".join(bench.METHODS))


@pytest.mark.slow   # each of the following runs the benchmark's methods (10-40 s)
def test_every_method_inline(tmp_path):
    out = run(tmp_path, "--threads", "1", "--isolation", "inline")
    assert all(out["versions"][p] != "not installed" for p in PEERS)
    assert {"backpack_input_curvature_extensions", "pyhessian_input_curvature"} <= set(out["not_run"])
    assert len(out["environment_start"]["load_average_1_5_15"]) == 3 and "load_average_1_5_15" in out["environment_end"]
    (r,) = out["runs"]
    assert r["n"] == 4 and r["threads"] == 1 and len(r["exact_top_float64"]) == 10
    assert r["environment_end"]["others_cpu_cores"] >= 0 and out["environment_end"]["others_cpu_cores"] >= 0
    assert set(r["methods"]) == set(bench.METHODS)
    for name, e in r["methods"].items():
        assert "error" not in e, (name, e)
        assert len(e["times_s"]) == 1 and e["median_s"] > 0 and e["first_call_s"] > 0
        if "rel_diff_to_poisoncurv_hvp" in e:  # every peer's product is the project's mean input HVP
            assert e["rel_diff_to_poisoncurv_hvp"] <= 1e-4, name
        if "max_rel_err_vs_float64_exact" in e:
            assert e["max_rel_err_vs_float64_exact"] <= 1e-2 and e["max_true_rel_residual"] <= 1e-2, name
    for m in ("poisoncurv_block_exact", "poisoncurv_block_exact_solve", "poisoncurv_block_autograd"):
        assert r["methods"][m]["converged"], m
    assert {"block_exact_speedup_over_eigsh_poisoncurv", "block_exact_solve_speedup_over_eigsh_exact_solve",
            "block_autograd_speedup_over_eigsh_same_autograd_operator",
            "poisoncurv_hvp_over_autograd_double_backward"} <= set(r["ratios"])
    assert "pyhessian_over_poisoncurv_param_top1" in r["ratios"]


@pytest.mark.slow
def test_worker_processes_and_target_only_at_other_thread_counts(tmp_path):
    out = run(tmp_path, "--threads", "1", "2", "--methods", "gradient", "poisoncurv_hvp", "backpack_hvp")
    one, two = out["runs"]
    assert set(one["methods"]) == {"gradient", "poisoncurv_hvp", "backpack_hvp"}
    assert set(two["methods"]) == {"gradient", "poisoncurv_hvp"}  # peers run at --peer-threads only
    for e in (*one["methods"].values(), *two["methods"].values()):
        assert "error" not in e and e["process_peak_mib"] >= e["peak_mib_before_setup"] > 0
    assert one["methods"]["backpack_hvp"]["import_s"] >= 0


@pytest.mark.slow
def test_repeats_zero_times_the_first_call(tmp_path):
    out = run(tmp_path, "--threads", "1", "--repeats", "0", "--methods", "gradient", "poisoncurv_hvp")
    for e in out["runs"][0]["methods"].values():
        assert e["times_s"] == [e["first_call_s"]] and e["median_s"] == e["first_call_s"]
