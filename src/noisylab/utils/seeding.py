"""Per-epoch seeding, so a resumed run draws the same shuffles and augmentations as an uninterrupted one."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 31-bit seed derived from (run seed, epoch, rank) without collisions between neighbours."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] & 0x7FFFFFFF)


class EpochSeed(L.Callback):
    """Re-seeds torch's global RNG at the start of every training epoch.

    Shuffling (the sampler draws its permutation from the global RNG when the epoch's iterator is
    created, after this hook), batched augmentation and dropout then depend only on (seed, epoch, rank),
    not on how many epochs this process has run: resuming from a checkpoint continues exactly.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank))
