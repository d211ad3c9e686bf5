"""Objects tests inject through configs (`_target_: tests.helpers...`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ExplodingLoss(nn.Module):
    """Cross-entropy for the first `healthy_calls` training calls, NaN afterwards (simulates divergence)."""

    def __init__(self, healthy_calls: int) -> None:
        super().__init__()
        self.healthy_calls = healthy_calls
        self.calls = 0

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(outputs[:, : outputs.shape[1]], targets)
        if self.training:
            self.calls += 1
            if self.calls > self.healthy_calls:
                return loss * float("nan")
        return loss
