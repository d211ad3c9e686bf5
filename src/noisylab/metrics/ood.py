"""OOD detection metrics. Convention: scores are higher for in-distribution samples.

AUROC is convention-free. AUPR-In treats in-distribution as the positive class, AUPR-Out treats
OOD as positive (with negated scores). FPR95 is the share of OOD samples accepted as
in-distribution at the threshold that keeps 95% of the in-distribution samples (TPR = 0.95, ID
positive), the convention of OpenOOD and pytorch-ood.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc


def fpr_at_tpr(id_scores: torch.Tensor, ood_scores: torch.Tensor, tpr: float = 0.95) -> float:
    scores = torch.cat([id_scores, ood_scores]).float()
    is_id = torch.cat([torch.ones_like(id_scores), torch.zeros_like(ood_scores)]).long()
    fpr, tpr_curve, _ = binary_roc(scores, is_id)
    return fpr[torch.searchsorted(tpr_curve, torch.tensor(tpr, dtype=tpr_curve.dtype))].item()


def ood_metrics(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> dict[str, float]:
    """auroc, aupr_in, aupr_out and fpr95 for in-distribution vs OOD scores."""
    scores = torch.cat([id_scores, ood_scores]).float()
    is_id = torch.cat([torch.ones_like(id_scores), torch.zeros_like(ood_scores)]).long()
    return {
        "auroc": binary_auroc(scores, is_id).item(),
        "aupr_in": binary_average_precision(scores, is_id).item(),
        "aupr_out": binary_average_precision(-scores, 1 - is_id).item(),
        "fpr95": fpr_at_tpr(id_scores, ood_scores),
    }
