"""noise=matrix (a user's transition matrix) and noise=pairflip (Co-teaching's pair flip): exact counts, seeds,
validation messages, and both composed through Hydra on data=digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException

from noisylab.data.errors import BadDataFileError
from noisylab.noise import MatrixNoise, NoisyLabels, PairFlipNoise, transition_matrix
from noisylab.noise.matrix import exact_counts
from noisylab.noise.pairflip import pairflip_matrix
from noisylab.train import build_datamodule
from tests.conftest import compose_config

T3 = [[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [1 / 3, 1 / 3, 1 / 3]]


def _labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=n).astype(np.int64)


def _realised(clean: np.ndarray, noisy: np.ndarray, k: int) -> NoisyLabels:
    return NoisyLabels(noisy=noisy, clean=clean, num_classes=k, class_ids=np.arange(k))


# ------------------------------------------------------------------------------------------- exact counts
def test_largest_remainder_rounding_keeps_row_totals():
    """Hand cases: 10 * [0.25, 0.25, 0.5] = [2.5, 2.5, 5]: one leftover, the tie goes to the diagonal first."""
    t = np.array([[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    counts = exact_counts(np.array([10, 10, 10]), t)
    np.testing.assert_array_equal(counts, [[3, 2, 5], [2, 3, 5], [3, 3, 4]])
    # 100 * 0.29 is 28.999999999999996 in floating point: still 29.
    np.testing.assert_array_equal(exact_counts(np.array([100, 0]), np.array([[0.71, 0.29], [0.5, 0.5]])),
                                  [[71, 29], [0, 0]])


@pytest.mark.parametrize(("n", "seed"), [(1000, 0), (997, 1), (31, 2)])
def test_matrix_noise_realises_the_rounded_counts_exactly(n, seed):
    """The realised transition equals the largest-remainder counts / n_i, bit for bit, and each row keeps n_i."""
    clean = _labels(n, 3, seed=seed)
    sizes = np.bincount(clean, minlength=3)
    counts = exact_counts(sizes, np.array(T3))
    np.testing.assert_array_equal(counts.sum(axis=1), sizes)
    assert np.all(np.abs(counts - sizes[:, None] * np.array(T3)) < 1)  # each entry floor or ceil of n_i T_ij
    noisy = MatrixNoise(matrix=T3, seed=seed)(clean, None, np.arange(3))
    assert noisy.dtype == clean.dtype and not np.shares_memory(noisy, clean)
    np.testing.assert_array_equal(_realised(clean, noisy, 3).transition, counts / sizes[:, None])
    np.testing.assert_array_equal(transition_matrix(clean, noisy, 3), counts / sizes[:, None])


def test_identity_matrix_keeps_labels_and_absent_classes_are_fine():
    clean = np.array([0, 0, 2, 2, 2], dtype=np.int64)  # class 1 has no samples
    np.testing.assert_array_equal(MatrixNoise(matrix=np.eye(3).tolist())(clean, None, np.arange(3)), clean)
    noisy = MatrixNoise(matrix=T3)(clean, None, np.arange(3))
    assert noisy.min() >= 0 and noisy.max() <= 2


def test_matrix_noise_seed_determinism():
    clean = _labels(2000, 3)
    a = MatrixNoise(matrix=T3, seed=7)(clean, None, np.arange(3))
    np.testing.assert_array_equal(a, MatrixNoise(matrix=T3, seed=7)(clean, None, np.arange(3)))
    b = MatrixNoise(matrix=T3, seed=8)(clean, None, np.arange(3))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(transition_matrix(clean, a, 3), transition_matrix(clean, b, 3))  # same counts


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".txt"])
def test_matrix_from_file_equals_inline(tmp_path, suffix):
    path = tmp_path / f"T{suffix}"
    if suffix == ".npy":
        np.save(path, np.array(T3))
    else:
        np.savetxt(path, np.array(T3), delimiter="," if suffix == ".csv" else " ", fmt="%.17g")
    clean = _labels(500, 3)
    from_file = MatrixNoise(path=str(path), seed=3)
    np.testing.assert_array_equal(from_file(clean, None, np.arange(3)),
                                  MatrixNoise(matrix=T3, seed=3)(clean, None, np.arange(3)))
    assert str(path) in repr(from_file) and "3x3" in repr(from_file)


def test_rows_within_tolerance_are_accepted():
    MatrixNoise(matrix=[[0.5, 0.5 + 5e-7], [0.0, 1.0]])


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("matrix", "words"), [
    ([[0.5, 0.5], [0.2, 0.3, 0.5]], ["noise.matrix", "not square", "2 rows with 2, 3 entries"]),
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ["noise.matrix", "not square"]),
    ([0.5, 0.5], ["noise.matrix", "not a list of numbers"]),
    ([], ["noise.matrix", "not a matrix"]),
    ([[0.5, "a"], [0.5, 0.5]], ["noise.matrix", "entry [0][1]", "not a number"]),
    ([[1.2, -0.2], [0.5, 0.5]], ["noise.matrix", "[0][1]=-0.2", "negative"]),
    ([[0.5, float("nan")], [0.5, 0.5]], ["noise.matrix", "[0][1]=nan", "not finite"]),
    ([[0.5, float("inf")], [0.5, 0.5]], ["noise.matrix", "not finite"]),
    ([[0.5, 0.4], [0.5, 0.5], [0.0, 0.0]], ["not square"]),
    ([[0.5, 0.4, 0.0], [0.5, 0.5, 0.0], [0.3, 0.3, 0.3]],
     ["noise.matrix", "row 0 sums to 0.9", "row 2 sums to 0.9", "must sum to 1", "divide each row by its sum"]),
])
def test_inline_matrix_errors_name_the_key_problem_and_fix(matrix, words):
    with pytest.raises(ValueError) as excinfo:
        MatrixNoise(matrix=matrix)
    message = str(excinfo.value)
    for word in words:
        assert word in message, (word, message)
    assert "row 1" not in message  # only the bad rows are named


@pytest.mark.parametrize(("matrix", "path", "words"), [
    (None, None, ["neither is set", "noise.matrix=", "noise.path="]),
    (T3, "T.npy", ["both noise.matrix and noise.path are set"]),
])
def test_exactly_one_of_matrix_and_path(matrix, path, words):
    with pytest.raises(ValueError) as excinfo:
        MatrixNoise(matrix=matrix, path=path)
    assert all(word in str(excinfo.value) for word in words)


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.npy"
    with pytest.raises(FileNotFoundError, match="noise.path") as excinfo:
        MatrixNoise(path=str(missing))
    assert str(missing) in str(excinfo.value)

    cases = {
        "T.json": ("[[1]]", "noise.path reads only .npy, .csv, .txt"),
        "T.npy": (b"not an npy file", "cannot be read as a .npy matrix"),
        "T.csv": ("0.5,0.5\n0.5,abc\n", "cannot be read as a .csv matrix"),
        "ragged.txt": ("0.5 0.5\n1.0\n", "cannot be read as a .txt matrix"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        with pytest.raises(BadDataFileError) as excinfo:
            MatrixNoise(path=str(path))
        assert str(path) in str(excinfo.value) and words in str(excinfo.value), str(excinfo.value)
        assert "To fix" in str(excinfo.value)

    bad_rows = tmp_path / "rows.csv"
    bad_rows.write_text("0.5,0.6\n0.5,0.5\n")
    with pytest.raises(ValueError, match=r"noise\.path=.*rows\.csv.*row 0 sums to 1\.1"):
        MatrixNoise(path=str(bad_rows))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"wide\.npy: not square: shape \(2, 3\)"):
        MatrixNoise(path=str(wide))


def test_wrong_size_for_the_trained_classes_names_the_held_out_ones():
    """A 10 x 10 matrix with classes 3 and 7 held out: 8 trained classes, the ids held out, and the fix."""
    names = [str(c) for c in range(10)]
    model = MatrixNoise(matrix=np.eye(10).tolist())
    model.check_classes(names)
    class_ids = np.array([0, 1, 2, 4, 5, 6, 8, 9])
    with pytest.raises(ValueError) as excinfo:
        model(_labels(50, 8), None, class_ids)
    message = str(excinfo.value)
    for word in ("noise.matrix", "10 x 10", "training has 8 classes", "ood.holdout: ids 3, 7", "held out as OOD",
                 "must be 8 x 8", "0, 1, 2, 4, 5, 6, 8, 9", "ood=none"):
        assert word in message, (word, message)
    too_big = MatrixNoise(matrix=np.eye(12).tolist())
    with pytest.raises(ValueError, match="has only 10 classes"):
        too_big.check_classes(names)


# ------------------------------------------------------------------------------------------- pair flip
def test_pairflip_matrix_is_the_coteaching_one():
    np.testing.assert_allclose(pairflip_matrix(4, 0.45), [[0.55, 0.45, 0, 0], [0, 0.55, 0.45, 0],
                                                         [0, 0, 0.55, 0.45], [0.45, 0, 0, 0.55]])


@pytest.mark.parametrize(("per_class", "k", "rate", "want"), [
    (100, 10, 0.45, 45), (37, 5, 0.2, 7), (37, 4, 0.3, 11), (10, 2, 0.25, 2), (9, 3, 0.5, 4), (50, 3, 0.0, 0)])
def test_pairflip_maps_i_to_i_plus_1_with_exact_counts(per_class, k, rate, want):
    """Per class exactly round(rate * n_i) flips (halves kept clean: 2.5 -> 2, 4.5 -> 4), all to (i + 1) mod K."""
    clean = np.random.default_rng(0).permutation(np.repeat(np.arange(k, dtype=np.int64), per_class))
    noisy = PairFlipNoise(rate, seed=1)(clean, None, np.arange(k))
    moved = noisy != clean
    np.testing.assert_array_equal(noisy[moved], (clean[moved] + 1) % k)
    for c in range(k):
        assert moved[clean == c].sum() == want, c
    t = transition_matrix(clean, noisy, k)
    np.testing.assert_array_equal(t, exact_counts(np.full(k, per_class), pairflip_matrix(k, rate)) / per_class)


def test_pairflip_with_held_out_classes_flips_to_the_next_trained_class():
    """Labels are contiguous over the trained classes: label 7 (the last) flips to label 0."""
    clean = _labels(800, 8, seed=3)
    noisy = PairFlipNoise(0.3, seed=0)(clean, None, np.array([0, 1, 2, 4, 5, 6, 8, 9]))
    moved = noisy != clean
    assert set(zip(clean[moved].tolist(), noisy[moved].tolist(), strict=True)) == {(i, (i + 1) % 8) for i in range(8)}


def test_pairflip_seed_and_rate_checks():
    clean = _labels(1000, 10)
    a = PairFlipNoise(0.45, seed=5)(clean, None, np.arange(10))
    np.testing.assert_array_equal(a, PairFlipNoise(0.45, seed=5)(clean, None, np.arange(10)))
    assert not np.array_equal(a, PairFlipNoise(0.45, seed=6)(clean, None, np.arange(10)))
    for rate in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"noise\.rate"):
            PairFlipNoise(rate)
    with pytest.raises(ValueError, match="at least 2"):
        PairFlipNoise(0.2)(np.zeros(5, dtype=np.int64), None, np.arange(1))
    assert repr(PairFlipNoise(0.45, seed=5)) == "PairFlipNoise(rate=0.45, seed=5)"


# ------------------------------------------------------------------------------------------- through Hydra
def _digits_labels(tmp_path: Path, overrides: list[str]) -> NoisyLabels:
    """The digits datamodule's labels (default ood holds 2 classes out: 8 trained classes)."""
    return build_datamodule(compose_config(tmp_path, ["data=digits", *overrides])).labels


def test_matrix_noise_through_hydra_on_digits(tmp_path: Path):
    k = 8
    t = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    inline = "[" + ",".join("[" + ",".join(repr(float(v)) for v in row) + "]" for row in t) + "]"
    labels = _digits_labels(tmp_path, ["noise=matrix", f"noise.matrix={inline}"])
    assert labels.num_classes == k
    sizes = np.bincount(labels.clean, minlength=k)
    counts = exact_counts(sizes, t)
    np.testing.assert_array_equal(labels.transition, counts / sizes[:, None])
    assert labels.rate == pytest.approx(1 - np.trace(counts) / sizes.sum())
    assert abs(labels.rate - 0.1) < 0.01

    path = tmp_path / "T.npy"
    np.save(path, t)
    from_file = _digits_labels(tmp_path / "file", ["noise=matrix", f"noise.path={path}"])
    assert from_file.same_as(labels)

    with pytest.raises(InstantiationException) as excinfo:  # refused when built, before anything is written
        _digits_labels(tmp_path / "rows", ["noise=matrix", "noise.matrix=[[0.5,0.6],[0.5,0.5]]"])
    assert isinstance(excinfo.value.__cause__, ValueError) and "row 0 sums to 1.1" in str(excinfo.value.__cause__)

    ten = tmp_path / "ten.npy"
    np.save(ten, np.eye(10))
    with pytest.raises(ValueError, match=r"training has 8 classes .*2 are held out as OOD \(ood\.holdout: ids \d, \d"):
        _digits_labels(tmp_path / "ten", ["noise=matrix", f"noise.path={ten}"])


def test_pairflip_noise_through_hydra_on_digits(tmp_path: Path):
    labels = _digits_labels(tmp_path, ["noise=pairflip", "noise.rate=0.45"])
    sizes = np.bincount(labels.clean, minlength=labels.num_classes)
    counts = exact_counts(sizes, pairflip_matrix(labels.num_classes, 0.45))
    assert labels.rate == pytest.approx((sizes - np.diag(counts)).sum() / sizes.sum())
    assert abs(labels.rate - 0.45) < 0.01
    moved = labels.is_noisy
    np.testing.assert_array_equal(labels.noisy[moved], (labels.clean[moved] + 1) % labels.num_classes)
    with pytest.raises(InstantiationException) as excinfo:  # the CLI prints the ValueError behind it
        _digits_labels(tmp_path / "bad", ["noise=pairflip", "noise.rate=1.0"])
    assert isinstance(excinfo.value.__cause__, ValueError) and "noise.rate" in str(excinfo.value.__cause__)
