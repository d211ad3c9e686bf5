"""Noise models, class maps, NoisyLabels and reusing labels from a file."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from noisylab.noise import (
    AsymmetricNoise,
    InstanceNoise,
    NoiseFromFile,
    NoisyLabels,
    NoNoise,
    SymmetricNoise,
    class_maps,
    transition_matrix,
)
from noisylab.noise.class_maps import CIFAR100_SUPERCLASS


def _labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=n).astype(np.int64)


def _images(n: int, shape=(1, 8, 8), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype(np.uint8)


def _balanced(per_class: int, k: int, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(k, dtype=np.int64), per_class)
    np.random.default_rng(seed).shuffle(labels)
    return labels


# --------------------------------------------------------------------------------------- symmetric
@pytest.mark.parametrize(("n", "k", "rate"), [(1000, 10, 0.4), (999, 3, 0.2), (10, 2, 0.35), (5000, 100, 0.8),
                                              (50, 10, 0.0)])
def test_symmetric_flips_exactly_round_rate_n(n, k, rate):
    """Exactly round(rate * n) labels change; every change goes to another valid class."""
    clean = _labels(n, k, seed=n)
    noisy = SymmetricNoise(rate, seed=1)(clean, _images(n), np.arange(k))
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert (noisy != clean).sum() == round(rate * n)
    assert noisy.min() >= 0 and noisy.max() < k
    assert not np.shares_memory(noisy, clean)


def test_symmetric_targets_uniform_over_other_classes():
    """Flipped samples land uniformly on the K-1 other classes (chi-square on offsets, per source class)."""
    n, k, rate = 60000, 10, 0.5
    clean = _labels(n, k, seed=3)
    noisy = SymmetricNoise(rate, seed=4)(clean, _images(1), np.arange(k))
    flipped = noisy != clean
    # Offsets (noisy - clean) mod K must be uniform over 1..K-1.
    offsets = (noisy[flipped] - clean[flipped]) % k
    counts = np.bincount(offsets, minlength=k)
    assert counts[0] == 0
    expected = flipped.sum() / (k - 1)
    stat = ((counts[1:] - expected) ** 2 / expected).sum()
    assert stat < chi2.ppf(0.999, k - 2)
    # Per source class: the flip share is about `rate` and targets spread evenly over the other classes.
    t = transition_matrix(clean, noisy, k)
    np.testing.assert_allclose(np.diag(t), 1 - rate, atol=0.03)
    off = t[~np.eye(k, dtype=bool)]
    np.testing.assert_allclose(off, rate / (k - 1), atol=0.02)


def test_symmetric_chooses_flipped_samples_uniformly():
    """Which samples flip does not depend on their class: each class loses about `rate` of its samples."""
    clean = _balanced(2000, 5, seed=1)
    noisy = SymmetricNoise(0.3, seed=2)(clean, _images(1), np.arange(5))
    per_class = np.array([(noisy[clean == c] != c).mean() for c in range(5)])
    np.testing.assert_allclose(per_class, 0.3, atol=0.04)


def test_symmetric_deterministic_per_seed():
    """Same seed -> same labels; another seed -> other labels."""
    clean = _labels(2000, 10)
    images, ids = _images(2000), np.arange(10)
    a = SymmetricNoise(0.4, seed=7)(clean, images, ids)
    b = SymmetricNoise(0.4, seed=7)(clean, images, ids)
    c = SymmetricNoise(0.4, seed=8)(clean, images, ids)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
@pytest.mark.parametrize("model", [SymmetricNoise, AsymmetricNoise, InstanceNoise])
def test_rate_outside_unit_interval_raises(model, rate):
    """Rates outside [0, 1) are refused, naming the config key noise.rate."""
    kwargs = {"class_map": class_maps.mnist()} if model is AsymmetricNoise else {}
    with pytest.raises(ValueError, match=r"noise\.rate"):
        model(rate, **kwargs)


def test_symmetric_needs_two_classes():
    """A single class cannot be flipped to another one."""
    with pytest.raises(ValueError):
        SymmetricNoise(0.2)(np.zeros(10, dtype=np.int64), _images(10), np.arange(1))


# -------------------------------------------------------------------------------------- asymmetric
def test_asymmetric_mnist_moves_exact_counts():
    """Each mapped source class sends exactly int(0.4 n_i) samples (floor, as the Drainage code) to its target;
    others are untouched."""
    per_class, rate = 103, 0.4
    clean = _balanced(per_class, 10, seed=5)
    cmap = class_maps.mnist()
    noisy = AsymmetricNoise(rate, seed=0, class_map=cmap)(clean, _images(len(clean)), np.arange(10))
    want = int(rate * per_class)
    for c in range(10):
        moved = noisy[clean == c] != c
        if c in cmap:
            assert moved.sum() == want
            assert np.all(noisy[clean == c][moved] == cmap[c])
        else:
            assert not moved.any()
    assert (noisy != clean).sum() == want * len(cmap)


def test_asymmetric_unbalanced_counts_and_seed():
    """Per-class counts follow each class's own size; the seed fixes which samples move."""
    clean = _labels(3000, 10, seed=9)
    cmap = class_maps.cifar10()
    images, ids = _images(1), np.arange(10)
    noisy = AsymmetricNoise(0.3, seed=1, class_map=cmap)(clean, images, ids)
    for src, dst in cmap.items():
        n_i = (clean == src).sum()
        assert ((clean == src) & (noisy == dst)).sum() == int(0.3 * n_i)
    again = AsymmetricNoise(0.3, seed=1, class_map=cmap)(clean, images, ids)
    other = AsymmetricNoise(0.3, seed=2, class_map=cmap)(clean, images, ids)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)


def test_asymmetric_translates_map_with_held_out_classes():
    """With class 7 held out, MNIST's map is applied in contiguous labels; pairs touching 7 are dropped."""
    class_ids = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9])  # label k <-> dataset class class_ids[k]
    k = len(class_ids)
    per_class = 50
    clean = _balanced(per_class, k, seed=2)
    noisy = AsymmetricNoise(0.4, seed=0, class_map=class_maps.mnist())(clean, _images(1), class_ids)
    # Dataset map {7:1, 2:7, 5:6, 6:5, 3:8}: 7->1 and 2->7 vanish; 3->8 becomes label 3 -> label 7.
    expected_map = {3: 7, 5: 6, 6: 5}
    want = int(0.4 * per_class)
    for label in range(k):
        moved = noisy[clean == label] != label
        if label in expected_map:
            assert moved.sum() == want
            assert np.all(noisy[clean == label][moved] == expected_map[label])
        else:
            assert not moved.any(), label


def test_asymmetric_map_that_no_longer_applies_raises():
    """If every pair of the map touches a held-out class, the error says so instead of adding no noise."""
    without_7 = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9])
    with pytest.raises(ValueError, match="class_map"):
        AsymmetricNoise(0.4, class_map={7: 1})(_labels(20, 9), _images(1), without_7)


@pytest.mark.parametrize("class_map", [None, {}])
def test_asymmetric_without_class_map_raises(class_map):
    """No class map: the message says the dataset has none and how to give one."""
    with pytest.raises(ValueError) as excinfo:
        AsymmetricNoise(0.4, class_map=class_map)
    message = str(excinfo.value)
    assert "class map" in message and "defines none" in message
    assert "noise.class_map" in message


# -------------------------------------------------------------------------------------- class maps
def test_mnist_and_cifar10_maps():
    """The literature's MNIST and CIFAR-10 maps (Patrini et al. 2017)."""
    assert class_maps.mnist() == {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
    assert class_maps.cifar10() == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}


def test_cifar100_superclass_table_spot_checks():
    """Two superclasses from the CIFAR-100 documentation (fine labels in alphabetical order)."""
    members = {s: sorted(f for f, c in enumerate(CIFAR100_SUPERCLASS) if c == s) for s in range(20)}
    assert members[0] == [4, 30, 55, 72, 95]  # aquatic mammals: beaver, dolphin, otter, seal, whale
    assert members[1] == [1, 32, 67, 73, 91]  # fish: aquarium_fish, flatfish, ray, shark, trout
    assert len(CIFAR100_SUPERCLASS) == 100
    assert all(len(m) == 5 for m in members.values())


def test_cifar100_superclass_map_is_5_cycles_within_superclasses():
    """A permutation of 0..99 that stays in the superclass and returns to each class after exactly 5 steps."""
    cmap = class_maps.cifar100("superclass")
    assert set(cmap) == set(range(100))
    assert sorted(cmap.values()) == list(range(100))
    for start in range(100):
        assert cmap[start] != start
        assert CIFAR100_SUPERCLASS[cmap[start]] == CIFAR100_SUPERCLASS[start]
        c, steps = cmap[start], 1
        while c != start:
            c, steps = cmap[c], steps + 1
            assert steps <= 5
        assert steps == 5
    assert class_maps.cifar100("blocks") == class_maps.cifar100()  # the default variant


def test_cifar100_blocks_map():
    """variant='blocks': i -> 5 (i // 5) + (i % 5 + 1) % 5."""
    cmap = class_maps.cifar100("blocks")
    assert cmap == {i: 5 * (i // 5) + (i % 5 + 1) % 5 for i in range(100)}


def test_cifar100_unknown_variant_raises():
    """Misspelt variants are refused."""
    with pytest.raises(ValueError, match="superclass"):
        class_maps.cifar100("super")


# ---------------------------------------------------------------------------------------- instance
def _truncated_normal_mean(loc: float, scale: float) -> float:
    """Mean of N(loc, scale^2) truncated to [0, 1], by numerical integration."""
    q = np.linspace(0.0, 1.0, 200001)
    w = np.exp(-((q - loc) ** 2) / (2 * scale**2))
    return float((q * w).sum() / w.sum())


def test_instance_realised_rate_close_to_rate():
    """n=20000, K=10, D=64: the realised rate is within 0.03 of the asked rate, about the same per class."""
    n, k = 20000, 10
    clean = _labels(n, k, seed=1)
    noisy = InstanceNoise(0.4, seed=0, std=0.1)(clean, _images(n, seed=2), np.arange(k))
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert noisy.min() >= 0 and noisy.max() < k
    assert abs((noisy != clean).mean() - 0.4) < 0.03
    per_class = np.array([(noisy[clean == c] != c).mean() for c in range(k)])
    np.testing.assert_allclose(per_class, 0.4, atol=0.06)


@pytest.mark.parametrize(("rate", "std"), [(0.1, 0.5), (0.05, 0.3), (0.3, 0.0)])
def test_instance_flip_rate_follows_truncated_normal(rate, std):
    """Per-sample flip rates are N(rate, std^2) truncated to [0, 1]: the realised rate is that law's mean.

    With a wide std the truncation at 0 pushes the mean far above `rate` (0.1 -> ~0.39), so the std
    parameter and the truncation are both visible; std=0 gives `rate` itself.
    """
    n, k = 20000, 10
    clean = _labels(n, k, seed=3)
    noisy = InstanceNoise(rate, seed=1, std=std)(clean, _images(n, seed=4), np.arange(k))
    expected = rate if std == 0 else _truncated_normal_mean(rate, std)
    assert abs((noisy != clean).mean() - expected) < 0.02


def test_instance_rate_zero_with_std_zero_is_clean():
    """rate=0, std=0: nobody flips."""
    clean = _labels(500, 5)
    noisy = InstanceNoise(0.0, seed=0, std=0.0)(clean, _images(500), np.arange(5))
    np.testing.assert_array_equal(noisy, clean)


def test_instance_depends_on_images_and_seed():
    """Same labels and seed: same images -> same labels, other images -> other labels; other seed -> other."""
    n, k = 3000, 10
    clean = _labels(n, k, seed=5)
    images = _images(n, shape=(3, 4, 4), seed=6)
    other_images = _images(n, shape=(3, 4, 4), seed=7)
    model = InstanceNoise(0.4, seed=3, std=0.1)
    a = model(clean, images, np.arange(k))
    np.testing.assert_array_equal(a, InstanceNoise(0.4, seed=3, std=0.1)(clean, images, np.arange(k)))
    assert not np.array_equal(a, model(clean, other_images, np.arange(k)))
    assert not np.array_equal(a, InstanceNoise(0.4, seed=4, std=0.1)(clean, images, np.arange(k)))


def test_instance_flip_targets_follow_the_image():
    """Where a sample flips to is a property of its image: copies of one image share a dominant target,
    and different images (same label, same W) have different dominant targets.

    The target is drawn from a softmax over x W[y]; with 192 pixels the scores are far apart, so the
    softmax is peaked and each (image, label) has one likely target class.
    """
    copies, k = 300, 10
    distinct = np.concatenate([_images(1, shape=(3, 8, 8), seed=s) for s in range(8, 14)])
    images = np.repeat(distinct, copies, axis=0)
    clean = np.zeros(len(images), dtype=np.int64)
    noisy = InstanceNoise(0.5, seed=0, std=0.0)(clean, images, np.arange(k)).reshape(len(distinct), copies)
    dominant = []
    for row in noisy:
        targets = row[row != 0]
        assert len(targets) > 100
        counts = np.bincount(targets, minlength=k)
        assert counts.max() / len(targets) > 0.6
        dominant.append(int(counts.argmax()))
    assert len(set(dominant)) >= 2, dominant


def test_instance_with_held_out_classes_uses_k_from_class_ids():
    """K = len(class_ids): labels stay in 0..K-1 when some dataset classes are held out."""
    class_ids = np.array([0, 2, 5, 7])
    clean = _labels(2000, 4, seed=1)
    noisy = InstanceNoise(0.4, seed=0)(clean, _images(2000), class_ids)
    assert noisy.min() >= 0 and noisy.max() <= 3
    assert set(np.unique(noisy[noisy != clean])) == {0, 1, 2, 3}


# ---------------------------------------------------------------------------------------- no noise
def test_no_noise_returns_equal_copy():
    """NoNoise keeps the labels and does not hand out the caller's array."""
    clean = _labels(100, 10)
    noisy = NoNoise()(clean, _images(100), np.arange(10))
    np.testing.assert_array_equal(noisy, clean)
    assert not np.shares_memory(noisy, clean)
    assert NoNoise().rate == 0.0


# ------------------------------------------------------------------------------------- NoisyLabels
def _hand_labels() -> NoisyLabels:
    clean = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2], dtype=np.int64)
    noisy = np.array([0, 1, 1, 1, 0, 2, 2, 2, 0], dtype=np.int64)
    return NoisyLabels(noisy=noisy, clean=clean, num_classes=4, class_ids=np.array([0, 1, 3, 5]))


def test_noisy_labels_rate_is_noisy_and_transition():
    """rate, is_noisy and the transition matrix equal hand counts; absent classes get a zero row."""
    labels = _hand_labels()
    np.testing.assert_array_equal(labels.is_noisy, [0, 1, 1, 0, 1, 0, 0, 0, 1])
    assert labels.rate == pytest.approx(4 / 9)
    expected = np.array([
        [1 / 3, 2 / 3, 0, 0],
        [1 / 2, 1 / 2, 0, 0],
        [1 / 4, 0, 3 / 4, 0],
        [0, 0, 0, 0],
    ])
    np.testing.assert_allclose(labels.transition, expected)
    np.testing.assert_allclose(labels.transition[:3].sum(axis=1), 1.0)


def test_transition_matrix_rows_sum_to_one_on_random_labels():
    """Rows of present classes sum to 1 and equal the counted shares."""
    clean, noisy = _labels(500, 6, seed=1), _labels(500, 6, seed=2)
    t = transition_matrix(clean, noisy, 6)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    i, j = 2, 4
    assert t[i, j] == pytest.approx(((clean == i) & (noisy == j)).sum() / (clean == i).sum())


def test_noisy_labels_empty_and_shape_mismatch():
    """No samples -> rate 0; noisy and clean of different length are refused."""
    empty = np.zeros(0, dtype=np.int64)
    assert NoisyLabels(noisy=empty, clean=empty, num_classes=2, class_ids=np.arange(2)).rate == 0.0
    with pytest.raises(ValueError):
        NoisyLabels(noisy=np.zeros(3, dtype=np.int64), clean=empty, num_classes=2, class_ids=np.arange(2))


def test_noisy_labels_save_load_round_trip(tmp_path):
    """save() writes a pickle-free npz (noisy, clean, class_ids, transition, rate); load() restores it."""
    labels = _hand_labels()
    path = tmp_path / "noisy_labels.npz"
    labels.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"noisy", "clean", "class_ids", "transition", "rate"}
        np.testing.assert_array_equal(f["noisy"], labels.noisy)
        np.testing.assert_array_equal(f["clean"], labels.clean)
        np.testing.assert_array_equal(f["class_ids"], [0, 1, 3, 5])
        np.testing.assert_allclose(f["transition"], labels.transition)
        assert float(f["rate"]) == pytest.approx(4 / 9)
    loaded = NoisyLabels.load(path)
    assert loaded.num_classes == 4
    assert loaded.same_as(labels) and labels.same_as(loaded)
    assert loaded.rate == labels.rate


def test_same_as_detects_any_difference():
    """same_as compares noisy labels, clean labels and class ids."""
    labels = _hand_labels()
    other_noisy = NoisyLabels(noisy=labels.clean.copy(), clean=labels.clean, num_classes=4,
                              class_ids=labels.class_ids)
    other_ids = NoisyLabels(noisy=labels.noisy, clean=labels.clean, num_classes=4,
                            class_ids=np.array([0, 1, 2, 3]))
    other_clean = NoisyLabels(noisy=labels.noisy, clean=labels.noisy.copy(), num_classes=4,
                              class_ids=labels.class_ids)
    assert not labels.same_as(other_noisy)
    assert not labels.same_as(other_ids)
    assert not labels.same_as(other_clean)


# --------------------------------------------------------------------------------------- from file
def test_noise_from_file_reloads_saved_labels(tmp_path):
    """noise=file gives back exactly the saved noisy labels for the same clean labels."""
    clean = _labels(300, 10, seed=1)
    noisy = SymmetricNoise(0.4, seed=2)(clean, _images(1), np.arange(10))
    path = tmp_path / "noisy_labels.npz"
    NoisyLabels(noisy=noisy, clean=clean, num_classes=10, class_ids=np.arange(10)).save(path)
    got = NoiseFromFile(str(path))(clean, _images(300), np.arange(10))
    np.testing.assert_array_equal(got, noisy)


@pytest.mark.parametrize("change", ["values", "length"])
def test_noise_from_file_refuses_other_clean_labels(tmp_path, change):
    """A file made for other data (other clean labels or another size) is refused."""
    clean = _labels(300, 10, seed=1)
    path = tmp_path / "noisy_labels.npz"
    NoisyLabels(noisy=clean.copy(), clean=clean, num_classes=10, class_ids=np.arange(10)).save(path)
    if change == "values":
        other = clean.copy()
        other[0] = (other[0] + 1) % 10
    else:
        other = clean[:-1]
    with pytest.raises(ValueError, match="other data"):
        NoiseFromFile(str(path))(other, _images(len(other)), np.arange(10))


def test_noise_from_file_missing_path(tmp_path):
    """A missing file is reported at construction, naming the path and noise.path."""
    missing = tmp_path / "nowhere" / "noisy_labels.npz"
    with pytest.raises(FileNotFoundError) as excinfo:
        NoiseFromFile(str(missing))
    assert str(missing) in str(excinfo.value)
    assert "noise.path" in str(excinfo.value)


# --------------------------------------------------------------------------------------- as a library
def test_noise_models_need_no_class_ids_or_images_unless_they_use_them():
    """noise(clean) is noise(clean, None, arange(K)) with K = max(clean) + 1: the labels are the class ids."""
    from noisylab.noise import MatrixNoise, PairFlipNoise

    clean = _balanced(40, 4, seed=3)
    for noise in (SymmetricNoise(0.4, seed=1), PairFlipNoise(0.3, seed=1), NoNoise(),
                  AsymmetricNoise(0.5, seed=1, class_map={0: 1, 2: 3}),
                  MatrixNoise(matrix=np.full((4, 4), 0.25).tolist(), seed=1)):
        full = noise(clean, _images(len(clean)), np.arange(4))
        assert np.array_equal(noise(clean), full), noise
        assert noise(clean).dtype == np.int64
    assert not np.array_equal(SymmetricNoise(0.4, seed=1)(clean), clean)
    images = _images(len(clean))
    assert np.array_equal(InstanceNoise(0.4, seed=1)(clean, images), InstanceNoise(0.4, seed=1)(clean, images,
                                                                                                  np.arange(4)))


def test_noise_models_take_lists_tensors_and_narrow_integers():
    torch = pytest.importorskip("torch")
    clean = _labels(200, 10, seed=4)
    expected = SymmetricNoise(0.3, seed=5)(clean)
    for given in (clean.tolist(), torch.from_numpy(clean), clean.astype(np.uint8)):
        assert np.array_equal(SymmetricNoise(0.3, seed=5)(given), expected)


def test_noise_models_refuse_labels_they_cannot_use():
    with pytest.raises(ValueError, match=r"clean labels must be 0..K-1 with K = len\(class_ids\) = 3, got labels 0..5"):
        SymmetricNoise(0.3)(np.array([0, 5, 1]), class_ids=np.arange(3))
    with pytest.raises(ValueError, match="clean: expected a 1-D array of integer labels, got float64"):
        SymmetricNoise(0.3)(np.array([0.0, 1.0, 1.5]))
    with pytest.raises(ValueError, match=r"needs the pixels .* noise\(clean, images\)"):
        InstanceNoise(0.3)(_labels(20, 3))
    with pytest.raises(ValueError, match="10 images for 20 labels"):
        InstanceNoise(0.3)(_labels(20, 3), _images(10))
