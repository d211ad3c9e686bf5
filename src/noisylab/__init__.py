"""noisylab: experiments on learning with noisy labels (robust losses, drainage, OOD detection)."""

__version__ = "0.1.0"
