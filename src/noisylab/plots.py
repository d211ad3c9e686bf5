"""Figures of a run, each written as PNG and PDF (vector, for a paper) into the run folder and, where the run
logs to TensorBoard, W&B or MLflow, logged there too.

Every figure states its setting (a subtitle built from the run's data, noise, method, loss and score) and the
number it illustrates: AUROC and both FPR95s per OOD set on the score histograms, AURC (and the oracle's)
on the risk-coverage curve, ECE on the reliability diagram. The `*_figure` functions build a figure and
return it (open); `write_all` and `transition_matrix` write the files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from noisylab.metrics.classification import risk_coverage, selective_metrics  # noqa: E402
from noisylab.metrics.scores import display_value, score_label  # noqa: E402
from noisylab.utils.atomic import atomic_save  # noqa: E402

log = logging.getLogger(__name__)

FORMATS = ("png", "pdf")
# File name (without suffix) and logger tag of each figure write_all knows.
NAMES = {"score_histograms": "ood_scores", "risk_coverage": "risk_coverage", "reliability": "reliability"}
SUBTITLE = {"fontsize": 8, "color": "0.35"}


# ---------------------------------------------------------------------------------------------- the setting
def setting_line(setting: Mapping[str, object] | None, score: str | None = None) -> str:
    """One line naming the run: "cifar10 · symmetric 0.4 · standard · loss drainage · score 1 - p_d".

    Any key may be missing; keys beyond data/noise/rate/method/loss are appended as "key value"."""
    setting = {k: v for k, v in (setting or {}).items() if v is not None and v != ""}
    parts: list[str] = []
    if "data" in setting:
        parts.append(str(setting.pop("data")))
    noise, rate = setting.pop("noise", None), setting.pop("rate", None)
    if noise is not None and str(noise).lower() in ("none", "clean"):
        parts.append("no noise")
    elif noise is not None or rate is not None:
        parts.append(" ".join(str(x) for x in (noise if noise is not None else "noise", _number(rate)) if x != ""))
    if "method" in setting:
        parts.append(str(setting.pop("method")))
    if "loss" in setting:
        parts.append(f"loss {setting.pop('loss')}")
    parts.extend(f"{key} {_number(value)}" for key, value in setting.items())
    if score is not None:
        parts.append(f"score {score_label(score)}")
    return " · ".join(parts)


def _number(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _f3(x: object) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def _f4(x: object) -> str:
    return "n/a" if x is None else f"{float(x):.4f}"


def _titles(fig: Figure, ax: plt.Axes, title: str, subtitle: str) -> None:
    """The figure's title above, the setting as a smaller line beneath it (the axes' title)."""
    fig.suptitle(title, fontsize=11)
    ax.set_title(subtitle, **SUBTITLE)


# ---------------------------------------------------------------------------------------------- OOD scores
def ood_legend_label(name: str, metrics: Mapping[str, float] | None) -> str:
    """"svhn: AUROC 0.912 · FPR95 0.431 (ID+) / 0.388 (OOD+)"; the set's name alone without metrics."""
    if not metrics:
        return name
    return (f"{name}: AUROC {_f3(metrics.get('auroc'))} · FPR95 {_f3(metrics.get('fpr95_id_positive'))} (ID+)"
            f" / {_f3(metrics.get('fpr95_ood_positive'))} (OOD+)")


def score_histograms_figure(score: str, id_scores: torch.Tensor, ood_scores: Mapping[str, torch.Tensor],
                            metrics: Mapping[str, Mapping[str, float]] | None = None,
                            setting: Mapping[str, object] | None = None, bins: int = 50) -> Figure:
    """Density histograms of the score (as `display_value` shows it) on the ID test set and on each OOD
    set; each OOD set's legend entry carries its AUROC and its FPR at 95% TPR with ID, then OOD, positive."""
    metrics = metrics or {}
    values = {"in-distribution (test)": _finite(display_value(score, id_scores))}
    values.update({name: _finite(display_value(score, s)) for name, s in ood_scores.items()})
    edges = _edges([v for v in values.values() if v.size], bins)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for i, (name, v) in enumerate(values.items()):
        label = f"{name}, n={v.size}" if i == 0 else ood_legend_label(name, metrics.get(name))
        ax.hist(v, bins=edges, alpha=0.6 if i == 0 else 0.45, density=bool(v.size), label=label,
                histtype="stepfilled", edgecolor="black" if i == 0 else None, linewidth=0.5)
    ax.set(xlabel=f"{score_label(score)} (higher = in-distribution)", ylabel="density")
    ax.legend(fontsize=7, loc="best")
    _titles(fig, ax, f"OOD scores: {score_label(score)}", setting_line(setting, score))
    return fig


def _finite(values: torch.Tensor) -> np.ndarray:
    v = values.detach().double().cpu().numpy()
    return v[np.isfinite(v)]


def _edges(values: list[np.ndarray], bins: int) -> np.ndarray:
    if not values:
        return np.linspace(0, 1, bins + 1)
    low, high = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    if high <= low:  # one value everywhere: a bin around it
        pad = max(abs(low) * 1e-3, 1e-6)
        low, high = low - pad, high + pad
    return np.linspace(low, high, bins + 1)


# ---------------------------------------------------------------------------------------------- risk-coverage
def oracle_risk_coverage(correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, risk) of a perfect ranking, which accepts every correct sample before any wrong one: at
    k of n accepted, risk = max(0, k - n_correct) / k."""
    correct = correct.bool().flatten()
    n = len(correct)
    accepted = torch.arange(1, n + 1, dtype=torch.float64)
    errors = (accepted - int(correct.sum())).clamp(min=0)
    return accepted / max(n, 1), errors / accepted


def oracle_aurc(correct: torch.Tensor) -> float:
    """The AURC of the oracle ranking (as selective_metrics integrates: mean risk over samples)."""
    _, risk = oracle_risk_coverage(correct)
    return float(risk.mean()) if len(risk) else 0.0


def risk_coverage_figure(score: str, confidence: torch.Tensor, correct: torch.Tensor, aurc: float | None = None,
                         setting: Mapping[str, object] | None = None) -> Figure:
    """Selective risk against coverage when the most confident samples (by the held score) are accepted
    first, with its AURC, beside the oracle curve (dashed) and its AURC."""
    if aurc is None:
        aurc = selective_metrics(confidence, correct)["aurc"]
    coverage, risk = risk_coverage(confidence, correct)
    oracle_coverage, oracle_risk = oracle_risk_coverage(correct)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    ax.plot(coverage.numpy(), risk.numpy(), label=f"{score_label(score)} (AURC {_f4(aurc)})", gid="score")
    ax.plot(oracle_coverage.numpy(), oracle_risk.numpy(), "--", color="black", linewidth=1,
            label=f"oracle (AURC {_f4(oracle_aurc(correct))})", gid="oracle")
    ax.set(xlabel="coverage", ylabel="selective risk (error rate)", xlim=(0, 1), ylim=(0, None))
    ax.legend(fontsize=8, loc="upper left")
    _titles(fig, ax, f"Risk-coverage (test): AURC {_f4(aurc)}", setting_line(setting, score))
    return fig


# ---------------------------------------------------------------------------------------------- reliability
def reliability_bins(class_logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, accuracy, mean confidence) per equal-width confidence bin, binned as metrics' ece does."""
    confidence, prediction = class_logits.double().softmax(1).max(1)
    correct = (prediction == labels).double()
    bins = (torch.ceil(confidence * n_bins) - 1).clamp(0, n_bins - 1).long()
    count = torch.bincount(bins, minlength=n_bins).double()
    accuracy = torch.bincount(bins, weights=correct, minlength=n_bins) / count.clamp(min=1)
    mean_confidence = torch.bincount(bins, weights=confidence, minlength=n_bins) / count.clamp(min=1)
    return count, accuracy, mean_confidence


def reliability_figure(class_logits: torch.Tensor, labels: torch.Tensor, ece: float | None = None,
                       setting: Mapping[str, object] | None = None, n_bins: int = 15) -> Figure:
    """Accuracy per confidence bin against the diagonal, the gap |accuracy - mean confidence| of each bin
    (red, hatched), the ECE in the title, and the number of samples per bin on a small axis beneath."""
    count, accuracy, mean_confidence = reliability_bins(class_logits, labels, n_bins)
    if ece is None:
        ece = float(((accuracy - mean_confidence).abs() * count).sum() / max(float(count.sum()), 1.0))
    full = count > 0
    centers = ((torch.arange(n_bins) + 0.5) / n_bins)[full].numpy()
    width = 1 / n_bins
    acc, conf, n = accuracy[full].numpy(), mean_confidence[full].numpy(), count[full].numpy()
    fig, (ax, counts_ax) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, layout="constrained",
                                        gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centers, acc, width=width, edgecolor="black", color="tab:blue", alpha=0.75, label="accuracy",
           gid="accuracy")
    ax.bar(centers, np.abs(acc - conf), bottom=np.minimum(acc, conf), width=width, color="tab:red", alpha=0.3,
           edgecolor="tab:red", hatch="//", label="gap |accuracy - confidence|", gid="gap")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    counts_ax.bar(centers, n, width=width, color="0.6", edgecolor="black")
    for x, c in zip(centers, n, strict=True):
        counts_ax.text(x, c, f"{int(c)}", ha="center", va="bottom", fontsize=6, rotation=90, gid="bin_count")
    counts_ax.set(xlabel="confidence (max softmax)", ylabel="samples", ylim=(0, max(n.max(initial=0) * 1.45, 1)))
    _titles(fig, ax, f"Reliability diagram (test): ECE {_f4(ece)}", setting_line(setting))
    return fig


# ---------------------------------------------------------------------------------------------- noise
def transition_matrix_figure(transition: np.ndarray, class_names: list[str] | None = None,
                             setting: Mapping[str, object] | None = None) -> Figure:
    """The realised noise: P(noisy label = j | clean label = i) over the training set, rows and columns
    named by the dataset's classes (held-out classes are not in training, so not in the matrix)."""
    k = transition.shape[0]
    side = min(4 + 0.3 * k, 14)
    fig, ax = plt.subplots(figsize=(side, side), layout="constrained")
    image = ax.imshow(transition, vmin=0, vmax=1, cmap="viridis")
    ax.set(xlabel="noisy label", ylabel="clean label")
    if k <= 20:
        if class_names is not None:
            ax.set_xticks(range(k), class_names, rotation=90)
            ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{transition[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if transition[i, j] < 0.5 else "black")
    fig.colorbar(image, ax=ax)
    _titles(fig, ax, "Realised transition matrix P(noisy | clean)", setting_line(setting))
    return fig


def transition_matrix(path: Path, transition: np.ndarray, class_names: list[str] | None = None,
                      setting: Mapping[str, object] | None = None) -> list[Path]:
    """Write the transition matrix to `path` (PNG) and beside it as PDF; returns the paths written."""
    fig = transition_matrix_figure(transition, class_names, setting)
    try:
        return save_figure(fig, path.with_suffix(""))
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------- writing
def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `fig` as stem.png, stem.pdf (each atomically); the figure stays open. Returns the paths."""
    written = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"
        _save(fig, path)
        written.append(path)
    return written


def build_figures(figures: Mapping[str, Mapping], setting: Mapping[str, object] | None = None
                  ) -> dict[str, Figure]:
    """The figures `figures` describes (see write_all), by file name, open."""
    built: dict[str, Figure] = {}
    try:
        if "score_histograms" in figures:
            f = figures["score_histograms"]
            built[NAMES["score_histograms"]] = score_histograms_figure(f["score"], f["id"], f["ood"],
                                                                       f.get("metrics"), setting)
        if "risk_coverage" in figures:
            f = figures["risk_coverage"]
            built[NAMES["risk_coverage"]] = risk_coverage_figure(f["score"], f["confidence"], f["correct"],
                                                                 f.get("aurc"), setting)
        if "reliability" in figures:
            f = figures["reliability"]
            built[NAMES["reliability"]] = reliability_figure(f["class_logits"], f["labels"], f.get("ece"), setting)
    except BaseException:
        for fig in built.values():
            plt.close(fig)
        raise
    return built


def write_all(folder: Path, figures: Mapping[str, Mapping], setting: Mapping[str, object] | None = None,
              loggers: Sequence = (), *, step: int | None = None) -> list[Path]:
    """Write whichever figures the evaluation produced into `folder`, as PNG and PDF, then log them to
    `loggers` (TensorBoard, W&B, MLflow; others are skipped). Returns the paths written.

    figures may hold:
        "score_histograms": {"score", "id", "ood": {set: scores}, "metrics": {set: {"auroc",
                             "fpr95_id_positive", "fpr95_ood_positive"}}}, scores as held (metrics.scores)
        "risk_coverage": {"score", "confidence", "correct", "aurc"}
        "reliability": {"class_logits", "labels", "ece"}
    The files are written first; a logger that fails is warned about and does not undo them.
    """
    folder = Path(folder)
    built = build_figures(figures, setting)
    written: list[Path] = []
    try:
        pngs = {}
        for name, fig in built.items():
            paths = save_figure(fig, folder / name)
            written.extend(paths)
            pngs[name] = paths[0]
        for name, fig in built.items():
            log_figure(loggers, f"figures/{name}", fig, pngs[name], step)
    finally:
        for fig in built.values():
            plt.close(fig)
    return written


# ---------------------------------------------------------------------------------------------- loggers
def _kinds(logger: object) -> set[str]:
    """The class names of a logger and its bases: lightning's loggers are known by name, so that none of
    their optional packages is imported here."""
    return {cls.__name__ for cls in type(logger).__mro__}


def log_figure(loggers: Sequence, tag: str, fig: Figure, png: Path, step: int | None = None) -> None:
    """Log one figure to each logger that takes images; a failure is a warning, never an error."""
    for logger in loggers or ():
        kinds = _kinds(logger)
        try:
            if "TensorBoardLogger" in kinds:
                logger.experiment.add_figure(tag, fig, global_step=step, close=False)
            elif "WandbLogger" in kinds:
                logger.log_image(key=tag, images=[str(png)])
            elif "MLFlowLogger" in kinds:
                logger.experiment.log_figure(logger.run_id, fig, f"{tag}.png")
        except Exception as error:  # a logger's trouble must not cost the run its files or its metrics
            log.warning("could not log figure %s to %s: %s: %s", tag, type(logger).__name__,
                        type(error).__name__, error)


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_save(path, lambda f: fig.savefig(f, dpi=150 if fmt == "png" else "figure", format=fmt))
