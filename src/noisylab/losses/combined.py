"""Combinations of zoo losses: weighted pairs (SCE, APL, ANL) and ANL-CE-ER's mean-prediction regulariser."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from noisylab.losses.basic import PerSampleLoss


def _check_component(loss: object, key: str) -> None:
    if not isinstance(loss, PerSampleLoss):
        raise TypeError(f"{key} must be a loss of the zoo (noisylab.losses, with per-sample values), "
                        f"got {type(loss).__name__}")


class WeightedPair(PerSampleLoss):
    """l = alpha * active + beta * passive, per sample.

    Covers SCE (alpha CE + beta RCE, Wang et al. 2019), the active-passive losses of Ma et al. (2020)
    and Zhou et al. (2021) (NCE/NFL + MAE/RCE/AGCE/AUL/AEL) and the active-negative losses of Ye et al.
    (2023) (NCE + NNCE, NFL + NNFL): a robust but underfitting active loss is helped to fit by a
    complementary one. The parts' own `reduction` is ignored; this module's applies to the sum.

    Args:
        active, passive: zoo losses (PerSampleLoss); the "passive" slot also holds ANL's negative loss.
        alpha, beta: their weights, >= 0.
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, active: PerSampleLoss, passive: PerSampleLoss, alpha: float = 1.0, beta: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        _check_component(active, "loss.criterion.active")
        _check_component(passive, "loss.criterion.passive")
        for name, weight in (("alpha", alpha), ("beta", beta)):
            if not 0 <= weight < math.inf:
                raise ValueError(f"loss.criterion.{name} must be a finite weight >= 0, got {weight}")
        self.active, self.passive = active, passive
        self.alpha, self.beta = float(alpha), float(beta)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.active.per_sample(outputs, targets) + \
            self.beta * self.passive.per_sample(outputs, targets)


class MeanPredictionEntropyRegularised(PerSampleLoss):
    """l_i = loss_i + lamb * R, R = log K + sum_k pbar_k log pbar_k = log K - H(pbar) >= 0 (ANL-CE-ER).

    pbar is the batch-mean prediction: p clamped to [min_prob, 1 - min_prob] per sample, summed over the
    batch, normalised to sum 1, clamped again (the reference's clamps, which keep log pbar finite). R is
    KL(pbar || uniform), so adding it (positive sign, as in the reference) pushes the batch's predictions
    to spread over all classes instead of collapsing onto a few. R is a batch quantity: every sample
    carries it, so "mean" gives mean(loss) + lamb R and "sum" gives sum(loss) + N lamb R. The reference's
    ANL_CE_ER is not registered in its loss factory (its cifar10_anl_ce_er.json cannot run) and clamps
    its NNCE's p to [min_prob, 1 - min_prob]; ours wraps any zoo loss, and anl_ce_er.yaml wraps the
    registered NCE + NNCE (p clamped to [min_prob, 1]).

    Args:
        loss: the zoo loss to regularise (ANL-CE: WeightedPair(NCE, NNCE)); its `reduction` is ignored.
        lamb: weight of R, >= 0 (2 in the reference's CIFAR-10 config).
        min_prob: the clamp, in (0, 1/2) (1e-7 in the reference).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, loss: PerSampleLoss, lamb: float, min_prob: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        _check_component(loss, "loss.criterion.loss")
        if not 0 <= lamb < math.inf:
            raise ValueError(f"loss.criterion.lamb must be a finite weight >= 0, got {lamb}")
        if not 0 < min_prob < 0.5:
            raise ValueError(f"loss.criterion.min_prob must be in (0, 0.5), got {min_prob}")
        self.loss, self.lamb, self.min_prob = loss, float(lamb), float(min_prob)

    def regulariser(self, outputs: torch.Tensor) -> torch.Tensor:
        """R = log K - H(pbar) of the batch, a scalar."""
        probs = F.softmax(outputs.float(), dim=1).clamp(self.min_prob, 1.0 - self.min_prob)
        mean_prediction = (probs.sum(dim=0) / probs.sum()).clamp(self.min_prob, 1.0 - self.min_prob)
        return math.log(outputs.shape[1]) + (mean_prediction * mean_prediction.log()).sum()

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss.per_sample(outputs, targets) + self.lamb * self.regulariser(outputs)
