"""Truncated GCE: the formula, the pruning rule, and its per-sample state in a real run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from noisylab.losses.truncated_gce import TruncatedGCE


def test_formula_before_any_pruning() -> None:
    z, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    loss = TruncatedGCE(q=0.7, k=0.5, reduction="none")
    loss.setup_samples(10)
    p_y = torch.softmax(z, 1)[torch.arange(6), y].numpy()
    expected = (1 - p_y**0.7) / 0.7 - (1 - 0.5**0.7) / 0.7
    np.testing.assert_allclose(loss(z, y, index=torch.arange(6)).numpy(), expected, rtol=1e-5)


def test_weights_prune_samples_whose_label_probability_is_at_most_k() -> None:
    loss = TruncatedGCE(q=0.7, k=0.5, start_epoch=3, update_every=2)
    loss.setup_samples(4)
    outputs = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])  # p_y: high, low, exactly 0.5, high
    method = SimpleNamespace(current_epoch=2, predict_training_set=lambda: (torch.arange(4), outputs, labels))
    loss.on_train_epoch_start(method)  # before start_epoch: nothing changes
    assert loss.weights.tolist() == [1, 1, 1, 1]
    method.current_epoch = 3
    loss.on_train_epoch_start(method)
    assert loss.weights.tolist() == [1, 0, 0, 1]
    per_sample = TruncatedGCE(reduction="none")
    per_sample.setup_samples(4)
    per_sample.weights.copy_(loss.weights)
    assert per_sample(outputs, labels, index=torch.arange(4))[[1, 2]].abs().sum() == 0


@pytest.mark.parametrize(("key", "value"), [("q", 0.0), ("q", 1.5), ("k", 1.0), ("update_every", 0)])
def test_invalid_hyperparameters(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"loss.criterion.{key}"):
        TruncatedGCE(**{key: value})
