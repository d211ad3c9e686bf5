"""Shuffling that depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from noisylab.utils.seeding import epoch_seed


class EpochPermutationSampler(Sampler[int]):
    """A fresh random permutation each epoch, drawn from its own generator seeded by (seed, epoch).

    torch's RandomSampler draws from the global RNG when its iterator is created, and Lightning
    creates the first iterator of a (resumed) fit before any epoch hook runs; the permutation would
    then depend on the process's history. `epoch` is read when iteration starts, from the trainer.
    Under DDP Lightning shards this sampler's output across ranks.
    """

    def __init__(self, num_samples: int, seed: int, epoch: Callable[[], int]) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch(), 0))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())
