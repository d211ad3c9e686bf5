"""Heads turn features into outputs and know what those outputs mean (predictions, scores).

The loss config picks the head; metrics and methods only talk to the head's interface, so a new
head needs no change elsewhere:

- `class_logits(outputs)`: logits of the K real classes (predictions are their argmax),
- `drained(outputs)`: samples the model declines to classify (drainage heads only),
- `id_scores(outputs)`: in-distribution scores (higher = more in-distribution), the default first,
- `mislabel_scores(outputs, labels)`: per-sample evidence that the given label is wrong.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from noisylab.metrics.scores import class_scores, one_minus_p_d


class LinearHead(nn.Module):
    """K logits from a linear layer.

    `has_drainage` and `prototype_distances` say what the outputs are, so a loss that expects others
    (losses.basic.PerSampleLoss's `drainage_node`, `distance_logits`) is caught before training.
    """

    has_drainage = False
    prototype_distances = False
    score_names: tuple[str, ...] = ("msp", "max_logit", "energy", "neg_entropy")
    mislabel_score_name = "one_minus_p_given"  # what mislabel_scores is, in per-sample outputs

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, self.num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def class_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, : self.num_classes]

    def drained(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(outputs.shape[0], dtype=torch.bool, device=outputs.device)

    def id_scores(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return class_scores(self.class_logits(outputs), self.score_names)

    def mislabel_scores(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """1 - p(label) under softmax over the K classes, in float64 (sum of the other classes' probabilities:
        no cancellation when p(label) is near 1)."""
        log_probs = self.class_logits(outputs).double().log_softmax(1)
        others = log_probs.scatter(1, labels.view(-1, 1), float("-inf"))
        return torch.logsumexp(others, 1).exp()


class DrainageHead(LinearHead):
    """K + 1 logits: the K classes and the drainage node (index K) that absorbs samples the model rejects.

    A sample is drained when the drainage node has the largest of all K + 1 logits; its class
    prediction is still the argmax over the K real classes. Default OOD score: 1 - p_d.
    """

    has_drainage = True
    mislabel_score_name = "p_d"

    @property
    def num_outputs(self) -> int:
        return self.num_classes + 1

    def drainage_probability(self, outputs: torch.Tensor) -> torch.Tensor:
        return F.softmax(outputs.double(), dim=1)[:, self.num_classes]

    def drained(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(1) == self.num_classes

    def id_scores(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"one_minus_p_d": one_minus_p_d(outputs, self.num_classes), **super().id_scores(outputs)}

    def mislabel_scores(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """p_d: the drainage node's share of the probability."""
        return self.drainage_probability(outputs)


class FixedDrainageHead(DrainageHead):
    """Open-set drainage: K learned logits plus a drainage logit fixed at `constant`.

    With nothing to learn in the drainage node, p_d rises exactly when all class logits fall below
    the constant, which makes 1 - p_d a calibrated-by-construction OOD score.
    """

    def __init__(self, in_features: int, num_classes: int, constant: float = 0.0) -> None:
        super().__init__(in_features, num_classes)
        self.fc = nn.Linear(in_features, num_classes)
        self.constant = float(constant)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.fc(features)
        return F.pad(logits, (0, 1), value=self.constant)


class IsoMaxPlusHead(LinearHead):
    """IsoMax+ (Macêdo & Ludermir 2021): logits = -|s| * ||normalise(f) - normalise(p_j)||.

    Prototypes p_j ~ N(0, 1) and the distance scale s (init 1) are learned. Default score: the
    minimum distance (max_logit, DisMax's MDS).
    """

    prototype_distances = True
    score_names = ("max_logit", "msp", "neg_entropy", "energy")
    distance_divisor = 1.0

    def __init__(self, in_features: int, num_classes: int) -> None:
        nn.Module.__init__(self)
        self.num_classes = num_classes
        self.prototypes = nn.Parameter(torch.randn(num_classes, in_features))
        self.distance_scale = nn.Parameter(torch.ones(1))

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Scaled distances between unit-normalised features and prototypes, in float32."""
        f = F.normalize(features.float(), dim=1)
        p = F.normalize(self.prototypes.float(), dim=1)
        # cdist without the matrix-product shortcut: exact for nearby vectors (no negative rounding).
        d = torch.cdist(f, p, compute_mode="donot_use_mm_for_euclid_dist") / self.distance_divisor
        return self.distance_scale.float().abs() * d

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return -self.distances(features)


class DisMaxHead(IsoMaxPlusHead):
    """DisMax (Macêdo et al. 2022): logits = -(D_j + mean_k D_k), D_j = |s| ||n(f) - n(p_j)|| / sqrt(2).

    Adding the mean distance to all prototypes makes a sample far from every prototype score low even
    when it is nearest to one. Default score: MMLES (max + mean logit + negative entropy).
    """

    score_names = ("mmles", "msp", "neg_entropy", "max_logit", "mmls", "mmleps", "energy")
    distance_divisor = math.sqrt(2.0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        d = self.distances(features)
        return -(d + d.mean(dim=1, keepdim=True))
