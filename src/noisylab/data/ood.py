"""OOD data: held-out classes (the drainage paper's open-set protocol; works offline) and OOD datasets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from noisylab.data.dataset import IndexedTensorDataset
from noisylab.data.errors import DatasetNotFoundError, data_root
from noisylab.data.files import FileDataset, file_transform
from noisylab.data.folders import IMAGE_SUFFIXES
from noisylab.data.source import ImageSource


class HeldOutClasses:
    """Removes some classes from training; their test images become the OOD set `holdout`.

    Give `classes` explicitly, or leave it empty and `num_classes` are drawn. The draw is fixed by default
    (`seed=None`: the same classes for every training seed), so "mean +- std over seeds" is over one task;
    `seed=<int>` picks another fixed draw, and `seed=${seed}` (ood.holdout.seed) draws them per training
    seed, averaging over splits as in the drainage paper.
    """

    name = "holdout"
    FIXED_DRAW = 0  # the seed of the default draw (the classes the digits demo has always held out)

    def __init__(self, classes: Sequence[int] | None = None, num_classes: int = 2, seed: int | None = None) -> None:
        self.classes = None if classes is None else sorted(int(c) for c in classes)
        self.num_classes = int(num_classes)
        self.seed = None if seed is None else int(seed)

    def describe(self) -> str:
        """How the classes were chosen, as the config says it (for the run's log line)."""
        if self.classes is not None:
            return "ood.holdout.classes"
        if self.seed is None:
            return "the fixed default draw, the same for every seed (ood.holdout.seed=null)"
        return f"drawn with ood.holdout.seed={self.seed}"

    def choose(self, total_classes: int) -> np.ndarray:
        """The sorted ids of the held-out classes, validated against the dataset's class count."""
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"ood.holdout.classes lists a class twice: {self.classes}")
            bad = [c for c in self.classes if not 0 <= c < total_classes]
            if bad:
                raise ValueError(f"ood.holdout.classes {bad} are not classes of this dataset (0..{total_classes - 1})")
            chosen = np.array(self.classes, dtype=np.int64)
        else:
            if not 0 < self.num_classes <= total_classes - 2:
                raise ValueError(f"ood.holdout.num_classes={self.num_classes}: the dataset has {total_classes} "
                                 "classes; hold out at least 1 class and keep at least 2")
            rng = np.random.default_rng(self.FIXED_DRAW if self.seed is None else self.seed)
            chosen = np.sort(rng.choice(total_classes, size=self.num_classes, replace=False))
        if total_classes - len(chosen) < 2 or len(chosen) == 0:
            raise ValueError(
                f"holding out {len(chosen)} of {total_classes} classes leaves nothing sensible to train or to "
                "detect; hold out at least 1 class and keep at least 2 (ood.holdout.num_classes)"
            )
        return chosen


def convert_images(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) images in another dataset's shape: grey <-> RGB, then resized (antialiased)."""
    channels, height, width = shape
    if images.shape[1] != channels:
        if channels == 1:  # luminance
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            images = images.expand(-1, channels, -1, -1)
    if tuple(images.shape[2:]) != (height, width):
        resized = F.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                                align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


class OODSet:
    """An out-of-distribution test set: another dataset's test images, or every image file in a folder.

    Images are converted to the in-distribution shape (channels and size) and normalised like it, so any
    set works with any training data. Give `source` (a loader returning an ImageSource, e.g.
    load_svhn) or `folder` (a path under the data root, or absolute, searched recursively for images).

    Args:
        root: where the source's files are; defaults to the training data's root (data.root).
        max_samples: use a seeded random subset of at most this many images.
        optional: a set of a dataset's standard OOD list (ood=standard_cifar10, ...): when its files are
            missing it is skipped, and the run names it among the missing sets, instead of stopping.
            A set the user names (ood=[svhn]) is not optional: missing files stop the run before training.
    """

    def __init__(self, source: Callable[..., ImageSource] | None = None, folder: str | None = None,
                 root: str | None = None, max_samples: int | None = None, seed: int = 0,
                 source_kwargs: dict | None = None, optional: bool = False) -> None:
        if (source is None) == (folder is None):
            raise ValueError("an OOD set needs exactly one of `source` (a dataset loader) or `folder` (image files)")
        self.source, self.folder, self.root = source, folder, root
        self.optional = bool(optional)
        self.max_samples, self.seed = max_samples, int(seed)
        self.source_kwargs = dict(source_kwargs or {})

    def _subset(self, n: int) -> np.ndarray:
        if self.max_samples is None or n <= self.max_samples:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.seed).choice(n, self.max_samples, replace=False))

    def dataset(self, data_dir: Path | None, shape: tuple[int, int, int], in_memory: bool) -> Dataset:
        """Images labelled -1, in the in-distribution `shape`; in memory when the training data is.

        `data_dir` is data.root (None when it is null: then only sources that need no files, and absolute
        folders, work)."""
        root = Path(self.root).expanduser() if self.root else data_dir
        if self.source is not None:
            source = self.source(root=root, **self.source_kwargs)
            chosen = self._subset(len(source.test_labels))
            images = torch.from_numpy(source.test_images[chosen])
            unknown = torch.full((len(chosen),), -1, dtype=torch.long)
            if in_memory:
                return IndexedTensorDataset(convert_images(images, shape), unknown, unknown)
            return _ConvertedTensors(images, shape)
        folder = Path(self.folder).expanduser()
        folder = folder if folder.is_absolute() else data_root(root, f"OOD folder {self.folder}") / folder
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in IMAGE_SUFFIXES) \
            if folder.is_dir() else []
        if not files:
            raise DatasetNotFoundError(f"OOD folder {self.folder}", folder,
                                       "  image files (.jpg, .png, ...) anywhere below this folder")
        chosen = self._subset(len(files))
        unknown = np.full(len(chosen), -1, dtype=np.int64)
        channels, height, width = shape
        if in_memory:
            transform = v2.Compose([v2.Resize((height, width), antialias=True)])
        else:
            transform = file_transform(train=False, size=height)
        return FileDataset(folder, [files[i] for i in chosen], unknown, unknown, np.arange(len(chosen)),
                           transform, grey=channels == 1)


class _ConvertedTensors(Dataset):
    """In-memory OOD images served one by one (for file-based training data, whose batches are collated)."""

    def __init__(self, images: torch.Tensor, shape: tuple[int, int, int]) -> None:
        self.images, self.shape = images, shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        image = convert_images(self.images[i : i + 1], self.shape)[0]
        unknown = torch.tensor(-1)
        return image, unknown, torch.tensor(i), unknown
