"""OOD detection metrics. Convention: scores are higher for in-distribution samples.

AUROC is convention-free. AUPR-In treats in-distribution as the positive class, AUPR-Out treats
OOD as positive (with negated scores). FPR95 is the share of OOD samples accepted as
in-distribution at the threshold that keeps 95% of the in-distribution samples (TPR = 0.95, ID
positive), the convention of OpenOOD and pytorch-ood.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc


def order_preserving_unit_scale(scores: torch.Tensor) -> torch.Tensor:
    """Dense ranks scaled to [0, 1]: the same order and ties as `scores`.

    torchmetrics treats binary scores outside [0, 1] as logits and applies a sigmoid, which in float32
    saturates to 1.0 above ~17 and turns large scores (energy, losses) into ties. Threshold metrics
    (AUROC, AUPR, FPR at a TPR) depend only on the order, so ranks give the exact values.
    """
    unique, rank = torch.unique(scores.double(), return_inverse=True)
    return rank.float() / max(len(unique) - 1, 1)


def fpr_at_tpr(id_scores: torch.Tensor, ood_scores: torch.Tensor, tpr: float = 0.95) -> float:
    scores = order_preserving_unit_scale(torch.cat([id_scores, ood_scores]))
    is_id = torch.cat([torch.ones_like(id_scores), torch.zeros_like(ood_scores)]).long()
    fpr, tpr_curve, _ = binary_roc(scores, is_id)
    return fpr[torch.searchsorted(tpr_curve, torch.tensor(tpr, dtype=tpr_curve.dtype))].item()


def ood_metrics(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> dict[str, float]:
    """auroc, aupr_in, aupr_out and fpr95 for in-distribution vs OOD scores."""
    scores = order_preserving_unit_scale(torch.cat([id_scores, ood_scores]))
    is_id = torch.cat([torch.ones_like(id_scores), torch.zeros_like(ood_scores)]).long()
    return {
        "auroc": binary_auroc(scores, is_id).item(),
        "aupr_in": binary_average_precision(scores, is_id).item(),
        "aupr_out": binary_average_precision(1.0 - scores, 1 - is_id).item(),
        "fpr95": fpr_at_tpr(id_scores, ood_scores),
    }
