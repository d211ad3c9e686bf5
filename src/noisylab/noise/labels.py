"""The output of every noise model: noisy labels plus what a user needs to trust them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisylab.utils.atomic import atomic_save


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Realised transition matrix T[i, j] = P(noisy = j | clean = i), estimated from counts.

    Rows of classes with no samples are left at zero rather than invented.
    """
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


@dataclass(frozen=True)
class NoisyLabels:
    """Noisy and clean labels of a training set, in the order of the source's samples.

    `class_ids` maps the contiguous label range 0..K-1 used in training back to the source's
    original class ids (they differ when classes are held out as OOD).
    """

    noisy: np.ndarray
    clean: np.ndarray
    num_classes: int
    class_ids: np.ndarray
    index: np.ndarray | None = None  # each sample's position in the source's training set (None: not recorded)

    def __post_init__(self) -> None:
        if self.noisy.shape != self.clean.shape:
            raise ValueError(f"noisy labels {self.noisy.shape} and clean labels {self.clean.shape} differ in shape")

    @property
    def is_noisy(self) -> np.ndarray:
        return self.noisy != self.clean

    @property
    def rate(self) -> float:
        """Realised share of mislabeled samples (not the rate that was asked for)."""
        return float(self.is_noisy.mean()) if len(self.noisy) else 0.0

    @property
    def transition(self) -> np.ndarray:
        return transition_matrix(self.clean, self.noisy, self.num_classes)

    def save(self, path: str | Path) -> None:
        """Written atomically: a crash leaves the previous file or the complete new one."""
        atomic_save(path, lambda f: np.savez_compressed(
            f,
            noisy=self.noisy,
            clean=self.clean,
            class_ids=self.class_ids,
            **({} if self.index is None else {"index": self.index}),
            transition=self.transition,
            rate=np.float64(self.rate),
        ))

    @classmethod
    def load(cls, path: str | Path) -> NoisyLabels:
        with np.load(path, allow_pickle=False) as f:
            class_ids = f["class_ids"]
            index = f["index"] if "index" in f.files else None
            return cls(noisy=f["noisy"], clean=f["clean"], num_classes=len(class_ids), class_ids=class_ids,
                       index=index)

    def same_as(self, other: NoisyLabels) -> bool:
        return (
            np.array_equal(self.noisy, other.noisy)
            and np.array_equal(self.clean, other.clean)
            and np.array_equal(self.class_ids, other.class_ids)
            and (self.index is None or other.index is None or np.array_equal(self.index, other.index))
        )
