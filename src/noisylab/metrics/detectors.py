"""Feature-based OOD detectors from pytorch-ood, fitted on the training split's penultimate features.

pytorch-ood (`pip install "noisylab[ood]"`) is imported only when a detector is fitted. Its detectors return
outlier scores (higher = more OOD); `fit_detector` returns them negated, so that they rank like every other
score here (higher = in-distribution) and go through the same OOD metrics. Settings are the papers' CIFAR
choices, as pytorch-ood defaults them where it has a default: Mahalanobis has none; KNN k = 50; ViM keeps a
principal subspace of half the feature dimension (OpenOOD's 256 of ResNet-18's 512); ReAct clips at the 90th
percentile of the training activations and scores the clipped logits by their energy.

Not offered: pytorch-ood's EnergyBased, which on the class logits is exactly the head's `energy` score
(logsumexp), and ODIN, which perturbs the inputs along a gradient and so needs a backward pass through the
network inside the test loop, where Lightning runs without gradients.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from noisylab.models.heads import LinearHead

DETECTORS = ("mahalanobis", "knn", "vim", "react")
NEEDS_LINEAR_LAYER = frozenset({"vim", "react"})  # they recompute the logits from (clipped or projected) features
# Names a user may try that are not offered, and why (see the module docstring).
NOT_OFFERED = {
    "energy": "energy is already a logit score (test/ood/<set>/energy/..., chosen by eval.scores)",
    "odin": "odin perturbs the inputs along a gradient, which the test loop (no gradients) does not compute",
}
KNN_NEIGHBOURS = 50
REACT_PERCENTILE = 0.9

Score = Callable[[torch.Tensor], torch.Tensor]


def check_detectors(names: Sequence[str]) -> list[str]:
    """The detector names of eval.detectors, refused when unknown or when pytorch-ood is not installed."""
    if isinstance(names, str):
        raise ValueError(f"eval.detectors must be a list, e.g. eval.detectors=[{names}], got {names!r}")
    names = list(names)
    unknown = [name for name in names if name not in DETECTORS]
    if unknown:
        hints = "".join(f"; {NOT_OFFERED[name]}" for name in unknown if name in NOT_OFFERED)
        raise ValueError(f"eval.detectors {unknown} unknown; choose from {', '.join(DETECTORS)}{hints}")
    if names and importlib.util.find_spec("pytorch_ood") is None:
        raise ValueError(f"eval.detectors={names} needs the pytorch-ood package, which is not installed: "
                         'pip install "noisylab[ood]" (or set eval.detectors=[])')
    return names


def check_head(names: Sequence[str], head: LinearHead) -> None:
    """Refuse detectors that need a linear class layer on a head that has none (IsoMax+, DisMax)."""
    needing = [name for name in names if name in NEEDS_LINEAR_LAYER]
    if needing and not isinstance(getattr(head, "fc", None), nn.Linear):
        raise ValueError(f"eval.detectors {needing} recompute logits from the features with the head's linear "
                         f"layer, and {type(head).__name__} has none (its logits are prototype distances); "
                         f"drop them from eval.detectors or use a linear or drainage head")


def class_layer(head: LinearHead) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (K x D) and bias (K) of the head's K class logits: a drainage head's extra row is not a class."""
    k = head.num_classes
    return head.fc.weight.detach().float()[:k], head.fc.bias.detach().float()[:k]


def fit_detector(name: str, head: LinearHead, features: torch.Tensor, labels: torch.Tensor) -> Score:
    """Detector `name` fitted on training features (N x D) and their labels; returns its in-distribution
    score of features (float64, higher = in-distribution: pytorch-ood's outlier score negated)."""
    from pytorch_ood import detector

    features = features.float()
    if name == "mahalanobis":
        _check_every_class(labels, head.num_classes)
        fitted = detector.Mahalanobis(None).fit_features(features, labels)
        predict = fitted.predict_features
    elif name == "knn":
        if len(features) < KNN_NEIGHBOURS:
            raise ValueError(f"eval.detectors knn scores by the distance to the {KNN_NEIGHBOURS}th nearest training "
                             f"sample, and the training split has only {len(features)}")
        fitted = detector.KNN(None, k=KNN_NEIGHBOURS).fit_features(features, labels)
        predict = fitted.predict_features
    elif name == "vim":
        weight, bias = class_layer(head)
        fitted = detector.ViM(None, d=features.shape[1] // 2, w=weight, b=bias).fit_features(features, labels)
        predict = fitted.predict_features
    elif name == "react":
        weight, bias = class_layer(head)
        logits = functools.partial(F.linear, weight=weight, bias=bias)
        fitted = detector.ReAct(None, logits, percentile=REACT_PERCENTILE).fit_feature_maps(features, labels)
        predict = fitted.predict_feature_maps
    else:
        raise ValueError(f"eval.detectors {name!r} unknown; choose from {', '.join(DETECTORS)}")
    return lambda z: -predict(z.float()).double()


def _check_every_class(labels: torch.Tensor, num_classes: int) -> None:
    """pytorch-ood's Mahalanobis fits one mean per class and asserts that every class occurs."""
    missing = (torch.bincount(labels.long(), minlength=num_classes) == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"eval.detectors mahalanobis fits one mean per class, and classes {missing} have no "
                         "training sample with that (noisy) label; drop mahalanobis from eval.detectors")
