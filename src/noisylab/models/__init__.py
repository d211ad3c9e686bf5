"""Backbones (features) and heads (outputs and their meaning)."""

from noisylab.models.classifier import Classifier
from noisylab.models.heads import DrainageHead, LinearHead

__all__ = ["Classifier", "DrainageHead", "LinearHead"]
