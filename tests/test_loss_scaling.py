"""16-mixed's loss scaler in the methods that optimise by hand, on the CPU: Lightning's own MixedPrecision
plugin with a CPU GradScaler (the code a GPU's 16-mixed runs; Lightning maps 16-mixed to bf16 on the CPU)."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from noisylab.utils.loss_scaling import grad_scaler, step_after_one_backward


class TwoOptimisers(L.LightningModule):
    """One backward, two SGD optimisers (as InstanceGM's classifiers and VAE): at the initial scale 65536 the
    first parameter's gradient overflows float32, the second's (3) does not."""

    automatic_optimization = False

    def __init__(self, step: Callable) -> None:
        super().__init__()
        self.first, self.second = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
        self.step = step

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(1e36 * self.first.sum() + 3.0 * self.second.sum())
        self.step(optimizers, grad_scaler(self.trainer))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD([self.first], lr=0.1), torch.optim.SGD([self.second], lr=0.1)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


def _one_step(step: Callable) -> tuple[TwoOptimisers, float]:
    module = TwoOptimisers(step)
    scaler = torch.amp.GradScaler("cpu")
    trainer = L.Trainer(accelerator="cpu", plugins=[MixedPrecision("16-mixed", "cpu", scaler)], max_steps=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module)
    return module, scaler.get_scale()


def _each_in_turn(optimizers: list, scaler: torch.amp.GradScaler | None) -> None:
    for optimizer in optimizers:
        optimizer.step()


@pytest.mark.parametrize("step", [_each_in_turn, step_after_one_backward], ids=["each in turn", "noisylab"])
def test_an_overflow_in_one_optimiser_leaves_the_next_ones_step_exact(step: Callable) -> None:
    """The first optimiser's step is skipped (its gradient overflowed) and halves the scale: Lightning's plugin
    updates it after each optimiser's step. Stepped in turn, the second optimiser's gradient, made with 65536,
    is then unscaled by 32768 and moves its parameter twice as far (1 - 0.1 * 6: pinned, as the reason for
    step_after_one_backward); step_after_one_backward gives the exact SGD step, 1 - 0.1 * 3."""
    module, scale = _one_step(step)
    assert scale == 32768.0 and module.first.item() == 1.0  # skipped, the scale halved
    twice_too_far = step is _each_in_turn
    expected = torch.ones(1).add_(torch.tensor([6.0 if twice_too_far else 3.0]), alpha=-0.1)
    assert torch.equal(module.second.detach(), expected)
