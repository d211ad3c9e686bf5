"""Batched augmentation on the training device: uint8 batches in, normalised float batches out."""

from __future__ import annotations

import math
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
        # One float copy that this call owns (copy=True: a float32 input is copied too, never changed, so
        # one batch can be augmented into several views), then scaled and normalised in place: the same
        # values as out of place, without two more batch-sized temporaries per call.
        x = images.to(torch.float32, copy=True).div_(255.0)
        if train:
            if self.crop_padding:
                x = self._random_crop(x)
            if self.flip:
                flipped = torch.rand(x.shape[0], device=x.device) < 0.5
                x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
            if self.rotation:
                x = self._random_rotation(x)
        return self.normalise(x, in_place=True)

    def normalise(self, x: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
        """[0, 1] images -> the inputs networks see; `in_place` (the same values) only for a tensor the caller
        owns, e.g. forward's own float copy."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return x.sub_(mean).div_(std) if in_place else (x - mean) / std

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Undo `normalise`: network inputs -> [0, 1] images (for models of the pixels, or further
        distortions)."""
        return (x.float() * self.std.to(x.device) + self.mean.to(x.device)).clamp(0, 1)

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


class ContrastiveAugment(nn.Module):
    """SimCLR's view distortions for whole batches of images in [0, 1]: random resized crop (area scale
    and aspect ratio per sample), colour jitter (brightness, contrast, saturation; with probability
    `jitter_probability`) and random greyscale. `jitter` is SimCLR's colour strength s: factors are drawn
    from [1 - 0.8 s, 1 + 0.8 s], as in the SimCLR paper's code and Atanov's (s = 0.5 for CIFAR, checked in
    tests/parity/test_simclr.py). Hue jitter (0.2 s there) is left out: it needs an HSV round trip per
    pixel and matters least in SimCLR's ablations (docs/parity.md)."""

    def __init__(self, crop_scale: Sequence[float] = (0.08, 1.0), jitter: float = 0.5,
                 jitter_probability: float = 0.8, grey_probability: float = 0.2) -> None:
        super().__init__()
        low, high = crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.crop_scale = (float(low), float(high))
        self.jitter = float(jitter)
        self.jitter_probability = float(jitter_probability)
        self.grey_probability = float(grey_probability)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = self._resized_crop(images.float())
        return self._colour(images) if images.shape[1] == 3 else images

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        return torch.empty(n, device=device).uniform_(low, high)

    def _resized_crop(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        area = self._uniform(n, *self.crop_scale, device)
        ratio = torch.exp(self._uniform(n, math.log(3 / 4), math.log(4 / 3), device))
        width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        cx = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
        cy = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
        zero = torch.zeros_like(width)
        theta = torch.stack([torch.stack([width, zero, cx], 1), torch.stack([zero, height, cy], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        s = 0.8 * self.jitter
        apply = (torch.rand(n, device=device) < self.jitter_probability).view(-1, 1, 1, 1)
        brightness = self._uniform(n, max(0.0, 1 - s), 1 + s, device).view(-1, 1, 1, 1)
        contrast = self._uniform(n, max(0.0, 1 - s), 1 + s, device).view(-1, 1, 1, 1)
        saturation = self._uniform(n, max(0.0, 1 - s), 1 + s, device).view(-1, 1, 1, 1)
        jittered = (x * brightness).clamp(0, 1)
        grey = _grey(jittered)
        level = grey.mean((2, 3), keepdim=True)
        jittered = ((jittered - level) * contrast + level).clamp(0, 1)
        grey = _grey(jittered)
        jittered = ((jittered - grey) * saturation + grey).clamp(0, 1)
        x = torch.where(apply, jittered, x)
        to_grey = (torch.rand(n, device=device) < self.grey_probability).view(-1, 1, 1, 1)
        return torch.where(to_grey, _grey(x).expand_as(x), x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (N, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)
