"""Noise models: pure, seeded functions from clean labels (and images) to noisy labels."""

from noisylab.noise.asymmetric import AsymmetricNoise
from noisylab.noise.base import NoiseModel, NoNoise
from noisylab.noise.from_file import NoiseFromFile
from noisylab.noise.human import HumanNoise
from noisylab.noise.instance import InstanceNoise
from noisylab.noise.labels import NoisyLabels, transition_matrix
from noisylab.noise.matrix import MatrixNoise
from noisylab.noise.pairflip import PairFlipNoise
from noisylab.noise.symmetric import SymmetricNoise

__all__ = [
    "AsymmetricNoise",
    "HumanNoise",
    "InstanceNoise",
    "MatrixNoise",
    "NoNoise",
    "NoiseFromFile",
    "NoiseModel",
    "NoisyLabels",
    "PairFlipNoise",
    "SymmetricNoise",
    "transition_matrix",
]
