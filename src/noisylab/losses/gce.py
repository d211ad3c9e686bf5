"""Generalized cross-entropy (Zhang & Sabuncu 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisylab.losses.basic import PerSampleLoss, target_log_probability


class GeneralizedCrossEntropy(PerSampleLoss):
    """l = (1 - p_y^q) / q, the negative Box-Cox transform of p_y, q in (0, 1].

    It interpolates between cross-entropy (q -> 0) and MAE (q = 1, here at the scale 1 - p_y): larger q
    trades fitting speed for robustness to label noise. Computed as -expm1(q log p_y) / q from
    log-softmax, which has no cancellation for small q (q = 1e-6 gives -log p_y to ~1e-6 relative) and
    no log of 0. The reference clamps p_y to [1e-7, 1] first; we do not need to (the formula is finite
    without it), so for p_y < 1e-7 our value is the paper's, not the clamped one.

    Args:
        q: exponent in (0, 1] (the reference's CIFAR-10 value is 0.7).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, q: float = 0.7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not 0 < q <= 1:
            raise ValueError(f"generalized cross-entropy needs 0 < q <= 1 (loss.criterion.q), got {q}")
        self.q = float(q)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p_y = target_log_probability(F.log_softmax(outputs.float(), dim=1), targets)
        return -torch.expm1(self.q * log_p_y) / self.q
