"""Nothing the lab draws depends on torch's default dtype: poisons of every attack, the warp field, model
initialisation and a whole training run (with augmentation) are the same under a float32 and a float64 default.
(Chapter 8 runs with float64 as its default and rebuilds the poisoned training sets the models were trained on.)"""

import pytest
import torch

from poisoncurv.core.dtypes import default_dtype
from poisoncurv.lab.attacks import ATTACKS, poison, warp_grid
from poisoncurv.lab.config import profile_config
from poisoncurv.lab.data import ImageData
from poisoncurv.lab.train import build_model, train


def _under(dtype, fn):
    with default_dtype(dtype):
        return fn()


def _images(n, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8), torch.arange(n) % 10


@pytest.mark.parametrize("attack", ATTACKS)
def test_poisons_are_the_same_under_either_default(attack):
    (xtr, ytr), (xte, yte) = _images(300, (1, 28, 28), 0), _images(60, (1, 28, 28), 1)
    xtr, xte = xtr.float() / 255, xte.float() / 255

    def build():
        return poison(xtr, ytr, xte, yte, attack, 0.1, 3, 1.0, 0.05, seed=2)

    a, b = _under(torch.float32, build), _under(torch.float64, build)
    for field in ("x_train", "y_train", "poison_idx", "direction", "x_trigger", "y_trigger"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.x_train.dtype == torch.float32 and not torch.equal(a.x_train, xtr)


def test_warp_grid_is_float32_under_either_default():
    a, b = _under(torch.float32, lambda: warp_grid(28, 28, 0.05, 3)), _under(torch.float64, lambda: warp_grid(28, 28, 0.05, 3))
    assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("model", ["linear", "mlp", "lenet", "preresnet8"])
def test_initial_weights_are_the_same_under_either_default(model):
    dataset, shape = ("cifar10", (3, 32, 32)) if model.startswith("preresnet") else ("mnist", (1, 28, 28))
    cfg = profile_config("smoke", dataset=dataset, model=model, seed=5)
    a = _under(torch.float32, lambda: build_model(cfg, shape, 10).state_dict())
    b = _under(torch.float64, lambda: build_model(cfg, shape, 10).state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float32 for v in a.values() if v.is_floating_point())
    if model == "lenet":
        assert a["features.0.weight"].abs().sum() > 0


@pytest.mark.slow
def test_a_smoke_run_trains_the_same_weights_under_either_default(tmp_path):
    (xtr, ytr), (xte, yte) = _images(128, (3, 32, 32), 0), _images(64, (3, 32, 32), 1)
    data = ImageData("cifar10", xtr, ytr, xte, yte, 10, "random (test)")
    cfg = profile_config("smoke", dataset="cifar10", model="preresnet8", attack="cross-stochastic", theta=0.1,
                         n_train=None, n_test=None, n_eval=8, epochs=1, batch_size=32, augment=True)

    def run(dtype):
        out = tmp_path / str(dtype)
        res = _under(dtype, lambda: train(cfg, data=data, checkpoint_dir=out / "ckpt", progress=False, model_dir=out / "m"))
        return res, torch.load(out / "m" / f"{cfg.key()}.pt", weights_only=True)

    (ra, wa), (rb, wb) = run(torch.float32), run(torch.float64)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ra["epochs"][-1]["train_loss"] == rb["epochs"][-1]["train_loss"]
