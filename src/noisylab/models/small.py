"""Small backbones: MLP and a small CNN for digits, the 4-layer MNIST CNN and the 8-layer CIFAR CNN.

Every backbone maps images to a feature vector and exposes `out_features`; the classification
head is separate (it comes from the loss config).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then `hidden` fully connected layers with BatchNorm and ReLU."""

    def __init__(self, in_channels: int, image_size: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_bn_relu(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Two conv blocks and global average pooling: enough for 8x8 digits, fast on a CPU."""

    def __init__(self, in_channels: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_conv_bn_relu(in_channels, width), *_conv_bn_relu(width, width), nn.MaxPool2d(2),
            *_conv_bn_relu(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN4(nn.Module):
    """The 4-layer MNIST CNN of the robust-loss papers: conv32, conv64 (3x3, max-pool), FC 128."""

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = image_size // 4
        self.fc = nn.Sequential(nn.Linear(64 * side * side, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True))
        self.out_features = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class CNN8(nn.Module):
    """The 8-layer CIFAR-10 CNN of the robust-loss papers (APL, ANL, drainage):
    conv 64-64 / 128-128 / 196-196 with BatchNorm and max-pooling, then FC 256. The convolutions have biases,
    as in the Drainage code (a bias before BatchNorm changes nothing but the parameter count and the L1 term)."""

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_channels
        for width in (64, 128, 196):
            blocks += [*_conv_bn_relu(cin, width, bias=True), *_conv_bn_relu(width, width, bias=True), nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*blocks, nn.Flatten())
        side = image_size // 8
        self.fc = nn.Sequential(nn.Linear(196 * side * side, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True))
        self.out_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
