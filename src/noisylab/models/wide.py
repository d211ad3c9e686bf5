"""Wide ResNet (Zagoruyko & Komodakis 2016) and DenseNet-BC for small images (DisMax's backbones)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WideBlock(nn.Module):
    """Pre-activation wide basic block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = None if (stride == 1 and cin == cout) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.dropout(self.conv1(out)))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen: three groups of (depth - 4) / 6 wide blocks, 16k, 32k, 64k channels (k = widen)."""

    def __init__(self, in_channels: int, image_size: int, depth: int = 28, widen: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"model.depth must be 6n + 4 for a Wide ResNet, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for group, width in enumerate(widths[1:]):
            for i in range(n):
                blocks.append(WideBlock(cin, width, 2 if (i == 0 and group > 0) else 1, dropout))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(cin)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.final_bn(self.blocks(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


class DenseNetBC(nn.Module):
    """DenseNet-BC (Huang et al. 2017) for small images: 3x3 stem, three dense blocks of bottleneck layers
    (growth rate k, (depth - 4) / 6 layers each), transitions halving the channels; torchvision's layers."""

    def __init__(self, in_channels: int, image_size: int, depth: int = 100, growth_rate: int = 12,
                 dropout: float = 0.0) -> None:
        super().__init__()
        from torchvision.models import DenseNet

        if (depth - 4) % 6:
            raise ValueError(f"model.depth must be 6n + 4 for DenseNet-BC, got {depth}")
        n = (depth - 4) // 6
        net = DenseNet(growth_rate=growth_rate, block_config=(n, n, n), num_init_features=2 * growth_rate,
                       bn_size=4, drop_rate=dropout)
        net.features.conv0 = nn.Conv2d(in_channels, 2 * growth_rate, 3, 1, 1, bias=False)
        net.features.norm0 = net.features.relu0 = net.features.pool0 = nn.Identity()
        self.features = net.features
        self.out_features = net.classifier.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
