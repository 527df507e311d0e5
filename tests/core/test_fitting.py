import numpy as np
import pytest
import torch

from poisoncurv.core.fitting import decay_length, linear_slope, loglog_slope, rel_err, rel_norm_err


def test_loglog_slope_recovers_power_law():
    x = np.logspace(-2, 2, 9)
    assert loglog_slope(x, 3.0 * x**-1.7) == pytest.approx(-1.7, abs=1e-12)


def test_loglog_slope_refuses_nonpositive():
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1.0, 2.0], [1.0, 0.0])


def test_decay_length_and_linear_slope():
    x = np.linspace(0, 5, 11)
    assert decay_length(x, 2.0 * np.exp(-x / 0.7)) == pytest.approx(0.7, rel=1e-12)
    assert linear_slope(x, 4.0 * x - 1) == pytest.approx(4.0, rel=1e-12)


def test_relative_errors_on_arrays_and_tensors():
    ref = np.array([1.0, 2.0, 4.0])
    assert rel_err(ref * np.array([1.0, 1.01, 0.98]), ref) == pytest.approx(0.02, rel=1e-9)
    assert rel_err(torch.tensor(ref) * 1.5, torch.tensor(ref)) == pytest.approx(0.5)
    assert rel_norm_err(ref + np.array([0.0, 0.0, 0.4]), ref) == pytest.approx(0.4 / np.sqrt(21), rel=1e-12)
