"""trainer.precision=16-mixed's loss scaler, for methods that optimise by hand (manual optimisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch


def grad_scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """The trainer's loss scaler (16-mixed), or None where nothing is scaled (32-true, bf16-mixed, a scaler
    constructed with enabled=False)."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def _has_gradients(optimizer: Any) -> bool:
    return any(p.grad is not None for group in optimizer.param_groups for p in group["params"])


def step_after_one_backward(optimizers: Sequence[Any], scaler: torch.amp.GradScaler | None) -> None:
    """Step `optimizers` (Lightning's) whose gradients come from one backward of a loss the scaler scaled.

    An optimiser none of whose parameters got a gradient (InstanceGM's VAE during the classifiers' warm-up) is
    not stepped: there is nothing to step, and under a scaler the step would fail ("No inf checks were
    recorded for this optimizer").

    Lightning's precision plugin unscales each optimiser's gradients at that optimiser's step and updates the
    scale right after it. When one step finds an overflow and halves the scale, the next optimiser's
    gradients, made with the old scale, would be unscaled by the new one: twice too large. From the second
    optimiser on, each one's gradients are first brought to the scale of the moment (exact for GradScaler's
    default power-of-two scale and factors). Reading the scale waits for the GPU, as the plugin's own step
    does (it reads the overflow flag); with one optimiser to step it is not read at all.
    """
    stepping = [optimizer for optimizer in optimizers if _has_gradients(optimizer)]
    made_with = scaler.get_scale() if scaler is not None and len(stepping) > 1 else None
    for k, optimizer in enumerate(stepping):
        if k > 0 and made_with is not None and (now := scaler.get_scale()) != made_with:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(now / made_with)
        optimizer.step()
