"""ResNets: PreAct ResNet-18 (CIFAR stem) and torchvision's ResNets with a CIFAR stem for small images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016): BN-ReLU before each convolution."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small images: 3x3 stem, four stages (64..512 channels), average pooling."""

    def __init__(self, in_channels: int, image_size: int, blocks: Sequence[int] = (2, 2, 2, 2),
                 width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            for i in range(count):
                layers.append(PreActBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(cin)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.final_bn(self.layers(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def preact_resnet18(in_channels: int, image_size: int) -> PreActResNet:
    """PreAct ResNet-18, the DivideMix / InstanceGM backbone."""
    return PreActResNet(in_channels, image_size, blocks=(2, 2, 2, 2))


SMALL_IMAGE = 64  # inputs up to this size get the CIFAR stem


def resnet(arch: str, in_channels: int, image_size: int, pretrained: str | None = None) -> nn.Module:
    """torchvision's ResNet (`arch` = resnet18, resnet34, resnet50, ...) as a feature extractor.

    For small inputs (<= 64 px, e.g. CIFAR) the stem is the CIFAR one: a 3x3 stride-1 convolution and no
    max-pooling, as in the robust-loss and drainage papers. `pretrained` names torchvision weights (e.g.
    IMAGENET1K_V2) that must already be on disk (see `load_local_weights`); never downloaded.
    """
    import torchvision

    net = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        net.load_state_dict(load_local_weights(arch, pretrained))
    if image_size <= SMALL_IMAGE:
        if pretrained:
            raise ValueError(f"model.pretrained={pretrained} needs ImageNet-sized inputs; these are {image_size}px")
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.out_features = net.fc.in_features
    net.fc = nn.Identity()
    return net


def load_local_weights(arch: str, weights_name: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision weights `weights_name` for `arch`, from torch's hub cache only."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch)[weights_name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained={weights_name}: no weights at {path}. noisylab never downloads during a run: put "
            f"the file there (from {weights.url}; TORCH_HOME moves the cache), or set model.pretrained=null."
        )
    return torch.load(path, map_location="cpu", weights_only=True)
