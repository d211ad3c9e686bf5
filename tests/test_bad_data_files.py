"""Damaged, foreign or inconsistent dataset files are refused while the datamodule is built, with a message naming
the file, what is wrong, the expected format and the fix; nothing is dropped, truncated or reinterpreted.

Every fixture is written in the real on-disk format (IDX bytes, CIFAR pickles, npz, list files, JPEGs) and then
damaged the way a broken download, a hand-made conversion or a crafted file would be.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.cli import report_user_errors
from noisylab.data import NoisyLabelDataModule
from noisylab.data.errors import (
    BadDataFileError,
    BadImageError,
    DataRootNotSetError,
    MissingImagesError,
    RefusedPickleError,
)
from noisylab.data.folders import (
    load_animal10n,
    load_clothing1m,
    load_red_mini_imagenet,
    load_webvision,
    read_file_list,
)
from noisylab.data.source import ImageSource
from noisylab.data.sources import load_cifar10, load_cifar100, load_digits, load_fashion_mnist, load_mnist, load_svhn
from noisylab.noise import NoiseFromFile, NoNoise
from noisylab.noise.human import load_human_labels
from tests.conftest import compose_config
from tests.fixtures import (
    write_animal10n,
    write_cifar10,
    write_cifar100,
    write_clothing1m,
    write_mnist,
    write_red_mini_imagenet,
    write_svhn,
    write_webvision,
)


def _refused(error: type[Exception], call: Callable[[], object], *phrases: str | Path) -> str:
    """Run `call`; it must raise `error` (a user error the CLI prints) whose message holds every phrase."""
    with pytest.raises(error) as excinfo:
        call()
    message = str(excinfo.value)
    assert isinstance(excinfo.value, (ValueError, FileNotFoundError))
    for phrase in phrases:
        assert str(phrase) in message, f"{phrase!r} not in:\n{message}"
    return message


def _unpickle(path: Path) -> dict:
    """A fixture file we wrote ourselves (trusted), with the plain unpickler."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _repickle(path: Path, content: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def _idx_labels(labels: list[int]) -> bytes:
    return bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big") + bytes(labels)


# ---------------------------------------------------------------------------------- 1, 6: MNIST IDX
@pytest.mark.parametrize("bad_label", [10, 255])
def test_mnist_labels_out_of_range_are_refused(tmp_path: Path, bad_label: int) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    labels = raw / "train-labels-idx1-ubyte"
    values = list(labels.read_bytes()[8:])
    values[7] = bad_label
    labels.write_bytes(_idx_labels(values))
    _refused(BadDataFileError, lambda: load_mnist(tmp_path), labels, "outside 0..9", f"{bad_label} at position 7",
             "data.download=true")


def test_mnist_out_of_range_labels_stop_the_datamodule(tmp_path: Path) -> None:
    """Before: the datamodule silently dropped such samples (np.isin with the kept classes)."""
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx_labels([3] * 9 + [12]))
    dm = NoisyLabelDataModule("mnist", load_mnist, str(tmp_path), NoNoise(), val_size=5)
    _refused(BadDataFileError, dm.build, raw / "t10k-labels-idx1-ubyte", "outside 0..9")


def test_fashion_mnist_uses_the_same_checks(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx_labels([0] * 9 + [10]))
    raw.parent.rename(tmp_path / "FashionMNIST")
    _refused(BadDataFileError, lambda: load_fashion_mnist(tmp_path), "FashionMNIST/raw/t10k-labels-idx1-ubyte",
             "outside 0..9")


def test_mnist_images_and_labels_must_have_the_same_count(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx_labels([1] * 19))
    _refused(BadDataFileError, lambda: load_mnist(tmp_path), raw / "train-labels-idx1-ubyte",
             raw / "train-images-idx3-ubyte", "19 labels", "20 images", "one label per image")


def _gzip_all(raw: Path) -> None:
    for f in list(raw.iterdir()):
        with gzip.open(f.with_name(f.name + ".gz"), "wb") as out:
            out.write(f.read_bytes())
        f.unlink()


IDX_DAMAGE = {  # damage: (change, what the message says is wrong, the fix it names)
    "empty": (lambda b: b"", "is empty", "re-download"),
    "truncated": (lambda b: b[: len(b) // 2], "header says 20 x 28 x 28 = 15680 values but it holds 7832",
                  "re-download"),
    "trailing bytes": (lambda b: b + b"\0" * 5, "holds 15685", "re-download"),
    "header only": (lambda b: b[:10], "does not start with an IDX header", "re-download"),
    "wrong magic": (lambda b: bytes([0, 0, 8, 1]) + b[4:], "magic number 0x00000801", "re-download"),
    "garbage": (lambda b: b"<html>404 Not Found</html>", "does not start with an IDX header", "re-download"),
    "gzip without .gz": (gzip.compress, "is gzip-compressed but its name does not end in .gz",
                         "rename it to train-images-idx3-ubyte.gz"),
}


@pytest.mark.parametrize("damage", list(IDX_DAMAGE))
def test_damaged_idx_files_are_refused(tmp_path: Path, damage: str) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    images = raw / "train-images-idx3-ubyte"
    change, problem, fix = IDX_DAMAGE[damage]
    images.write_bytes(change(images.read_bytes()))
    _refused(BadDataFileError, lambda: load_mnist(tmp_path), images, problem, "magic number 0x00000803", fix)


@pytest.mark.parametrize(("damage", "phrase"), [
    ("not gzip", "is not a complete gzip file"),
    ("truncated gzip", "is not a complete gzip file"),
    ("truncated content", "header says 10 x 28 x 28"),
])
def test_damaged_gzip_idx_files_are_refused(tmp_path: Path, damage: str, phrase: str) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    _gzip_all(raw)
    images = raw / "t10k-images-idx3-ubyte.gz"
    data = images.read_bytes()
    if damage == "not gzip":
        images.write_bytes(gzip.decompress(data))
    elif damage == "truncated gzip":
        images.write_bytes(data[: len(data) // 2])
    else:
        images.write_bytes(gzip.compress(gzip.decompress(data)[:-100]))
    _refused(BadDataFileError, lambda: load_mnist(tmp_path), images, phrase, "re-download")


def test_valid_gzip_mnist_still_loads(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, n_train=20, n_test=10)
    _gzip_all(raw)
    assert load_mnist(tmp_path).train_images.shape == (20, 1, 28, 28)


# --------------------------------------------------------------------------- 2, 3, 7, 8: CIFAR pickles
@pytest.mark.parametrize(("writer", "loader", "victim", "key", "bad"), [
    (write_cifar10, load_cifar10, "data_batch_3", "labels", 10),
    (write_cifar10, load_cifar10, "test_batch", "labels", -1),
    (write_cifar100, load_cifar100, "train", "fine_labels", 100),
])
def test_cifar_labels_out_of_range_are_refused(tmp_path: Path, writer, loader, victim: str, key: str,
                                               bad: int) -> None:
    folder = writer(tmp_path)
    batch = _unpickle(folder / victim)
    batch[key][4] = bad
    _repickle(folder / victim, batch)
    _refused(BadDataFileError, lambda: loader(tmp_path), folder / victim, f"{bad} at position 4", "re-download")


def _cifar10_with(tmp_path: Path, **entries: object) -> Path:
    """A CIFAR-10 fixture whose data_batch_2 has `entries` replaced (None: removed)."""
    folder = write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    batch = _unpickle(folder / "data_batch_2")
    for key, value in entries.items():
        if value is None:
            del batch[key]
        else:
            batch[key] = value
    _repickle(folder / "data_batch_2", batch)
    return folder / "data_batch_2"


def test_cifar_hwc_images_are_refused_not_scrambled(tmp_path: Path) -> None:
    hwc = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    path = _cifar10_with(tmp_path, data=hwc)
    _refused(BadDataFileError, lambda: load_cifar10(tmp_path), path, "shape (10, 32, 32, 3)", "(N, 3072)",
             "transpose(0, 3, 1, 2)")


@pytest.mark.parametrize(("data", "phrase"), [
    (np.zeros((10, 3072), dtype=np.float32), "float32 array of shape (10, 3072)"),
    (np.zeros((10, 3072), dtype=np.int64), "int64 array"),
    (np.zeros((10, 3071), dtype=np.uint8), "shape (10, 3071)"),
    (np.zeros(30720, dtype=np.uint8), "shape (30720,)"),
    ([[0] * 3072] * 10, "'data' is list"),
])
def test_cifar_data_of_another_dtype_or_length_is_refused(tmp_path: Path, data: object, phrase: str) -> None:
    path = _cifar10_with(tmp_path, data=data)
    _refused(BadDataFileError, lambda: load_cifar10(tmp_path), path, phrase, "uint8 array of shape (N, 3072)")


@pytest.mark.parametrize(("entries", "phrase"), [
    ({"labels": None}, "has no 'labels' entry (keys found: 'batch_label', 'data', 'filenames')"),
    ({"data": None}, "has no 'data' entry"),
    ({"labels": [1] * 9}, "'labels' holds 9 values of type int64 for 10 images"),
    ({"labels": [1.5] * 10}, "of type float64"),
])
def test_cifar_batch_with_missing_or_inconsistent_entries_is_refused(tmp_path: Path, entries: dict,
                                                                     phrase: str) -> None:
    path = _cifar10_with(tmp_path, **entries)
    _refused(BadDataFileError, lambda: load_cifar10(tmp_path), path, phrase, "re-download")


@pytest.mark.parametrize(("content", "phrase"), [
    (b"", "is empty"),
    (b"garbage, not a pickle", "cannot be unpickled"),
    ("truncated", "cannot be unpickled"),
    (pickle.dumps([1, 2, 3], protocol=2), "holds a list, not a dict"),
])
def test_unreadable_cifar_files_are_refused(tmp_path: Path, content: bytes | str, phrase: str) -> None:
    folder = write_cifar100(tmp_path, n_train=100, n_test=100)
    path = folder / "test"
    path.write_bytes(path.read_bytes()[:5000] if content == "truncated" else content)
    _refused(BadDataFileError, lambda: load_cifar100(tmp_path), path, phrase, "CIFAR python-version file",
             "re-download")


def test_cifar_meta_with_another_number_of_names_is_refused(tmp_path: Path) -> None:
    """The meta file sets the number of classes; 11 names for CIFAR-10 would make an 11-class model."""
    folder = write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    _repickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(11)]})
    _refused(BadDataFileError, lambda: load_cifar10(tmp_path), folder / "batches.meta", "'label_names' holds 11 names",
             "10 class names")


def test_cifar_repacked_with_bytes_keys_still_loads(tmp_path: Path) -> None:
    """A copy re-pickled after loading with encoding='bytes' (keys b'data', b'labels') is the same data."""
    folder = write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    expected = load_cifar10(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _repickle(folder / name, {key.encode(): value for key, value in _unpickle(folder / name).items()})
    again = load_cifar10(tmp_path)
    np.testing.assert_array_equal(again.train_images, expected.train_images)
    np.testing.assert_array_equal(again.train_labels, expected.train_labels)


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        return (os.system, (f"touch {self.marker}",))


def test_crafted_cifar_pickle_is_a_user_error_naming_the_reference(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "data", n_per_batch=5, n_test=5)
    marker = tmp_path / "pwned"
    _repickle(folder / "data_batch_1", {"data": _RunsACommand(marker), "labels": [0]})
    message = _refused(RefusedPickleError, lambda: load_cifar10(tmp_path / "data"), folder / "data_batch_1",
                       "refused: the pickle contains code or object references", f"{os.system.__module__}.system",
                       "re-download the dataset")
    assert not marker.exists() and "\n" not in message


def test_crafted_cifar_n_file_is_a_user_error_naming_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": np.arange(3), "worse_label": _RunsACommand(tmp_path / "pwned")}, path)
    _refused(RefusedPickleError, lambda: load_human_labels(path), path, "refused: the file contains code",
             "system", "CIFAR-N release")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("labels", "phrase"), [
    ({"clean_label": np.arange(4), "worse_label": np.arange(4) * 0.5}, "'worse_label' is a float64 array"),
    ({"clean_label": np.arange(4), "worse_label": np.array([0, 1, 2, -1])}, "-1 at position 3"),
    ({"clean_label": np.arange(4), "worse_label": np.arange(3)}, "'clean_label' has 4 values"),
    ({"worse_label": np.arange(4)}, "holds no 'clean_label' array (found: 'worse_label')"),
])
def test_cifar_n_label_arrays_must_be_integer_labels_in_range(tmp_path: Path, labels: dict, phrase: str) -> None:
    """Before: float labels were truncated and a label -1 picked the last class."""
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save(labels, path)
    _refused(BadDataFileError, lambda: load_human_labels(path), path, phrase, "CIFAR-N release")


@pytest.mark.parametrize("content", [b"", b"garbage"])
def test_unreadable_cifar_n_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "CIFAR-10_human.pt"
    path.write_bytes(content)
    _refused(BadDataFileError, lambda: load_human_labels(path), path, "not a CIFAR-N label file", "CIFAR-N release")


def test_svhn_labels_outside_1_to_10_are_refused(tmp_path: Path) -> None:
    """Before: label 11 became digit 1 (y % 10)."""
    from scipy.io import loadmat, savemat

    write_svhn(tmp_path, n=10)
    mat = loadmat(tmp_path / "test_32x32.mat")
    mat["y"][2] = 11
    savemat(tmp_path / "test_32x32.mat", {"X": mat["X"], "y": mat["y"]})
    _refused(BadDataFileError, lambda: load_svhn(tmp_path), tmp_path / "test_32x32.mat", "outside 1..10")


# ------------------------------------------------------------------------------------- 4: noise=file
def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


CLEAN = np.arange(20) % 4


@pytest.mark.parametrize(("arrays", "phrase"), [
    ({"noisy": CLEAN.astype(np.float64), "clean": CLEAN, "class_ids": np.arange(4)}, "'noisy' is a float64 array"),
    ({"noisy": CLEAN, "clean": CLEAN + 0.5, "class_ids": np.arange(4)}, "'clean' is a float64 array"),
    ({"noisy": CLEAN, "clean": CLEAN}, "has no 'class_ids' array (arrays found: 'noisy', 'clean')"),
    ({"labels": CLEAN}, "has no 'noisy', 'clean', 'class_ids' array (arrays found: 'labels')"),
    ({"noisy": CLEAN[:-1], "clean": CLEAN, "class_ids": np.arange(4)}, "'noisy' has 19 labels but 'clean' has 20"),
    ({"noisy": CLEAN + 4, "clean": CLEAN, "class_ids": np.arange(4)}, "'noisy' has labels 4..7, outside 0..3"),
])
def test_noise_file_with_other_arrays_is_refused(tmp_path: Path, arrays: dict, phrase: str) -> None:
    path = _npz(tmp_path / "noisy_labels.npz", **arrays)
    _refused(BadDataFileError, lambda: NoiseFromFile(str(path))(CLEAN, None, np.arange(4)), path, phrase,
             "store integer labels", "noise.path")


@pytest.mark.parametrize("content", ["garbage", "object array", "npy"])
def test_noise_file_that_is_no_npz_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "noisy_labels.npz"
    if content == "garbage":
        path.write_bytes(b"not an npz file at all")
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, CLEAN)
    else:
        np.savez(path, noisy=np.array([object()] * 20), clean=CLEAN, class_ids=np.arange(4))
    _refused(BadDataFileError, lambda: NoiseFromFile(str(path))(CLEAN, None, np.arange(4)), path, "noise.path")


def test_noise_file_with_integer_labels_still_loads(tmp_path: Path) -> None:
    noisy = (CLEAN + 1) % 4
    path = _npz(tmp_path / "noisy_labels.npz", noisy=noisy.astype(np.int32), clean=CLEAN, class_ids=np.arange(4))
    np.testing.assert_array_equal(NoiseFromFile(str(path))(CLEAN, None, np.arange(4)), noisy)


# ------------------------------------------------------------------------------------- 5: file lists
@pytest.mark.parametrize(("label", "phrase"), [
    ("14", "label 14 is out of range"), ("-1", "label -1 is out of range"), ("3.0", "got 'images/x.jpg 3.0'"),
    ("three", "got 'images/x.jpg three'"),
])
def test_clothing1m_list_labels_must_be_0_to_13(tmp_path: Path, label: str, phrase: str) -> None:
    base = write_clothing1m(tmp_path, n_train=14, n_val=14, n_test=14)
    listing = base / "annotations" / "clean_val.txt"
    lines = listing.read_text().splitlines()
    lines[5] = f"images/x.jpg {label}"
    listing.write_text("\n".join(lines) + "\n")
    _refused(BadDataFileError, lambda: load_clothing1m(tmp_path), f"{listing}:6", phrase, "integer label 0..13",
             "correct or remove that line")


def test_webvision_labels_must_be_below_1000_and_mini_webvision_still_keeps_the_first_50(tmp_path: Path) -> None:
    base, _ = write_webvision(tmp_path, n_train=60, n_val=60, imagenet_per_class=0)
    assert len(load_webvision(tmp_path, num_classes=50).train_files) == 50  # labels 50..59 left out on purpose
    listing = base / "info" / "train_filelist_google.txt"
    listing.write_text(listing.read_text() + "google/q0000/0.jpg 1000\n")
    _refused(BadDataFileError, lambda: load_webvision(tmp_path, num_classes=50), f"{listing}:61",
             "label 1000 is out of range", "0..999")


def test_an_empty_file_list_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n")
    _refused(BadDataFileError, lambda: read_file_list(listing, 14), listing, "lists no images")


def test_animal10n_file_names_must_start_with_a_label(tmp_path: Path) -> None:
    """Before: int('cat') raised a bare ValueError; a label 12 was dropped later."""
    base = write_animal10n(tmp_path, n_train=10, n_test=10)
    bad = base / "training" / "12_00099.jpg"
    (base / "training" / "0_00000.jpg").rename(bad)
    _refused(BadDataFileError, lambda: load_animal10n(tmp_path), bad, "label 0..9", "rename or remove")


# ------------------------------------------------------------------------------------ 9: data.root=null
@pytest.mark.parametrize("loader", [load_mnist, load_cifar10, load_cifar100, load_clothing1m, load_webvision,
                                    load_red_mini_imagenet])
def test_a_null_data_root_names_the_key_to_set(loader: Callable) -> None:
    dm = NoisyLabelDataModule("x", loader, None, NoNoise())
    _refused(DataRootNotSetError, dm.build, "data.root is null", "data.root=<folder", "NOISYLAB_DATA_ROOT")


def test_a_null_data_root_from_the_config(tmp_path: Path) -> None:
    from noisylab.train import build_datamodule

    digits = build_datamodule(compose_config(tmp_path, ["data.root=null"]))
    assert digits.num_classes == 8 and digits.root is None  # digits needs no files: works with data.root=null
    _refused(DataRootNotSetError, lambda: build_datamodule(compose_config(tmp_path, ["data=mnist", "data.root=null"])),
             "data.root is null", "'mnist'")


def test_labels_outside_the_classes_never_reach_training(tmp_path: Path) -> None:
    """The datamodule refuses what a loader let through, instead of dropping those samples."""
    def source(root: Path | None, download: bool) -> ImageSource:
        digits = load_digits()
        labels = digits.train_labels.copy()
        labels[0] = 10
        return ImageSource("broken", digits.train_images, labels, digits.test_images, digits.test_labels,
                           digits.class_names, digits.mean, digits.std)

    _refused(BadDataFileError, NoisyLabelDataModule("broken", source, str(tmp_path), NoNoise()).build,
             "training labels range over 0..10", "10 classes")


# ------------------------------------------------------------------------------- 10: image files
@pytest.mark.parametrize("dataset", ["clothing1m", "webvision", "red_mini_imagenet"])
def test_listed_images_that_are_missing_are_found_before_training(tmp_path: Path, dataset: str) -> None:
    if dataset == "clothing1m":
        base, loader, listing = write_clothing1m(tmp_path, 14, 14, 14), load_clothing1m, "annotations/noisy_train.txt"
    elif dataset == "webvision":
        base, loader, listing = write_webvision(tmp_path, 20, 10, 10, imagenet_per_class=0)[0], load_webvision, \
            "info/train_filelist_google.txt"
    else:
        base, loader, listing = write_red_mini_imagenet(tmp_path, 0.4, 10, 5), load_red_mini_imagenet, \
            "split/red_noise_nl_0.4"
    source = loader(tmp_path)
    for name in source.train_files[2:4]:
        (base / name).unlink()
    _refused(MissingImagesError, lambda: loader(tmp_path), base / listing, f"2 of {len(source.train_files)} images",
             source.train_files[2], "copy the missing images")


def _clothing1m_with_a_bad_image(tmp_path: Path, num_workers: int, bad_images: str = "stop",
                                 keep_bytes: int = 300) -> tuple:
    base = write_clothing1m(tmp_path, n_train=16, n_val=4, n_test=4)
    bad = base / load_clothing1m(tmp_path).train_files[5]
    bad.write_bytes(bad.read_bytes()[:keep_bytes])  # a truncated JPEG (0: an empty file)
    dm = NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), NoNoise(), batch_size=4,
                              num_workers=num_workers, bad_images=bad_images)
    dm.build()
    return dm, bad


@pytest.mark.parametrize("num_workers, keep_bytes", [(0, 300), (2, 300), (0, 0)])
def test_an_undecodable_image_stops_with_one_clean_paragraph(tmp_path: Path, num_workers: int, keep_bytes: int,
                                                             capsys) -> None:
    dm, bad = _clothing1m_with_a_bad_image(tmp_path, num_workers, keep_bytes=keep_bytes)
    message = _refused(BadImageError, lambda: list(dm.train_dataloader()), bad, "cannot decode this image",
                       "incomplete or truncated", "images before it", "data.bad_images=skip")
    assert "Traceback" not in message and "worker" not in message and "\n" not in message
    with pytest.raises(SystemExit):  # the CLI prints it as a user error
        report_user_errors(lambda: list(dm.train_dataloader()))()
    assert f"error: {bad}: cannot decode" in capsys.readouterr().err


@pytest.mark.parametrize("num_workers", [0, 2])
def test_undecodable_images_can_be_skipped_and_are_listed(tmp_path: Path, num_workers: int, caplog) -> None:
    dm, bad = _clothing1m_with_a_bad_image(tmp_path, num_workers, bad_images="skip")
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())
    assert sum(len(batch[1]) for batch in batches) == 16  # every sample served, the bad one replaced
    image, label, index, _ = dm.train_set[5]
    assert int(index) == 6 and int(label) == int(dm.train_set.labels[6])  # the next sample, with its own label
    assert dm.bad_images == [str(bad)]
    if num_workers == 0:  # worker processes log to their own handlers
        assert str(bad) in caplog.text
    assert dm.write_bad_images(tmp_path / "bad_images.txt") == 1
    assert (tmp_path / "bad_images.txt").read_text() == f"{bad}\n"


def test_bad_images_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="data.bad_images='ignore'; choose one of stop, skip"):
        NoisyLabelDataModule("digits", load_digits, None, NoNoise(), bad_images="ignore")


def test_valid_images_give_no_bad_image_list(tmp_path: Path) -> None:
    write_clothing1m(tmp_path, n_train=8, n_val=4, n_test=4)
    dm = NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), NoNoise(), batch_size=4,
                              bad_images="skip")
    dm.build()
    assert sum(len(b[1]) for b in dm.train_dataloader()) == 8 and dm.bad_images == []
    assert dm.write_bad_images(tmp_path / "bad_images.txt") == 0 and not (tmp_path / "bad_images.txt").exists()


def test_a_human_label_path_under_a_null_data_root_names_data_root() -> None:
    from noisylab.noise import HumanNoise

    _refused(FileNotFoundError, lambda: HumanNoise({"path": "None/cifar-n/CIFAR-10_human.pt", "default_set": "worst"}),
             "None/cifar-n/CIFAR-10_human.pt", "data.root is null", "data.root=<folder")


def test_an_ood_folder_under_a_null_data_root_names_data_root() -> None:
    from noisylab.data import OODSet

    _refused(DataRootNotSetError, lambda: OODSet(folder="LSUN_resize").dataset(None, (3, 32, 32), in_memory=True),
             "data.root is null", "OOD folder LSUN_resize")
