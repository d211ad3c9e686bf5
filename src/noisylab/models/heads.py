"""Heads turn features into outputs and know what those outputs mean (predictions, scores).

The loss config picks the head; metrics and methods only talk to the head's interface, so a new
head (e.g. DisMax prototypes) needs no change elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Module):
    """K logits from a linear layer."""

    has_drainage = False

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
        """Logits of the K real classes; predictions are their argmax."""
        return outputs[:, : self.num_classes]

    def drained(self, outputs: torch.Tensor) -> torch.Tensor:
        """Which samples the model declines to classify (none, for a plain head)."""
        return torch.zeros(outputs.shape[0], dtype=torch.bool, device=outputs.device)

    def id_scores(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """In-distribution scores, higher = more in-distribution; the first is the head's default."""
        logits = self.class_logits(outputs).float()
        return {"msp": logits.softmax(1).amax(1), "energy": torch.logsumexp(logits, 1)}

    def mislabel_scores(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample score that the given label is wrong (higher = more likely mislabeled)."""
        probs = self.class_logits(outputs).float().softmax(1)
        return 1.0 - probs.gather(1, labels.view(-1, 1)).squeeze(1)


class DrainageHead(LinearHead):
    """K + 1 logits: the K classes and the drainage node (index K) that absorbs samples the model rejects.

    A sample is drained when the drainage node has the largest of all K + 1 logits; its class
    prediction is still the argmax over the K real classes.
    """

    has_drainage = True

    @property
    def num_outputs(self) -> int:
        return self.num_classes + 1

    def drainage_probability(self, outputs: torch.Tensor) -> torch.Tensor:
        return F.softmax(outputs.float(), dim=1)[:, self.num_classes]

    def drained(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(1) == self.num_classes

    def id_scores(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"drainage": 1.0 - self.drainage_probability(outputs), **super().id_scores(outputs)}

    def mislabel_scores(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.drainage_probability(outputs)
