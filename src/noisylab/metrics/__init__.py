"""Metrics on collected outputs: classification, calibration, drainage, OOD, noise detection."""

from noisylab.metrics.classification import classification_metrics, drainage_metrics
from noisylab.metrics.noise_detection import noise_detection_metrics
from noisylab.metrics.ood import fpr_at_tpr, ood_metrics

__all__ = ["classification_metrics", "drainage_metrics", "fpr_at_tpr", "noise_detection_metrics", "ood_metrics"]
