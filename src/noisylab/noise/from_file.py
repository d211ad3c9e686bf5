"""Reuse the noisy labels of an earlier run (its `noisy_labels.npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from noisylab.data.errors import BadDataFileError
from noisylab.noise.base import NoiseModel
from noisylab.noise.labels import NoisyLabels

REQUIRED = ("noisy", "clean", "class_ids")
EXPECTED = ("a noisy_labels.npz as a run writes it: 1-D integer arrays 'noisy' and 'clean' of equal length, with "
            "values 0..K-1, and 'class_ids', the K original class ids")
FIX = "point noise.path at the noisy_labels.npz of an earlier run, or store integer labels under these keys"


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays in REQUIRED from an .npz file (no pickles); a missing key or unreadable file is refused."""
    try:
        content = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, BadZipFile ... on other files
        raise BadDataFileError.about(path, f"cannot be read as an .npz file ({type(exc).__name__}: {exc})",
                                     EXPECTED, FIX) from exc
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise BadDataFileError.about(path, "holds a single array, not an .npz archive of named arrays", EXPECTED, FIX)
    with content:
        missing = [key for key in REQUIRED if key not in content.files]
        if missing:
            raise BadDataFileError.about(path, f"has no {', '.join(map(repr, missing))} array (arrays found: "
                                               f"{', '.join(map(repr, content.files)) or 'none'})", EXPECTED, FIX)
        try:
            return {key: content[key] for key in REQUIRED}
        except Exception as exc:  # object arrays (pickles), damaged members
            raise BadDataFileError.about(path, f"has an array that cannot be read ({type(exc).__name__}: {exc})",
                                         EXPECTED, FIX) from exc


def read_saved_labels(path: Path) -> NoisyLabels:
    """A noisy_labels.npz as NoisyLabels, refused unless its arrays are integer labels in range.

    np.load keeps float arrays as they are, and a float label would be truncated to an integer later on.
    """
    arrays = _read_arrays(path)
    for key, values in arrays.items():
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise BadDataFileError.about(path, f"{key!r} is a {values.dtype} array of shape {values.shape}", EXPECTED,
                                         FIX)
    noisy, clean, class_ids = (arrays[key].astype(np.int64) for key in REQUIRED)
    if len(noisy) != len(clean):
        raise BadDataFileError.about(path, f"'noisy' has {len(noisy)} labels but 'clean' has {len(clean)}", EXPECTED,
                                     FIX)
    for key, values in (("noisy", noisy), ("clean", clean)):
        if len(values) and (values.min() < 0 or values.max() >= len(class_ids)):
            raise BadDataFileError.about(path, f"{key!r} has labels {values.min()}..{values.max()}, outside "
                                               f"0..{len(class_ids) - 1} ({len(class_ids)} class_ids)", EXPECTED, FIX)
    return NoisyLabels(noisy=noisy, clean=clean, num_classes=len(class_ids), class_ids=class_ids)


class NoiseFromFile(NoiseModel):
    """Labels read from a `noisy_labels.npz`; refused unless its clean labels match this dataset's."""

    def __init__(self, path: str, seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(
                f"noise=file: no file at {self.path}. Point noise.path at a run's noisy_labels.npz."
            )

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        saved = read_saved_labels(self.path)
        if saved.clean.shape != clean.shape or not np.array_equal(saved.clean, clean) \
                or not np.array_equal(saved.class_ids, class_ids):
            raise ValueError(
                f"{self.path} was made for other data: its clean labels ({len(saved.clean)} samples) or class ids "
                f"({len(saved.class_ids)} classes) do not match this dataset's training labels ({len(clean)} "
                f"samples, {len(class_ids)} classes). Use the same data, ood holdout and seed as the run that wrote it."
            )
        return saved.noisy.copy()
