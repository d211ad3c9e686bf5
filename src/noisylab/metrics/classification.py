"""Accuracy, calibration and the drainage node's bookkeeping on collected outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from noisylab.metrics.calibration import ece


def classification_metrics(class_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """acc (top-1 over the K real classes), ece (15 equal-width bins, L1) and nll of softmax over K."""
    k = class_logits.shape[1]
    logits = class_logits.float()
    return {
        "acc": multiclass_accuracy(logits, labels, num_classes=k, average="micro").item(),
        "ece": ece(logits, labels, n_bins=15),
        "nll": F.cross_entropy(logits, labels).item(),
    }


def drainage_metrics(drained: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """drainage_rate: share of samples drained; selective_acc: accuracy on the samples that were not.

    selective_acc is left out when everything is drained (there is nothing to be accurate on).
    """
    out = {"drainage_rate": drained.float().mean().item()}
    kept = ~drained
    if kept.any():
        out["selective_acc"] = correct[kept].float().mean().item()
    return out
