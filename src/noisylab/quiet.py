"""Keep Lightning's console output to what a researcher acts on.

`quiet_lightning()` runs at the start of the task function (train.py, eval.py; in every DDP rank, since each
rank runs the task function) and uses only Lightning's and Python's switches: logging filters and levels on
Lightning's named loggers and `warnings` filters with precise message patterns, so a new Lightning message is
shown until it is judged, never hidden by a broad rule.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size, get_human_readable_count

log = logging.getLogger(__name__)

# rank_zero_info messages (logger lightning.pytorch.utilities.rank_zero) that say nothing about this run.
RANK_ZERO_NOISE = re.compile(
    r"(GPU|TPU) available"                                # device inventory; the trainer config says what is used
    r"|💡 Tip"                                            # litlogger / litmodels advertisements
    r"|Trainer already configured with model summary"     # our ModelSummary replaces Lightning's, as intended
)
# Loggers that print one line per DDP rank or device and nothing a run needs.
PER_RANK_LOGGERS = ("lightning.pytorch.accelerators.cuda",    # LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]
                    "lightning.fabric.utilities.distributed")  # Initializing distributed: GLOBAL_RANK: ...
# Warnings (module `warnings`) with nothing to act on: Lightning's own uses of deprecated torch APIs (printed
# once per DDP rank), and the advice to test on one device, which noisylab does not need (see DEDUPLICATION_NOTE).
WARNING_NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
    r"Using `DistributedSampler` with the dataloaders\. During `trainer\.test\(\)`",
)
DEDUPLICATION_NOTE = ("testing on %d processes: every test sample's outputs are gathered from all of them and "
                      "de-duplicated by sample index, so each sample counts once")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not RANK_ZERO_NOISE.match(record.getMessage())


_DROP_NOISE = _DropNoise()


def quiet_lightning() -> None:
    """Install the filters (idempotent: a multirun calls the task function once per job in one process).

    Lightning gives its top logger a console handler of its own; under Hydra the root logger's handlers show
    (stdout) and file (train.log) every record already, so that handler would print each message twice.
    """
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DROP_NOISE)
    for name in PER_RANK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


def note_test_deduplication(world_size: int) -> None:
    """Say once (rank 0), instead of Lightning's DistributedSampler warning, how a multi-process test counts."""
    from lightning.pytorch.utilities import rank_zero_only

    if world_size > 1 and rank_zero_only.rank == 0:
        log.info(DEDUPLICATION_NOTE, world_size)


class ModelSummary(LightningModelSummary):
    """Lightning's layer summary as a plain table (console and train.log alike), without the FLOPs column and
    total when they are all zero (they are counted only for modules that define `example_input_array`).

    `enabled=${trainer.enable_model_summary}` in the callbacks config keeps that trainer switch working:
    Lightning skips its own summary when the switch is off, but not a summary given as a callback.
    """

    def __init__(self, max_depth: int = 1, enabled: bool = True) -> None:
        super().__init__(max_depth=max_depth if enabled else 0)

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        log.info("model:\n%s", summary_text(summary_data, total_parameters, trainable_parameters, model_size,
                                            total_training_modes, total_flops))


def summary_text(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                 model_size: float, total_training_modes: dict[str, int], total_flops: int) -> str:
    """The summary table; the FLOPs column only when some module's FLOPs were counted."""
    columns = [(name, values) for name, values in summary_data if name != "FLOPs" or total_flops]
    widths = [max([len(name), *(len(str(v)) for v in values)]) for name, values in columns]
    rows = [[name for name, _ in columns], *zip(*(values for _, values in columns), strict=True)]
    lines = [" | ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))

    def count(number: int) -> str:
        return get_human_readable_count(number).strip()

    lines.append(f"{count(trainable_parameters)} trainable parameters, {count(total_parameters - trainable_parameters)}"
                 f" frozen ({get_formatted_model_size(model_size)} MB); {total_training_modes['train']} modules in "
                 f"train mode, {total_training_modes['eval']} in eval mode"
                 + (f"; {count(total_flops)} FLOPs" if total_flops else ""))
    return "\n".join(lines)
