"""Loaders for the in-memory datasets: digits (offline default), MNIST, CIFAR-10, CIFAR-100.

Each returns an `ImageSource` of uint8 arrays. MNIST and CIFAR are read from torchvision's on-disk
layouts; files already on disk are read as they are (no checksum of the original archive), so
re-encoded or re-packed copies work.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from noisylab.data.errors import (
    REDOWNLOAD,
    BadDataFileError,
    DatasetNotFoundError,
    RefusedPickleError,
    check_labels,
    data_root,
)
from noisylab.data.source import ImageSource

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_digits(root: str | Path | None = None, download: bool = False, test_fraction: float = 0.2,
                split_seed: int = 0) -> ImageSource:
    """scikit-learn's 8x8 digits (1797 images, ships with scikit-learn: works offline; `root` and
    `download` are accepted for a uniform interface and not needed).

    The dataset has no official test split; a fixed stratified split (`split_seed`) makes one, so the
    test set is the same in every run.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return ImageSource(
        name="digits",
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.3,),
        std=(0.4,),
    )


MNIST_CLASSES = 10
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_file(path: Path) -> bytes:
    """The bytes of `path`, decompressed if its name ends in .gz; a damaged gzip file is refused."""
    with open(path, "rb") as f:
        if path.suffix != ".gz":
            return f.read()
        try:
            return gzip.GzipFile(fileobj=f).read()
        except (OSError, EOFError, zlib.error) as exc:
            raise BadDataFileError.about(path, f"is not a complete gzip file ({exc})",
                                         "a gzip-compressed IDX file, as in the dataset's download") from exc


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an (uncompressed or .gz) IDX file of unsigned bytes, the format MNIST ships in: the magic number
    0x000008<ndim> (0x08: uint8 values), one big-endian uint32 size per dimension, then exactly that many values.

    Anything else (an empty or truncated file, another magic number, more or fewer values than the header
    says) is refused instead of being reshaped into wrong images.
    """
    data = _read_file(path)
    header = 4 + 4 * ndim
    kind = "labels" if ndim == 1 else "images"
    expected = (f"an IDX {kind} file: magic number 0x0000080{ndim}, {ndim} big-endian uint32 sizes, then one "
                f"byte per value")
    if not data:
        raise BadDataFileError.about(path, "is empty", expected)
    if data[:2] == b"\x1f\x8b":
        raise BadDataFileError.about(path, "is gzip-compressed but its name does not end in .gz", expected,
                                     f"rename it to {path.name}.gz, or decompress it (gunzip)")
    if len(data) < header or data[:4] != bytes([0, 0, 8, ndim]):
        raise BadDataFileError.about(path, f"does not start with an IDX header (magic number 0x{data[:4].hex()}, "
                                           f"{len(data)} bytes)", expected)
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise BadDataFileError.about(
            path, f"its header says {' x '.join(map(str, shape))} = {size} values but it holds "
                  f"{len(data) - header} (a truncated or damaged file)", expected)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_split(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) images and int64 labels of one split, checked against each other and the 10 classes."""
    images, labels = _read_idx(images_file, 3), _read_idx(labels_file, 1).astype(np.int64)
    if len(images) != len(labels):
        raise BadDataFileError.about(
            labels_file, f"holds {len(labels)} labels but {images_file} holds {len(images)} images",
            "one label per image, in the same order", f"use image and label files of the same download; "
                                                      f"{REDOWNLOAD}")
    check_labels(labels_file, labels, MNIST_CLASSES, f"labels 0..{MNIST_CLASSES - 1}, one byte each")
    return np.ascontiguousarray(images[:, None]), labels


def _read_mnist_files(files: list[Path | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) from the four files in MNIST_STEMS order."""
    train_x, train_y = _read_mnist_split(files[0], files[1])  # type: ignore[arg-type]
    test_x, test_y = _read_mnist_split(files[2], files[3])  # type: ignore[arg-type]
    return train_x, train_y, test_x, test_y


def load_mnist(root: str | Path | None, download: bool = False) -> ImageSource:
    """MNIST from torchvision's layout: ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    raw = data_root(root, "mnist") / "MNIST" / "raw"
    if download and any(_find(raw, s) is None for s in MNIST_STEMS):
        from torchvision.datasets import MNIST

        MNIST(str(root), train=True, download=True)
    files = [_find(raw, s) for s in MNIST_STEMS]
    if any(f is None for f in files):
        raise DatasetNotFoundError(
            "mnist",
            raw,
            "  <data.root>/MNIST/raw/train-images-idx3-ubyte  (and train-labels-idx1-ubyte,\n"
            "  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz versions also work)",
            "set data.download=true on a machine with network access",
        )
    train_x, train_y, test_x, test_y = _read_mnist_files(files)
    return ImageSource(
        name="mnist",
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
    )


CIFAR_ROW = 3 * 32 * 32


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR python batches, which hold only dicts, lists, bytes and numpy arrays.

    Anything else in the file is refused instead of executed.
    """

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise RefusedPickleError(
            f"{self.path}: refused: the pickle contains code or object references ({module}.{name}), which a CIFAR "
            f"file never has, so nothing in it was run. Expected a CIFAR python-version file (a pickled dict of "
            f"arrays and lists). To fix: re-download the dataset (delete the file and run once with "
            f"data.download=true) from the official archive."
        )


def _read_pickle(path: Path) -> dict:
    """A CIFAR python-version file's dict (keys as str), read with the restricted unpickler."""
    expected = "a CIFAR python-version file: a pickled dict, as in cifar-10-python.tar.gz / cifar-100-python.tar.gz"
    with open(path, "rb") as f:
        try:
            content = _ArraysOnlyUnpickler(f, path).load()
        except RefusedPickleError:
            raise
        except Exception as exc:  # the unpickler raises many kinds on truncated or foreign bytes
            problem = "is empty" if path.stat().st_size == 0 else f"cannot be unpickled ({type(exc).__name__}: {exc})"
            raise BadDataFileError.about(path, f"{problem}; it is truncated, damaged or not a CIFAR file",
                                         expected) from exc
    if not isinstance(content, dict):
        raise BadDataFileError.about(path, f"holds a {type(content).__name__}, not a dict", expected)
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def _require_keys(path: Path, content: dict, keys: tuple[str, ...], expected: str) -> None:
    missing = [key for key in keys if key not in content]
    if missing:
        raise BadDataFileError.about(path, f"has no {', '.join(map(repr, missing))} entry (keys found: "
                                           f"{', '.join(map(repr, sorted(map(str, content)))) or 'none'})", expected)


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) images and int64 labels of one batch file.

    'data' must be a uint8 array of shape (N, 3072): rows of 1024 red, then green, then blue values (each
    plane row-major). Other shapes, such as (N, 32, 32, 3) images in HWC order, are refused: reshaping them
    would scramble the pixels.
    """
    expected = (f"a pickled dict with 'data', a uint8 array of shape (N, {CIFAR_ROW}) (per row the 1024 red, then "
                f"green, then blue values), and {label_key!r}, N integer labels 0..{num_classes - 1}")
    batch = _read_pickle(path)
    _require_keys(path, batch, ("data", label_key), expected)
    data, labels = batch["data"], np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        found = f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        fix = REDOWNLOAD
        if isinstance(data, np.ndarray) and data.shape[1:] == (32, 32, 3):
            fix += (", or convert your copy from HWC images: data = images.transpose(0, 3, 1, 2).reshape(N, 3072)"
                    " (uint8)")
        raise BadDataFileError.about(path, f"'data' is {found}", expected, fix)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise BadDataFileError.about(path, f"{label_key!r} holds {labels.size} values of type {labels.dtype} for "
                                           f"{len(data)} images", expected)
    labels = labels.astype(np.int64)
    check_labels(path, labels, num_classes, expected)
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar_meta(path: Path, key: str, num_classes: int) -> tuple[str, ...]:
    """The class names in a meta file; exactly `num_classes` of them (they set the number of classes)."""
    expected = f"a pickled dict whose {key!r} lists the {num_classes} class names"
    meta = _read_pickle(path)
    _require_keys(path, meta, (key,), expected)
    names = meta[key]
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        count = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise BadDataFileError.about(path, f"{key!r} holds {count} names", expected,
                                     f"{REDOWNLOAD}; or delete {path.name} (the standard names are used then)")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar10(root: str | Path | None, download: bool = False) -> ImageSource:
    """CIFAR-10 from the python-version layout: ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}."""
    folder = data_root(root, "cifar10") / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if download and not all((folder / n).is_file() for n in names):
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
    if not all((folder / n).is_file() for n in names):
        raise DatasetNotFoundError(
            "cifar10",
            folder,
            "  <data.root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch\n"
            "  (the 'CIFAR-10 python version' archive, cifar-10-python.tar.gz, extracted)",
            "set data.download=true on a machine with network access",
        )
    train = [_read_cifar_batch(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(folder / "test_batch", "labels", 10)
    meta = folder / "batches.meta"
    classes = _read_cifar_meta(meta, "label_names", 10) if meta.is_file() else CIFAR10_CLASSES
    return ImageSource(
        name="cifar10",
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_x,
        test_labels=test_y,
        class_names=classes,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )


def load_cifar100(root: str | Path | None, download: bool = False) -> ImageSource:
    """CIFAR-100 (fine labels) from the python-version layout: ROOT/cifar-100-python/{train,test,meta}."""
    folder = data_root(root, "cifar100") / "cifar-100-python"
    if download and not all((folder / n).is_file() for n in ("train", "test")):
        from torchvision.datasets import CIFAR100

        CIFAR100(str(root), train=True, download=True)
    if not all((folder / n).is_file() for n in ("train", "test")):
        raise DatasetNotFoundError(
            "cifar100",
            folder,
            "  <data.root>/cifar-100-python/train, test, meta\n"
            "  (the 'CIFAR-100 python version' archive, cifar-100-python.tar.gz, extracted)",
            "set data.download=true on a machine with network access",
        )
    train_x, train_y = _read_cifar_batch(folder / "train", "fine_labels", 100)
    test_x, test_y = _read_cifar_batch(folder / "test", "fine_labels", 100)
    meta = folder / "meta"
    classes = (_read_cifar_meta(meta, "fine_label_names", 100) if meta.is_file()
               else tuple(str(i) for i in range(100)))
    return ImageSource(
        name="cifar100",
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        class_names=classes,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    )


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) images and labels 0..9 of one SVHN .mat file (format 2 stores digit 0 as label 10)."""
    from scipy.io import loadmat

    expected = "SVHN format 2: 'X' uint8 of shape (32, 32, 3, N) and 'y' with N labels 1..10"
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError ... on damaged files
        raise BadDataFileError.about(path, f"cannot be read as a MATLAB file ({type(exc).__name__}: {exc})",
                                     expected) from exc
    _require_keys(path, mat, ("X", "y"), expected)
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.shape[:3] != (32, 32, 3) or x.ndim != 4 or y.dtype.kind not in "iuf" \
            or len(y) != x.shape[3] or not np.array_equal(y, np.round(y)):
        raise BadDataFileError.about(path, f"holds X {x.dtype} {x.shape} and y {y.dtype} ({len(y)} values)", expected)
    y = y.astype(np.int64)
    check_labels(path, y, 10, expected, first=1)
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y % 10


def load_svhn(root: str | Path | None, download: bool = False) -> ImageSource:
    """SVHN (cropped digits) from torchvision's layout: ROOT/{train_32x32.mat, test_32x32.mat}; label 10 is 0."""
    root = data_root(root, "svhn")
    files = [root / "train_32x32.mat", root / "test_32x32.mat"]
    if download and not all(f.is_file() for f in files):
        from torchvision.datasets import SVHN

        for split in ("train", "test"):
            SVHN(str(root), split=split, download=True)
    if not all(f.is_file() for f in files):
        raise DatasetNotFoundError("svhn", root, "  <data.root>/train_32x32.mat, test_32x32.mat (SVHN format 2)",
                                   "set data.download=true on a machine with network access")
    (train_x, train_y), (test_x, test_y) = (_read_svhn(f) for f in files)
    return ImageSource(name="svhn", train_images=train_x, train_labels=train_y, test_images=test_x,
                       test_labels=test_y, class_names=tuple(str(d) for d in range(10)),
                       mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970))


def _load_mnist_like(name: str, folder: str, root: str | Path | None, download: bool, torchvision_class: str,
                     mean: float, std: float) -> ImageSource:
    """Datasets in MNIST's IDX layout under ROOT/<folder>/raw (FashionMNIST, KMNIST)."""
    raw = data_root(root, name) / folder / "raw"
    if download and any(_find(raw, s) is None for s in MNIST_STEMS):
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
    files = [_find(raw, s) for s in MNIST_STEMS]
    if any(f is None for f in files):
        layout = f"  <data.root>/{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte (.gz also works)"
        raise DatasetNotFoundError(name, raw, layout, "set data.download=true on a machine with network access")
    train_x, train_y, test_x, test_y = _read_mnist_files(files)
    return ImageSource(name=name, train_images=train_x, train_labels=train_y, test_images=test_x,
                       test_labels=test_y, class_names=tuple(str(d) for d in range(10)), mean=(mean,), std=(std,))


def load_fashion_mnist(root: str | Path, download: bool = False) -> ImageSource:
    """Fashion-MNIST from torchvision's layout: ROOT/FashionMNIST/raw/*-ubyte."""
    return _load_mnist_like("fashion_mnist", "FashionMNIST", root, download, "FashionMNIST", 0.2860, 0.3530)


def load_kmnist(root: str | Path, download: bool = False) -> ImageSource:
    """Kuzushiji-MNIST from torchvision's layout: ROOT/KMNIST/raw/*-ubyte."""
    return _load_mnist_like("kmnist", "KMNIST", root, download, "KMNIST", 0.1918, 0.3483)


def load_photo_patches(root: str | Path | None = None, download: bool = False, num: int = 1000, size: int = 32,
                       seed: int = 0) -> ImageSource:
    """Grey patches cut from the two photographs that ship with scikit-learn (china.jpg, flower.jpg).

    Natural-image texture that is not a digit: an offline far-OOD set for `data=digits`. Patches are
    `size` pixels square at random positions, converted to grey; the OOD loader resizes them to the
    in-distribution shape. Their "labels" (the photo each came from) are not used.
    """
    from sklearn.datasets import load_sample_images

    luminance = np.array([0.299, 0.587, 0.114])
    photos = [np.asarray(img, dtype=np.float64) @ luminance for img in load_sample_images().images]
    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for i in range(num):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        patches.append(photo[y : y + size, x : x + size])
        labels.append(i % len(photos))
    images = np.round(np.stack(patches)).clip(0, 255).astype(np.uint8)[:, None]
    y = np.asarray(labels, dtype=np.int64)
    return ImageSource(name="photo_patches", train_images=images[:0], train_labels=y[:0], test_images=images,
                       test_labels=y, class_names=("china", "flower"), mean=(0.5,), std=(0.25,))
