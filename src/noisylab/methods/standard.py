"""The standard method: one network trained with the configured loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from noisylab.errors import NonFiniteLossError
from noisylab.methods.evaluation import TestSetEvaluator
from noisylab.models.classifier import Classifier


class StandardMethod(L.LightningModule):
    """Backbone + head trained with `criterion` on the noisy labels.

    Args:
        network: builds the backbone + head (model and loss configs); see `noisylab.train.network_factory`.
        criterion: the loss, from the loss config.
        optimizer: a partial optimizer (torch.optim class with its settings), called with parameter groups.
        scheduler: a partial LR scheduler, stepped once per epoch.
        evaluator: computes the test metrics (calibration, OOD scores); from the `eval` config.
        objective: for losses that need the inputs (e.g. DisMax's FPR mixes images): called as
            objective(net, criterion, x, y) -> (loss, outputs, targets for train/acc).
        l1: L1 penalty on the weights (the drainage reference's `delta`); BatchNorm and bias parameters are
            exempt unless `decay_norm_and_bias` is set, like weight decay.
        channels_last: keep weights and inputs in channels-last memory format (faster convolutions with
            mixed precision on recent GPUs).
        compile: run the network through `torch.compile` (the state dict keeps its usual keys).
        decay_norm_and_bias: apply weight decay / L1 to BatchNorm and bias parameters too (as the
            reference code does); off by default.
        run_config: the run's resolved config as a plain dict, stored in checkpoints for reproducibility.
    """

    # Everything it carries within an epoch is in a checkpoint: a mid-epoch save resumes exactly.
    supports_mid_epoch_resume = True

    def __init__(
        self,
        network: Callable[[], Classifier],
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        evaluator: TestSetEvaluator | None = None,
        objective: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
        l1: float = 0.0,
        decay_norm_and_bias: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        if l1 < 0:
            raise ValueError(f"loss.l1 must be >= 0, got {l1}")
        self.save_hyperparameters(
            ignore=["network", "criterion", "optimizer", "scheduler", "evaluator", "objective"]
        )
        self.net = network()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # A compiled *function*, not a module attribute: checkpoints keep the plain parameter names.
        self._run_net = torch.compile(self.net.forward) if compile else self.net.forward
        self.head = self.net.head
        self.criterion = criterion
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        k = self.head.num_classes
        # Computed per rank, averaged by Lightning when logged (a torchmetrics sync inside an epoch-end hook
        # would interleave with Lightning's own collectives, which rank 0's progress bar triggers earlier).
        self.train_acc = MulticlassAccuracy(num_classes=k, average="micro", sync_on_compute=False)
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.evaluator = evaluator if evaluator is not None else TestSetEvaluator()
        # Feature detectors read self.net's features, which make the test outputs only with this forward.
        self.evaluator.check_network(self.head, type(self).__name__,
                                     one_network=type(self).forward is StandardMethod.forward)
        self.objective = objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self._run_net(x)

    # ------------------------------------------------------------------ per-sample losses
    # A criterion with per-sample state (e.g. truncated GCE) sets `needs_index = True`, may define
    # `setup_samples(num_samples)` and `on_train_epoch_start(method)`; the method calls them.
    @property
    def _criterion_needs_index(self) -> bool:
        return bool(getattr(self.criterion, "needs_index", False))

    def setup(self, stage: str) -> None:
        if hasattr(self.criterion, "setup_samples") and self.trainer is not None and self.trainer.datamodule:
            self.criterion.setup_samples(len(self.trainer.datamodule.labels.noisy))

    def on_train_epoch_start(self) -> None:
        if hasattr(self.criterion, "on_train_epoch_start"):
            self.criterion.on_train_epoch_start(self)

    @torch.no_grad()
    def predict_training_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index, outputs, noisy labels) for the whole training split, un-augmented, in eval mode."""
        datamodule = self.trainer.datamodule
        was_training = self.net.training
        self.net.eval()
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        with self.trainer.precision_plugin.forward_context():
            for images, labels, index, _ in datamodule.sequential_loader(datamodule.test_sets["train"]):
                x = datamodule.augment(images.to(self.device), train=False)
                parts.append((index, self(x).float().cpu(), labels))
        self.net.train(was_training)
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    # ------------------------------------------------------------------ training
    def networks(self) -> list[nn.Module]:
        """The networks the configured optimizer trains (methods with two networks return both)."""
        return [self.net]

    def _split_params(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(regularised, exempt): weights of conv/linear layers vs BatchNorm and bias parameters."""
        regularised, exempt = [], []
        for p in (p for net in self.networks() for p in net.parameters()):
            if not p.requires_grad:
                continue
            (regularised if p.ndim > 1 or self.hparams.decay_norm_and_bias else exempt).append(p)
        return regularised, exempt

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, index, _ = batch
        if self.objective is not None:
            loss, outputs, y = self.objective(self, self.criterion, x, y)
        else:
            outputs = self(x)
            extra = {"index": index} if self._criterion_needs_index else {}
            loss = self.criterion(outputs, y, **extra)
        loss = loss + self.l1_penalty()
        self.check_finite(loss)
        self.train_acc.update(self.head.class_logits(outputs).detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop (on every rank at once) when the loss is NaN or infinite, before it reaches the weights."""
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self.current_epoch}, step {self.global_step}; training "
                "stopped and the checkpoints written so far are kept. Lower optim.lr, enable "
                "trainer.gradient_clip_val, or use trainer.precision=32-true."
            )

    def l1_penalty(self) -> torch.Tensor | float:
        """loss.l1 times the L1 norm of the regularised weights (0 when loss.l1 is 0)."""
        if not self.hparams.l1:
            return 0.0
        return self.hparams.l1 * sum(p.abs().sum() for p in self._split_params()[0])

    def step_schedulers_by_hand(self) -> None:
        """Methods with manual optimisation step their epoch schedulers themselves (Lightning does not)."""
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        # Logged once per epoch, not once per step: each self.log call costs the training loop about a
        # millisecond of Python.
        self.log("train/acc", self.train_acc.compute(), sync_dist=True)
        self.train_acc.reset()

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, _, _ = batch
        outputs = self(x)
        self.val_acc(self.head.class_logits(outputs), y)
        self.log("val/loss", self.criterion(outputs, y), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    # ------------------------------------------------------------------ testing
    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Test outputs in float32 whatever the training precision (autocast off): a checkpoint gets the
        same metrics from train.py under trainer.precision=bf16-mixed as from eval.py, which tests in
        32-true. With eval.detectors, the penultimate features of the same forward go along."""
        x, y, index, clean = batch
        name = self.trainer.datamodule.test_set_names[dataloader_idx]
        features = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.evaluator.detectors:
                x = x.float().contiguous(memory_format=self.memory_format) if x.dim() == 4 else x.float()
                features = self.net.features(x).float()
                outputs = self.head(features).float()
            else:
                outputs = self(x.float()).float()
        self.evaluator.add(name, self.head, outputs, y, index, clean, features=features)

    def suspicion_scores(self, positions: torch.Tensor, outputs: torch.Tensor,
                         labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's own per-sample evidence that a training label is wrong (higher = more suspicious), for
        the samples at `positions` of the noisy training labels, beyond its head's; none here."""
        return {}

    def on_test_epoch_end(self) -> None:
        metrics = self.evaluator.compute(self, self.head, self.trainer.datamodule.test_set_names)
        for name, value in metrics.items():
            self.log(name, value, sync_dist=True)  # identical on every rank (gathered); averaging keeps it

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        regularised, exempt = self._split_params()
        groups = [{"params": regularised}]
        if exempt:
            groups.append({"params": exempt, "weight_decay": 0.0})
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}
