"""Symmetric (uniform) noise with an exact number of flips."""

from __future__ import annotations

import numpy as np

from noisylab.noise.base import NoiseModel


class SymmetricNoise(NoiseModel):
    """Flip exactly round(rate * n) samples, each to a class drawn uniformly from the *other* classes.

    Unlike the DivideMix convention (a random label that may equal the true one, realised rate
    rate*(K-1)/K), the realised rate here is the asked rate up to rounding.
    """

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        num_classes = len(class_ids)
        if num_classes < 2:
            raise ValueError("symmetric noise needs at least 2 classes")
        rng = self.rng()
        noisy = clean.copy()
        n_flip = int(round(self.rate * len(clean)))
        flip = rng.choice(len(clean), size=n_flip, replace=False)
        offsets = rng.integers(1, num_classes, size=n_flip)
        noisy[flip] = (clean[flip] + offsets) % num_classes
        return noisy
