"""Loaders for the in-memory datasets: digits (offline default), MNIST, CIFAR-10, CIFAR-100.

Each returns an `ImageSource` of uint8 arrays. MNIST and CIFAR are read from torchvision's on-disk
layouts; files already on disk are read as they are (no checksum of the original archive), so
re-encoded or re-packed copies work.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from noisylab.data.errors import DatasetNotFoundError
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


def _read_idx(path: Path) -> np.ndarray:
    """Read an (uncompressed or .gz) IDX file, the format MNIST ships in."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(root: str | Path, download: bool = False) -> ImageSource:
    """MNIST from torchvision's layout: ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    raw = Path(root) / "MNIST" / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    if download and any(_find(raw, s) is None for s in stems):
        from torchvision.datasets import MNIST

        MNIST(str(root), train=True, download=True)
    files = [_find(raw, s) for s in stems]
    if any(f is None for f in files):
        raise DatasetNotFoundError(
            "mnist",
            raw,
            "  <data.root>/MNIST/raw/train-images-idx3-ubyte  (and train-labels-idx1-ubyte,\n"
            "  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz versions also work)",
            "set data.download=true on a machine with network access",
        )
    train_x, train_y, test_x, test_y = (_read_idx(f) for f in files)  # type: ignore[arg-type]
    return ImageSource(
        name="mnist",
        train_images=np.ascontiguousarray(train_x[:, None]),
        train_labels=train_y.astype(np.int64),
        test_images=np.ascontiguousarray(test_x[:, None]),
        test_labels=test_y.astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
    )


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

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch[label_key], dtype=np.int64)


def _read_cifar_meta(path: Path, key: str) -> tuple[str, ...]:
    with open(path, "rb") as f:
        meta = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    return tuple(meta[key])


def load_cifar10(root: str | Path, download: bool = False) -> ImageSource:
    """CIFAR-10 from the python-version layout: ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}."""
    folder = Path(root) / "cifar-10-batches-py"
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
    train = [_read_cifar_batch(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(folder / "test_batch", "labels")
    meta = folder / "batches.meta"
    classes = _read_cifar_meta(meta, "label_names") if meta.is_file() else CIFAR10_CLASSES
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


def load_cifar100(root: str | Path, download: bool = False) -> ImageSource:
    """CIFAR-100 (fine labels) from the python-version layout: ROOT/cifar-100-python/{train,test,meta}."""
    folder = Path(root) / "cifar-100-python"
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
    train_x, train_y = _read_cifar_batch(folder / "train", "fine_labels")
    test_x, test_y = _read_cifar_batch(folder / "test", "fine_labels")
    meta = folder / "meta"
    classes = _read_cifar_meta(meta, "fine_label_names") if meta.is_file() else tuple(str(i) for i in range(100))
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


def load_svhn(root: str | Path, download: bool = False) -> ImageSource:
    """SVHN (cropped digits) from torchvision's layout: ROOT/{train_32x32.mat, test_32x32.mat}; label 10 is 0."""
    from scipy.io import loadmat

    root = Path(root)
    files = [root / "train_32x32.mat", root / "test_32x32.mat"]
    if download and not all(f.is_file() for f in files):
        from torchvision.datasets import SVHN

        for split in ("train", "test"):
            SVHN(str(root), split=split, download=True)
    if not all(f.is_file() for f in files):
        raise DatasetNotFoundError("svhn", root, "  <data.root>/train_32x32.mat, test_32x32.mat (SVHN format 2)",
                                   "set data.download=true on a machine with network access")
    splits = []
    for f in files:
        mat = loadmat(f)
        images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
        splits.append((images, np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10))
    (train_x, train_y), (test_x, test_y) = splits
    return ImageSource(name="svhn", train_images=train_x, train_labels=train_y, test_images=test_x,
                       test_labels=test_y, class_names=tuple(str(d) for d in range(10)),
                       mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970))


def _load_mnist_like(name: str, folder: str, root: str | Path, download: bool, torchvision_class: str,
                     mean: float, std: float) -> ImageSource:
    """Datasets in MNIST's IDX layout under ROOT/<folder>/raw (FashionMNIST, KMNIST)."""
    raw = Path(root) / folder / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if download and any(_find(raw, s) is None for s in stems):
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
    files = [_find(raw, s) for s in stems]
    if any(f is None for f in files):
        layout = f"  <data.root>/{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte (.gz also works)"
        raise DatasetNotFoundError(name, raw, layout, "set data.download=true on a machine with network access")
    train_x, train_y, test_x, test_y = (_read_idx(f) for f in files)  # type: ignore[arg-type]
    return ImageSource(name=name, train_images=np.ascontiguousarray(train_x[:, None]),
                       train_labels=train_y.astype(np.int64), test_images=np.ascontiguousarray(test_x[:, None]),
                       test_labels=test_y.astype(np.int64), class_names=tuple(str(d) for d in range(10)),
                       mean=(mean,), std=(std,))


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
