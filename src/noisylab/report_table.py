"""The short table printed at the end of a run (and appended to its train.log)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noisylab.score_names import score_label

WIDTH = 80  # the table, its notes and the copy in train.log fit a terminal of this width

# Rows in this order where present; <score> stands for every score of the run (the head's default first).
HEADLINE = (
    "test/acc", "test/selective_acc", "test/drainage_rate", "test/ece", "test/nll",
    "test/calibrated/<labels>/ece", "test/selective/<score>/aurc", "test/ood_near/<score>/auroc",
    "test/ood_near/<score>/fpr95_id_positive", "test/ood_far/<score>/auroc", "test/ood_far/<score>/fpr95_id_positive",
    "test/ood_other/<score>/auroc", "test/ood/<set>/<score>/auroc",
    "train/noise_detection_auroc", "train/drainage_precision", "train/drainage_recall",
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
                           .replace("<labels>", "[a-z_]+").replace("<set>", "[^/]+") + "$")
        rows.extend((name, value) for name, value in sorted(metrics.items()) if regex.match(name) and value is not None)
    return rows


def default_score(metrics: Mapping[str, Any]) -> str | None:
    """The run's default score: the one recorded in metrics["default_score"], else the first selective one."""
    if isinstance(metrics.get("default_score"), str):
        return metrics["default_score"]
    return next((name.split("/")[2] for name in metrics if name.startswith("test/selective/")), None)


def _renderables(metrics: Mapping[str, Any], title: str, location: str | Path | None) -> list[Any]:
    """The heading, the table and its notes; the location (a run folder, a checkpoint) on a line of its own, so
    that a long path is never broken inside the table's title."""
    from rich.table import Table
    from rich.text import Text

    score = default_score(metrics)
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline_rows(metrics, score):
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    parts: list[Any] = [Text(title, style="bold")]
    if location is not None:
        parts.append(Text(str(location), no_wrap=True))  # printed with soft_wrap: a long path stays whole
    parts.append(table)
    if score is not None:
        parts.append(f"OOD and selective rows rank by the score {score_label(score)} ({score}); test/ood/<set> rows "
                     "are the OOD sets, near and far sets are averaged separately (test/ood_near, test/ood_far).")
    for kind, words in CALIBRATION_LABELS.items():
        if f"test/calibrated/{kind}/ece" in metrics:
            parts.append(f"test/calibrated/{kind}: temperature fitted to {words}.")
    return parts


def _print(console: Any, parts: list[Any]) -> None:
    for part in parts:
        console.print(part, soft_wrap=bool(getattr(part, "no_wrap", False)))


def metrics_text(metrics: Mapping[str, Any], title: str = "results", location: str | Path | None = None) -> str:
    """The table as plain text, WIDTH columns wide (for log files)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=WIDTH, color_system=None, force_terminal=False, emoji=False)
    _print(console, _renderables(metrics, title, location))
    return buffer.getvalue()


def print_metrics(metrics: Mapping[str, Any], title: str = "results", location: str | Path | None = None,
                  log_file: Path | None = None) -> None:
    """Print the headline metrics that are present (the full set is in metrics.json), and say which score the
    OOD and selective rows use and which labels calibrated the temperature; append the same as plain text to
    `log_file` (the run's train.log)."""
    from rich.console import Console  # here, not at import: the run's other modules need no rich

    _print(Console(width=min(Console().width, WIDTH)), _renderables(metrics, title, location))
    if log_file is not None:
        with log_file.open("a", encoding="utf-8") as log:
            log.write(metrics_text(metrics, title, location))
