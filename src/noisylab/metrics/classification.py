"""Accuracy, calibration and the drainage node's bookkeeping on collected outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from noisylab.metrics.arrays import TensorOrArray, accepts_arrays
from noisylab.metrics.calibration import ece


@accepts_arrays
def classification_metrics(class_logits: TensorOrArray, labels: TensorOrArray) -> dict[str, float]:
    """acc (top-1 over the K real classes), ece (15 equal-width bins, L1) and nll of softmax over K."""
    k = class_logits.shape[1]
    logits = class_logits.float()
    return {
        "acc": multiclass_accuracy(logits, labels, num_classes=k, average="micro").item(),
        "ece": ece(logits, labels, n_bins=15),
        "nll": F.cross_entropy(logits, labels).item(),
    }


@accepts_arrays
def drainage_metrics(drained: TensorOrArray, correct: TensorOrArray) -> dict[str, float]:
    """drainage_rate: share of samples drained; selective_acc: accuracy on the samples that were not.

    selective_acc is left out when everything is drained (there is nothing to be accurate on).
    """
    out = {"drainage_rate": drained.float().mean().item()}
    kept = ~drained
    if kept.any():
        out["selective_acc"] = correct[kept].float().mean().item()
    return out


@accepts_arrays
def brier_score(class_logits: TensorOrArray, labels: TensorOrArray) -> float:
    """Mean over samples of sum_k (p_k - [k = y])^2 (multi-class Brier score, in [0, 2])."""
    probs = class_logits.float().softmax(1)
    target = F.one_hot(labels, probs.shape[1]).float()
    return ((probs - target) ** 2).sum(1).mean().item()


@accepts_arrays
def risk_coverage(confidence: TensorOrArray, correct: TensorOrArray) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, risk): accept the most confident samples first; risk = error rate among those accepted.

    Ties in confidence are accepted together (one point per distinct confidence), so the curve does not
    depend on the order of tied samples.
    """
    order = torch.argsort(confidence.double(), descending=True, stable=True)
    conf, errors = confidence.double()[order], (~correct.bool()[order]).double()
    cumulative_errors = errors.cumsum(0)
    last_of_tie = torch.ones_like(conf, dtype=torch.bool)
    last_of_tie[:-1] = conf[1:] != conf[:-1]
    accepted = torch.arange(1, len(conf) + 1, dtype=torch.float64)[last_of_tie]
    return accepted / len(conf), cumulative_errors[last_of_tie] / accepted


@accepts_arrays
def selective_metrics(confidence: TensorOrArray, correct: TensorOrArray, coverage: float = 0.9) -> dict[str, float]:
    """aurc: area under the risk-coverage curve (mean selective risk, Geifman et al. 2019, as a step function
    over samples); acc_at_<coverage>: accuracy on the `coverage` share of most confident samples."""
    coverages, risks = risk_coverage(confidence, correct)
    counts = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), coverages]))  # share of samples per step
    at = min(int(torch.searchsorted(coverages, torch.tensor(coverage, dtype=torch.float64))), len(risks) - 1)
    return {"aurc": float((risks * counts).sum()), f"acc_at_{round(coverage * 100)}": float(1.0 - risks[at])}
