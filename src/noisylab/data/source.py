"""In-memory image datasets: what every source returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSource:
    """A labelled image dataset held in memory as uint8 arrays of shape (N, C, H, W).

    `mean`/`std` are per-channel statistics on the 0..1 scale, used for normalisation.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for split, images, labels in (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if images.dtype != np.uint8 or images.ndim != 4:
                raise ValueError(f"{self.name} {split} images must be uint8 (N, C, H, W), got {images.dtype} "
                                 f"{images.shape}")
            if len(images) != len(labels):
                raise ValueError(f"{self.name} {split}: {len(images)} images but {len(labels)} labels")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]
