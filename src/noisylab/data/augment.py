"""Batched augmentation on the training device: uint8 batches in, normalised float batches out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BatchAugment(nn.Module):
    """Random crop with zero padding, horizontal flip and rotation for a whole batch at once, then
    normalisation.

    Replaces per-sample PIL transforms: one gather per batch on whatever device the batch is on.
    `train=False` (validation, test, OOD) only scales and normalises.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], crop_padding: int = 0, flip: bool = False,
        rotation: float = 0.0,
    ) -> None:
        super().__init__()
        if crop_padding < 0:
            raise ValueError(f"data.augment.crop_padding must be >= 0, got {crop_padding}")
        if not 0 <= rotation <= 180:
            raise ValueError(f"data.augment.rotation must be in [0, 180] degrees, got {rotation}")
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.rotation = float(rotation)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), False)

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        x = images.float().div_(255.0)
        if train:
            if self.crop_padding:
                x = self._random_crop(x)
            if self.flip:
                flipped = torch.rand(x.shape[0], device=x.device) < 0.5
                x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
            if self.rotation:
                x = self._random_rotation(x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def _random_rotation(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate each image by an angle uniform in [-rotation, rotation] degrees (bilinear, zero fill),
        like torchvision's RandomRotation on the CIFAR-100 recipe of the drainage reference."""
        n = x.shape[0]
        angle = (torch.rand(n, device=x.device) * 2 - 1) * (self.rotation * torch.pi / 180)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _random_crop(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.crop_padding
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n, 1, 1, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device).view(1, 1, h, 1)).expand(n, c, h, w + 2 * p)
        cols = (dx + torch.arange(w, device=x.device).view(1, 1, 1, w)).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)
