"""InstanceGM (Garg et al., WACV 2023): DivideMix plus a generative model of instance-dependent noise.

Each of the two networks gets its own generative model (`NoiseGenerativeModel`): the network is its
q(y | x). After the warm-up (which, as in the reference, trains the classifiers with the warm-up loss only),
every step of network k adds generative model k's loss on a batch of data.batch_size noisy samples of the
whole training set to DivideMix's loss, before one backward pass. With the alternating schedule that batch
is drawn for the step (as the reference draws one from its shuffled loader); with the joint schedule it is
the step's batch. The generative parts train with their own Adam optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric

from noisylab.methods.dividemix import DivideMix
from noisylab.models.factory import NetworkFactory
from noisylab.models.generative import NoiseGenerativeModel

_TERMS = ("reconstruction", "noisy_label", "kl")


class InstanceGM(DivideMix):
    """Args (besides DivideMix's):
        z_dim: size of the latent code z (25).
        generative_lr: Adam learning rate of the encoders/decoders (1e-3).
        kl_weight, label_prior_weight: see NoiseGenerativeModel (the reference's: 6e-4 on the KL summed over
            the batch and z, i.e. its -3e-4 * sum(1 + logvar - mu^2 - exp(logvar)); 1e-5).
        generative_weight: weight of the generative loss in the joint loss (1 in the paper).
    """

    uses_generative_batches = True

    def __init__(
        self,
        network: NetworkFactory,
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        z_dim: int = 25,
        generative_lr: float = 1e-3,
        kl_weight: float = 6e-4,
        label_prior_weight: float = 1e-5,
        generative_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(network, criterion, optimizer, **kwargs)
        channels, size, _ = network.image_shape
        num_classes = network.num_classes
        self.generative = nn.ModuleList(
            NoiseGenerativeModel(channels, size, num_classes, z_dim, kl_weight, label_prior_weight) for _ in range(2)
        )
        # Means over the epoch of generative model 1's terms (logged once per epoch).
        self.generative_terms = nn.ModuleDict({name: MeanMetric(sync_on_compute=False) for name in _TERMS})

    def trained_modules(self, k: int) -> list[nn.Module]:
        return [self.networks()[k], self.generative[k]]

    def generative_loss(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Generative model k on a batch (normalised network inputs x, noisy labels y): the images are
        un-normalised to [0, 1], as the continuous Bernoulli likelihood needs."""
        images = self.trainer.datamodule.augment.to_unit_range(x)
        terms = self.generative[k].loss(images, self._class_logits(k, x), y)
        if k == 0:
            for name in _TERMS:
                self.generative_terms[name].update(terms[name].detach())
        return self.hparams.generative_weight * terms["loss"]

    def on_train_epoch_end(self) -> None:
        for name in _TERMS:
            metric = self.generative_terms[name]
            if metric.update_count:  # none in the warm-up
                self.log(f"train/generative/{name}", metric.compute(), sync_dist=True)
            metric.reset()
        super().on_train_epoch_end()

    def configure_optimizers(self) -> list[dict[str, Any]]:
        classifier = super().configure_optimizers()
        generative = torch.optim.Adam(self.generative.parameters(), lr=self.hparams.generative_lr)
        return [classifier, {"optimizer": generative}]
