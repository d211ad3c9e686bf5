"""trainer.precision=16-mixed's loss scaler, for methods that optimise by hand (manual optimisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch


def grad_scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """The trainer's loss scaler (16-mixed), or None (32-true, bf16-mixed: no scaling)."""
    return getattr(trainer.precision_plugin, "scaler", None)


def step_after_one_backward(optimizers: Sequence[Any], scaler: torch.amp.GradScaler | None) -> None:
    """Step `optimizers` (Lightning's) whose gradients come from one backward of a loss the scaler scaled.

    Lightning's precision plugin unscales each optimizer's gradients at that optimizer's step and updates the
    scale right after it. When one step finds an overflow and halves the scale, the next optimizer's
    gradients, made with the old scale, would be unscaled by the new one: twice too large. Each optimizer's
    gradients are first brought to the scale of the moment (a ratio of powers of two: exact).
    """
    made_with = scaler.get_scale() if scaler is not None else 1.0
    for optimizer in optimizers:
        if scaler is not None and (now := scaler.get_scale()) != made_with:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(now / made_with)
        optimizer.step()
