"""Per-sample confidence scores from class logits; higher = more in-distribution.

Names follow the OOD literature; DisMax's names map as MPS = msp, MDS = max_logit, ES = neg_entropy.

Scores are computed in float64, and the two probabilities (MSP, and 1 - p_d of drainage heads) are held as
their log-odds, log(p / (1 - p)), computed from the logits without forming p: a probability near 1 rounds
to exactly 1.0 (in float32 from a logit gap of ~17, in float64 from ~37), and confident samples would then
tie and lose their order. Ranking metrics (AUROC, FPR, AURC) depend on the order only, so they are exact on
the log-odds; `display_value` turns a held score back into the quantity its name says, for figures and
tables.
"""

from __future__ import annotations

import torch

from noisylab.metrics.arrays import TensorOrArray, accepts_arrays
from noisylab.score_names import score_label


def _without_top(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the largest logit, logsumexp of the others) per row."""
    top, where = logits.max(1)
    others = logits.scatter(1, where.unsqueeze(1), float("-inf"))
    return top, torch.logsumexp(others, 1)


@accepts_arrays
def msp(logits: TensorOrArray) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017), held as its log-odds:
    log(p_max / (1 - p_max)) = l_max - logsumexp_{j != max} l_j."""
    top, rest = _without_top(logits.double())
    return top - rest


@accepts_arrays
def msp_probability(logits: TensorOrArray) -> torch.Tensor:
    """The maximum softmax probability itself (float64), where a sum needs the probability."""
    return logits.double().softmax(1).amax(1)


@accepts_arrays
def max_logit(logits: TensorOrArray) -> torch.Tensor:
    """The largest logit (for distance heads: the negative minimum distance)."""
    return logits.double().amax(1)


@accepts_arrays
def energy(logits: TensorOrArray) -> torch.Tensor:
    """Negative free energy, logsumexp of the logits (Liu et al. 2020)."""
    return torch.logsumexp(logits.double(), 1)


@accepts_arrays
def neg_entropy(logits: TensorOrArray) -> torch.Tensor:
    """sum_k p_k log p_k, computed from log-softmax (no log of 0); a class with p_k = 0 (a -inf logit)
    adds 0, as the limit p log p -> 0 says, not 0 * -inf = NaN."""
    log_p = logits.double().log_softmax(1)
    return torch.where(log_p.isneginf(), 0.0, log_p.exp() * log_p).sum(1)


@accepts_arrays
def mmls(logits: TensorOrArray) -> torch.Tensor:
    """DisMax's max-mean logit score."""
    logits = logits.double()
    return logits.amax(1) + logits.mean(1)


@accepts_arrays
def mmles(logits: TensorOrArray) -> torch.Tensor:
    """DisMax's max-mean logit entropy score (its default)."""
    return mmls(logits) + neg_entropy(logits)


@accepts_arrays
def mmleps(logits: TensorOrArray) -> torch.Tensor:
    """DisMax's max-mean logit entropy probability score (adds the probability, not its log-odds)."""
    return mmles(logits) + msp_probability(logits)


@accepts_arrays
def one_minus_p_d(outputs: TensorOrArray, drainage_index: int) -> torch.Tensor:
    """1 - p_d of a drainage head's K + 1 outputs, held as its log-odds:
    log((1 - p_d) / p_d) = logsumexp_{k != d} l_k - l_d."""
    outputs = outputs.double()
    classes = torch.cat([outputs[:, :drainage_index], outputs[:, drainage_index + 1:]], dim=1)
    return torch.logsumexp(classes, 1) - outputs[:, drainage_index]


SCORES = {f.__name__: f for f in (msp, max_logit, energy, neg_entropy, mmls, mmles, mmleps)}
# Scores held as log-odds of a probability: display_value maps them back with the logistic function.
LOG_ODDS = frozenset({"msp", "one_minus_p_d"})
__all__ = ["LOG_ODDS", "SCORES", "class_scores", "display_value", "score_label"]


@accepts_arrays
def display_value(name: str, held: TensorOrArray) -> torch.Tensor:
    """The quantity a score's name says, from the form it is held in (the probability for log-odds)."""
    return torch.sigmoid(held.double()) if name in LOG_ODDS else held.double()


@accepts_arrays
def class_scores(logits: TensorOrArray, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The named scores of class logits, in float64, in the given order."""
    return {name: SCORES[name](logits) for name in names}
