"""Truncated generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from noisylab.methods.standard import StandardMethod

log = logging.getLogger(__name__)


class TruncatedGCE(nn.Module):
    """L_q truncated at k: per-sample weight w_i * ((1 - p_y^q)/q - (1 - k^q)/q).

    Samples whose probability of their (noisy) label is at most k are pruned (w_i = 0): for them the
    truncated loss is the constant L_q(k), which has no gradient. The weights are re-estimated on the
    whole training set (un-augmented, eval mode) at the start of every epoch whose 1-based number is
    >= `start_epoch` and a multiple of `update_every` (0-based epochs 39, 49, ... for 40 and 10), the
    schedule of the paper's code (tests/parity/test_truncated_gce.py); before that every sample counts.
    The paper's code re-estimates with its best checkpoint so far, chosen on the test set; we use the
    current model, since the test set never selects anything here (docs/parity.md).

    This loss keeps per-sample state: the method tells it the training-set size (`setup_samples`),
    passes each batch's sample indices, and calls `on_train_epoch_start` so it can refresh its weights.
    """

    needs_index = True

    def __init__(self, q: float = 0.7, k: float = 0.5, start_epoch: int = 40, update_every: int = 10,
                 reduction: str = "mean") -> None:
        super().__init__()
        if not 0 < q <= 1:
            raise ValueError(f"loss.criterion.q must be in (0, 1], got {q}")
        if not 0 <= k < 1:
            raise ValueError(f"loss.criterion.k must be in [0, 1), got {k}")
        if update_every < 1:
            raise ValueError(f"loss.criterion.update_every must be >= 1, got {update_every}")
        self.q, self.k, self.reduction = float(q), float(k), reduction
        self.start_epoch, self.update_every = int(start_epoch), int(update_every)
        self.register_buffer("weights", torch.ones(0))

    def setup_samples(self, num_samples: int) -> None:
        if self.weights.numel() != num_samples:
            self.weights = torch.ones(num_samples, device=self.weights.device)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        log_p_y = outputs.float().log_softmax(1).gather(1, targets.view(-1, 1)).squeeze(1)
        lq = -torch.expm1(self.q * log_p_y) / self.q
        lq_k = (1.0 - self.k**self.q) / self.q
        weight = self.weights[index] if index is not None and self.weights.numel() else torch.ones_like(lq)
        loss = weight * (lq - lq_k)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()

    def updates_at(self, epoch: int) -> bool:
        """Whether the weights are re-estimated at the start of 0-based `epoch`."""
        return epoch + 1 >= self.start_epoch and (epoch + 1) % self.update_every == 0

    def on_train_epoch_start(self, method: StandardMethod) -> None:
        epoch = method.current_epoch
        if not self.updates_at(epoch):
            return
        index, outputs, labels = method.predict_training_set()
        p_y = outputs.float().softmax(1).gather(1, labels.view(-1, 1)).squeeze(1)
        self.weights[index.to(self.weights.device)] = (p_y > self.k).float().to(self.weights.device)
        log.info("truncated GCE: epoch %d keeps %.1f%% of the training samples", epoch,
                 100 * float(self.weights[index].mean()))
