import pytest
import torch

from poisoncurv.models import MLP, ConvNet, LeNet, LinearModel, PreActResNet


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
