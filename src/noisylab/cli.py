"""Entry-point helpers: mistakes in input get their message, not a traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from noisylab.data.errors import DatasetNotFoundError
from noisylab.methods.standard import NonFiniteLossError
from noisylab.run_folder import has_results, record_failure
from noisylab.train import FOLDER_REFUSALS
from noisylab.utils.checkpoints import CheckpointWriteError
from noisylab.utils.hydra_callbacks import FAILED_JOBS
from noisylab.utils.loggers import MissingLoggerPackageError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Raised on purpose, with a message that names the problem and the fix.
USER_ERRORS = (DatasetNotFoundError, FileNotFoundError, FileExistsError, NonFiniteLossError, ValueError,
               MissingLoggerPackageError, CheckpointWriteError)


def _user_error(exc: BaseException) -> BaseException | None:
    """The user-facing error behind `exc` (Hydra wraps errors raised while building objects), if any."""
    while exc is not None:
        if isinstance(exc, USER_ERRORS) and not isinstance(exc, InstantiationException):
            return exc
        exc = exc.__cause__ if isinstance(exc, InstantiationException) else None
    return None


def report_user_errors(fn: F) -> F:
    """Print a user error's message and exit with status 1; other errors keep their traceback.

    HYDRA_FULL_ERROR=1 shows the traceback for user errors too.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            user_error = _user_error(exc)
            if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {user_error}\n(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _job_of_a_multirun() -> bool:
    """A job that Hydra's sweep started (its DDP ranks run in RUN mode and report through rank 0)."""
    return (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            and os.environ.get("LOCAL_RANK", "0") == "0")


def run_sweep_job(cfg: DictConfig, run: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any] | None:
    """`run(cfg)`; in a job of a sweep, an error is logged and recorded in the job's failed.json, and None
    returned so the sweep goes on with its other jobs (SweepSummary reports the failures at the end).
    Outside a sweep errors propagate (report_user_errors prints user errors)."""
    try:
        return run(cfg)
    except Exception as exc:
        if not _job_of_a_multirun():
            raise
        user_error = _user_error(exc)
        if user_error is not None:
            log.error("job failed: %s", user_error)
        else:
            log.exception("job failed")
        output_dir = Path(cfg.paths.output_dir)
        failure = user_error or exc
        FAILED_JOBS[output_dir.resolve()] = f"{type(failure).__name__}: {failure}"
        if not (isinstance(failure, FOLDER_REFUSALS) and has_results(output_dir)):
            record_failure(output_dir, failure)  # not in a folder whose own run is intact and was refused
        return None
