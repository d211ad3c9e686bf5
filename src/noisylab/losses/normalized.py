"""Normalized losses (Ma et al. 2020, APL) and normalized negative losses (Ye et al. 2023, ANL).

Normalising a loss by its sum over all K candidate labels, l(y) / sum_k l(k), makes it symmetric
(the normalised values sum to 1 over the labels) and hence robust to label noise, at the price of
underfitting; APL pairs such an "active" loss with a "passive" one, ANL with a "negative" one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from noisylab.losses.basic import PerSampleLoss, focal, target_log_probability


def _check_min_prob(min_prob: float) -> None:
    if not 0 < min_prob < 1:
        raise ValueError(f"normalized negative losses need 0 < min_prob < 1 (loss.criterion.min_prob, or "
                         f"loss.criterion.passive.min_prob in a pair), got {min_prob}")


def _check_classes(min_prob: float, num_classes: int) -> None:
    """K * min_prob < 1 keeps the largest class above the clamp, so the normaliser is > 0."""
    if num_classes * min_prob >= 1:
        raise ValueError(f"min_prob = {min_prob} is too large for {num_classes} classes: it needs min_prob < "
                         f"1 / {num_classes} (set it in the loss config, e.g. loss.criterion.passive.min_prob)")


class NormalizedCrossEntropy(PerSampleLoss):
    """l = -log p_y / -sum_k log p_k = log p_y / sum_k log p_k, in [0, 1].

    The denominator is at most -K log K (AM-GM), so it is never 0; both parts come from log-softmax.
    """

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(outputs.float(), dim=1)
        return target_log_probability(log_probs, targets) / log_probs.sum(dim=1)


class NormalizedFocalLoss(PerSampleLoss):
    """l = FL(p_y) / sum_k FL(p_k), FL(p) = -(1 - p)^gamma log p, in [0, 1].

    As in the reference code, only the factors (1 - p)^gamma are detached (see `focal`); the gradient
    flows through log p in the numerator and in the normaliser (tests/parity/test_drainage_losses.py).
    The normaliser is >= (K - 1) 2^-gamma log 2 > 0 because every class but the largest has p_k <= 1/2.

    Args:
        gamma: focusing parameter, >= 0 (0.5 in the reference's CIFAR-10 configs and the APL paper).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, gamma: float = 0.5, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not gamma >= 0:
            raise ValueError(f"normalized focal loss needs gamma >= 0 (loss.criterion.gamma, or "
                             f"loss.criterion.active.gamma in a pair), got {gamma}")
        self.gamma = float(gamma)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        terms = focal(F.log_softmax(outputs.float(), dim=1), self.gamma)
        return target_log_probability(terms, targets) / terms.sum(dim=1)


class NormalizedNegativeCrossEntropy(PerSampleLoss):
    """l = 1 - (A + log p_y) / sum_k (A + log p_k), p clamped to [min_prob, 1], A = -log(min_prob).

    The ANL "negative" counterpart of NCE: A + log p_k >= 0 is CE flipped upside down (its largest
    value A at p_k = 1), so the normalised term rewards mass on the label relative to all classes and
    the loss lies in [0, 1]. Clamping is done on log p (same values as clamping p, no log of 0); as in
    the reference, the normaliser is not detached. Needs K * min_prob < 1 so the normaliser is > 0.

    Args:
        min_prob: lower clamp of the probabilities, in (0, 1/K) (1e-7 in the reference configs).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, min_prob: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        _check_min_prob(min_prob)
        self.min_prob = float(min_prob)
        self.log_min_prob = math.log(min_prob)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = outputs.float()
        _check_classes(self.min_prob, z.shape[1])
        shifted = F.log_softmax(z, dim=1).clamp(min=self.log_min_prob) - self.log_min_prob  # A + log p_k >= 0
        return 1.0 - target_log_probability(shifted, targets) / shifted.sum(dim=1)


class NormalizedNegativeFocalLoss(PerSampleLoss):
    """l = 1 - (A - FL(p_y)) / sum_k (A - FL(p_k)), p clamped to [min_prob, 1], A = FL(min_prob).

    FL(p) = -(1 - p)^gamma log p; A = -(1 - min_prob)^gamma log(min_prob) is its largest value on the
    clamped range, so every term is >= 0 and the loss lies in [0, 1]. As in the reference code, only the
    factors (1 - p)^gamma are detached (see `focal`) and clamped probabilities pass no gradient; the
    gradient flows through log p in the numerator and the normaliser. Needs K * min_prob < 1 so the
    normaliser is > 0.

    Args:
        gamma: focusing parameter, >= 0 (0.5 in the reference's CIFAR-10 config).
        min_prob: lower clamp of the probabilities, in (0, 1/K) (1e-7 in the reference configs).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, gamma: float = 0.5, min_prob: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not gamma >= 0:
            raise ValueError(f"normalized negative focal loss needs gamma >= 0 (loss.criterion.gamma, or "
                             f"loss.criterion.passive.gamma in a pair), got {gamma}")
        _check_min_prob(min_prob)
        self.gamma, self.min_prob = float(gamma), float(min_prob)
        self.log_min_prob = math.log(min_prob)
        self.ceiling = -((1.0 - min_prob) ** gamma) * self.log_min_prob  # A = FL(min_prob)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = outputs.float()
        _check_classes(self.min_prob, z.shape[1])
        shifted = self.ceiling - focal(F.log_softmax(z, dim=1).clamp(min=self.log_min_prob), self.gamma)  # >= 0
        return 1.0 - target_log_probability(shifted, targets) / shifted.sum(dim=1)
