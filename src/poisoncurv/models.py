"""Models shared by the curvature core, the benchmarks and the poisoning lab.

All models map images ``(B, C_in, H, W)`` (or flat inputs for the linear/MLP models) to logits
``(B, num_classes)``. Every one is piecewise linear in its input when in eval mode (ReLU, max/avg
pooling, convolutions, linear layers, batch norm with frozen statistics), which the curvature
core's exact route relies on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearModel(nn.Module):
    """``f(x) = W flatten(x) + b``: linear regression (squared loss on one-hot targets) or, with
    cross-entropy, multinomial logistic regression."""

    def __init__(self, in_features: int, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs: ``in -> hidden... -> num_classes``."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (64, 64), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, hidden[-1])``: the last hidden layer after its ReLU."""
        return self.net[:-1](x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MaxPool2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` (windows 2 × 2, stride 2, odd edges dropped) that, without autograd (inference mode or
    ``no_grad``), takes the elementwise maximum of the four strided sub-grids instead: the same values bit for bit (a
    maximum rounds nothing; NaN propagates in both), and 6× faster on one CPU thread for LeNet's maps than PyTorch's
    kernel, which also computes the argmax indices that only a backward pass needs (LeNet's inference twice as fast;
    ConvNet's, in channels-last memory where PyTorch's kernel is fast, 6 %). With autograd on it is
    ``nn.MaxPool2d`` itself, so gradients (one input per window, ties included) and input Jacobians are unchanged."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        return torch.maximum(torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]),
                             torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


class LeNet(nn.Module):
    """LeNet-5-style CNN for 1×28×28 inputs (MNIST): two conv/ReLU/max-pool stages (:class:`MaxPool2`) and three
    fully connected layers (61,706 parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), MaxPool2(),
            nn.Conv2d(6, 16, 5), nn.ReLU(), MaxPool2(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, 84)``: the second fully connected layer after its ReLU."""
        return self.classifier[:-1](self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv3×3, twice) of He et al. (2016b)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_planes), nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck block (BN-ReLU-conv1×1, conv3×3, conv1×1; expansion 4)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_planes), nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes * 4:
            self.shortcut = nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 3×32×32 inputs (CIFAR), three stages of 16/32/64 planes.

    Block type follows the common CIFAR convention (as in the SWA code base's ``PreResNet``):
    basic blocks with ``n = (depth − 2) / 6`` per stage for ``depth < 44`` (PreResNet-20: 0.27 M
    parameters), bottleneck blocks with ``n = (depth − 2) / 9`` for ``depth ≥ 44``
    (PreResNet-110: 1.15 M parameters for 10 classes; the paper uses PreResNet-110).
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        block: type[PreActBasicBlock | PreActBottleneck]
        if depth >= 44:
            if (depth - 2) % 9:
                raise ValueError(f"bottleneck PreActResNet needs depth = 9n + 2 (e.g. 110), got {depth}")
            block, n = PreActBottleneck, (depth - 2) // 9
        else:
            if (depth - 2) % 6:
                raise ValueError(f"basic-block PreActResNet needs depth = 6n + 2 (e.g. 20), got {depth}")
            block, n = PreActBasicBlock, (depth - 2) // 6
        self.depth, self.block = depth, block.__name__
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(block(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, 64·expansion)``: the final BN-ReLU, globally average-pooled."""
        out = torch.relu(self.bn(self.layers(self.conv1(x))))
        return nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))


class ConvNet(nn.Module):
    """A ReLU CNN in the style of the fast CIFAR-10 recipes (airbench, Page's DAWNBench ResNet-9, without their GELU,
    patch whitening and skip connections) for 3×32×32 inputs: a conv–BN–ReLU stem of ``3w/4`` channels, three blocks
    of widths ``w, 2w, 2w`` (conv 3×3 → max-pool 2 → BN → ReLU → conv 3×3 → BN → ReLU), a global max-pool and a
    linear head without bias. ``w = 32``: 147,128 parameters for 10 classes. In eval mode (batch norm an affine map)
    it is piecewise linear in its input."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if width < 4 or width % 4:
            raise ValueError(f"width: got {width}; allowed: a multiple of 4, at least 4")
        stem = 3 * width // 4
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        layers: list[nn.Module] = []
        w_in = stem
        for w in (width, 2 * width, 2 * width):
            layers += [nn.Conv2d(w_in, w, 3, padding=1, bias=False), MaxPool2(), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            w_in = w
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(w_in, num_classes, bias=False)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, 2w)``: the last block's output, max-pooled over space."""
        return torch.amax(self.blocks(self.stem(x)), dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))
