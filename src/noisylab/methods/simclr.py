"""SimCLR (Chen et al., 2020) pre-training of a backbone, for Ghosh & Lan's contrastive initialisation.

Trains backbone + projection head with NT-Xent on two distorted views of each training image; labels are
not used. The run's checkpoints hold the backbone (`net.backbone.*`) and the run writes the final backbone
alone to `<run>/encoder.pt`; any later run starts from either with `model.init_from=...` (its head then
starts at zero).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisylab.data.augment import ContrastiveAugment
from noisylab.losses.contrastive import nt_xent
from noisylab.methods.standard import StandardMethod
from noisylab.models.factory import NetworkFactory
from noisylab.utils.atomic import atomic_save


def projection_head(features: int, projection_dim: int) -> nn.Sequential:
    """Linear (no bias) - BatchNorm - ReLU - Linear (no bias) - BatchNorm without a trained shift: the head of
    Atanov's SimCLR code, which made Ghosh & Lan's encoders (tests/parity/test_simclr.py). The final
    BatchNorm's scale trains; its shift stays 0, so it only standardises the embedding before the norm."""
    last = nn.BatchNorm1d(projection_dim)
    last.bias.requires_grad_(False)
    return nn.Sequential(nn.Linear(features, features, bias=False), nn.BatchNorm1d(features), nn.ReLU(),
                         nn.Linear(features, projection_dim, bias=False), last)


class SimCLR(StandardMethod):
    """Args (besides StandardMethod's; the loss config's criterion and head are not used):
        temperature: NT-Xent temperature (0.5 in Ghosh & Lan).
        projection_dim: output size of the projection head (128).
        crop_scale, jitter, jitter_probability, grey_probability: the view distortions (ContrastiveAugment),
            applied on top of the data config's augmentation.
    """

    train_views = 2

    def __init__(
        self,
        network: NetworkFactory,
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        temperature: float = 0.5,
        projection_dim: int = 128,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        jitter: float = 0.5,
        jitter_probability: float = 0.8,
        grey_probability: float = 0.2,
        **kwargs: Any,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        super().__init__(network, criterion, optimizer, **kwargs)
        features = self.net.backbone.out_features
        self.projection = projection_head(features, projection_dim)
        # The classification head (built with the network, so checkpoints keep the usual layout) is not
        # trained here; DDP must not wait for its gradients.
        self._ddp_params_and_buffers_to_ignore = [f"net.head.{n}" for n, _ in self.net.head.named_parameters()]
        self.distort = ContrastiveAugment(crop_scale, jitter, jitter_probability, grey_probability)

    def networks(self) -> list[nn.Module]:
        return [self.net.backbone, self.projection]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        augment = self.trainer.datamodule.augment  # distortions act on pixels in [0, 1]
        x = augment.normalise(self.distort(augment.to_unit_range(x)))
        features = self.net.backbone(x.contiguous(memory_format=self.memory_format))
        return F.normalize(self.projection(features).float(), dim=1)

    def contrastive_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """NT-Xent of this rank's pairs against the embeddings of all ranks (more negatives under DDP)."""
        z = torch.cat([self._embed(view1), self._embed(view2)])
        n = len(z)
        offset = 0
        candidates = z
        if self.trainer is not None and self.trainer.world_size > 1:
            candidates = self.all_gather(z, sync_grads=True).reshape(-1, z.shape[1])
            offset = self.global_rank * n
        rows = torch.arange(n, device=z.device)
        return nt_xent(z, candidates, offset + (rows + n // 2) % n, offset + rows, self.hparams.temperature)

    def training_step(self, batch: tuple[Any, ...], batch_idx: int) -> torch.Tensor:
        views = batch[0]
        loss = self.contrastive_loss(views[0], views[1]) + self.l1_penalty()
        self.check_finite(loss)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        """No class predictions to score during pre-training."""

    def on_train_end(self) -> None:
        """Also write the final backbone alone, as `<run>/encoder.pt` (a plain state dict, for use outside
        noisylab; `model.init_from` takes it as well as the run's checkpoints)."""
        if self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / "encoder.pt"
            weights = {k: v.detach().cpu() for k, v in self.net.backbone.state_dict().items()}
            atomic_save(path, lambda f: torch.save(weights, f))

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x = batch[0]
        self.log("val/loss", self.contrastive_loss(x, x), on_epoch=True, prog_bar=True, sync_dist=True)
