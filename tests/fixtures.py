"""Tiny datasets written in the exact on-disk formats users download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _pixels(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Images whose mean brightness depends on the label, so a model can learn something."""
    base = rng.integers(0, 60, size=(len(labels), 3072))
    return (base + (labels[:, None] * 7) % 190).astype(np.uint8)


def write_cifar100(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """<root>/cifar-100-python/{train,test,meta}: pickled dicts with 'data' (N, 3072) uint8 rows in CHW
    order, 'fine_labels', 'coarse_labels', as in the official python-version archive."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        rng.shuffle(fine)
        batch = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{name} fixture",
                 "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                 "data": _pixels(rng, fine)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)],
                     "coarse_label_names": [f"super_{i}" for i in range(20)]}, f, protocol=2)
    return folder


def write_cifar10(root: Path, n_per_batch: int = 100, n_test: int = 100, seed: int = 0) -> Path:
    """<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} in the official layout."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        labels = rng.integers(0, 10, size=n)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": _pixels(rng, labels),
                 "filenames": [f"{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_vis": 3072, "num_cases_per_batch": n_per_batch},
                    f, protocol=2)
    return folder


def write_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, uncompressed IDX files."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())
    return raw


def _jpeg(path: Path, rng: np.random.Generator, label: int, size: tuple[int, int] = (40, 48)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (rng.integers(0, 80, size=(*size, 3)) + label * 12).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_clothing1m(root: Path, n_train: int = 56, n_val: int = 28, n_test: int = 28, seed: int = 0) -> Path:
    """<root>/clothing1m/annotations/{noisy_train,clean_val,clean_test}.txt listing 'images/<d>/<f>.jpg label'."""
    rng = np.random.default_rng(seed)
    base = root / "clothing1m"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for name, n in (("noisy_train", n_train), ("clean_val", n_val), ("clean_test", n_test)):
        lines = []
        for i in range(n):
            label = i % 14
            rel = f"images/{i % 10}/{name}_{i}.jpg"
            _jpeg(base / rel, rng, label)
            lines.append(f"{rel} {label}")
        (base / "annotations" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return base


def write_webvision(root: Path, n_train: int = 120, n_val: int = 60, num_classes: int = 60, seed: int = 0,
                    imagenet_per_class: int = 1) -> tuple[Path, Path]:
    """<root>/webvision/{info/*.txt, google/, val_images_256/} and <root>/imagenet/val/<wnid>/*.JPEG."""
    rng = np.random.default_rng(seed)
    base, imagenet = root / "webvision", root / "imagenet"
    (base / "info").mkdir(parents=True, exist_ok=True)
    wnids = [f"n{10000000 + c}" for c in range(num_classes)]
    (base / "info" / "synsets.txt").write_text("\n".join(f"{w} class {c}" for c, w in enumerate(wnids)) + "\n")
    train, val = [], []
    for i in range(n_train):
        label = i % num_classes
        rel = f"google/q{label:04d}/{i}.jpg"
        _jpeg(base / rel, rng, label % 20)
        train.append(f"{rel} {label}")
    for i in range(n_val):
        label = i % num_classes
        _jpeg(base / "val_images_256" / f"val_{i}.jpg", rng, label % 20)
        val.append(f"val_{i}.jpg {label}")
    (base / "info" / "train_filelist_google.txt").write_text("\n".join(train) + "\n")
    (base / "info" / "val_filelist.txt").write_text("\n".join(val) + "\n")
    for c, wnid in enumerate(wnids):
        for k in range(imagenet_per_class):
            _jpeg(imagenet / "val" / wnid / f"ILSVRC2012_val_{c:05d}{k}.JPEG", rng, c % 20)
    return base, imagenet


def write_image_folder(root: Path, name: str = "imagenet_folder", classes: int = 3, per_class: int = 6,
                       seed: int = 0) -> Path:
    """<root>/<name>/{train,val}/<class>/<i>.jpg"""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", per_class // 2)):
        for c in range(classes):
            for i in range(n):
                _jpeg(root / name / split / f"class_{c}" / f"{i}.jpg", rng, c)
    return root / name


def write_svhn(root: Path, n: int = 30, seed: int = 0) -> Path:
    """<root>/{train,test}_32x32.mat in SVHN's format 2: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        y = rng.integers(1, 11, size=(n, 1))
        savemat(root / f"{split}_32x32.mat", {"X": rng.integers(0, 256, size=(32, 32, 3, n)).astype(np.uint8), "y": y})
    return root


def write_animal10n(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> Path:
    """<root>/animal10n/{training,testing}/<label>_<id>.jpg (64x64)."""
    rng = np.random.default_rng(seed)
    for split, n in (("training", n_train), ("testing", n_test)):
        for i in range(n):
            _jpeg(root / "animal10n" / split / f"{i % 10}_{i:05d}.jpg", rng, i % 10, size=(64, 64))
    return root / "animal10n"


def write_red_mini_imagenet(root: Path, noise_rate: float = 0.4, n_train: int = 40, n_test: int = 20,
                            seed: int = 0) -> Path:
    """<root>/mini-imagenet/{split/red_noise_nl_<rate>, split/clean_validation, all_images/, validation/}."""
    rng = np.random.default_rng(seed)
    base = root / "mini-imagenet"
    (base / "split").mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for i in range(n_train):
        _jpeg(base / "all_images" / f"{i:08x}.jpg", rng, i % 20, size=(84, 84))
        train.append(f"{i:08x}.jpg {i % 100}")
    for i in range(n_test):
        _jpeg(base / "validation" / f"n0{i:07d}.JPEG", rng, i % 20, size=(84, 84))
        test.append(f"n0{i:07d}.JPEG {i % 100}")
    (base / "split" / f"red_noise_nl_{noise_rate}").write_text("\n".join(train) + "\n")
    (base / "split" / "clean_validation").write_text("\n".join(test) + "\n")
    return base
