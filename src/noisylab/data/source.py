"""In-memory image datasets: what every source returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noisylab.data.dataset import IndexedTensorDataset


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

    # The interface NoisyLabelDataModule uses (shared with FileListSource):
    real_noise = False  # the labels are clean; noise comes from the noise model
    @property
    def extra_test_sets(self) -> dict[str, np.ndarray]:
        """Labels of further in-distribution test sets by name (none here)."""
        return {}

    @property
    def val_labels(self) -> np.ndarray | None:
        """Labels of an official validation split, if the dataset has one (not here)."""
        return None

    def noise_images(self, positions: np.ndarray) -> np.ndarray:
        """Pixels of the given training samples, for noise models that depend on them."""
        return self.train_images[positions]

    def dataset(self, split: str, positions: np.ndarray, labels: np.ndarray, clean: np.ndarray,
                index: np.ndarray | None = None, augment: bool = False) -> IndexedTensorDataset:
        """Samples of `split` ("train" or "test") at `positions`, as uint8 tensors in memory.
        Augmentation happens batched on the device, so `augment` needs nothing here."""
        images = self.train_images if split == "train" else self.test_images
        return IndexedTensorDataset(torch.from_numpy(images[positions]), torch.from_numpy(labels),
                                    torch.from_numpy(clean), None if index is None else torch.from_numpy(index))
