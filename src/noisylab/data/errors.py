"""Clear errors for data that is not where the config says it is, or that is there but unusable.

Every error here is a user error (the CLI prints its message, no traceback): it names the file, what is
wrong with it, the format expected and the fix.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

REDOWNLOAD = ("re-download the dataset (delete its folder and run once with data.download=true), or copy the file "
              "again from the original archive")


class DatasetNotFoundError(FileNotFoundError):
    """Raised before training when a dataset's files are missing; says where we looked and what to change."""

    def __init__(self, name: str, looked_in: Path, layout: str, how_to_get: str = "") -> None:
        self.looked_in = Path(looked_in)
        message = (
            f"Dataset '{name}' not found: looked in {self.looked_in.resolve()}\n"
            f"Expected layout:\n{layout}\n"
            "To fix: put the files there, or point the config at them with data.root=/path/to/datasets "
            "(train.py and eval.py alike; for train.py also the NOISYLAB_DATA_ROOT environment variable)"
        )
        if how_to_get:
            message += f", or {how_to_get}"
        super().__init__(message + ".")


def _without_worker_traceback(message: str, class_name: str) -> str:
    """The message a DataLoader worker raised, without what torch wrapped around it.

    torch re-raises a worker's exception in the main process as `type(exc)(text)`, where text is
    "Caught <class> in DataLoader worker process N.\\nOriginal Traceback ...<module>.<class>: <message>".
    """
    marker = f"{class_name}: "
    if not message.startswith(f"Caught {class_name} ") or marker not in message:
        return message
    return message.rsplit(marker, 1)[1].strip()


class BadDataFileError(ValueError):
    """A dataset file that is there but cannot be used as it is: damaged, of another format, or holding values
    the dataset cannot have (a label 10 among 10 classes). Refused instead of being misread.

    Takes a single message, so that an error raised in a DataLoader worker survives torch's re-raise in the
    main process as the same class with the same one-paragraph message.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_without_worker_traceback(message, type(self).__name__))

    @classmethod
    def about(cls, path: str | Path, problem: str, expected: str, fix: str = REDOWNLOAD) -> BadDataFileError:
        """The error for `path`, in one form: what is wrong, what was expected, how to fix it."""
        return cls(f"{path}: {problem}. Expected {expected}. To fix: {fix}.")


class RefusedPickleError(BadDataFileError, pickle.UnpicklingError):
    """A pickled dataset file that references code or classes; refused before anything in it runs."""


class BadImageError(BadDataFileError):
    """An image file that cannot be decoded while training or testing (data.bad_images=stop)."""


class MissingImagesError(FileNotFoundError):
    """Image files that a dataset's file list names but that are not on disk."""


class DataRootNotSetError(ValueError):
    """data.root is null but the dataset is read from files below it."""


def data_root(root: str | Path | None, dataset: str) -> Path:
    """`root` as a Path; refused with the keys to set when it is None (data.root=null)."""
    if root is None:
        raise DataRootNotSetError(
            f"data.root is null, but dataset '{dataset}' is read from files below it. To fix: set "
            "data.root=<folder holding the datasets> on the command line, or leave data.root at its default "
            "(the NOISYLAB_DATA_ROOT environment variable if set, else ./data where you start the run)."
        )
    return Path(root)


def check_labels(path: str | Path, labels: np.ndarray, num_classes: int, expected: str, fix: str = REDOWNLOAD,
                 first: int = 0) -> None:
    """Refuse labels outside first..first+num_classes-1 (later steps would silently drop them), naming the
    first few."""
    last = first + num_classes - 1
    bad = np.flatnonzero((labels < first) | (labels > last))
    if len(bad):
        examples = ", ".join(f"{int(labels[i])} at position {int(i)}" for i in bad[:3])
        raise BadDataFileError.about(
            path, f"{len(bad)} of {len(labels)} labels are outside {first}..{last} (first: {examples})", expected, fix)
