"""Entry-point helpers: mistakes in input get their message, not a traceback.

Imported by train.py and eval.py before Hydra parses the command line, so it imports nothing heavy: torch and
Lightning are imported inside the task function (`--help`, `--cfg job` and tab completion never need them).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from noisylab.errors import USER_ERRORS

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

TRACEBACK_HINT = "(HYDRA_FULL_ERROR=1 shows the traceback)"

# Command-line group -> {option (None: any option) -> (plugin module, what it is, the noisylab extra)}. Hydra
# fails to compose these without the plugin, before the task function runs, and names neither package nor extra.
PLUGINS: dict[str, dict[str | None, tuple[str, str, str]]] = {
    "hparams_search": {None: ("hydra_plugins.hydra_optuna_sweeper", "the Optuna sweeper", "optuna")},
    "hydra/sweeper": {"optuna": ("hydra_plugins.hydra_optuna_sweeper", "the Optuna sweeper", "optuna")},
    "hydra/launcher": {option: ("hydra_plugins.hydra_submitit_launcher", "the submitit launcher", "slurm")
                       for option in ("slurm", "submitit_slurm", "submitit_local")},
}


def _user_error(exc: BaseException) -> BaseException | None:
    """The user-facing error behind `exc` (Hydra wraps errors raised while building objects), if any."""
    while exc is not None:
        if isinstance(exc, USER_ERRORS) and not isinstance(exc, InstantiationException):
            return exc
        exc = exc.__cause__ if isinstance(exc, InstantiationException) else None
    return None


def print_user_error(error: BaseException) -> None:
    """The one way a user error reaches the terminal: `error: <message> (hint)` on stderr."""
    print(f"error: {error} {TRACEBACK_HINT}", file=sys.stderr)


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
            print_user_error(user_error)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (hydra_plugins) is missing too
        return False


def missing_plugins(argv: Sequence[str]) -> list[str]:
    """One message per override in `argv` whose Hydra plugin is not installed, naming the pip extra."""
    messages = []
    for arg in argv:
        key, sep, option = arg.lstrip("+").partition("=")
        if not sep or key not in PLUGINS or option in ("", "null"):
            continue
        plugin = PLUGINS[key].get(option) or PLUGINS[key].get(None)
        if plugin is not None and not _installed(plugin[0]):
            module, what, extra = plugin
            messages.append(f"{arg} needs {what} ({module.split('.')[-1].replace('_', '-')}), which is not "
                            f'installed: pip install "noisylab[{extra}]"')
    return messages


def require_plugins(argv: Sequence[str]) -> None:
    """Stop with one line per missing plugin (exit status 1) before Hydra composes the config."""
    messages = missing_plugins(argv)
    for message in messages:
        print(f"error: {message}", file=sys.stderr)  # nothing ran yet: there is no traceback to offer
    if messages:
        sys.exit(1)


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
        # Only on this path, where the run has imported them already: they import torch.
        from noisylab.run_folder import has_results, record_failure
        from noisylab.train import FOLDER_REFUSALS
        from noisylab.utils.hydra_callbacks import FAILED_JOBS

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
