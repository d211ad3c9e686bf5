"""Data sources on their on-disk formats, batched augmentation, held-out classes and the datamodule."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import noisylab.data.sources
import noisylab.noise
from noisylab.data import DatasetNotFoundError, HeldOutClasses, NoisyLabelDataModule
from noisylab.data.augment import BatchAugment
from noisylab.data.sources import load_cifar10, load_cifar100, load_digits, load_mnist
from tests.fixtures import write_cifar10, write_cifar100, write_mnist

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data"


def _unpickle(path: Path) -> dict:
    """Read a fixture file we wrote ourselves (trusted) with the plain unpickler."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


# ------------------------------------------------------------------------------------------ digits
def test_load_digits_shapes_and_classes():
    """8x8 digits as uint8 (N, 1, 8, 8) scaled to 0..255, 10 classes, a stratified 80/20 split."""
    source = load_digits()
    assert source.train_images.shape[1:] == (1, 8, 8) and source.test_images.shape[1:] == (1, 8, 8)
    assert source.train_images.dtype == np.uint8 and source.test_images.dtype == np.uint8
    assert source.train_labels.dtype == np.int64
    assert len(source.train_images) + len(source.test_images) == 1797
    assert len(source.test_images) == 360
    assert max(source.train_images.max(), source.test_images.max()) == 255
    assert source.num_classes == 10
    assert set(np.unique(source.train_labels)) == set(range(10)) == set(np.unique(source.test_labels))
    assert source.image_shape == (1, 8, 8)


def test_load_digits_split_is_fixed():
    """Every call (and every root/download value) gives the same train/test split."""
    a, b = load_digits(), load_digits(root="/nonexistent", download=True)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    # Train and test images are disjoint parts of the 1797 images.
    from sklearn.datasets import load_digits as sklearn_digits

    raw = np.round(sklearn_digits().images * (255.0 / 16.0)).astype(np.uint8)
    combined = np.concatenate([a.train_images, a.test_images])[:, 0]
    assert sorted(map(bytes, combined)) == sorted(map(bytes, raw))


# ----------------------------------------------------------------------------------- CIFAR / MNIST
def test_load_cifar100_fixture(tmp_path):
    """Shapes, dtypes and fine labels as written; image rows are CHW (R plane, then G, then B)."""
    folder = write_cifar100(tmp_path, n_train=300, n_test=100)
    source = load_cifar100(tmp_path)
    raw_train, raw_test = _unpickle(folder / "train"), _unpickle(folder / "test")
    assert source.train_images.shape == (300, 3, 32, 32) and source.test_images.shape == (100, 3, 32, 32)
    assert source.train_images.dtype == np.uint8 and source.train_labels.dtype == np.int64
    np.testing.assert_array_equal(source.train_labels, raw_train["fine_labels"])
    np.testing.assert_array_equal(source.test_labels, raw_test["fine_labels"])
    assert source.class_names == tuple(f"class_{i}" for i in range(100))
    for i, c, r, w in [(0, 0, 0, 0), (5, 1, 3, 7), (299, 2, 31, 30), (17, 2, 10, 0)]:
        assert source.train_images[i, c, r, w] == raw_train["data"][i, c * 1024 + r * 32 + w]
    np.testing.assert_array_equal(source.test_images.reshape(100, -1), raw_test["data"])


def test_load_cifar10_fixture(tmp_path):
    """Five training batches concatenated in order, test batch, class names from batches.meta, CHW rows."""
    folder = write_cifar10(tmp_path, n_per_batch=40, n_test=30)
    source = load_cifar10(tmp_path)
    batches = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    assert source.train_images.shape == (200, 3, 32, 32) and source.test_images.shape == (30, 3, 32, 32)
    assert source.train_images.dtype == np.uint8 and source.test_labels.dtype == np.int64
    np.testing.assert_array_equal(source.train_labels, np.concatenate([b["labels"] for b in batches]))
    np.testing.assert_array_equal(source.test_labels, _unpickle(folder / "test_batch")["labels"])
    assert source.class_names[0] == "airplane" and source.class_names[9] == "truck"
    # Sample 45 is the 6th row of data_batch_2; pixel (channel 1, row 2, col 9).
    assert source.train_images[45, 1, 2, 9] == batches[1]["data"][5, 1 * 1024 + 2 * 32 + 9]
    np.testing.assert_array_equal(source.train_images[:40].reshape(40, -1), batches[0]["data"])


def test_load_cifar10_without_meta_uses_default_names(tmp_path):
    """batches.meta is optional: the standard class names are used."""
    folder = write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    (folder / "batches.meta").unlink()
    assert load_cifar10(tmp_path).class_names[3] == "cat"


def _read_idx_by_hand(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes()[header:], dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_fixture(tmp_path, compress):
    """IDX files (plain or .gz): (N, 1, 28, 28) uint8 images and int64 labels as written."""
    raw = write_mnist(tmp_path, n_train=50, n_test=20)
    train_x = _read_idx_by_hand(raw / "train-images-idx3-ubyte", 16).reshape(50, 28, 28)
    train_y = _read_idx_by_hand(raw / "train-labels-idx1-ubyte", 8)
    test_y = _read_idx_by_hand(raw / "t10k-labels-idx1-ubyte", 8)
    if compress:
        for f in list(raw.iterdir()):
            with gzip.open(f.with_name(f.name + ".gz"), "wb") as out:
                out.write(f.read_bytes())
            f.unlink()
    source = load_mnist(tmp_path)
    assert source.train_images.shape == (50, 1, 28, 28) and source.test_images.shape == (20, 1, 28, 28)
    assert source.train_images.dtype == np.uint8 and source.train_labels.dtype == np.int64
    np.testing.assert_array_equal(source.train_images[:, 0], train_x)
    np.testing.assert_array_equal(source.train_labels, train_y)
    np.testing.assert_array_equal(source.test_labels, test_y)
    assert source.num_classes == 10


def test_load_mnist_real_data():
    """The real MNIST files (when present): 60000/10000 images, the famous first labels 5, 0, 4, 1, 9."""
    root = SHARED_MNIST
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not available here ({root / 'MNIST' / 'raw'} is absent)")
    source = load_mnist(root)
    assert source.train_images.shape == (60000, 1, 28, 28)
    assert source.test_images.shape == (10000, 1, 28, 28)
    assert source.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert source.test_labels[:3].tolist() == [7, 2, 1]
    assert np.bincount(source.train_labels).min() > 5000


@pytest.mark.parametrize(
    ("loader", "subfolder", "expected_names"),
    [
        (load_cifar100, "cifar-100-python", ["cifar-100-python", "train", "test"]),
        (load_cifar10, "cifar-10-batches-py", ["cifar-10-batches-py", "data_batch_1", "test_batch"]),
        (load_mnist, "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ],
)
def test_missing_data_error_says_where_and_how(tmp_path, loader, subfolder, expected_names):
    """An empty root gives DatasetNotFoundError naming the folder, the files and the config keys to change."""
    with pytest.raises(DatasetNotFoundError) as excinfo:
        loader(tmp_path)
    message = str(excinfo.value)
    assert str((tmp_path / subfolder).resolve()) in message
    for name in expected_names:
        assert name in message
    assert "data.root" in message and "data.download" in message
    assert isinstance(excinfo.value, FileNotFoundError)


def test_partial_cifar10_is_missing_data(tmp_path):
    """One missing batch file is reported, not a crash in the middle of reading."""
    folder = write_cifar10(tmp_path, n_per_batch=5, n_test=5)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path)


class _RunsACommand:
    """Unpickling this would run a shell command (the classic malicious-pickle payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _SomeObject:
    """Any class that is not a plain container or numpy array."""


@pytest.mark.parametrize("payload", ["os.system", "custom class"])
@pytest.mark.parametrize(("writer", "loader", "victim"), [
    (write_cifar10, load_cifar10, "data_batch_1"),
    (write_cifar10, load_cifar10, "batches.meta"),
    (write_cifar100, load_cifar100, "train"),
    (write_cifar100, load_cifar100, "meta"),
])
def test_cifar_pickle_with_foreign_objects_is_refused(tmp_path, writer, loader, victim, payload):
    """A CIFAR file holding anything but dicts, lists, bytes and arrays is refused; nothing is executed."""
    folder = writer(tmp_path / "data")
    marker = tmp_path / "pwned"
    evil = _RunsACommand(marker) if payload == "os.system" else _SomeObject()
    with open(folder / victim, "wb") as f:
        pickle.dump({"data": evil, "labels": [0], "fine_labels": [0], "label_names": ["x"],
                     "fine_label_names": ["x"]}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        loader(tmp_path / "data")
    assert not marker.exists()


def test_cifar_pickle_refused_with_newest_protocol(tmp_path):
    """The refusal does not depend on the pickle protocol (STACK_GLOBAL goes through find_class too)."""
    folder = write_cifar10(tmp_path / "data", n_per_batch=5, n_test=5)
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": _RunsACommand(marker), "labels": [0]}, f, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError):
        load_cifar10(tmp_path / "data")
    assert not marker.exists()


# ------------------------------------------------------------------------------------ augmentation
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _random_uint8(n: int, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_augment_eval_only_normalises():
    """train=False: output = (x / 255 - mean) / std, float32, same shape."""
    images = _random_uint8(16)
    out = BatchAugment(MEAN, STD, crop_padding=4, flip=True)(images, train=False)
    assert out.dtype == torch.float32 and out.shape == images.shape
    x = images.numpy().astype(np.float64) / 255.0
    expected = (x - np.array(MEAN).reshape(1, 3, 1, 1)) / np.array(STD).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_augment_normalises_to_the_same_values_as_out_of_place_and_leaves_its_input_alone():
    """forward normalises in place on its own float copy: bit for bit the values of (x / 255 - mean) / std
    computed out of place, and a float32 batch passed in is not changed (one batch can make several views)."""
    augment = BatchAugment(MEAN, STD)
    images = _random_uint8(16)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.equal(augment(images, train=False), (images.float() / 255.0 - mean) / std)
    floats = images.float()
    before = floats.clone()
    views = [augment(floats, train=True) for _ in range(2)]
    assert torch.equal(floats, before)
    assert torch.equal(views[0], views[1]) and torch.equal(views[0], augment(images, train=False))


def test_augment_train_without_crop_or_flip_is_eval():
    """No crop and no flip: training and evaluation outputs agree."""
    images = _random_uint8(8)
    augment = BatchAugment(MEAN, STD)
    torch.testing.assert_close(augment(images, train=True), augment(images, train=False))


def _windows(image: np.ndarray, p: int) -> list[tuple[tuple[int, int], np.ndarray]]:
    padded = np.pad(image, ((0, 0), (p, p), (p, p)))
    h, w = image.shape[1:]
    shifts = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
    return [((dy, dx), padded[:, dy : dy + h, dx : dx + w]) for dy, dx in shifts]


@pytest.mark.parametrize("p", [1, 3])
def test_augment_random_crop_is_a_shifted_window_of_the_padded_image(p):
    """With crop_padding=p every output is one of the (2p+1)^2 windows of the zero-padded input."""
    torch.manual_seed(0)
    images = _random_uint8(24, h=8, w=10, seed=1)
    out = BatchAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), crop_padding=p)(images, train=True)
    assert out.dtype == torch.float32 and out.shape == images.shape
    pixels = out.numpy() * 255.0
    offsets = set()
    for i in range(len(images)):
        matches = [off for off, win in _windows(images[i].numpy().astype(np.float64), p)
                   if np.allclose(pixels[i], win, atol=1e-3)]
        assert matches, f"image {i} is no shifted window of its padded input"
        offsets.add(matches[0])
    assert len(offsets) > 1  # the shift is random per image


def test_augment_crop_then_normalise():
    """Cropped pixels are normalised too: padding (0) shows up as -mean/std."""
    torch.manual_seed(1)
    images = torch.full((64, 3, 4, 4), 255, dtype=torch.uint8)
    out = BatchAugment(MEAN, STD, crop_padding=2)(images, train=True)
    pad_value = (-np.array(MEAN) / np.array(STD)).astype(np.float32)
    one_value = ((1.0 - np.array(MEAN)) / np.array(STD)).astype(np.float32)
    for c in range(3):
        values = np.unique(out[:, c].numpy())
        assert all(np.isclose(v, pad_value[c], atol=1e-5) or np.isclose(v, one_value[c], atol=1e-5)
                   for v in values)
    assert (np.isclose(out[:, 0].numpy(), pad_value[0], atol=1e-5)).any()  # some shift moved padding in


def test_augment_flip_mirrors_about_half():
    """flip=True: each output is the image or its horizontal mirror, and about half are mirrored."""
    torch.manual_seed(2)
    images = _random_uint8(2000, h=4, w=5, seed=3)
    out = BatchAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), flip=True)(images, train=True)
    assert out.dtype == torch.float32 and out.shape == images.shape
    x = images.float() / 255.0
    same = torch.isclose(out, x, atol=1e-6).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(3), atol=1e-6).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0.45 < mirrored.float().mean().item() < 0.55


def test_augment_negative_padding_raises():
    """crop_padding < 0 is refused, naming the config key."""
    with pytest.raises(ValueError, match="crop_padding"):
        BatchAugment(MEAN, STD, crop_padding=-1)


# -------------------------------------------------------------------------------- held-out classes
def test_held_out_explicit_classes():
    """Explicit classes come back sorted as int64."""
    chosen = HeldOutClasses(classes=[9, 2]).choose(10)
    assert chosen.dtype == np.int64 and chosen.tolist() == [2, 9]


def test_held_out_random_choice_reproducible():
    """Random hold-out: same seed -> same classes; distinct, in range, sorted; seeds differ in choice."""
    first = HeldOutClasses(num_classes=3, seed=5).choose(10)
    np.testing.assert_array_equal(first, HeldOutClasses(num_classes=3, seed=5).choose(10))
    assert len(set(first.tolist())) == 3 and first.min() >= 0 and first.max() < 10
    assert first.tolist() == sorted(first.tolist())
    choices = {tuple(HeldOutClasses(num_classes=3, seed=s).choose(10).tolist()) for s in range(10)}
    assert len(choices) > 1


@pytest.mark.parametrize("classes", [[10], [-1], [3, 12]])
def test_held_out_out_of_range_classes_raise(classes):
    """Classes outside 0..K-1 are refused with the config key."""
    with pytest.raises(ValueError, match="ood.holdout.classes"):
        HeldOutClasses(classes=classes).choose(10)


@pytest.mark.parametrize("spec", [
    {"classes": list(range(9))},
    {"classes": list(range(10))},
    {"classes": []},
    {"num_classes": 9},
    {"num_classes": 0},
    {"classes": [0], "num_classes": 2},
])
def test_held_out_must_leave_two_classes_and_hold_one(spec):
    """Fewer than 2 remaining classes (or nothing held out) is refused."""
    total = 2 if spec.get("classes") == [0] else 10
    with pytest.raises(ValueError, match="ood.holdout.num_classes"):
        HeldOutClasses(**spec).choose(total)


# -------------------------------------------------------------------------------------- datamodule
def _datamodule(tmp_path, **overrides) -> NoisyLabelDataModule:
    kwargs = dict(
        name="digits",
        source=noisylab.data.sources.load_digits,
        root=str(tmp_path),
        noise=noisylab.noise.SymmetricNoise(0.4, seed=0),
        val_size=0.2,
        ood={"holdout": HeldOutClasses(classes=[8, 9])},
    )
    kwargs.update(overrides)
    return NoisyLabelDataModule(**kwargs)


def test_datamodule_build_holds_out_classes_and_splits(tmp_path):
    """build(): 8 classes, no 8/9 in train/val, OOD set of 8/9 test images, disjoint round(0.2 n) val."""
    dm = _datamodule(tmp_path)
    labels = dm.build()
    source = load_digits()
    keep = source.train_labels < 8
    n = int(keep.sum())

    assert dm.num_classes == 8 and labels.num_classes == 8
    np.testing.assert_array_equal(labels.class_ids, np.arange(8))
    # In-distribution test first, then the OOD set; the un-augmented training split is evaluated last
    # ("val" sits before it since the temperature-scaling commit ed05714).
    names = dm.test_set_names
    assert names[:2] == ["test", "ood/holdout"] and names[-1] == "train"
    assert set(names) <= {"test", "ood/holdout", "val", "train"}
    assert dm.image_shape == (1, 8, 8)

    np.testing.assert_array_equal(labels.clean, source.train_labels[keep])
    assert labels.rate == pytest.approx(round(0.4 * n) / n)
    assert abs(labels.rate - 0.4) <= 0.5 / n

    train, val = dm.train_set, dm.val_set
    assert len(val) == round(0.2 * n) and len(train) + len(val) == n
    assert not set(train.index.tolist()) & set(val.index.tolist())
    for ds in (train, val):
        assert int(ds.labels.max()) < 8 and int(ds.clean.max()) < 8 and int(ds.labels.min()) >= 0
        np.testing.assert_array_equal(ds.images.numpy(), source.train_images[keep][ds.index.numpy()])
        np.testing.assert_array_equal(ds.clean.numpy(), labels.clean[ds.index.numpy()])
    np.testing.assert_array_equal(train.labels.numpy(), labels.noisy[train.index.numpy()])
    np.testing.assert_array_equal(val.labels.numpy(), labels.noisy[val.index.numpy()])  # noisy by default

    test_keep = source.test_labels < 8
    np.testing.assert_array_equal(dm.test_sets["test"].labels.numpy(), source.test_labels[test_keep])
    ood = dm.test_sets["ood/holdout"]
    np.testing.assert_array_equal(ood.images.numpy(), source.test_images[~test_keep])
    assert bool((ood.labels == -1).all())
    torch.testing.assert_close(dm.test_sets["train"].index, train.index)


def test_datamodule_batches_are_uint8_label_index_clean(tmp_path):
    """__getitems__ and the train loader hand out (uint8 images, labels, index, clean) batches."""
    dm = _datamodule(tmp_path, batch_size=32)
    dm.build()
    images, labels, index, clean = dm.train_set.__getitems__([0, 3, 5])
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 8, 8)
    assert labels.dtype == torch.int64 and clean.dtype == torch.int64 and index.dtype == torch.int64
    torch.testing.assert_close(index, dm.train_set.index[[0, 3, 5]])
    torch.testing.assert_close(labels, dm.train_set.labels[[0, 3, 5]])
    torch.testing.assert_close(clean, dm.train_set.clean[[0, 3, 5]])
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 4 and batch[0].dtype == torch.uint8 and batch[0].shape == (32, 1, 8, 8)


def test_datamodule_clean_val(tmp_path):
    """clean_val=True validates on the clean labels of the validation split."""
    dm = _datamodule(tmp_path, clean_val=True)
    labels = dm.build()
    torch.testing.assert_close(dm.val_set.labels, dm.val_set.clean)
    assert bool((dm.val_set.labels != torch.from_numpy(labels.noisy)[dm.val_set.index]).any())


def test_datamodule_val_size_too_large(tmp_path):
    """A validation split as large as the training set is refused, naming data.val_size."""
    with pytest.raises(ValueError, match="data.val_size"):
        _datamodule(tmp_path, val_size=10**6).build()


def test_datamodule_same_seed_same_labels(tmp_path):
    """A new module with the same config builds identical labels and splits; build() is idempotent."""
    first = _datamodule(tmp_path)
    labels = first.build()
    assert first.build() is labels
    second = _datamodule(tmp_path)
    assert second.build().same_as(labels)
    torch.testing.assert_close(second.val_set.index, first.val_set.index)


def test_held_out_classes_listed_twice_are_refused():
    with pytest.raises(ValueError, match="twice"):
        HeldOutClasses(classes=[3, 3]).choose(10)
