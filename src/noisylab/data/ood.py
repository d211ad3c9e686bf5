"""Held-out classes as out-of-distribution data (the drainage paper's open-set protocol; works offline)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class HeldOutClasses:
    """Removes some classes from training; their test images become the OOD set `holdout`.

    Give `classes` explicitly, or leave it empty and `num_classes` are drawn with `seed`
    (averaging over seeds then averages over splits, as in the drainage paper).
    """

    name = "holdout"

    def __init__(self, classes: Sequence[int] | None = None, num_classes: int = 2, seed: int = 0) -> None:
        self.classes = None if classes is None else sorted(int(c) for c in classes)
        self.num_classes = int(num_classes)
        self.seed = int(seed)

    def choose(self, total_classes: int) -> np.ndarray:
        """The sorted ids of the held-out classes, validated against the dataset's class count."""
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"ood.holdout.classes lists a class twice: {self.classes}")
            bad = [c for c in self.classes if not 0 <= c < total_classes]
            if bad:
                raise ValueError(f"ood.holdout.classes {bad} are not classes of this dataset (0..{total_classes - 1})")
            chosen = np.array(self.classes, dtype=np.int64)
        else:
            rng = np.random.default_rng(self.seed)
            chosen = np.sort(rng.choice(total_classes, size=self.num_classes, replace=False))
        if total_classes - len(chosen) < 2 or len(chosen) == 0:
            raise ValueError(
                f"holding out {len(chosen)} of {total_classes} classes leaves nothing sensible to train or to "
                "detect; hold out at least 1 class and keep at least 2 (ood.holdout.num_classes)"
            )
        return chosen
