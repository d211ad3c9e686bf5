"""The short table printed at the end of a run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from noisylab.metrics.scores import score_label

# Rows in this order where present; <score> stands for every score of the run (the head's default first).
HEADLINE = (
    "test/acc", "test/selective_acc", "test/drainage_rate", "test/ece", "test/nll",
    "test/calibrated/<labels>/ece", "test/selective/<score>/aurc", "test/ood_near/<score>/auroc",
    "test/ood_near/<score>/fpr95_id_positive", "test/ood_far/<score>/auroc", "test/ood_far/<score>/fpr95_id_positive",
    "test/ood_other/<score>/auroc", "train/noise_detection_auroc", "train/drainage_precision", "train/drainage_recall",
    "noise/realised_rate", "val/best_acc", "best_epoch",
)  # fmt: skip
CALIBRATION_LABELS = {
    "noisy_val": "the noisy labels of the validation split",
    "clean_val_oracle": "the clean labels of the validation split (an oracle: unknown in practice)",
    "official_val": "the dataset's own validation labels",
}


def headline_rows(metrics: Mapping[str, Any], default_score: str | None) -> list[tuple[str, Any]]:
    """(name, value) of the headline metrics present; score-named rows for the default score only (the rest are
    in metrics.json), so that no row's score is left unsaid."""
    rows = []
    for pattern in HEADLINE:
        regex = re.compile("^" + re.escape(pattern).replace("<score>", re.escape(default_score or "\0"))
                           .replace("<labels>", "[a-z_]+") + "$")
        rows.extend((name, value) for name, value in sorted(metrics.items()) if regex.match(name) and value is not None)
    return rows


def default_score(metrics: Mapping[str, Any]) -> str | None:
    """The run's default score: the one recorded in metrics["default_score"], else the first selective one."""
    if isinstance(metrics.get("default_score"), str):
        return metrics["default_score"]
    return next((name.split("/")[2] for name in metrics if name.startswith("test/selective/")), None)


def print_metrics(metrics: Mapping[str, Any], title: str = "results") -> None:
    """Print the headline metrics that are present (the full set is in metrics.json), and say which score the
    OOD and selective rows use and which labels calibrated the temperature."""
    score = default_score(metrics)
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline_rows(metrics, score):
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    if score is not None:
        console.print(f"OOD and selective rows rank by the score {score_label(score)} ({score}); near and far OOD "
                      "sets are averaged separately.")
    for kind, words in CALIBRATION_LABELS.items():
        if f"test/calibrated/{kind}/ece" in metrics:
            console.print(f"test/calibrated/{kind}: temperature fitted to {words}.")
