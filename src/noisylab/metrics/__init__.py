"""Metrics on collected outputs: classification, calibration, drainage, selective prediction, OOD detection, noise
detection, and the per-sample OOD scores they rank by. Every function here takes torch tensors or numpy arrays
(noisylab.metrics.arrays); docs/library.md uses them in a plain PyTorch loop.

    from noisylab.metrics import ece, ood_metrics, energy
    ood_metrics(energy(id_logits), energy(ood_logits))   # {"auroc": ..., "fpr95_id_positive": ..., ...}

Names are imported on first use (PEP 562): `import noisylab.metrics.scores`, as the report and the model heads
do, then costs no scikit-learn, SciPy or torchmetrics import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("ece", "fit_temperature"), "calibration"),
    **dict.fromkeys(("brier_score", "classification_metrics", "drainage_metrics", "risk_coverage",
                     "selective_metrics"), "classification"),
    **dict.fromkeys(("auroc", "fpr_at_tpr", "ood_metrics", "oscr"), "ood"),
    **dict.fromkeys(("noise_detection_metrics", "precision_at_noise_rate"), "noise_detection"),
    **dict.fromkeys(("display_value", "energy", "max_logit", "mmles", "mmleps", "mmls", "msp", "neg_entropy",
                     "one_minus_p_d"), "scores"),
}
__all__ = [
    "auroc", "brier_score", "classification_metrics", "display_value", "drainage_metrics", "ece", "energy",
    "fit_temperature", "fpr_at_tpr", "max_logit", "mmleps", "mmles", "mmls", "msp", "neg_entropy",
    "noise_detection_metrics", "one_minus_p_d", "ood_metrics", "oscr", "precision_at_noise_rate", "risk_coverage",
    "selective_metrics",
]  # the keys of _EXPORTS (tests/test_metrics_api.py holds them equal)

if TYPE_CHECKING:
    from noisylab.metrics.calibration import ece, fit_temperature
    from noisylab.metrics.classification import (
        brier_score,
        classification_metrics,
        drainage_metrics,
        risk_coverage,
        selective_metrics,
    )
    from noisylab.metrics.noise_detection import noise_detection_metrics, precision_at_noise_rate
    from noisylab.metrics.ood import auroc, fpr_at_tpr, ood_metrics, oscr
    from noisylab.metrics.scores import (
        display_value,
        energy,
        max_logit,
        mmleps,
        mmles,
        mmls,
        msp,
        neg_entropy,
        one_minus_p_d,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
