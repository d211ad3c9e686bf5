"""The drainage loss (Taha, Montavon, Körber 2025)."""

from __future__ import annotations

import math

import torch

from noisylab.losses.basic import PerSampleLoss


class DrainageLoss(PerSampleLoss):
    """l = log(1 + a (p_d + p_J) / p_t + b p_J / p_d), softmax over K real classes + the drainage node.

    p_t: probability of the (noisy) target, p_d: of the drainage node (last output), p_J: of all other
    real classes. The first term pulls mass to the target or, failing that, to the drainage node; the
    second keeps the drainage node ahead of the wrong classes. Computed in logit space as
    logsumexp([0, LSE(z_d, z_J) - z_t + log a, LSE(z_J) - z_d + log b]) in float32, so it is finite for
    any finite logits (no eps, no log of 0). With a = 1 and b -> 0 it is (K+1)-way cross-entropy.

    Args:
        a: weight of the target term (a > 0).
        b: weight of the drainage term (b > 0); defaults to 1 / a as in the reference code.
        reduction: "mean", "sum" or "none".
    """

    drainage_node = True

    def __init__(self, a: float = 1.0, b: float | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if b is None and a > 0:
            b = 1.0 / a
        if not (a > 0 and b is not None and b > 0):
            raise ValueError(f"drainage loss needs a > 0 and b > 0, got a={a}, b={b} (e.g. loss.criterion.a=1)")
        self.a, self.b = float(a), float(b)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = outputs.float()
        k = z.shape[1] - 1  # index of the drainage node
        target = targets.view(-1, 1)
        z_t = z.gather(1, target).squeeze(1)
        not_target = z.scatter(1, target, float("-inf"))
        lse_d_and_others = torch.logsumexp(not_target, dim=1)
        lse_others = torch.logsumexp(not_target[:, :k], dim=1)
        z_d = z[:, k]
        terms = torch.stack(
            [
                torch.zeros_like(z_t),
                lse_d_and_others - z_t + math.log(self.a),
                lse_others - z_d + math.log(self.b),
            ],
            dim=1,
        )
        return torch.logsumexp(terms, dim=1)
