"""Class-conditional ("asymmetric") noise: a class is confused with one specific other class."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from noisylab.noise.base import NoiseModel


class AsymmetricNoise(NoiseModel):
    """For each source class i in `class_map`, relabel exactly floor(rate * n_i) of its samples as class_map[i].

    floor, not round: the Drainage code flips int(rate * n_i) samples per class, so the counts (and
    the realised rate) are the reference's (tests/parity/test_drainage_noise_maps.py). The class map
    comes from the dataset's config (`data.asymmetric_map`); the realised overall rate is about `rate`
    times the share of samples whose class is a source in the map.
    """

    def __init__(self, rate: float, seed: int = 0, class_map: Mapping[int, int] | None = None) -> None:
        super().__init__(rate=rate, seed=seed)
        if not class_map:
            raise ValueError(
                "noise=asymmetric needs a class map, and this dataset defines none (data.asymmetric_map is "
                "empty). Pick a dataset that has one (mnist, cifar10, cifar100) or give a map, e.g. "
                "'+noise.class_map={3:5,5:3}'."
            )
        self.class_map = {int(k): int(v) for k, v in class_map.items()}

    def __call__(self, clean: np.ndarray, images: np.ndarray, class_ids: np.ndarray,
                 positions: np.ndarray | None = None) -> np.ndarray:
        position = {int(c): k for k, c in enumerate(class_ids)}
        # Pairs whose source or target class is held out (as OOD) do not apply.
        mapping = {position[s]: position[d] for s, d in self.class_map.items() if s in position and d in position}
        if not mapping:
            raise ValueError(
                f"no pair of the asymmetric class map {self.class_map} applies to the training classes "
                f"{list(map(int, class_ids))}; check noise.class_map and the OOD hold-out classes"
            )
        rng = self.rng()
        noisy = clean.copy()
        for src in sorted(mapping):
            members = np.flatnonzero(clean == src)
            chosen = rng.choice(members, size=int(self.rate * len(members)), replace=False)
            noisy[chosen] = mapping[src]
        return noisy
