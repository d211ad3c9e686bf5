"""Backbone + head as one module."""

from __future__ import annotations

import torch
from torch import nn

from noisylab.models.heads import LinearHead


class Classifier(nn.Module):
    """Features from `backbone`, outputs from `head`; `features()` is there for methods that need them."""

    def __init__(self, backbone: nn.Module, head: LinearHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
