"""benchmarks/common.OtherCpu: the CPU that other processes used, apart from this process and its children."""

import multiprocessing as mp
import subprocess
import sys
import time

import pytest
import torch

from benchmarks import common


def spin(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


@pytest.mark.slow
def test_own_work_and_own_children_are_not_counted_as_others():
    idle = common.OtherCpu()
    time.sleep(0.3)
    if idle.cores() > 0.1:  # /proc/stat sees other tenants' work (a shared host): nothing to compare against
        pytest.skip(f"other processes already use {idle.cores():.2f} cores")
    other = common.OtherCpu()
    spin(0.3)
    p = mp.get_context("spawn").Process(target=spin, args=(1.0,))
    p.start()
    p.join()
    assert other.cores() < 0.3  # about 1 core busy the whole time, all ours (the child alone would read ≈ 0.6)


def test_an_unrelated_busy_process_is_counted():
    # started through a shell that exits at once: the busy process is not a descendant of this one
    busy = f"{sys.executable} -c 'import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 1.5: pass' &"
    subprocess.run(["sh", "-c", busy], check=True)
    time.sleep(0.2)
    other = common.OtherCpu()
    time.sleep(1.0)
    env = common.environment(torch.device("cpu"), other)
    assert env["others_cpu_cores"] > 0.5 and env["cpu_shared"]
