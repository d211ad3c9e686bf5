"""User errors the command line reports as one message, without a traceback.

They live here, in a module that imports nothing heavy, so that train.py and eval.py can recognise them
(noisylab.cli) without importing torch and Lightning before Hydra has parsed the command line. The modules
that raise them re-export them under their old names.
"""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the checkpoints written so far are kept untouched."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, permissions); the previous file is intact."""


class MissingLoggerPackageError(ImportError):
    """A configured logger's package (TensorBoard, W&B, MLflow) is not installed; the message names the pip
    command."""


# Raised on purpose, with a message that names the problem and the fix. DatasetNotFoundError and the bad-data
# errors of noisylab.data.errors are FileNotFoundError / ValueError subclasses, so they are covered too.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, ValueError, NonFiniteLossError, CheckpointWriteError, MissingLoggerPackageError,
)
