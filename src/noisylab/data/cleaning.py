"""Train on cleaned labels: drop or relabel the samples an earlier run flagged (`noisylab-issues`).

The files are the ones `noisylab-issues` writes, and any table a person makes by hand in the same form:

- `data.exclude=<file>`: a CSV with a header and a column `index`, the samples to drop from training and
  validation.
- `data.relabel=<file>`: a CSV with columns `index` and `label`, the label each sample trains with instead.

`index` is a sample's position in the source dataset's training set (the row of CIFAR's data batches, the
image in a folder's sorted listing), the same index the run's `samples/train.csv` and `noisy_labels.npz`
hold; `label` is the source dataset's class id. Both are applied after the noise model, so the rest of the
training labels are exactly the earlier run's (same data, noise and seed), and after the validation split,
so the split is the earlier run's too: the second run differs from the first only by the cleaning.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisylab.data.errors import BadDataFileError

EXCLUDE_FORMAT = "a CSV file with a header row and an integer column 'index' (as noisylab-issues writes exclude.csv)"
RELABEL_FORMAT = ("a CSV file with a header row and integer columns 'index' and 'label' (as noisylab-issues writes "
                  "relabel.csv)")


def _read_columns(path: Path, key: str, columns: tuple[str, ...], expected: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such file. Point it at the exclude.csv or relabel.csv that "
                                "noisylab-issues <run> wrote (in <run>/issues/)")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadDataFileError.about(path, f"cannot be read as CSV ({type(exc).__name__}: {exc})", expected,
                                     f"write {key}'s file as {expected}") from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise BadDataFileError.about(path, f"has no column {', '.join(map(repr, missing))} (columns: "
                                           f"{', '.join(map(repr, header)) or 'none'})", expected,
                                     f"write {key}'s file as {expected}")
    values: dict[str, np.ndarray] = {}
    for column in columns:
        try:
            values[column] = np.array([int(row[column]) for row in rows], dtype=np.int64)
        except (TypeError, ValueError):
            line = next(i for i, row in enumerate(rows, start=2) if not _is_int(row[column]))
            raise BadDataFileError.about(path, f"line {line}: {column} {rows[line - 2][column]!r} is not an "
                                               "integer", expected, f"write {key}'s file as {expected}") from None
    unique, counts = np.unique(values["index"], return_counts=True)
    repeated = unique[counts > 1]
    if len(repeated):
        raise BadDataFileError.about(path, f"lists index {', '.join(map(str, repeated[:5]))} more than once", expected,
                                     "keep one row per sample")
    return values


def _is_int(text: str | None) -> bool:
    try:
        int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class LabelCleaning:
    """The samples an earlier run flagged: dropped (`exclude`) or given another label (`relabel`)."""

    exclude: str | None = None
    relabel: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.exclude or self.relabel)

    def apply(self, source_index: np.ndarray, noisy: np.ndarray, to_contiguous: np.ndarray,
              num_source_samples: int) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
        """(labels after relabelling, mask of excluded samples, a record for metrics.json), for the training
        samples at `source_index` with `noisy` labels (contiguous ids; `to_contiguous` maps source class ids,
        -1 for held-out classes). Indices that are not training samples are refused, naming them."""
        noisy = noisy.copy()
        excluded = np.zeros(len(source_index), dtype=bool)
        record: dict[str, object] = {}
        position = np.full(num_source_samples, -1, dtype=np.int64)
        position[source_index] = np.arange(len(source_index))
        if self.relabel:
            path = Path(self.relabel).expanduser()
            table = _read_columns(path, "data.relabel", ("index", "label"), RELABEL_FORMAT)
            at = self._positions(path, "data.relabel", table["index"], position, RELABEL_FORMAT)
            labels = table["label"]
            bad = (labels < 0) | (labels >= len(to_contiguous))
            bad[~bad] = to_contiguous[labels[~bad]] < 0
            if bad.any():
                raise BadDataFileError.about(
                    path, f"gives labels {sorted(set(labels[bad].tolist()))[:5]} that are not trained classes of this "
                          f"dataset (source class ids 0..{len(to_contiguous) - 1}, held-out classes excluded)",
                    RELABEL_FORMAT, "use the source dataset's class ids of classes the run trains")
            changed = noisy[at] != to_contiguous[labels]
            noisy[at] = to_contiguous[labels]
            record.update({"data/relabel": str(path), "data/relabelled": int(changed.sum())})
        if self.exclude:
            path = Path(self.exclude).expanduser()
            table = _read_columns(path, "data.exclude", ("index",), EXCLUDE_FORMAT)
            excluded[self._positions(path, "data.exclude", table["index"], position, EXCLUDE_FORMAT)] = True
            record.update({"data/exclude": str(path), "data/excluded": int(excluded.sum())})
        return noisy, excluded, record

    @staticmethod
    def _positions(path: Path, key: str, indices: np.ndarray, position: np.ndarray, expected: str) -> np.ndarray:
        inside = (indices >= 0) & (indices < len(position))
        inside[inside] = position[indices[inside]] >= 0
        if not inside.all():
            outside = indices[~inside]
            raise BadDataFileError.about(
                path, f"lists {len(outside)} indices that are not training samples of this run's data (e.g. "
                      f"{', '.join(map(str, outside[:5]))}; the training set has {len(position)} samples, of which "
                      f"{int((position >= 0).sum())} train here: held-out classes and the meta set are not)",
                expected, f"make {key}'s file from a run on the same data (noisylab-issues <that run>)")
        return position[indices]
