"""OOD detection metrics. Input convention: scores are higher for in-distribution samples.

The field has two conventions for "FPR at 95% TPR", and both are reported under names that say which:

- `fpr95_id_positive`: in-distribution is the positive class. The share of OOD samples accepted as
  in-distribution at the threshold that keeps 95% of the in-distribution samples (ODIN, Energy, the
  drainage and DisMax papers' TNR@TPR95 = 1 - this).
- `fpr95_ood_positive`: OOD is the positive class. The share of in-distribution samples flagged as OOD at
  the threshold that detects 95% of the OOD samples (OpenOOD v1.5 and pytorch-ood).

AUROC is the same under both. `aupr_in` (in-distribution positive) and `aupr_out` (OOD positive) are
step-wise average precision, as scikit-learn's average_precision_score; OpenOOD and pytorch-ood integrate
the precision-recall curve with the trapezoid rule instead, which differs slightly (docs/metrics.md).
`oscr` is the open-set classification rate (Dhamija et al. 2018): the area under correct-classification
rate on the in-distribution set against the false-positive rate on the OOD set.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from noisylab.metrics.arrays import TensorOrArray, accepts_arrays


def order_preserving_unit_scale(scores: torch.Tensor) -> torch.Tensor:
    """Dense ranks scaled to [0, 1]: the same order and ties as `scores`.

    torchmetrics treats binary scores outside [0, 1] as logits and applies a sigmoid, which in float32
    saturates to 1.0 above ~17 and turns large scores (energy, losses) into ties. Threshold metrics
    depend only on the order, so ranks give the exact values.
    """
    unique, rank = torch.unique(scores.double(), return_inverse=True)
    return rank.double() / max(len(unique) - 1, 1)


def _labelled(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    scores = torch.cat([positive_scores.double(), negative_scores.double()]).cpu().numpy()
    is_positive = np.r_[np.ones(len(positive_scores)), np.zeros(len(negative_scores))]
    return scores, is_positive


@accepts_arrays
def fpr_at_tpr(positive_scores: TensorOrArray, negative_scores: TensorOrArray, tpr: float = 0.95) -> float:
    """Share of negatives scored at or above the highest threshold that accepts a share `tpr` of the
    positives (higher score = more positive): the first ROC point with TPR >= `tpr`."""
    scores, is_positive = _labelled(positive_scores, negative_scores)
    fpr, tpr_curve, _ = roc_curve(is_positive, scores)
    return float(fpr[np.argmax(tpr_curve >= tpr)])


@accepts_arrays
def auroc(positive_scores: TensorOrArray, negative_scores: TensorOrArray) -> float:
    """Area under the ROC curve (ties count half), scikit-learn's roc_auc_score in float64."""
    scores, is_positive = _labelled(positive_scores, negative_scores)
    return float(roc_auc_score(is_positive, scores))


@accepts_arrays
def oscr(id_scores: TensorOrArray, id_correct: TensorOrArray, ood_scores: TensorOrArray) -> float:
    """Open-set classification rate: area under CCR(t) = share of in-distribution samples classified
    correctly with score >= t, against FPR(t) = share of OOD samples with score >= t (trapezoid over the
    distinct thresholds, so tied scores count half, as in AUROC). Equals accuracy x AUROC of the correctly
    classified in-distribution samples against the OOD set."""
    correct = id_correct.bool()
    if not correct.any():
        return 0.0
    return correct.double().mean().item() * auroc(id_scores[correct], ood_scores)


@accepts_arrays
def ood_metrics(id_scores: TensorOrArray, ood_scores: TensorOrArray,
                id_correct: TensorOrArray | None = None) -> dict[str, float]:
    """auroc, aupr_in, aupr_out, fpr95_id_positive, fpr95_ood_positive (and oscr given which
    in-distribution samples were classified correctly) for in-distribution vs OOD scores, computed by
    scikit-learn in float64."""
    scores, is_id = _labelled(id_scores, ood_scores)
    metrics = {
        "auroc": float(roc_auc_score(is_id, scores)),
        "aupr_in": float(average_precision_score(is_id, scores)),
        "aupr_out": float(average_precision_score(1 - is_id, -scores)),
        "fpr95_id_positive": fpr_at_tpr(id_scores, ood_scores),
        "fpr95_ood_positive": fpr_at_tpr(-ood_scores.double(), -id_scores.double()),
    }
    if id_correct is not None:
        metrics["oscr"] = oscr(id_scores, id_correct, ood_scores)
    return metrics
