"""Per-sample losses of the robust-loss zoo and the plain losses it builds on: CE, FL, MAE, RCE.

Every loss here maps (N, K) logits and int64 targets to a loss, computed in float32 from log-softmax
(never from a softmax that may round to 0 or 1), so values and gradients stay finite for any finite
logits, also under bfloat16 autocast.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def target_log_probability(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p_y for each row of (N, K) log-probabilities."""
    return log_probs.gather(1, targets.view(-1, 1)).squeeze(1)


def log_one_minus_target_probability(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 - p_y) = LSE_{k != y} z_k - LSE_k z_k.

    Exact in logit space, so it stays finite (with a finite gradient) where 1 - p_y itself rounds to 0
    in float32; powers (1 - p_y)^gamma with gamma < 1 then have no infinite derivative at p_y = 1.
    """
    others = logits.scatter(1, targets.view(-1, 1), float("-inf"))
    return torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)


def focal(log_probs: torch.Tensor, gamma: float) -> torch.Tensor:
    """FL(p) = -(1 - p)^gamma log p elementwise, from log p, with the factor (1 - p)^gamma detached.

    Detaching the factor is what the reference code of focal, NFL and NNFL does (it computes the
    factor from p.data); besides matching its gradients, it keeps the gradient finite at p = 1 for
    gamma < 1, where d/dp (1 - p)^gamma diverges.
    """
    factor = (-torch.expm1(log_probs.detach())).clamp(min=0).pow(gamma)
    return -factor * log_probs


class PerSampleLoss(nn.Module, ABC):
    """Base of the zoo: subclasses define `per_sample` (shape (N,), float32), `forward` reduces it.

    Keeping the two apart lets combinations (WeightedPair, MeanPredictionEntropyRegularised) add the
    per-sample values of their parts and apply one reduction, whatever the parts' own `reduction` is.

    The class attributes say which head's outputs the loss expects (config_checks refuses or warns about a
    loss config whose head does not fit): `drainage_node`: the last output is the drainage node (a head with
    `has_drainage`), else every output is a class; `distance_logits`: the outputs are negative prototype
    distances (a head with `prototype_distances`).

    Args:
        reduction: "mean" (default, what the training methods expect), "sum" or "none" (per sample).
    """

    drainage_node = False
    distance_logits = False

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r} (loss.criterion.reduction): use one of {REDUCTIONS}")
        self.reduction = reduction

    @abstractmethod
    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of each sample, shape (N,), in float32."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.per_sample(outputs, targets)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class CrossEntropy(PerSampleLoss):
    """l = -log p_y, in float32 from log-softmax.

    Torch's CrossEntropyLoss computes in the input dtype (bfloat16 under autocast would round the loss);
    this one always works in float32 and shares the zoo's `per_sample` interface so it can be paired.
    """

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return -target_log_probability(F.log_softmax(outputs.float(), dim=1), targets)


class FocalLoss(PerSampleLoss):
    """l = -(1 - p_y)^gamma log p_y (Lin et al. 2017); gamma = 0 is cross-entropy.

    The factor (1 - p_y)^gamma down-weights samples the model already fits. Its gradient is held at 0
    (see `focal`), as in the Drainage and APL code the robust-loss tables were made with: the gradient
    is that of -log p_y scaled by the factor (tests/parity/test_drainage_losses.py).

    Args:
        gamma: focusing parameter, >= 0 (the reference's CIFAR-10 value is 0.5).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, gamma: float = 0.5, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not gamma >= 0:
            raise ValueError(f"focal loss needs gamma >= 0 (loss.criterion.gamma), got {gamma}")
        self.gamma = float(gamma)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal(target_log_probability(F.log_softmax(outputs.float(), dim=1), targets), self.gamma)


class MeanAbsoluteError(PerSampleLoss):
    """l = 1 - p_y, i.e. half the L1 distance ||e_y - p||_1 = 2 (1 - p_y) of Ghosh et al. (2017).

    This is the scale the APL/ANL papers and their code use (so their alpha/beta weights carry over);
    it is bounded and symmetric, hence noise-tolerant, but slow to fit. Computed as
    exp(log(1 - p_y)) in logit space for full precision near p_y = 1. The reference's `mae` factory
    passes its config dict as the number of classes and crashes; this is the formula of the papers.
    """

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.exp(log_one_minus_target_probability(outputs.float(), targets))


class ReverseCrossEntropy(PerSampleLoss):
    """l = -sum_k p_k log q_k with q the one-hot label (Wang et al. 2019, the passive half of SCE).

    log 0 is undefined, so the one-hot is clamped to [label_floor, 1]: l = -log(label_floor) *
    sum_{k != y} p_k, a bounded loss that pushes probability off the wrong classes. As in the reference
    code, p is clamped to [prob_floor, 1] and label_floor = 1e-4 in natural log (A = ln 1e-4 = -9.21;
    the SCE paper writes A = -4).

    Args:
        label_floor: value that replaces the zeros of the one-hot label inside the log, in (0, 1).
        prob_floor: lower clamp of the predicted probabilities, in [0, 1).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, label_floor: float = 1e-4, prob_floor: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not 0 < label_floor < 1:
            raise ValueError(f"reverse cross-entropy needs 0 < label_floor < 1 (loss.criterion.label_floor, or "
                             f"loss.criterion.passive.label_floor in a pair), got {label_floor}")
        if not 0 <= prob_floor < 1:
            raise ValueError(f"reverse cross-entropy needs 0 <= prob_floor < 1 (loss.criterion.prob_floor, or "
                             f"loss.criterion.passive.prob_floor in a pair), got {prob_floor}")
        self.label_floor, self.prob_floor = float(label_floor), float(prob_floor)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(outputs.float(), dim=1).clamp(min=self.prob_floor, max=1.0)
        wrong = probs.scatter(1, targets.view(-1, 1), 0.0).sum(dim=1)
        return -math.log(self.label_floor) * wrong
