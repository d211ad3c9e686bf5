"""What every noise model shares: a validated rate and a seed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class NoiseModel(ABC):
    """A pure, seeded map from clean labels (and, for some models, images) to noisy labels.

    Subclasses implement `__call__(clean, images, class_ids) -> noisy`: `clean` holds contiguous labels
    0..K-1 and `class_ids[k]` is the dataset's own id of label k (they differ when classes are held out
    as OOD), so class maps written in dataset ids still apply; `positions` are the samples' positions in
    the dataset's training set (label files aligned with it, like CIFAR-N's, need them). The same arguments and
    seed give the same labels on every machine and every DDP rank: all randomness comes from a
    `numpy.random.Generator` built from `seed` inside the call.
    """

    def __init__(self, rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"noise.rate must be in [0, 1), got {rate}; e.g. noise.rate=0.4")
        self.rate = float(rate)
        self.seed = int(seed)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Refuse settings that name classes the dataset does not have (class k is `class_names[k]`).

        Called with all of the dataset's classes before any are held out as OOD: only then can a class that
        does not exist be told apart from one that is held out. Most noise models name no classes.
        """
        return

    @abstractmethod
    def __call__(self, clean: np.ndarray, images: np.ndarray, class_ids: np.ndarray,
                 positions: np.ndarray | None = None) -> np.ndarray:
        """Noisy labels for `clean` (int64, shape (n,)); `images` is uint8 (n, C, H, W); K = len(class_ids)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, seed={self.seed})"


class NoNoise(NoiseModel):
    """Keep the labels as they are (clean data, or data whose noise is already in its labels)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)

    def __call__(self, clean: np.ndarray, images: np.ndarray, class_ids: np.ndarray,
                 positions: np.ndarray | None = None) -> np.ndarray:
        return clean.copy()
