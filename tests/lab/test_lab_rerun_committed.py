"""A committed lab run retrained by today's code on the CPU model that made it: the same training, and measurements
equal up to float32 rounding. This is what keeps the cached runs valid when the measurement code changes (the batched
evaluation and the Jacobian through the first convolution's transpose sum in another order than the code that wrote
the file)."""

import math

import pytest

from poisoncurv.core.paths import LAB_RESULTS_DIR
from poisoncurv.core.profiles import device_name
from poisoncurv.core.results import read_json
from poisoncurv.lab.config import LabConfig
from poisoncurv.lab.data import SOURCES, load, locate
from poisoncurv.lab.train import train

KEY = "ee1e99a7101e1bc4"   # Chapter 6's undefended defence-grid run: LeNet, stochastic cross at θ = 1 %, 10k images,
#                            8 epochs, measure: deep, trained on an Intel Xeon
EXACT = ("epoch", "train_loss", "penalty", "clean_acc", "asr", "clean_to_target", "robust_acc")   # training and counts
RTOL = 1e-5   # float32 Jacobians and logits summed in another order: seen up to 8e-7 on overlaps near 4e-4


def _close(a, b, path):
    if isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif a is None or isinstance(a, bool):
        assert a == b, path
    else:
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9), (path, a, b)


@pytest.mark.slow
def test_a_committed_run_is_retrained_to_the_same_numbers(tmp_path):
    old = read_json(LAB_RESULTS_DIR / f"{KEY}.json")
    if device_name("cpu").split(" (")[0] != old["provenance"]["device_name"].split(" (")[0]:
        pytest.skip(f"bit-reproducible only on the CPU model that wrote the file ({old['provenance']['device_name']})")
    found = locate("mnist")
    if found is None or SOURCES[found] != old["data_source"]:
        pytest.skip(f"needs the data source the file was computed from ({old['data_source']})")
    new = train(LabConfig(**old["config"]), data=load("mnist"), checkpoint_dir=tmp_path, progress=False)
    assert new["key"] == KEY and new["poison"] == old["poison"] and len(new["epochs"]) == len(old["epochs"])
    for i, (a, b) in enumerate(zip(old["epochs"], new["epochs"])):
        assert a.keys() == b.keys(), i
        for k in EXACT:
            assert a[k] == b[k], (i, k, a[k], b[k])
        _close(a, b, f"epochs[{i}]")
    _close(old["final"], new["final"], "final")
