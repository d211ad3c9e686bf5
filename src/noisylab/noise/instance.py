"""Instance-dependent noise (Xia et al., NeurIPS 2020, "Part-dependent label noise"), vectorised."""

from __future__ import annotations

import numpy as np
from scipy.stats import truncnorm

from noisylab.noise.base import NoiseModel


class InstanceNoise(NoiseModel):
    """Each sample flips with its own probability, towards classes that depend on its pixels.

    Per sample: flip rate q ~ N(rate, std^2) truncated to [0, 1]; a random projection W of shape
    (K, D, K) maps the flattened image x (pixels scaled to [0, 1], CHW order) to scores
    s = x W[y]; the true class is excluded, the rest soft-maxed and scaled by q, and the true class
    keeps 1 - q. The realised rate equals `rate` only in expectation; it is reported.

    The reference generators loop over samples on the GPU; here the projection is one matrix product
    per class, so 50k CIFAR images take a couple of seconds on a CPU.
    """

    def __init__(self, rate: float, seed: int = 0, std: float = 0.1) -> None:
        super().__init__(rate=rate, seed=seed)
        self.std = float(std)

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        if images is None:
            raise ValueError(
                "noise=instance (InstanceNoise) needs the pixels of every training image, noise(clean, images) "
                "with uint8 images (n, C, H, W), and none were given (a dataset read from files on demand has "
                "none); use noise=symmetric, asymmetric or none for it"
            )
        if len(images) != len(clean):
            raise ValueError(f"InstanceNoise: {len(images)} images for {len(clean)} labels; give one image per label")
        num_classes = len(class_ids)
        rng = self.rng()
        n = len(clean)
        x = images.reshape(n, -1).astype(np.float32) / 255.0
        if self.std > 0:
            lo, hi = (0.0 - self.rate) / self.std, (1.0 - self.rate) / self.std
            flip_rate = truncnorm.rvs(lo, hi, loc=self.rate, scale=self.std, size=n, random_state=rng)
        else:
            flip_rate = np.full(n, self.rate)
        w = rng.standard_normal((num_classes, x.shape[1], num_classes)).astype(np.float32)

        scores = np.empty((n, num_classes), dtype=np.float64)
        for c in range(num_classes):  # a loop over classes, not samples
            members = clean == c
            scores[members] = x[members] @ w[c]
        scores[np.arange(n), clean] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        probs *= flip_rate[:, None]
        probs[np.arange(n), clean] += 1.0 - flip_rate

        u = rng.random(n)
        noisy = (probs.cumsum(axis=1) > u[:, None]).argmax(axis=1)
        return noisy.astype(clean.dtype)
