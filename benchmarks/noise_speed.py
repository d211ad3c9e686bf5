"""How long the noise models take on CIFAR-sized training sets (50,000 images of 3x32x32) on the CPU.

Uses the real CIFAR-10 training images when ../shared/data has them (rebuilt into a temporary folder),
random pixels otherwise (the time does not depend on the pixel values).

    python benchmarks/noise_speed.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from noisylab.noise import AsymmetricNoise, InstanceNoise, SymmetricNoise
from noisylab.noise.class_maps import cifar10, cifar100

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cifar_like(num_classes: int) -> tuple[np.ndarray, np.ndarray, str]:
    builder = SHARED / "cifar10" / "make_cifar10.py"
    if num_classes == 10 and builder.is_file():
        import subprocess
        import sys

        from noisylab.data.sources import load_cifar10

        folder = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, str(builder), str(folder)], check=True, capture_output=True)
        source = load_cifar10(folder)
        return source.train_images, source.train_labels, "real CIFAR-10 training images"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50_000, 3, 32, 32), dtype=np.uint8)
    return images, rng.integers(0, num_classes, 50_000), "random pixels"


def timed(fn, repeats: int = 3) -> tuple[float, np.ndarray]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, numpy {np.__version__}")
    for k, class_map in ((10, cifar10()), (100, cifar100())):
        images, labels, what = cifar_like(k)
        ids = np.arange(k)
        models = (("instance 0.4", InstanceNoise(0.4, seed=1)), ("symmetric 0.4", SymmetricNoise(0.4, seed=1)),
                  ("asymmetric 0.4", AsymmetricNoise(0.4, seed=1, class_map=class_map)))
        for name, model in models:
            seconds, noisy = timed(lambda m=model, y=labels, x=images, c=ids: m(y, x, c))
            print(f"K={k:3d} {name:15s} {len(labels)} samples ({what}): {seconds:6.2f} s (best of 3), "
                  f"realised rate {(noisy != labels).mean():.4f}")


if __name__ == "__main__":
    main()
