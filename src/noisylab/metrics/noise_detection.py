"""How well a trained model finds the mislabeled samples of its own training set."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc

from noisylab.metrics.ood import order_preserving_unit_scale


def noise_detection_metrics(
    mislabel_scores: torch.Tensor, is_noisy: torch.Tensor, drained: torch.Tensor | None = None
) -> dict[str, float]:
    """noise_detection_auroc of per-sample scores (higher = more likely mislabeled) against the known
    mislabeled samples, noise_detection_precision (precision among the top-scored samples as many as are
    mislabeled), and for drainage heads drainage_precision (share of drained samples that are
    mislabeled) and drainage_recall (share of mislabeled samples that are drained).

    Metrics that are undefined (no mislabeled or no clean sample, nothing drained) are left out.
    """
    out: dict[str, float] = {}
    is_noisy = is_noisy.bool()
    if is_noisy.any() and (~is_noisy).any():
        scores = order_preserving_unit_scale(mislabel_scores)
        out["noise_detection_auroc"] = binary_auroc(scores, is_noisy.long()).item()
        out["noise_detection_precision"] = precision_at_noise_rate(mislabel_scores, is_noisy)
    if drained is not None:
        out["drainage_rate"] = drained.float().mean().item()
        if drained.any():
            out["drainage_precision"] = is_noisy[drained].float().mean().item()
        if is_noisy.any():
            out["drainage_recall"] = drained[is_noisy].float().mean().item()
    return out


def precision_at_noise_rate(mislabel_scores: torch.Tensor, is_noisy: torch.Tensor) -> float:
    """Share of truly mislabeled samples among the k highest-scored ones, k = the number mislabeled."""
    k = int(is_noisy.sum())
    top = torch.topk(mislabel_scores.double(), k).indices
    return float(is_noisy.bool()[top].double().mean())
