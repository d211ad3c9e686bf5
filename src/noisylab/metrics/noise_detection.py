"""How well a trained model finds the mislabeled samples of its own training set."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc

from noisylab.metrics.arrays import TensorOrArray, accepts_arrays
from noisylab.metrics.ood import order_preserving_unit_scale


@accepts_arrays
def noise_detection_metrics(
    mislabel_scores: TensorOrArray, is_noisy: TensorOrArray, drained: TensorOrArray | None = None
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


@accepts_arrays
def precision_at_noise_rate(mislabel_scores: TensorOrArray, is_noisy: TensorOrArray) -> float:
    """Share of truly mislabeled samples among the k highest-scored ones, k = the number mislabeled.

    Ties at the k-th score are averaged (the expected precision over every order of the tied samples),
    not broken by topk's internal order: constant scores give the noise rate, not 1.0 or 0.0."""
    is_noisy = is_noisy.bool()
    scores = mislabel_scores.double()
    k = int(is_noisy.sum())
    if k == 0:
        return float("nan")
    threshold = torch.topk(scores, k).values[-1]
    above, tied = scores > threshold, scores == threshold
    from_tied = k - int(above.sum())
    noisy_tied_share = is_noisy[tied].double().mean()
    return float((is_noisy[above].double().sum() + from_tied * noisy_tied_share) / k)
