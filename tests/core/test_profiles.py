import pytest
import torch

from poisoncurv.core.profiles import PROFILES, by_profile, check_profile, device_name, resolve_device


def test_profiles_and_errors():
    assert list(PROFILES) == ["smoke", "cpu", "gpu", "full"]
    assert by_profile("cpu", smoke=1, cpu=2, gpu=3, full=4) == 2
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        check_profile("huge")
    with pytest.raises(ValueError, match="missing"):
        by_profile("cpu", smoke=1, cpu=2)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert device_name("cpu").startswith("CPU:")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
