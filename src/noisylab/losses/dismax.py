"""Losses of the distance heads (IsoMax+, DisMax) and DisMax's fractional probability regularisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from noisylab.losses.basic import PerSampleLoss


class EntropicCrossEntropy(PerSampleLoss):
    """Cross-entropy of softmax(entropic_scale * logits) in training (IsoMax+/DisMax use 10).

    The entropic scale sharpens the training distribution so the distances separate; at inference the
    heads' logits are used unscaled. With `scale_in_eval=False` (DisMax) the validation loss is also
    unscaled; IsoMax+ keeps the scale. Computed with log-softmax (the reference computes softmax and
    its log separately, which can take log of 0).
    """

    distance_logits = True

    def __init__(self, entropic_scale: float = 10.0, scale_in_eval: bool = False, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if entropic_scale <= 0:
            raise ValueError(f"loss.criterion.entropic_scale must be > 0, got {entropic_scale}")
        self.entropic_scale = float(entropic_scale)
        self.scale_in_eval = bool(scale_in_eval)

    def log_probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        scale = self.entropic_scale if (self.training or self.scale_in_eval) else 1.0
        return F.log_softmax(scale * outputs.float(), dim=1)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(self.log_probabilities(outputs), targets, reduction="none")


class FractionalProbabilityRegularization:
    """DisMax's FPR: half of each (shuffled) batch is made of four-image mosaics with soft targets.

    In the second half, the bottom-left, top-right and bottom-right quadrants of each image are taken
    from the images 1, 2 and 3 places before it in that half (a cyclic roll); the target puts 0.25 on the
    label of each of the four source images. Loss = (CE on the first half + alpha * KL(target || p) on
    the mosaics) / 2, with p the criterion's training distribution. Used as the loss config's
    `objective`: it needs the inputs, not only the outputs. It calls the criterion's `log_probabilities`
    (EntropicCrossEntropy's), so only such a criterion fits (`criterion_needs`, read by config_checks).
    """

    criterion_needs = ("log_probabilities",)

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha < 0:
            raise ValueError(f"loss.objective.alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    @staticmethod
    def mosaic(images: torch.Tensor) -> torch.Tensor:
        """Quadrants of image i replaced by those of images i-1, i-2, i-3 (rows x cols: BL, TR, BR)."""
        h, w = images.shape[2] // 2, images.shape[3] // 2
        out = images.clone()
        out[:, :, h:, :w] = torch.roll(images[:, :, h:, :w], 1, 0)
        out[:, :, :h, w:] = torch.roll(images[:, :, :h, w:], 2, 0)
        out[:, :, h:, w:] = torch.roll(images[:, :, h:, w:], 3, 0)
        return out

    @staticmethod
    def soft_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        target = torch.zeros(labels.shape[0], num_classes, device=labels.device)
        for shift in range(4):
            target.scatter_add_(1, torch.roll(labels, shift, 0).view(-1, 1),
                                torch.full((labels.shape[0], 1), 0.25, device=labels.device))
        return target

    def __call__(self, net: Callable[[torch.Tensor], torch.Tensor], criterion: EntropicCrossEntropy,
                 images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, outputs of the unmixed half, their labels) for one training batch."""
        order = torch.randperm(images.shape[0], device=images.device)
        images, labels = images[order], labels[order]
        half = images.shape[0] // 2
        if half < 1:
            outputs = net(images)
            return criterion(outputs, labels), outputs, labels
        mixed = torch.cat([images[:half], self.mosaic(images[half:])])
        outputs = net(mixed)
        plain = criterion(outputs[:half], labels[:half])
        log_p = criterion.log_probabilities(outputs[half:])
        target = self.soft_targets(labels[half:], outputs.shape[1])
        regulariser = F.kl_div(log_p, target, reduction="batchmean")
        return (plain + self.alpha * regulariser) / 2, outputs[:half], labels[:half]
