"""Optional experiment loggers (TensorBoard, W&B, MLflow): a clear message when one is missing, and ending their
runs when a job ends, so that the next job of a multirun (same process) starts its own run."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from noisylab.errors import MissingLoggerPackageError

log = logging.getLogger(__name__)

# Logger class -> (modules any of which provides it, the noisylab extra that installs it).
OPTIONAL_LOGGERS: dict[str, tuple[tuple[str, ...], str]] = {
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard"),
    "WandbLogger": (("wandb",), "wandb"),
    "MLFlowLogger": (("mlflow",), "mlflow"),
}


def check_logger_packages(logger_cfg: Mapping[str, Any] | None) -> None:
    """Raise MissingLoggerPackageError if a configured logger (cfg.logger) needs a package that is not installed.

    Call it before anything is built: Lightning's own error comes only when the logger is instantiated and does not
    name noisylab's extras.
    """
    for name, spec in (logger_cfg or {}).items():
        if spec is None:
            continue
        cls = str(spec.get("_target_", "")).rsplit(".", 1)[-1]
        if cls not in OPTIONAL_LOGGERS:
            continue
        modules, extra = OPTIONAL_LOGGERS[cls]
        if not any(importlib.util.find_spec(module) is not None for module in modules):
            raise MissingLoggerPackageError(
                f"logger {name!r} ({cls}) needs the {modules[0]} package, which is not installed: "
                f"pip install 'noisylab[{extra}]' (or choose another logger, e.g. logger=csv)"
            )


def finish_loggers(loggers: Iterable[Logger], status: str = "success") -> None:
    """End each logger's run at the end of a job; `status` is "success" or "failed".

    Lightning finalizes loggers after fit/test but leaves a W&B run open: `wandb.run` stays set in the process and
    the next job's WandbLogger would log into it. A logger that fails to close is logged, never raised (this runs
    in a `finally` and must not hide the job's own error).
    """
    for logger in loggers:
        try:
            logger.finalize(status)
            if isinstance(logger, WandbLogger):
                run = logger._experiment  # only an existing run: ranks other than 0, or no log call, have none
                if run is not None:
                    run.finish(exit_code=0 if status == "success" else 1)
                    logger._experiment = None
        except Exception:  # see the docstring
            log.warning("could not close logger %s", type(logger).__name__, exc_info=True)
