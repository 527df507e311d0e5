import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test runs in float64 with a fixed seed, and restores the default dtype."""
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # small problems: faster (15-50x on a busy 2-core machine) and reproducible
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)
