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
