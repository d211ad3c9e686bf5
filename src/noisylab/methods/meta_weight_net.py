"""Meta-Weight-Net (Shu et al., NeurIPS 2019): per-sample loss weights learned on a small clean meta set.

Each step: (1) a virtual SGD step of the classifier on the weighted noisy-batch loss, kept differentiable
with respect to the weight network (`torch.func.functional_call` on the updated parameters); (2) the
loss of the virtually updated classifier on a clean meta batch updates the weight network; (3) the real
classifier step uses the weights of the updated weight network, without gradient into it.

Under trainer.precision=16-mixed the meta step (1-2) runs in float32: its double backward under- and
overflows in float16, and its gradients come from autograd.grad, not from the scaled backward the loss
scaler expects (step 3 is scaled as usual). bf16-mixed has the float32 range and no scaler: unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch.func import functional_call
from torchmetrics import MeanMetric

from noisylab.methods.standard import StandardMethod
from noisylab.models.factory import NetworkFactory
from noisylab.utils.loss_scaling import grad_scaler
from noisylab.utils.seeding import epoch_seed


class WeightNet(nn.Module):
    """loss -> weight in (0, 1): one hidden layer of `hidden` ReLU units, sigmoid output (1-100-1)."""

    def __init__(self, hidden: int = 100) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return self.layers(losses.float().view(-1, 1)).view(-1)


class MetaWeightNet(StandardMethod):
    """Args (besides StandardMethod's; `criterion` must give per-sample losses, e.g. loss=ce or loss=gce):
        hidden: hidden units of the weight network (100).
        meta_optimizer: optimizer config of the weight network (Adam lr 1e-3, wd 1e-4 in the paper).
        inner_lr: learning rate of the virtual step; null = the classifier's current learning rate.
        meta_batch_size: clean samples per meta step; null = data.batch_size.
        seed: seeds the order of the meta batches (with the epoch and the DDP rank).
        sync_batchnorm: the trainer's setting, refused when true: the meta gradient runs a double
            backward through BatchNorm, which SyncBatchNorm does not implement in PyTorch.
    """

    # Its meta loader's position is not in a checkpoint: no mid-epoch saves.
    supports_mid_epoch_resume = False

    automatic_optimization = False

    def __init__(
        self,
        network: NetworkFactory,
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        hidden: int = 100,
        meta_optimizer: dict[str, Any] | None = None,
        inner_lr: float | None = None,
        meta_batch_size: int | None = None,
        seed: int = 0,
        sync_batchnorm: bool = False,
        **kwargs: Any,
    ) -> None:
        if sync_batchnorm:
            raise ValueError("method=meta_weight_net cannot run with trainer.sync_batchnorm=true: its meta gradient "
                             "is a double backward through BatchNorm, which PyTorch's SyncBatchNorm does not "
                             "implement. Set trainer.sync_batchnorm=false (each GPU then normalises its own batch, "
                             "as the paper's single-GPU code does).")
        if not callable(getattr(criterion, "per_sample", None)):
            raise ValueError(f"method=meta_weight_net weights per-sample losses; {type(criterion).__name__} has "
                             "none (use a loss of the zoo, e.g. loss=ce or loss=gce)")
        super().__init__(network, criterion, optimizer, **kwargs)
        self.weight_net = WeightNet(hidden)
        # DDP must not reduce the weight network's gradients in the classifier's backward pass (it gets
        # none there); its meta gradients are averaged over ranks by hand.
        self._ddp_params_and_buffers_to_ignore = [f"weight_net.{n}" for n, _ in self.weight_net.named_parameters()]
        self.meta_optimizer_config = meta_optimizer or {"_target_": "torch.optim.Adam", "lr": 1e-3,
                                                        "weight_decay": 1e-4}
        self.weight_of_clean = MeanMetric(sync_on_compute=False)
        self.weight_of_mislabeled = MeanMetric(sync_on_compute=False)
        self.meta_loss = MeanMetric(sync_on_compute=False)
        self._meta_batches: Iterator[Any] | None = None
        self._meta_pass = 0

    # ------------------------------------------------------------------ meta data
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._meta_pass = 0
        self._meta_batches = None

    def _next_meta_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = self.trainer.datamodule
        for _ in range(2):
            if self._meta_batches is None:
                loader = datamodule.meta_loader(self.hparams.meta_batch_size or datamodule.batch_size,
                                                epoch_seed(self.hparams.seed, self.current_epoch, self.global_rank),
                                                lambda: self._meta_pass)
                self._meta_batches = iter(loader)
            try:
                images, labels, _, _ = next(self._meta_batches)
                return datamodule.augment(images.to(self.device), train=True), labels.to(self.device)
            except StopIteration:
                self._meta_pass += 1
                self._meta_batches = None
        raise RuntimeError("the meta set yields no batch; data.meta_size must be at least the meta batch size")

    # ------------------------------------------------------------------ training
    def _inner_lr(self) -> float:
        if self.hparams.inner_lr is not None:
            return float(self.hparams.inner_lr)
        return float(self.optimizers()[0].param_groups[0]["lr"])

    def _meta_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Update the weight network through one virtual step of the classifier (in float32 where a loss
        scaler is at work, see the module's docstring)."""
        scaler = grad_scaler(self.trainer)
        with torch.autocast(self.device.type, enabled=False) if scaler is not None else contextlib.nullcontext():
            params = dict(self.net.named_parameters())
            buffers = {name: b.clone() for name, b in self.net.named_buffers()}  # virtual passes keep BN stats
            names = [name for name, p in params.items() if p.requires_grad]
            losses = self.criterion.per_sample(functional_call(self.net, (params, buffers), (x,)), y)
            virtual_loss = (self.weight_net(losses.detach()) * losses).mean()
            grads = torch.autograd.grad(virtual_loss, [params[n] for n in names], create_graph=True, allow_unused=True)
            lr = self._inner_lr()
            updated = dict(params)
            for name, grad in zip(names, grads, strict=True):
                if grad is not None:
                    updated[name] = params[name] - lr * grad
            meta_x, meta_y = self._next_meta_batch()
            meta_outputs = functional_call(self.net, (updated, buffers), (meta_x,))
            meta_loss = F.cross_entropy(self.head.class_logits(meta_outputs).float(), meta_y)
            meta_grads = torch.autograd.grad(meta_loss, list(self.weight_net.parameters()))
            meta_optimizer = self.optimizers()[1]
            meta_optimizer.zero_grad()
            for p, grad in zip(self.weight_net.parameters(), meta_grads, strict=True):
                grad = self.trainer.strategy.reduce(grad, reduce_op="mean") if self.trainer.world_size > 1 else grad
                # The precision plugin's step unscales every gradient: hand it the float32 gradient times the
                # scale, as a scaled backward would have (the scale is a power of two: it comes back exactly).
                p.grad = scaler.scale(grad) if scaler is not None else grad
            meta_optimizer.step()
            self.meta_loss.update(meta_loss.detach())

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _, clean = batch
        self._meta_step(x, y)
        outputs = self(x)
        losses = self.criterion.per_sample(outputs, y)
        with torch.no_grad():
            weights = self.weight_net(losses.detach())
        loss = (weights * losses).mean() + self.l1_penalty()
        self.check_finite(loss)
        optimizer = self.optimizers()[0]
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        mislabeled = y != clean
        if (~mislabeled).any():
            self.weight_of_clean.update(weights[~mislabeled])
        if mislabeled.any():
            self.weight_of_mislabeled.update(weights[mislabeled])
        self.train_acc.update(self.head.class_logits(outputs).detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("meta/loss", self.meta_loss.compute(), sync_dist=True)
        for name, metric in (("clean", self.weight_of_clean), ("mislabeled", self.weight_of_mislabeled)):
            if metric.update_count:  # mislabeled samples are only known where clean labels are
                self.log(f"meta/weight_{name}", metric.compute(), sync_dist=True)
            metric.reset()
        self.meta_loss.reset()
        self.step_schedulers_by_hand()

    def suspicion_scores(self, positions: torch.Tensor, outputs: torch.Tensor,
                         labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """one_minus_mwn_weight: 1 - the weight the learned weight network gives each sample's loss (on the
        un-augmented image): the samples it learned to discount are its suspects."""
        with torch.no_grad():
            losses = self.criterion.per_sample(outputs.to(self.device), labels.to(self.device))
            return {"one_minus_mwn_weight": 1.0 - self.weight_net(losses).double().cpu()}

    def configure_optimizers(self) -> list[dict[str, Any]]:
        classifier = super().configure_optimizers()
        meta = instantiate(self.meta_optimizer_config, params=self.weight_net.parameters())
        return [classifier, {"optimizer": meta}]
