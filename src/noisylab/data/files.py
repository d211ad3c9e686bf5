"""Datasets of image files on disk (Clothing1M, WebVision, ImageNet-style folders), decoded by workers."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, get_worker_info
from torchvision.transforms import v2

from noisylab.data.decode import DraftDecoder
from noisylab.data.errors import BadImageError, MissingImagesError
from noisylab.utils.seeding import epoch_seed

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Cutout(nn.Module):
    """Covers a `length` x `length` square, centred at a uniformly drawn pixel and clipped to the image,
    with the dataset's mean colour (DeVries & Taylor 2017).

    The Drainage code applies Cutout after normalisation, zeroing the square; our images are normalised
    later, batched on the device, so the square gets the uint8 mean colour, which normalises to ~0.
    """

    def __init__(self, length: int, mean: Sequence[float]) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"cutout length must be >= 1 pixel, got {length}")
        self.length = int(length)
        self.fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8).view(-1, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))
        half = self.length // 2
        image = image.clone()
        image[..., max(y - half, 0):min(y + half, height), max(x - half, 0):min(x + half, width)] = \
            self.fill[: image.shape[-3]]
        return image


def file_transform(train: bool, size: int = 224, resize: int = 256, color_jitter: float = 0.0,
                   crop: str = "random_resized", cutout: int = 0,
                   mean: Sequence[float] = IMAGENET_MEAN) -> v2.Compose:
    """Per-image transforms on uint8 tensors; normalisation happens later, batched.

    ImageNet-style for large images, `crop="random_resized"`: train: random resized crop to `size` and
    horizontal flip (+ optional colour jitter); eval: resize the short side to `resize`, centre crop `size`.
    `crop="resize_centre"`: resize to `resize` x `resize` (aspect ratio not kept) and centre crop `size`, for
    training and evaluation alike, no flip (the Drainage code's Clothing1M transform). `cutout` > 0 adds
    Cutout of that side length to training. CIFAR-style for small images (size <= 64, e.g. Animal-10N, Red
    Mini-ImageNet at 32 px): resize to `size`, then for training a random crop with size/8 padding and a flip.
    """
    if crop not in ("random_resized", "resize_centre"):
        raise ValueError(f"unknown crop {crop!r} for image files (data.source_kwargs.crop): use random_resized "
                         "or resize_centre")
    if size <= 64:
        steps: list[nn.Module] = [v2.Resize((size, size), antialias=True)]
        if train:
            steps += [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()]
    elif crop == "resize_centre":
        steps = [v2.Resize((resize, resize), antialias=True), v2.CenterCrop(size)]
    elif train:
        steps = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
        if color_jitter:
            steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, hue=min(color_jitter, 0.5) / 2))
    else:
        steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    if train and cutout:
        steps.append(Cutout(cutout, mean))
    return v2.Compose(steps)


BAD_IMAGE_MODES = ("stop", "skip")


def check_listed_files(dataset: str, root: Path, files: Sequence[str], listed_in: Path) -> None:
    """Refuse a file list naming images that are not on disk, before training rather than mid-epoch.

    One stat per file; the message counts the missing ones and shows the first few.
    """
    base = str(root)
    missing = [f for f in files if not os.path.isfile(os.path.join(base, f))]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise MissingImagesError(
            f"{dataset}: {len(missing)} of {len(files)} images listed in {listed_in} are missing below {root} "
            f"(first: {shown}). Expected every listed path, relative to {root}, to be an image file. To fix: copy "
            "the missing images there (an incomplete download or extraction?), or remove their lines from the list."
        )


def _short_reason(exc: Exception) -> str:
    """The decoder's message without torchvision's C++ source location, or the exception's type."""
    return re.sub(r"^.*\.cpp:\d+, ", "", str(exc).strip()) or type(exc).__name__


class FileDataset(Dataset):
    """(image uint8 CHW, label, index, clean label) decoded from `root / files[i]` on access (RGB, or
    grey for OOD images shown to a grey-scale model) by Pillow, at the reduced JPEG resolution the
    transform's crop allows (decode.DraftDecoder).

    An image that cannot be decoded stops the run with a BadImageError naming it (`bad_images="stop"`), or,
    with `bad_images="skip"`, is replaced by the next decodable sample (deterministic: the same replacement
    every time), logged once per process and appended to `bad_images_record`, a text file shared by the
    DataLoader worker processes (they cannot return the list otherwise).
    """

    def __init__(self, root: Path, files: Sequence[str], labels: np.ndarray, clean: np.ndarray,
                 index: np.ndarray, transform: v2.Compose, grey: bool = False) -> None:
        self.root = Path(root)
        self.files = list(files)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.clean = torch.from_numpy(np.asarray(clean, dtype=np.int64))
        self.index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        self.transform = transform
        # Decodes each file at the resolution its transform's crop needs (PIL's reduced-size JPEG decoding).
        self.decoder = DraftDecoder(transform, "L" if grey else "RGB")
        self.views = 1  # > 1: each sample is a tuple of independently transformed views (DivideMix, SimCLR)
        self.bad_images = "stop"  # or "skip" (data.bad_images; set by NoisyLabelDataModule)
        self.augment_seed = 0  # seeds each training sample's augmentation with its epoch and index
        self.bad_images_record: Path | None = None
        self._decoded = 0  # images decoded by this process, for the error message
        self._skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`key`: an index, or (epoch, index) from a keyed EpochPermutationSampler (training), whose
        augmentation is then seeded by (augment_seed, epoch, index) alone: the same in a resumed run and
        whichever worker process draws it."""
        epoch, i = key if isinstance(key, tuple) else (None, key)
        with self._sample_rng(epoch, i):  # the crop box is drawn before decoding (decode.DraftDecoder)
            views, j = self._load(i)
        return (views[0] if self.views == 1 else tuple(views)), self.labels[j], self.index[j], self.clean[j]

    @contextlib.contextmanager
    def _sample_rng(self, epoch: int | None, i: int) -> Iterator[None]:
        if epoch is None:  # not from a keyed sampler: the process's own random stream
            yield
            return
        in_main_process = get_worker_info() is None
        with torch.random.fork_rng(devices=[], enabled=in_main_process):  # leave the training RNG alone
            # The CPU generator only: the transforms draw from it alone. torch.manual_seed would also seed every
            # accelerator's generator, clobbering the training's CUDA stream (fork_rng restores only the CPU's),
            # and in a process without an initialised CUDA it queues that seeding with a formatted stack trace,
            # 0.1-0.3 ms per sample (benchmarks/README.md, "Image-file pipeline").
            torch.default_generator.manual_seed(epoch_seed(self.augment_seed, epoch, i))
            yield

    def _load(self, i: int) -> tuple[list[torch.Tensor], int]:
        """The views of sample `i` and `i`; when skipping bad images, those of the first decodable sample from
        `i` on."""
        for step in range(len(self.files)):
            j = (i + step) % len(self.files)
            path = self.root / self.files[j]
            try:
                views = self.decoder(str(path), self.views)
            except (RuntimeError, OSError, SyntaxError, Image.DecompressionBombError) as exc:  # torchvision.io, PIL
                if self.bad_images != "skip":
                    raise BadImageError(
                        f"{path}: cannot decode this image ({_short_reason(exc)}); this data-loading process had "
                        f"read {self._decoded} images before it. Expected a complete image file (JPEG, PNG, WebP, "
                        "GIF, BMP, ...); this one may be incomplete or truncated. To fix: replace it with an intact "
                        "copy (re-download or re-extract the dataset), remove it from the dataset, or set "
                        "data.bad_images=skip to train without it (each skipped file is logged and listed)."
                    ) from None
                self._skip(path, _short_reason(exc))
                continue
            self._decoded += 1
            return views, j
        raise BadImageError(f"{self.root}: none of the {len(self.files)} images of this set can be decoded (the "
                            "first one is logged above); data.bad_images=skip cannot replace them. To fix: check "
                            "the dataset's files, re-download or re-extract it.")

    def _skip(self, path: Path, reason: str) -> None:
        """Log and record a bad image once per process."""
        if str(path) in self._skipped:
            return
        self._skipped.add(str(path))
        log.warning("data.bad_images=skip: cannot decode %s (%s); using the next image instead", path, reason)
        if self.bad_images_record is not None:
            with open(self.bad_images_record, "a") as f:
                f.write(f"{path}\n")


@dataclass(frozen=True)
class FileListSource:
    """A labelled dataset of image files: paths relative to `root`, with integer labels.

    Has the interface of ImageSource that NoisyLabelDataModule uses; images are decoded per sample by
    DataLoader workers (data.num_workers) and normalised on the device.
    """

    name: str
    root: Path
    train_files: list[str]
    train_labels: np.ndarray
    test_files: list[str]
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    val_files: list[str] | None = None
    val_labels: np.ndarray | None = None
    extra_tests: dict[str, tuple[Path, list[str], np.ndarray]] = field(default_factory=dict)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    image_size: int = 224
    color_jitter: float = 0.0
    crop: str = "random_resized"  # or "resize_centre" (see file_transform)
    cutout: int = 0               # > 0: Cutout of this side length in training
    real_noise: bool = False  # the training labels carry the dataset's own (unknown) noise

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def extra_test_sets(self) -> dict[str, np.ndarray]:
        return {name: labels for name, (_, _, labels) in self.extra_tests.items()}

    def noise_images(self, positions: np.ndarray) -> None:
        """Pixels are not loaded up front for file datasets; noise models that need them refuse."""
        return None

    def dataset(self, split: str, positions: np.ndarray, labels: np.ndarray, clean: np.ndarray,
                index: np.ndarray | None = None, augment: bool = False) -> FileDataset:
        if split in self.extra_tests:
            root, files = self.extra_tests[split][:2]
        else:
            root, files = self.root, {"train": self.train_files, "test": self.test_files, "val": self.val_files}[split]
        transform = file_transform(augment, self.image_size, color_jitter=self.color_jitter if augment else 0.0,
                                   crop=self.crop, cutout=self.cutout, mean=self.mean)
        return FileDataset(root, [files[p] for p in positions], labels, clean,
                           np.asarray(positions if index is None else index), transform)
