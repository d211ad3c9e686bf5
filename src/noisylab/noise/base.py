"""What every noise model shares: a validated rate and a seed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike  # numpy arrays, lists, CPU tensors: whatever np.asarray reads


class NoiseModel(ABC):
    """A pure, seeded map from clean labels (and, for some models, images) to noisy labels.

    Call it as `noise(clean)`, `noise(clean, images)` (instance noise needs the pixels) or with everything a
    dataset knows, `noise(clean, images, class_ids, positions)`: `clean` holds contiguous labels 0..K-1 and
    `class_ids[k]` is the dataset's own id of label k (they differ when classes are held out as OOD), so class
    maps written in dataset ids still apply; without class ids the labels are the dataset's ids themselves,
    K = max(clean) + 1 (pass `class_ids=np.arange(K)` when a class may have no sample). `positions` are the
    samples' positions in the dataset's training set (label files aligned with it, like CIFAR-N's, need them).
    The same arguments and seed give the same labels on every machine and every DDP rank: all randomness comes
    from a `numpy.random.Generator` built from `seed` inside the call.

    Subclasses implement `noisy(...)`, which gets the arguments checked and filled in by `__call__`.
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

    def __call__(self, clean: ArrayLike, images: ArrayLike | None = None, class_ids: ArrayLike | None = None,
                 positions: ArrayLike | None = None) -> np.ndarray:
        """Noisy labels (int64, shape (n,)) for `clean`; `images` is uint8 (n, C, H, W); K = len(class_ids)."""
        clean = _integers("clean", clean)
        if class_ids is None:  # the labels are the dataset's class ids, none held out
            class_ids = np.arange(int(clean.max(initial=-1)) + 1)
        class_ids = _integers("class_ids", class_ids)
        if len(clean) and (clean.min() < 0 or clean.max() >= len(class_ids)):
            raise ValueError(f"clean labels must be 0..K-1 with K = len(class_ids) = {len(class_ids)}, got labels "
                             f"{clean.min()}..{clean.max()}; relabel them contiguously (np.unique(y, "
                             "return_inverse=True)) and pass each label's original id as class_ids")
        images = None if images is None else np.asarray(images)
        positions = None if positions is None else _integers("positions", positions)
        return np.asarray(self.noisy(clean, images, class_ids, positions), dtype=np.int64)

    @abstractmethod
    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        """Noisy labels for checked int64 `clean` labels 0..K-1, K = len(class_ids)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, seed={self.seed})"


class NoNoise(NoiseModel):
    """Keep the labels as they are (clean data, or data whose noise is already in its labels)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        return clean.copy()


def _integers(name: str, values: ArrayLike) -> np.ndarray:
    """`values` (a numpy array, a CPU tensor or a list) as a 1-D int64 array, refused unless whole numbers."""
    array = np.asarray(values)
    if array.ndim != 1 or not (array.dtype.kind in "iu" or array.size == 0):
        raise ValueError(f"{name}: expected a 1-D array of integer labels, got {array.dtype} values of shape "
                         f"{array.shape}; e.g. np.asarray({name}, dtype=np.int64)")
    return array.astype(np.int64, copy=False)
