"""What a run shows while it trains: the rich progress bar on a terminal, one line per epoch everywhere else.

Under SLURM, nohup or CI (stdout is not a terminal) a progress bar is a stream of control characters in a log
file; there `progress_bar(style="auto")` shows none and EpochLog prints one line per epoch instead. EpochLog
writes the same lines into the run's train.log in every case, so the log always holds the training history.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar

from noisylab.quiet import note_test_deduplication

PROGRESS_STYLES = ("auto", "rich", "none")


class RichBar(RichProgressBar):
    """Lightning's rich bar without `v_num` (the logger's version number, 0 in every run folder of ours)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class NoProgressBar(ProgressBar):
    """Shows nothing; without it Lightning would add its own bar. EpochLog prints the epochs' lines instead."""

    @property
    def is_enabled(self) -> bool:
        return False

    def disable(self) -> None:
        """Nothing to disable."""

    def enable(self) -> None:
        """Stays silent: this bar exists so that no other is shown."""


def progress_bar(style: str = "auto") -> ProgressBar:
    """`auto`: the rich bar when stdout is a terminal, else none; `rich` or `none` to choose
    (callbacks.progress_bar.style=...)."""
    if style not in PROGRESS_STYLES:
        raise ValueError(f"callbacks.progress_bar.style={style!r}: must be one of {', '.join(PROGRESS_STYLES)}")
    rich = style == "rich" or (style == "auto" and sys.stdout.isatty())
    return RichBar() if rich else NoProgressBar()


def epoch_line(epoch: int, max_epochs: int | None, metrics: Mapping[str, Any], lr: float | None,
               seconds: float) -> str:
    """`epoch 3/29  train/loss 1.2345  val/acc 0.5652  lr 0.095  2.1 s`; absent metrics are left out (a SimCLR
    run validates by val/loss). Epochs count from 0, as Lightning's bar and best_epoch in metrics.json do."""
    parts = [f"epoch {epoch}/{max_epochs - 1}" if max_epochs and max_epochs > 0 else f"epoch {epoch}"]
    train_loss = metrics.get("train/loss_epoch", metrics.get("train/loss"))
    if train_loss is not None:
        parts.append(f"train/loss {float(train_loss):.4f}")
    for name in ("val/acc",) if "val/acc" in metrics else ("val/loss",):
        if name in metrics:
            parts.append(f"{name} {float(metrics[name]):.4f}")
    if lr is not None:
        parts.append(f"lr {lr:.4g}")
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


class EpochLog(Callback):
    """One line per training epoch (epoch, train loss, validation accuracy, learning rate, seconds), appended to
    `path` (the run's train.log) and printed when no progress bar is shown (`echo=None`), or as `echo` says.

    Rank 0 only. Each line is one append, so a line is whole even if the run is killed.
    """

    def __init__(self, path: str | Path | None = None, echo: bool | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.echo = echo
        self._started = time.monotonic()
        self._lr: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.echo is None:
            bar = trainer.progress_bar_callback
            self.echo = bar is None or not bar.is_enabled

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        # The rate this epoch trains with: by the epoch's end the scheduler has stepped to the next one's.
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.write(epoch_line(trainer.current_epoch, trainer.max_epochs, trainer.callback_metrics, self._lr,
                                  time.monotonic() - self._started))

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        note_test_deduplication(trainer.world_size)

    def write(self, line: str) -> None:
        """Append `line` to the log file and, when echoing, print it."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
        if self.echo:
            print(line, flush=True)
