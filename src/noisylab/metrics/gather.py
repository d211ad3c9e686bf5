"""Collect per-sample outputs from every DDP rank exactly once."""

from __future__ import annotations

import lightning as L
import torch


def gather_rows(module: L.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (rows = samples) over all ranks; ranks may hold different row counts."""
    if module.trainer.world_size == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = module.all_gather(count).view(-1)
    padded = tensor.new_zeros((int(counts.max()), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = module.all_gather(padded)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(counts)])


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Positions that keep one row per sample index: distributed samplers repeat samples to even out
    ranks, and each sample must count once."""
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
