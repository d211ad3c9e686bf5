"""Real human label noise: the CIFAR-10N / CIFAR-100N annotations (Wei et al., ICLR 2022)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from noisylab.data.errors import BadDataFileError, RefusedPickleError, check_labels
from noisylab.noise.base import NoiseModel

# noise.label_set -> key in the label file
LABEL_SETS = {
    "aggre": "aggre_label", "worst": "worse_label", "random1": "random_label1", "random2": "random_label2",
    "random3": "random_label3", "noisy": "noisy_label",
}  # fmt: skip


HUMAN_EXPECTED = ("a CIFAR-N label file (CIFAR-10_human.pt / CIFAR-100_human.pt, saved with torch.save): a dict "
                  "with 'clean_label' and the noisy label sets, equally long integer arrays")
HUMAN_FIX = "download CIFAR-10_human.pt / CIFAR-100_human.pt again from the CIFAR-N release"


def _load_refusing_code(path: Path) -> object:
    """torch.load that unpickles numpy arrays and nothing else; other content is refused with a short reason.

    Arrays of any numeric dtype load, so that a float label array is refused by name below, not as foreign."""
    allowed = [
        (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        np._core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        *{type(np.dtype(code)) for code in "?bBhHiIlLqQefd"},
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError for foreign content
        foreign = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if foreign:
            raise RefusedPickleError(
                f"{path}: refused: the file contains code or object references ({foreign.group(1)}), which a CIFAR-N "
                f"label file never has, so nothing in it was run. Expected {HUMAN_EXPECTED}. To fix: {HUMAN_FIX}."
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc)) or re.search(r"(.+)", str(exc))
        problem = "is empty" if path.stat().st_size == 0 else \
            f"cannot be read ({reason.group(1)[:200] if reason else type(exc).__name__})"
        raise BadDataFileError.about(path, f"{problem}; it is truncated, damaged or not a CIFAR-N label file",
                                     HUMAN_EXPECTED, HUMAN_FIX) from exc


def load_human_labels(path: Path) -> dict[str, np.ndarray]:
    """Read a CIFAR-N label file without executing pickled code.

    The files are torch zip pickles of a dict of numpy arrays; `torch.load(weights_only=True)` accepts
    them once numpy's array reconstruction is allowed, and nothing else is. CIFAR-100N's coarse labels
    are plain lists and come back as arrays too. Every array must hold integers (a float label would be
    truncated), one per training image, within the classes of 'clean_label'.
    """
    content = _load_refusing_code(path)
    if not isinstance(content, dict) or "clean_label" not in content:
        keys = ", ".join(map(repr, content)) if isinstance(content, dict) else f"a {type(content).__name__}"
        raise BadDataFileError.about(path, f"holds no 'clean_label' array (found: {keys or 'an empty dict'})",
                                     HUMAN_EXPECTED, HUMAN_FIX)
    table = {key: np.asarray(value) for key, value in content.items()}
    clean = table["clean_label"]
    for key, values in table.items():
        if values.ndim != 1 or values.dtype.kind not in "iu" or len(values) != len(clean):
            raise BadDataFileError.about(path, f"{key!r} is a {values.dtype} array of shape {values.shape} "
                                               f"('clean_label' has {len(clean)} values)", HUMAN_EXPECTED, HUMAN_FIX)
    num_classes = int(clean.max(initial=0)) + 1
    for key, values in table.items():
        check_labels(f"{path}, {key!r}", values, num_classes, f"{HUMAN_EXPECTED}, in the classes of 'clean_label'",
                     HUMAN_FIX)
    return {key: values.astype(np.int64) for key, values in table.items()}


class HumanNoise(NoiseModel):
    """The noisy labels that human annotators gave (CIFAR-10N: aggre 9.0%, worst 40.2%, random1-3 ~17-18%;
    CIFAR-100N: noisy 40.2%), aligned with the dataset's training order.

    Args:
        labels: the dataset's label file description from `data.human_labels` ({path, default_set}).
        label_set: aggre, worst, random1, random2, random3 (CIFAR-10N) or noisy (CIFAR-100N); None = the
            dataset's default.
    """

    def __init__(self, labels: Mapping[str, str] | None = None, label_set: str | None = None, seed: int = 0) -> None:
        super().__init__(rate=0.0, seed=seed)
        if not labels:
            raise ValueError("noise=human needs a dataset with human labels: data=cifar10n or data=cifar100n")
        self.path = Path(labels["path"]).expanduser()
        self.label_set = label_set or labels["default_set"]
        if self.label_set not in LABEL_SETS:
            raise ValueError(f"noise.label_set={self.label_set!r}; choose one of {', '.join(LABEL_SETS)}")
        if not self.path.is_file():
            unset_root = self.path.parts[:1] == ("None",)  # ${data.root}/cifar-n/... with data.root=null
            raise FileNotFoundError(
                f"human label file not found: {self.path}. Download CIFAR-10_human.pt / CIFAR-100_human.pt from the "
                "CIFAR-N release and put it there, or set data.human_labels.path=<file>"
                + (" (the path starts with None: data.root is null; set data.root=<folder holding the datasets>)."
                   if unset_root else ".")
            )

    def __repr__(self) -> str:
        return f"HumanNoise(label_set={self.label_set}, path={self.path})"

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        table = load_human_labels(self.path)
        key = LABEL_SETS[self.label_set]
        if key not in table:
            raise ValueError(f"{self.path} has no {self.label_set!r} labels ({key}); it has {sorted(table)}")
        positions = np.arange(len(clean)) if positions is None else positions
        file_clean = table["clean_label"]
        if len(file_clean) <= positions.max(initial=0) or not np.array_equal(file_clean[positions], class_ids[clean]):
            raise ValueError(f"{self.path} does not match this dataset's training labels (wrong file or sample order)")
        noisy = table[key][positions]
        to_contiguous = np.full(max(int(noisy.max()), int(class_ids.max())) + 1, -1, dtype=np.int64)
        to_contiguous[class_ids] = np.arange(len(class_ids))
        mapped = to_contiguous[noisy]
        if (mapped < 0).any():
            raise ValueError(
                f"{int((mapped < 0).sum())} samples have a held-out class as their human label; human noise "
                "cannot hold classes out (use ood=none or OOD datasets)"
            )
        return mapped
