"""Losses: nn.Modules mapping (outputs, targets) to a loss (the mean over the batch unless `reduction` says else).

The robust-loss zoo (basic, gce, normalized, asymmetric, combined) computes per-sample values in float32
from log-softmax; its combinations (SCE, APL, ANL) are WeightedPairs of zoo losses.
"""

from noisylab.losses.asymmetric import AsymmetricExponentialLoss, AsymmetricGCE, AsymmetricUnhingedLoss
from noisylab.losses.basic import CrossEntropy, FocalLoss, MeanAbsoluteError, PerSampleLoss, ReverseCrossEntropy
from noisylab.losses.combined import MeanPredictionEntropyRegularised, WeightedPair
from noisylab.losses.drainage import DrainageLoss
from noisylab.losses.gce import GeneralizedCrossEntropy
from noisylab.losses.normalized import (
    NormalizedCrossEntropy,
    NormalizedFocalLoss,
    NormalizedNegativeCrossEntropy,
    NormalizedNegativeFocalLoss,
)

__all__ = [
    "AsymmetricExponentialLoss",
    "AsymmetricGCE",
    "AsymmetricUnhingedLoss",
    "CrossEntropy",
    "DrainageLoss",
    "FocalLoss",
    "GeneralizedCrossEntropy",
    "MeanAbsoluteError",
    "MeanPredictionEntropyRegularised",
    "NormalizedCrossEntropy",
    "NormalizedFocalLoss",
    "NormalizedNegativeCrossEntropy",
    "NormalizedNegativeFocalLoss",
    "PerSampleLoss",
    "ReverseCrossEntropy",
    "WeightedPair",
]
