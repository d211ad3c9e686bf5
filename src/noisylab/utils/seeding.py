"""Per-epoch seeding, so a resumed run draws the same shuffles and augmentations as an uninterrupted one."""

from __future__ import annotations

from typing import Any

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

    A checkpoint saved within an epoch (callbacks.mid_epoch_checkpoint) also carries the global RNG state
    of that moment: Lightning does not call the epoch-start hook when it continues an epoch, so the state
    is put back when training starts, and the rest of the epoch draws the same random numbers.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._trainer: L.Trainer | None = None
        self._restored: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restored, self._restored = self._restored, None
        if restored is None or restored["epoch"] != trainer.current_epoch:
            return  # saved at an epoch's end: the next epoch seeds itself
        torch.set_rng_state(restored["cpu"])
        if restored.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(restored["cuda"])

    def state_dict(self) -> dict[str, Any]:
        if self._trainer is None:
            return {}
        return {"epoch": self._trainer.current_epoch, "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if state_dict else None
