"""The lab's evaluation (poisoncurv.lab.train.evaluate) against the rates written out one by one, and the batch
invariance its single forward passes rely on."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from poisoncurv.lab import train as lab_train
from poisoncurv.lab.attacks import poison
from poisoncurv.lab.config import profile_config
from poisoncurv.models import LeNet


def _setup():
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = torch.rand(200, 1, 28, 28, generator=gen), torch.randint(0, 10, (200,), generator=gen)
    x_test, y_test = torch.rand(300, 1, 28, 28, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    cfg = profile_config("smoke", dataset="mnist", model="lenet", attack="cross-stochastic", theta=0.05, target=3)
    p = poison(x_train, y_train, x_test, y_test, cfg.attack, cfg.theta, cfg.target, cfg.amplitude, cfg.warp_strength, 0)
    torch.manual_seed(0)
    model = LeNet().eval()
    with torch.no_grad():                       # a model that sends some of the inputs to the target class
        logits = model(x_test)
        model.classifier[-1].bias[3] += float(logits.max(1).values.median() - logits[:, 3].median())
    return cfg, p, model, x_test, y_test


def test_evaluate_equals_the_rates_written_out_one_by_one():
    cfg, p, model, x_test, y_test = _setup()
    x_src = x_test[y_test != cfg.target]
    f_test = lab_train._logits(model, x_test)
    got = lab_train.evaluate(model, nn.CrossEntropyLoss(), cfg, p, f_test, y_test, x_src, x_test[:8], y_test[:8])
    with torch.no_grad():
        f_test, f_src, f_trig = model(x_test), model(x_src), model(p.x_trigger)
    assert 0 < got["asr"] < 1 and 0 < got["clean_to_target"] < 1 and 0 < got["clean_acc"], "rates at 0 or 1 test nothing"
    assert got["clean_acc"] == (f_test.argmax(1) == y_test).double().mean().item()
    assert got["asr"] == (f_trig.argmax(1) == cfg.target).double().mean().item()
    assert got["clean_to_target"] == (f_src.argmax(1) == cfg.target).double().mean().item()
    assert got["trigger_shift2"] == pytest.approx(float((f_trig - f_src).pow(2).sum(1).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="x_src"):
        lab_train.evaluate(model, nn.CrossEntropyLoss(), cfg, p, f_test, y_test, x_src[1:], x_test[:8], y_test[:8])


def test_logits_do_not_depend_on_the_batch_size():
    torch.manual_seed(0)
    model, x = LeNet().eval(), torch.rand(300, 1, 28, 28)
    whole = lab_train._logits(model, x, batch=300)
    for batch in (100, 128, lab_train.EVAL_BATCH):       # chunks of 100 to 150 images
        assert torch.equal(lab_train._logits(model, x, batch=batch), whole), batch
    assert [len(c) for c in x[:253].tensor_split(2)] == [127, 126]   # _logits' chunks of 253 images: never a stub of 3
    assert lab_train._logits(model, x[:0]).shape == (0, 10)


def test_recording_library_versions_does_not_import_matplotlib():
    code = ("import sys; from poisoncurv.core.provenance import library_versions; v = library_versions(); "
            "import numpy; assert v['numpy'] == numpy.__version__, v; assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
