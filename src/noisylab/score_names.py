"""How scores are written for people: kept free of torch so that the report command starts fast."""

from __future__ import annotations

LABELS = {
    "msp": "MSP", "max_logit": "max logit", "energy": "energy (logsumexp)", "neg_entropy": "negative entropy",
    "mmls": "MMLS", "mmles": "MMLES", "mmleps": "MMLEPS", "one_minus_p_d": "1 - p_d",
}  # fmt: skip


def score_label(name: str) -> str:
    """How a score is written in figures and tables ("1 - p_d", "MSP"); unknown names (detectors) as they are."""
    return LABELS.get(name, name)
