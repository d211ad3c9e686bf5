"""Losses: nn.Modules mapping (outputs, targets) to a loss. Cross-entropy is torch's own."""

from noisylab.losses.drainage import DrainageLoss

__all__ = ["DrainageLoss"]
