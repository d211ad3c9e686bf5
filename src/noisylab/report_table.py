"""The short table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

HEADLINE = (
    "test/acc", "test/selective_acc", "test/drainage_rate", "test/ece", "test/nll",
    "test/ood/auroc", "test/ood/fpr95", "train/noise_detection_auroc", "train/drainage_precision",
    "train/drainage_recall", "noise/realised_rate", "val/best_acc", "best_epoch",
)  # fmt: skip


def print_metrics(metrics: Mapping[str, Any], title: str = "results") -> None:
    """Print the headline metrics that are present (the full set is in metrics.json)."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in HEADLINE:
        if name in metrics and metrics[name] is not None:
            value = metrics[name]
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
