"""Figures a person would rather look at than read, written as PNG files into the run folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from noisylab.metrics.classification import risk_coverage  # noqa: E402
from noisylab.utils.atomic import atomic_save  # noqa: E402


def score_histograms(path: Path, score_name: str, id_scores: torch.Tensor, ood_scores: dict[str, torch.Tensor]) -> None:
    """Histogram of the OOD score on the in-distribution test set against each OOD set."""
    fig, ax = plt.subplots(figsize=(6, 4))
    values = [id_scores.numpy(), *(s.numpy() for s in ood_scores.values())]
    bins = np.linspace(min(v.min() for v in values), max(v.max() for v in values), 50)
    ax.hist(values[0], bins=bins, alpha=0.6, density=True, label="in-distribution (test)")
    for name, v in zip(ood_scores, values[1:], strict=True):
        ax.hist(v, bins=bins, alpha=0.5, density=True, label=name)
    ax.set(xlabel=f"{score_name} (higher = in-distribution)", ylabel="density", title="OOD scores")
    ax.legend()
    _save(fig, path)


def risk_coverage_curve(path: Path, confidence: torch.Tensor, correct: torch.Tensor) -> None:
    coverage, risk = risk_coverage(confidence, correct)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(coverage.numpy(), risk.numpy())
    ax.set(xlabel="coverage", ylabel="selective risk (error rate)", xlim=(0, 1), ylim=(0, None),
           title="Risk-coverage (test)")
    _save(fig, path)


def reliability_diagram(path: Path, class_logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> None:
    probs = class_logits.double().softmax(1)
    confidence, prediction = probs.max(1)
    correct = (prediction == labels).double()
    bins = (torch.ceil(confidence * n_bins) - 1).clamp(0, n_bins - 1).long()
    count = torch.bincount(bins, minlength=n_bins).double()
    accuracy = torch.bincount(bins, weights=correct, minlength=n_bins) / count.clamp(min=1)
    centers = (torch.arange(n_bins) + 0.5) / n_bins
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(centers.numpy(), accuracy.numpy(), width=1 / n_bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlabel="confidence (max softmax)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability diagram (test)")
    ax.legend()
    _save(fig, path)


def transition_matrix(path: Path, transition: np.ndarray, class_names: list[str] | None = None) -> None:
    """The realised noise: P(noisy label = j | clean label = i) over the training set, rows and columns
    named by the dataset's classes (held-out classes are not in training, so not in the matrix)."""
    k = transition.shape[0]
    fig, ax = plt.subplots(figsize=(min(4 + 0.3 * k, 14), min(4 + 0.3 * k, 14)))
    image = ax.imshow(transition, vmin=0, vmax=1, cmap="viridis")
    ax.set(xlabel="noisy label", ylabel="clean label", title="Realised transition matrix")
    if k <= 20:
        if class_names is not None:
            ax.set_xticks(range(k), class_names, rotation=90)
            ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{transition[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if transition[i, j] < 0.5 else "black")
    fig.colorbar(image, ax=ax)
    _save(fig, path)


def write_all(folder: Path, figures: dict[str, tuple]) -> None:
    """Write whichever figures the evaluation produced."""
    if "score_histograms" in figures:
        score_histograms(folder / "ood_scores.png", *figures["score_histograms"])
    if "risk_coverage" in figures:
        risk_coverage_curve(folder / "risk_coverage.png", *figures["risk_coverage"])
    if "reliability" in figures:
        reliability_diagram(folder / "reliability.png", *figures["reliability"])


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
