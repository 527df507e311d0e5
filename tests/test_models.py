import pytest
import torch
from torch import nn

from poisoncurv.models import MLP, ConvNet, LeNet, LinearModel, MaxPool2, PreActResNet


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_shapes_and_parameter_counts():
    assert LeNet()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(LeNet()) == 61706
    net = PreActResNet(20, num_classes=100)
    assert net.block == "PreActBasicBlock" and net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert count_parameters(PreActResNet(20)) == 272282
    assert PreActResNet(110).block == "PreActBottleneck"
    assert count_parameters(PreActResNet(110)) == 1146842
    assert LinearModel(784)(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert MLP(12, (8,), 4)(torch.randn(5, 12)).shape == (5, 4)


def test_bad_depth_is_refused():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        PreActResNet(21)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        PreActResNet(50)


def test_convnet_shapes_and_width():
    net = ConvNet(32)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10) and net.embed(x).shape == (2, 64)
    # stem 3·24·9 + 48; blocks (24·32 + 32·32)·9 + 128, (32·64 + 64·64)·9 + 256, (64·64 + 64·64)·9 + 256; head 64·10
    assert count_parameters(net) == 648 + 48 + 16128 + 128 + 55296 + 256 + 73728 + 256 + 640 == 147128
    assert ConvNet(16, num_classes=100)(x).shape == (2, 100)
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvNet(30)


def test_maxpool2_without_autograd_is_max_pool2d_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    pool, ref = MaxPool2(), nn.MaxPool2d(2)
    x = torch.randn(3, 4, 9, 11, generator=gen, dtype=torch.float32)   # odd sizes: the last row and column dropped
    x[0, 0, :4, :4] = 0.5                                               # ties
    x[1, 2, 3, 5] = float("nan")
    x[2] = x[2].relu()                                                 # zeros after a ReLU, as in LeNet
    want = ref(x)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            got = pool(x)
        assert got.shape == want.shape == (3, 4, 4, 5)
        assert torch.equal(got.isnan(), want.isnan()) and int(got.isnan().sum()) == 1
        assert torch.equal(got.nan_to_num(), want.nan_to_num())
    with torch.no_grad():
        assert torch.equal(pool(x.contiguous(memory_format=torch.channels_last)).nan_to_num(), want.nan_to_num())
        assert not torch.equal(pool(x + 1).nan_to_num(), want.nan_to_num())                  # the test can fail


def test_maxpool2_with_autograd_is_max_pool2d_and_lenet_logits_do_not_depend_on_the_mode():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=gen).relu().requires_grad_(True)
    (g_new,) = torch.autograd.grad(MaxPool2()(x).sum(), x)
    (g_ref,) = torch.autograd.grad(nn.MaxPool2d(2)(x).sum(), x)
    assert torch.equal(g_new, g_ref)                                   # one input per window, ties included
    torch.manual_seed(0)
    model, images = LeNet().eval(), torch.rand(64, 1, 28, 28, generator=gen)
    with torch.inference_mode():
        fast = model(images)
    assert torch.equal(fast, model(images))
