"""Noise from a user-supplied transition matrix T[i, j] = P(noisy = j | clean = i), with exact counts per row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from noisylab.data.errors import BadDataFileError
from noisylab.noise.base import NoiseModel

ROW_SUM_TOLERANCE = 1e-6
FILE_SUFFIXES = (".npy", ".csv", ".txt")
EXPECTED_FILE = ("a K x K matrix of numbers >= 0 whose rows sum to 1, K the number of trained classes: a 2-D .npy "
                 "array, or a .csv / .txt file with one row per line (values separated by commas or spaces)")
FILE_FIX = "write the matrix with np.save('T.npy', T) or np.savetxt('T.csv', T, delimiter=',')"


def exact_counts(sizes: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """counts[i, j]: how many of the sizes[i] samples of class i get label j, the largest-remainder rounding of
    sizes[i] * transition[i, j] (each row keeps its total sizes[i]).

    Each entry is floor(sizes[i] * T[i, j]) or one more; the samples left over go to the entries with the largest
    fractional parts, ties to the diagonal (the clean label) first, then to the lower class index. Rows are
    renormalised first, so a row summing to 1 within ROW_SUM_TOLERANCE gives the same counts as the exact one.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    t = np.asarray(transition, dtype=np.float64)
    k = len(sizes)
    t = t / t.sum(axis=1, keepdims=True)
    raw = np.round(sizes[:, None] * t, 9)  # 100 * 0.29 = 28.999999999999996 counts as 29
    counts = np.floor(raw).astype(np.int64)
    fraction = raw - counts
    short = sizes - counts.sum(axis=1)
    columns = np.arange(k)
    for i in range(k):
        if short[i] <= 0:
            continue
        off_diagonal = (columns != i).astype(np.int64)
        order = np.lexsort((columns, off_diagonal, -fraction[i]))  # last key first: largest fraction, diagonal, index
        counts[i, order[: min(int(short[i]), k)]] += 1
    return counts


def apply_counts(clean: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy labels where exactly counts[i, j] samples of clean class i carry label j; which ones, a seeded
    permutation of each class's samples decides (classes in order, so the draws depend only on the class sizes)."""
    noisy = clean.copy()
    labels = np.arange(counts.shape[1], dtype=clean.dtype)
    for i in range(counts.shape[0]):
        members = rng.permutation(np.flatnonzero(clean == i))
        noisy[members] = np.repeat(labels, counts[i])
    return noisy


class MatrixNoise(NoiseModel):
    """Labels drawn from a transition matrix the user gives: `noise.matrix` inline (a nested list) or `noise.path`
    (a .npy, .csv or .txt file).

    The matrix is K x K over the trained classes in the order of their class ids (with classes held out as OOD,
    K is the number left). Counts are exact per row, like the other noise models: of the n_i samples of clean
    class i, the largest-remainder rounding of n_i * T[i, j] get label j, chosen by a permutation seeded with
    `seed`, so the realised transition matrix (saved with the run) is those counts / n_i. The matrix is checked
    when the model is built, before anything is written.
    """

    def __init__(self, matrix: Sequence[Sequence[float]] | None = None, path: str | None = None,
                 seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)
        if (matrix is None) == (path is None):
            given = "both noise.matrix and noise.path are set" if matrix is not None else "neither is set"
            raise ValueError(
                f"noise=matrix takes the transition matrix either inline or from a file, and {given}. Give one: "
                "noise.matrix='[[0.8,0.2],[0.3,0.7]]' (K rows of K numbers, row i = P(noisy label | clean class i)) "
                "or noise.path=T.npy (also .csv or .txt)"
            )
        self.path = Path(path).expanduser() if path is not None else None
        self.source = f"noise.path={self.path}" if self.path is not None else "noise.matrix"
        self.matrix = _read_file(self.path) if self.path is not None else _inline(matrix)
        _check_values(self.matrix, self.source)
        self._dataset_classes: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.matrix)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Refuse a matrix larger than the dataset (the exact size is checked once held-out classes are known)."""
        self._dataset_classes = len(class_names)
        if self.num_classes > len(class_names):
            raise ValueError(
                f"{self.source}: the matrix is {self.num_classes} x {self.num_classes}, but this dataset has only "
                f"{len(class_names)} classes. Give a K x K matrix, K the number of trained classes ({len(class_names)} "
                "minus any held out as OOD)"
            )

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        k = len(class_ids)
        if self.num_classes != k:
            raise ValueError(f"{self.source}: {_size_problem(self.num_classes, class_ids, self._dataset_classes)}")
        counts = exact_counts(np.bincount(clean, minlength=k), self.matrix)
        return apply_counts(clean, counts, self.rng())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}, {self.num_classes}x{self.num_classes}, seed={self.seed})"


def _size_problem(size: int, class_ids: np.ndarray, dataset_classes: int | None) -> str:
    k = len(class_ids)
    ids = ", ".join(str(int(c)) for c in class_ids[:12]) + (", ..." if k > 12 else "")
    if dataset_classes is not None:
        held = sorted(set(range(dataset_classes)) - {int(c) for c in class_ids})
        held_text = (f"the dataset has {dataset_classes}, of which {len(held)} are held out as OOD (ood.holdout: ids "
                     f"{', '.join(map(str, held))})" if held else f"the dataset has {dataset_classes}, none held out")
    else:
        held_text = "classes held out as OOD (ood.holdout) do not count"
    fix = "; or train on every class with ood=none" if dataset_classes is None or k < dataset_classes else ""
    return (f"the matrix is {size} x {size}, but training has {k} classes ({held_text}). The matrix must be {k} x {k}, "
            f"over the trained classes, rows and columns in the order of their class ids ({ids}){fix}")


def _inline(matrix: object) -> np.ndarray:
    """The inline matrix (a nested list, a ListConfig from Hydra or an array) as a float array."""
    source = "noise.matrix"
    if isinstance(matrix, np.ndarray):
        if matrix.dtype.kind not in "iuf":
            raise ValueError(f"{source}: holds {matrix.dtype} values; give numbers, e.g. noise.matrix='[[0.8,0.2],"
                             "[0.3,0.7]]'")
        return _square(matrix.astype(np.float64), source)
    if isinstance(matrix, str | bytes) or not isinstance(matrix, Sequence) or not len(matrix):
        raise ValueError(f"{source}={matrix!r}: not a matrix. Give K rows of K numbers (row i = P(noisy label | "
                         "clean class i)), e.g. noise.matrix='[[0.8,0.2],[0.3,0.7]]'")
    rows = []
    for i, row in enumerate(matrix):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise ValueError(f"{source}: row {i} is {row!r}, not a list of numbers; give K rows of K numbers, e.g. "
                             "noise.matrix='[[0.8,0.2],[0.3,0.7]]'")
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"{source}: entry [{i}][{j}] is {value!r}, not a number; every entry is a "
                                 "probability, e.g. 0.2")
        rows.append([float(v) for v in row])
    lengths = {len(r) for r in rows}
    if len(lengths) > 1 or lengths != {len(rows)}:
        shape = ", ".join(str(len(r)) for r in rows)
        raise ValueError(f"{source}: not square: {len(rows)} rows with {shape} entries. Give K rows of K numbers each, "
                         "K the number of trained classes")
    return np.array(rows, dtype=np.float64)


def _square(values: np.ndarray, source: str) -> np.ndarray:
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.size == 0:
        raise ValueError(f"{source}: not square: shape {values.shape}. Give a K x K matrix, K the number of trained "
                         "classes (one row per clean class, one column per noisy label)")
    return values


def _read_file(path: Path) -> np.ndarray:
    """The matrix in `path` (.npy without pickles, or .csv/.txt text), refused with the file named if unreadable."""
    source = f"noise.path={path}"
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file. Point noise.path at a .npy, .csv or .txt file holding the "
                                "K x K transition matrix, or give it inline with noise.matrix='[[...],...]'")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise BadDataFileError.about(path, f"has the suffix {path.suffix or '(none)'!r}, and noise.path reads only "
                                           f"{', '.join(FILE_SUFFIXES)}", EXPECTED_FILE, FILE_FIX)
    try:
        if suffix == ".npy":
            values = np.load(path, allow_pickle=False)
            if not isinstance(values, np.ndarray):
                raise ValueError("holds several arrays (an .npz archive), not one")
        else:
            text = path.read_text()
            values = np.loadtxt(path, delimiter="," if "," in text else None, ndmin=2, dtype=np.float64)
    except Exception as exc:  # ValueError, OSError, UnicodeDecodeError ... from files of another format
        raise BadDataFileError.about(path, f"cannot be read as a {suffix} matrix ({type(exc).__name__}: {exc})",
                                     EXPECTED_FILE, FILE_FIX) from exc
    if values.dtype.kind not in "iuf":
        raise BadDataFileError.about(path, f"holds {values.dtype} values, not numbers", EXPECTED_FILE, FILE_FIX)
    return _square(values.astype(np.float64), source)


def _check_values(t: np.ndarray, source: str) -> None:
    """Refuse non-finite or negative entries and rows that do not sum to 1, naming where."""
    shown = 5

    def cells(mask: np.ndarray) -> str:
        where = np.argwhere(mask)
        text = ", ".join(f"[{i}][{j}]={t[i, j]:g}" for i, j in where[:shown])
        return text + (f" and {len(where) - shown} more" if len(where) > shown else "")

    if not np.isfinite(t).all():
        raise ValueError(f"{source}: entries {cells(~np.isfinite(t))} are not finite numbers. Every entry "
                         "T[i][j] = P(noisy label j | clean class i) is a probability in [0, 1]")
    if (t < 0).any():
        raise ValueError(f"{source}: entries {cells(t < 0)} are negative. Every entry T[i][j] = "
                         "P(noisy label j | clean class i) is a probability in [0, 1]")
    sums = t.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if len(bad):
        rows = ", ".join(f"row {i} sums to {sums[i]:.6g}" for i in bad[:shown])
        more = f" and {len(bad) - shown} more rows" if len(bad) > shown else ""
        raise ValueError(f"{source}: each row must sum to 1 (within {ROW_SUM_TOLERANCE:g}), but {rows}{more}. Row i is "
                         "the distribution of the noisy label of clean class i: divide each row by its sum "
                         "(T / T.sum(axis=1, keepdims=True))")
