"""Pair-flip noise (Han et al. 2018, Co-teaching): class i is confused with class i + 1 (mod K)."""

from __future__ import annotations

import numpy as np

from noisylab.noise.base import NoiseModel
from noisylab.noise.matrix import apply_counts, exact_counts


def pairflip_matrix(num_classes: int, rate: float) -> np.ndarray:
    """T with 1 - rate on the diagonal and rate at T[i, (i + 1) mod K]: Co-teaching's `noisify_pairflip` matrix."""
    eye = np.eye(num_classes)
    return (1.0 - rate) * eye + rate * np.roll(eye, 1, axis=1)


class PairFlipNoise(NoiseModel):
    """Per class i, round(rate * n_i) of its samples (halves rounded down) relabelled as class (i + 1) mod K.

    The Co-teaching convention, with the class index taken over the trained classes in the order of their ids
    (with classes held out as OOD, a class flips to the next trained class, the last to the first). Co-teaching
    draws each label independently from this matrix; here the counts are exact per class, like the other noise
    models (the largest-remainder rounding of MatrixNoise), so the realised rate is `rate` up to rounding.
    Not the same as `noise=asymmetric`, whose maps name dataset class ids and flip floor(rate * n_i) samples.
    """

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        k = len(class_ids)
        if k < 2:
            raise ValueError(f"pair-flip noise needs at least 2 trained classes, got {k}; hold fewer classes out "
                             "(ood.holdout) or use noise=none")
        counts = exact_counts(np.bincount(clean, minlength=k), pairflip_matrix(k, self.rate))
        return apply_counts(clean, counts, self.rng())
