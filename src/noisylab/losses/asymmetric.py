"""Asymmetric losses (Zhou et al. 2021): AGCE, AUL, AEL.

Each is a bounded, decreasing function of p_y alone. "Asymmetric" means that, under clean-majority
label noise, minimising the noisy risk puts all mass on the clean label, so they are noise-tolerant
without being symmetric; a and q trade that tolerance against how fast the loss fits. APL pairs them
(as the passive part) with NCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisylab.losses.basic import PerSampleLoss, target_log_probability


def _target_probability(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """p_y in float32, via log-softmax."""
    return torch.exp(target_log_probability(F.log_softmax(outputs.float(), dim=1), targets))


def _key(name: str) -> str:
    return f"loss.criterion.{name}, or loss.criterion.passive.{name} in a pair"


class AsymmetricGCE(PerSampleLoss):
    """l = ((a + 1)^q - (a + p_y)^q) / q, a > 0, q > 0 (asymmetric generalized cross-entropy).

    a > 0 keeps the base positive, so the loss and its gradient -(a + p_y)^(q - 1) are finite
    everywhere; larger a flattens the loss (more robust, slower to fit).

    Args:
        a: offset, > 0 (the AGCE authors' CIFAR-10 value is 0.6; 6 with NCE in the reference config).
        q: exponent, > 0 (0.6; 1.5 with NCE).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, a: float = 0.6, q: float = 0.6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not a > 0:
            raise ValueError(f"AGCE needs a > 0 ({_key('a')}), got {a}")
        if not q > 0:
            raise ValueError(f"AGCE needs q > 0 ({_key('q')}), got {q}")
        self.a, self.q = float(a), float(q)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p_y = _target_probability(outputs, targets)
        return ((self.a + 1.0) ** self.q - (self.a + p_y).pow(self.q)) / self.q


class AsymmetricUnhingedLoss(PerSampleLoss):
    """l = ((a - p_y)^q - (a - 1)^q) / q, a > 1, q > 0 (asymmetric unhinged loss).

    a > 1 keeps a - p_y >= a - 1 > 0, so the power and its gradient are finite for every p_y.

    Args:
        a: offset, > 1 (the AUL authors' CIFAR-10 value is 5.5; 6.3 with NCE in the reference config).
        q: exponent, > 0 (3; 1.5 with NCE).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, a: float = 5.5, q: float = 3.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not a > 1:
            raise ValueError(f"AUL needs a > 1 ({_key('a')}), got {a}")
        if not q > 0:
            raise ValueError(f"AUL needs q > 0 ({_key('q')}), got {q}")
        self.a, self.q = float(a), float(q)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p_y = _target_probability(outputs, targets)
        return ((self.a - p_y).pow(self.q) - (self.a - 1.0) ** self.q) / self.q


class AsymmetricExponentialLoss(PerSampleLoss):
    """l = exp(-p_y / a), a > 0 (asymmetric exponential loss); larger a flattens it.

    Args:
        a: temperature, > 0 (the AEL authors' CIFAR-10 value is 2.5; 5 with NCE in the reference config).
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, a: float = 2.5, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not a > 0:
            raise ValueError(f"AEL needs a > 0 ({_key('a')}), got {a}")
        self.a = float(a)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.exp(-_target_probability(outputs, targets) / self.a)
