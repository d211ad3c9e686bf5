"""Objects tests inject through configs (`_target_: tests.helpers...`)."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import lightning as L
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


class PageFaultProbe(L.Callback):
    """At the start of training, the minor page faults of `repeats` allocations and frees of a 40 MiB tensor,
    written to `path` as JSON: with glibc's default settings each allocation faults on its every page (40 MiB is
    above glibc's largest adaptive mmap threshold), with retain_freed_memory few."""

    def __init__(self, path: str, repeats: int = 20) -> None:
        self.path, self.repeats = path, repeats

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        Path(self.path).write_text(json.dumps({"faults": allocation_faults(40 << 20, self.repeats)}))


def allocation_faults(nbytes: int, repeats: int) -> int:
    """Minor page faults of this process while it allocates, fills and frees `nbytes` `repeats` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        block = torch.empty(nbytes, dtype=torch.uint8)
        block.fill_(1)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
