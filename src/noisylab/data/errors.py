"""One clear error for data that is not where the config says it is."""

from __future__ import annotations

from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """Raised before training when a dataset's files are missing; says where we looked and what to change."""

    def __init__(self, name: str, looked_in: Path, layout: str, how_to_get: str = "") -> None:
        self.looked_in = Path(looked_in)
        message = (
            f"Dataset '{name}' not found: looked in {self.looked_in.resolve()}\n"
            f"Expected layout:\n{layout}\n"
            "To fix: put the files there, or point the config at them with data.root=/path/to/datasets "
            "(or the NOISYLAB_DATA_ROOT environment variable)"
        )
        if how_to_get:
            message += f", or {how_to_get}"
        super().__init__(message + ".")
