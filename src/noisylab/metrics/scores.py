"""Per-sample confidence scores from class logits; higher = more in-distribution.

Names follow the OOD literature; DisMax's names map as MPS = msp, MDS = max_logit, ES = neg_entropy.
"""

from __future__ import annotations

import torch


def msp(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017)."""
    return logits.softmax(1).amax(1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """The largest logit (for distance heads: the negative minimum distance)."""
    return logits.amax(1)


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Negative free energy, logsumexp of the logits (Liu et al. 2020)."""
    return torch.logsumexp(logits, 1)


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """sum_k p_k log p_k, computed from log-softmax (no log of 0); a class with p_k = 0 (a -inf logit)
    adds 0, as the limit p log p -> 0 says, not 0 * -inf = NaN."""
    log_p = logits.log_softmax(1)
    return torch.where(log_p.isneginf(), 0.0, log_p.exp() * log_p).sum(1)


def mmls(logits: torch.Tensor) -> torch.Tensor:
    """DisMax's max-mean logit score."""
    return logits.amax(1) + logits.mean(1)


def mmles(logits: torch.Tensor) -> torch.Tensor:
    """DisMax's max-mean logit entropy score (its default)."""
    return mmls(logits) + neg_entropy(logits)


def mmleps(logits: torch.Tensor) -> torch.Tensor:
    """DisMax's max-mean logit entropy probability score."""
    return mmles(logits) + msp(logits)


SCORES = {f.__name__: f for f in (msp, max_logit, energy, neg_entropy, mmls, mmles, mmleps)}


def class_scores(logits: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The named scores of float32 class logits, in the given order."""
    logits = logits.float()
    return {name: SCORES[name](logits) for name in names}
