"""Data sources, the NoisyLabelDataModule and batched on-device augmentation."""

from noisylab.data.datamodule import NoisyLabelDataModule
from noisylab.data.errors import DatasetNotFoundError
from noisylab.data.ood import HeldOutClasses, OODSet
from noisylab.data.source import ImageSource

__all__ = ["DatasetNotFoundError", "HeldOutClasses", "ImageSource", "NoisyLabelDataModule", "OODSet"]
