"""Truncated GCE against the code of Zhang & Sabuncu's paper (fixture truncated_gce.json): when the
per-sample weights are re-estimated, which samples they keep, and the truncated loss with its gradient."""

from __future__ import annotations

import pytest
import torch

from noisylab.losses.truncated_gce import TruncatedGCE
from tests.parity.reference import load_fixture, tensor

FIXTURE = load_fixture("truncated_gce")
SCHEDULES = [c for c in FIXTURE["cases"] if c["name"].startswith("schedule")]
UPDATE = next(c for c in FIXTURE["cases"] if c["name"] == "update_then_loss")


@pytest.mark.parametrize("case", SCHEDULES, ids=lambda c: c["name"])
def test_weights_are_re_estimated_at_the_reference_epochs(case: dict) -> None:
    loss = TruncatedGCE(start_epoch=case["params"]["start_prune"], update_every=10)
    ours = [epoch for epoch in range(case["params"]["epochs"]) if loss.updates_at(epoch)]
    assert ours == case["outputs"]["update_epochs_0_based"]


class _Method:
    """What TruncatedGCE reads of the method: the epoch and the un-augmented training-set predictions."""

    def __init__(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.current_epoch, self._outputs = epoch, (torch.arange(len(targets)), logits, targets)

    def predict_training_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._outputs


def test_kept_samples_loss_and_gradient_match_the_reference() -> None:
    """Tolerance: float32 on both sides, rtol 1e-5 (values) and atol 1e-7 (gradients)."""
    inputs, outputs = UPDATE["inputs"], UPDATE["outputs"]
    targets = tensor(inputs["targets"])
    loss = TruncatedGCE(q=UPDATE["params"]["q"], k=UPDATE["params"]["k"])
    loss.setup_samples(len(targets))
    loss.on_train_epoch_start(_Method(39, tensor(inputs["update_logits"], torch.float32), targets))
    assert loss.weights.tolist() == outputs["weights"]
    logits = tensor(inputs["logits"], torch.float32).requires_grad_()
    value = loss(logits, targets, torch.arange(len(targets)))
    value.backward()
    assert value.item() == pytest.approx(outputs["loss"], rel=1e-5)
    torch.testing.assert_close(logits.grad, tensor(outputs["grad_logits"], torch.float32), rtol=1e-4, atol=1e-7)
