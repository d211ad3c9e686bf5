"""Reuse the noisy labels of an earlier run (its `noisy_labels.npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from noisylab.noise.base import NoiseModel
from noisylab.noise.labels import NoisyLabels


class NoiseFromFile(NoiseModel):
    """Labels read from a `noisy_labels.npz`; refused unless its clean labels match this dataset's."""

    def __init__(self, path: str, seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(
                f"noise=file: no file at {self.path}. Point noise.path at a run's noisy_labels.npz."
            )

    def __call__(self, clean: np.ndarray, images: np.ndarray, class_ids: np.ndarray,
                 positions: np.ndarray | None = None) -> np.ndarray:
        saved = NoisyLabels.load(self.path)
        if saved.clean.shape != clean.shape or not np.array_equal(saved.clean, clean):
            raise ValueError(
                f"{self.path} was made for other data: its clean labels ({len(saved.clean)} samples) do not "
                f"match this dataset's training labels ({len(clean)} samples). Use the same data, ood "
                "holdout and seed as the run that wrote it."
            )
        return saved.noisy.copy()
