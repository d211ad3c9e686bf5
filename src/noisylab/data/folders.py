"""Loaders for datasets of image files, in the layouts they are downloaded in.

Each returns a FileListSource: file lists and labels are read up front (fast), pixels per sample by
the DataLoader workers. Real-noise datasets (Clothing1M, WebVision) carry their noise in their labels:
their training labels are "clean" as far as noisylab's bookkeeping goes, and `noise=none` is their
default.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from noisylab.data.errors import BadDataFileError, DatasetNotFoundError, data_root
from noisylab.data.files import FileListSource, check_listed_files

CLOTHING1M_CLASSES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket", "Down Coat", "Suit",
    "Shawl", "Dress", "Vest", "Underwear",
)  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG"}


WEBVISION_CLASSES = 1000  # WebVision 1.0; mini-WebVision keeps the first 50
ANIMAL10N_CLASSES = 10
RED_MINI_IMAGENET_CLASSES = 100
LIST_FIX = "correct or remove that line, or re-download the dataset's list files"


def read_file_list(path: Path, num_classes: int | None = None,
                   keep_below: int | None = None) -> tuple[list[str], np.ndarray]:
    """Lines "relative/path.jpg label" -> (paths, labels); labels >= keep_below are skipped (mini-WebVision's
    first classes of WebVision's 1000).

    A line that is not a path and an integer label in 0..num_classes-1 is refused with its line number, as
    is a list without any entries.
    """
    expected = "lines 'relative/path label' with an integer label" + (
        f" 0..{num_classes - 1}" if num_classes is not None else " >= 0")
    files, labels = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not re.fullmatch(r"-?[0-9]+", parts[1]):
                raise BadDataFileError.about(f"{path}:{number}", f"got {line.strip()!r}", expected, LIST_FIX)
            label = int(parts[1])
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise BadDataFileError.about(f"{path}:{number}", f"label {label} is out of range", expected,
                                             LIST_FIX)
            if keep_below is None or label < keep_below:
                files.append(parts[0].lstrip("/"))
                labels.append(label)
    if not files:
        kept = f" with a label below {keep_below}" if keep_below is not None else ""
        raise BadDataFileError.about(path, f"lists no images{kept}", expected,
                                     "re-download the dataset's list files")
    return files, np.asarray(labels, dtype=np.int64)


def _require(name: str, root: Path, files: list[Path], layout: str) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DatasetNotFoundError(name, missing[0].parent, layout)


def load_clothing1m(root: str | Path, download: bool = False, crop: str = "random_resized",
                    cutout: int = 0) -> FileListSource:
    """Clothing1M: ROOT/annotations/{noisy_train,clean_val,clean_test}.txt with "images/.../x.jpg label"
    lines (paths relative to ROOT), 14 classes. The clean validation set is the official one. `crop` and
    `cutout` choose the training transform (see files.file_transform; the Drainage presets use the
    reference's resize_centre with Cutout 112)."""
    root = data_root(root, "clothing1m") / "clothing1m"
    lists = [root / "annotations" / f for f in ("noisy_train.txt", "clean_val.txt", "clean_test.txt")]
    _require("clothing1m", root, lists,
             "  <data.root>/clothing1m/annotations/noisy_train.txt, clean_val.txt, clean_test.txt\n"
             "  (lines 'images/<dir>/<file>.jpg <label 0-13>') and the images they name under <data.root>/clothing1m/")
    (train_files, train_labels), (val_files, val_labels), (test_files, test_labels) = (
        read_file_list(f, len(CLOTHING1M_CLASSES)) for f in lists)
    for files, listed_in in zip((train_files, val_files, test_files), lists, strict=True):
        check_listed_files("clothing1m", root, files, listed_in)
    return FileListSource(name="clothing1m", root=root, train_files=train_files, train_labels=train_labels,
                          test_files=test_files, test_labels=test_labels, class_names=CLOTHING1M_CLASSES,
                          val_files=val_files, val_labels=val_labels, real_noise=True, crop=crop, cutout=cutout)


def load_webvision(root: str | Path, download: bool = False, num_classes: int = 50,
                   imagenet_root: str | Path | None = None) -> FileListSource:
    """Mini-WebVision: the first `num_classes` classes of WebVision 1.0's Google subset.

    ROOT/webvision/info/{train_filelist_google.txt, val_filelist.txt} (training paths relative to
    ROOT/webvision, validation files under ROOT/webvision/val_images_256/); class names from
    info/synsets.txt when present. With `imagenet_root`, the ILSVRC12 validation images of the same classes
    (IMAGENET_ROOT/val/<wnid>/*.JPEG, wnids from info/synsets.txt) are a second test set, "ilsvrc12".
    """
    root = data_root(root, "webvision") / "webvision"
    info = root / "info"
    _require("webvision", root, [info / "train_filelist_google.txt", info / "val_filelist.txt"],
             "  <data.root>/webvision/info/train_filelist_google.txt, val_filelist.txt (and synsets.txt),\n"
             "  <data.root>/webvision/google/<query>/<file>.jpg, <data.root>/webvision/val_images_256/<file>.jpg")
    train_files, train_labels = read_file_list(info / "train_filelist_google.txt", WEBVISION_CLASSES, num_classes)
    val_files, val_labels = read_file_list(info / "val_filelist.txt", WEBVISION_CLASSES, num_classes)
    val_files = [f"val_images_256/{f}" for f in val_files]
    check_listed_files("webvision", root, train_files, info / "train_filelist_google.txt")
    check_listed_files("webvision", root, val_files, info / "val_filelist.txt")
    synsets_file = info / "synsets.txt"
    synsets = synsets_file.read_text().split("\n")[:num_classes] if synsets_file.is_file() else []
    wnids = [line.split()[0] for line in synsets if line.strip()]
    class_names = tuple(" ".join(line.split()[1:]) or line for line in synsets if line.strip())
    if len(class_names) != num_classes:
        class_names = tuple(str(i) for i in range(num_classes))
    extra = {}
    if imagenet_root is not None:
        extra["ilsvrc12"] = _imagenet_val(Path(imagenet_root), wnids, num_classes)
    return FileListSource(name="webvision", root=root, train_files=train_files, train_labels=train_labels,
                          test_files=val_files, test_labels=val_labels, class_names=class_names,
                          extra_tests=extra, real_noise=True, color_jitter=0.4)


def _imagenet_val(imagenet_root: Path, wnids: list[str], num_classes: int) -> tuple[Path, list[str], np.ndarray]:
    folder = imagenet_root / "val"
    if len(wnids) < num_classes:
        raise DatasetNotFoundError("webvision (ILSVRC12 class ids)", imagenet_root,
                                   "  <data.root>/webvision/info/synsets.txt: one WordNet id per line, in class order")
    files, labels = [], []
    for label, wnid in enumerate(wnids[:num_classes]):
        class_dir = folder / wnid
        if not class_dir.is_dir():
            raise DatasetNotFoundError("ILSVRC12 validation", class_dir,
                                       "  <data.imagenet_root>/val/<wnid>/<file>.JPEG (ImageNet's validation set "
                                       "sorted into one folder per class)")
        for path in sorted(p for p in class_dir.iterdir() if p.suffix in IMAGE_SUFFIXES):
            files.append(f"{wnid}/{path.name}")
            labels.append(label)
    return folder, files, np.asarray(labels, dtype=np.int64)


def _scan(folder: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted(p for p in (folder / name).rglob("*") if p.suffix in IMAGE_SUFFIXES):
            files.append(str(path.relative_to(folder)))
            labels.append(label)
    return files, np.asarray(labels, dtype=np.int64)


def load_image_folder(root: str | Path, download: bool = False, name: str = "imagenet_folder",
                      train_dir: str = "train", test_dir: str = "val", image_size: int = 224) -> FileListSource:
    """An ImageNet-style folder: ROOT/<name>/<train_dir>/<class>/*.jpg and ROOT/<name>/<test_dir>/<class>/*.jpg;
    classes are the sorted sub-folder names of the training folder."""
    base = data_root(root, name) / name
    train, test = base / train_dir, base / test_dir
    if not train.is_dir() or not test.is_dir():
        raise DatasetNotFoundError(name, base, f"  <data.root>/{name}/{train_dir}/<class>/<image>\n"
                                               f"  <data.root>/{name}/{test_dir}/<class>/<image>")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    train_files, train_labels = _scan(train, classes)
    test_files, test_labels = _scan(test, classes)
    if not len(train_files):
        raise DatasetNotFoundError(name, train, f"  image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in class folders")
    return FileListSource(name=name, root=base, train_files=[f"{train_dir}/{f}" for f in train_files],
                          train_labels=train_labels, test_files=[f"{test_dir}/{f}" for f in test_files],
                          test_labels=test_labels, class_names=tuple(classes), image_size=image_size)


def load_animal10n(root: str | Path, download: bool = False) -> FileListSource:
    """ANIMAL-10N (Song et al. 2019): ROOT/animal10n/{training,testing}/<label>_<id>.jpg, 64x64 images of
    10 animals with real label noise (~8%); the label is the file name's prefix."""
    base = data_root(root, "animal10n") / "animal10n"
    splits = []
    for split in ("training", "testing"):
        folder = base / split
        files = sorted(p.name for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise DatasetNotFoundError("animal10n", folder, "  <data.root>/animal10n/training/<label>_<id>.jpg\n"
                                                            "  <data.root>/animal10n/testing/<label>_<id>.jpg")
        labels = np.asarray([_animal10n_label(folder / name) for name in files], dtype=np.int64)
        splits.append(([f"{split}/{name}" for name in files], labels))
    (train_files, train_labels), (test_files, test_labels) = splits
    names = ("cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster", "guinea pig")
    return FileListSource(name="animal10n", root=base, train_files=train_files, train_labels=train_labels,
                          test_files=test_files, test_labels=test_labels, class_names=names, image_size=64,
                          real_noise=True)


def _animal10n_label(path: Path) -> int:
    """The label in an ANIMAL-10N file name, "<label>_<id>.jpg"; anything else is refused."""
    prefix = path.name.split("_", 1)[0]
    if not re.fullmatch(r"[0-9]+", prefix) or int(prefix) >= ANIMAL10N_CLASSES:
        raise BadDataFileError.about(path, f"its name does not start with a label 0..{ANIMAL10N_CLASSES - 1}",
                                     "file names '<label>_<id>.jpg' with the label 0-9",
                                     "rename or remove the file, or re-extract the dataset")
    return int(prefix)


def red_split_name(noise_rate: float) -> str:
    """The split file of a noise level: 0.4 -> red_noise_nl_0.4, 0.05 -> red_noise_nl_0.05."""
    text = f"{noise_rate:.2f}"
    return f"red_noise_nl_{text[:-1] if text.endswith('0') else text}"


def load_red_mini_imagenet(root: str | Path, download: bool = False, noise_rate: float = 0.4,
                           image_size: int = 32) -> FileListSource:
    """Red Mini-ImageNet (Controlled Noisy Web Labels, Jiang et al. 2020): 100 classes, web label noise at a
    controlled level. ROOT/mini-imagenet/split/red_noise_nl_<rate> and split/clean_validation list
    "file label"; training images in all_images/, test images in validation/ (or all_images/). Images are
    resized to `image_size` (32 in InstanceGM and FaMUS)."""
    base = data_root(root, "red_mini_imagenet") / "mini-imagenet"
    split = base / "split" / red_split_name(noise_rate)
    _require("red_mini_imagenet", base, [split, base / "split" / "clean_validation"],
             f"  <data.root>/mini-imagenet/split/{split.name}, clean_validation\n"
             "  <data.root>/mini-imagenet/all_images/<file>, <data.root>/mini-imagenet/validation/<file>")
    train_files, train_labels = read_file_list(split, RED_MINI_IMAGENET_CLASSES)
    test_files, test_labels = read_file_list(base / "split" / "clean_validation", RED_MINI_IMAGENET_CLASSES)
    test_dir = "validation" if (base / "validation").is_dir() else "all_images"
    train_files = [f"all_images/{f}" for f in train_files]
    test_files = [f"{test_dir}/{f}" for f in test_files]
    check_listed_files("red_mini_imagenet", base, train_files, split)
    check_listed_files("red_mini_imagenet", base, test_files, base / "split" / "clean_validation")
    return FileListSource(name="red_mini_imagenet", root=base, train_files=train_files,
                          train_labels=train_labels, test_files=test_files,
                          test_labels=test_labels, class_names=tuple(str(i) for i in range(RED_MINI_IMAGENET_CLASSES)),
                          image_size=image_size, real_noise=True)
