"""A map-style dataset over in-memory tensors that hands out whole batches in one indexing operation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class IndexedTensorDataset(Dataset):
    """Samples are (image uint8, label, index, clean label); `index` is the sample's position in the
    training set (or test/OOD set), so per-sample methods and metrics need no side channels.

    `__getitems__` lets the DataLoader fetch a batch with one fancy-index per tensor instead of
    collating per-sample tuples; samplers (including DistributedSampler) work unchanged.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, clean: torch.Tensor,
                 index: torch.Tensor | None = None) -> None:
        self.images = images
        self.labels = labels
        self.clean = clean
        self.index = torch.arange(len(images)) if index is None else index

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> IndexedTensorDataset:
        """Move the tensors (e.g. onto the GPU, where batches are then gathered without any copy)."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        self.clean, self.index = self.clean.to(device), self.index.to(device)
        return self

    def __getitem__(self, i: int) -> Batch:
        return self.images[i], self.labels[i], self.index[i], self.clean[i]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return self.images[idx], self.labels[idx], self.index[idx], self.clean[idx]


def keep_batch(batch: Batch) -> Batch:
    """collate_fn for datasets that already return whole batches."""
    return batch
