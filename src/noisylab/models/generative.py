"""InstanceGM's generative model of instance-dependent label noise (after CausalNL).

The images x and the clean labels y cause the noisy labels: x ~ p(x | z, y), noisy y ~ p(noisy y | x, y).
Inference uses the classifier itself as q(y | x) (through a Gumbel-softmax sample), a convolutional
encoder q(z | x, y), and two decoders; training maximises the ELBO jointly with the classifier's loss,
so the classifier is pushed towards labels under which the noisy labels are well explained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import ContinuousBernoulli


def _conv_features(in_channels: int) -> nn.Sequential:
    """Four stride-2 convolutions (32..256 channels), pooled to one 256-d vector for any input size."""
    layers: list[nn.Module] = []
    for width in (32, 64, 128, 256):
        layers += [nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class LatentEncoder(nn.Module):
    """q(z | x, y): mean and log-variance of a diagonal Gaussian."""

    def __init__(self, channels: int, num_classes: int, z_dim: int) -> None:
        super().__init__()
        self.features = _conv_features(channels)
        self.out = nn.Linear(256 + num_classes, 2 * z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.out(torch.cat([self.features(x), y], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)


class ImageDecoder(nn.Module):
    """p(x | z, y): logits of a continuous Bernoulli per pixel, from four stride-2 transposed convolutions."""

    def __init__(self, channels: int, image_size: int, num_classes: int, z_dim: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.start = max(1, -(-image_size // 16))  # 4 doublings reach at least image_size
        self.fc = nn.Linear(z_dim + num_classes, 256 * self.start * self.start)
        layers: list[nn.Module] = []
        for width_in, width_out in ((256, 128), (128, 64), (64, 32)):
            layers += [nn.ConvTranspose2d(width_in, width_out, 4, stride=2, padding=1), nn.BatchNorm2d(width_out),
                       nn.ReLU()]
        self.deconv = nn.Sequential(*layers, nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(torch.cat([z, y], 1))).view(-1, 256, self.start, self.start)
        return self.deconv(h)[..., : self.image_size, : self.image_size]


class NoisyLabelDecoder(nn.Module):
    """p(noisy y | x, y): logits of the noisy label given an image and its clean label."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = _conv_features(channels)
        self.out = nn.Sequential(nn.Linear(256 + num_classes, 256), nn.ReLU(), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.features(x), y], 1))


class NoiseGenerativeModel(nn.Module):
    """The encoder and decoders of one network; `loss` is the negative ELBO (+ a weak label prior).

    Args:
        kl_weight: weight of KL(q(z|x,y) || N(0, I)), summed over the batch and the latent dimensions as in
            the reference (6e-4: the reference adds -3e-4 * sum(1 + logvar - mu^2 - exp(logvar)), and the KL
            is -1/2 of that sum).
        label_prior_weight: weight of the cross-entropy between a uniform label and q(y|x), which keeps the
            classifier's label posterior from collapsing (1e-5; the reference's term had no gradient).
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, z_dim: int = 25, kl_weight: float = 6e-4,
                 label_prior_weight: float = 1e-5) -> None:
        super().__init__()
        self.encoder = LatentEncoder(channels, num_classes, z_dim)
        self.image_decoder = ImageDecoder(channels, image_size, num_classes, z_dim)
        self.label_decoder = NoisyLabelDecoder(channels, num_classes)
        self.kl_weight = kl_weight
        self.label_prior_weight = label_prior_weight

    def loss(self, images: torch.Tensor, class_logits: torch.Tensor, noisy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Terms of the loss for un-normalised images in [0, 1], the classifier's logits and the noisy labels."""
        images, class_logits = images.float(), class_logits.float()
        y = F.gumbel_softmax(class_logits, tau=1.0, hard=False)
        mu, logvar = self.encoder(images, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # Gaussian reparameterisation
        likelihood = ContinuousBernoulli(logits=self.image_decoder(z, y).float())
        reconstruction = -likelihood.log_prob(images).mean()
        noisy_logits = self.label_decoder(likelihood.mean, y)
        noisy_label = F.cross_entropy(noisy_logits, noisy)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()  # summed over the batch and over z
        label_prior = -F.log_softmax(class_logits, 1).mean(1).mean()
        total = reconstruction + noisy_label + self.kl_weight * kl + self.label_prior_weight * label_prior
        return {"loss": total, "reconstruction": reconstruction, "noisy_label": noisy_label, "kl": kl,
                "label_prior": label_prior}
