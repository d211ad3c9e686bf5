"""Temperature scaling fitted on the validation split (never on the test set)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from noisylab.metrics.arrays import TensorOrArray, accepts_arrays

T_MIN, T_MAX = 1e-3, 100.0


@accepts_arrays
def ece(logits: TensorOrArray, labels: TensorOrArray, n_bins: int = 15) -> float:
    """Expected calibration error of softmax(logits): confidence = max probability, equal-width bins
    (i/n, (i+1)/n] (a confidence of exactly 1 falls in the last bin, not one of its own), weighted
    |accuracy - mean confidence| per bin. Guo et al. (2017)'s definition."""
    probs = logits.double().softmax(1)
    confidence, prediction = probs.max(1)
    correct = (prediction == labels).double()
    bins = (torch.ceil(confidence * n_bins) - 1).clamp(0, n_bins - 1).long()
    gap = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, confidence - correct)
    return float(gap.abs().sum() / max(len(labels), 1))


def _min_ece_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    def error(log_t: float) -> float:
        return ece(logits / math.exp(log_t), labels)

    coarse = np.linspace(math.log(T_MIN), math.log(T_MAX), 401)
    best = int(np.argmin([error(x) for x in coarse]))
    low, high = coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)]
    candidates = [coarse[best], *np.linspace(low, high, 101)]
    candidates.append(minimize_scalar(error, bounds=(low, high), method="bounded", options={"xatol": 1e-6}).x)
    found = min(candidates, key=error)
    return float(math.exp(found))


@accepts_arrays
def fit_temperature(logits: TensorOrArray, labels: TensorOrArray, objective: str = "nll") -> float:
    """The temperature T in [1e-3, 100] that minimises NLL or 15-bin ECE of softmax(logits / T).

    NLL is smooth in log T: bounded scalar minimisation. ECE is a step function of T, on which
    gradient-based search (the DisMax reference uses L-BFGS-B with numeric gradients) stalls at its
    start: a log-spaced grid of 401 temperatures brackets the minimum, then a bracketed search (bounded
    Brent) and a finer grid inside the neighbouring cells refine it; the best of all points tried wins,
    so the result is never worse than the grid's.
    """
    logits = logits.float()
    if objective == "nll":
        result = minimize_scalar(lambda log_t: F.cross_entropy(logits / math.exp(log_t), labels).item(),
                                 bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded")
        return float(math.exp(result.x))
    if objective == "ece":
        return _min_ece_temperature(logits, labels)
    raise ValueError(f"eval.calibration must be nll, ece or null, got {objective!r}")
