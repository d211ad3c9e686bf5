"""DrainageLoss: its value against a direct probability-space formula, its limits, and its numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisylab.losses import DrainageLoss


def _reference(outputs: torch.Tensor, targets: torch.Tensor, a: float, b: float) -> np.ndarray:
    """l = log(1 + a (p_d + p_J) / p_t + b p_J / p_d), softmax over all K+1 outputs, in float64 numpy."""
    z = outputs.detach().double().numpy()
    y = targets.numpy()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    p_t = p[rows, y]
    p_d = p[:, -1]
    others = np.ones_like(p[:, :-1], dtype=bool)
    others[rows, y] = False
    p_j = (p[:, :-1] * others).sum(axis=1)
    return np.log(1.0 + a * (p_d + p_j) / p_t + b * p_j / p_d)


def _batch(n: int, k: int, seed: int, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(n, k + 1, generator=g) * scale
    targets = torch.randint(0, k, (n,), generator=g)
    return outputs, targets


@pytest.mark.parametrize("k", [5, 2])
@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 2.0), (3.0, 0.1), (1.0, 1e-3), (10.0, 7.0)])
def test_matches_probability_space_formula(k, a, b):
    """The logit-space implementation equals the paper's formula, per sample and for each reduction."""
    outputs, targets = _batch(64, k, seed=k * 100 + int(a * 10))
    expected = _reference(outputs, targets, a, b)
    per_sample = DrainageLoss(a, b, reduction="none")(outputs, targets)
    assert per_sample.shape == (64,)
    np.testing.assert_allclose(per_sample.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    mean = DrainageLoss(a, b, reduction="mean")(outputs, targets)
    total = DrainageLoss(a, b, reduction="sum")(outputs, targets)
    assert mean.ndim == 0 and total.ndim == 0
    assert mean.item() == pytest.approx(expected.mean(), rel=1e-5)
    assert total.item() == pytest.approx(expected.sum(), rel=1e-5)


def test_default_reduction_is_mean():
    """Without a reduction argument the loss is the batch mean."""
    outputs, targets = _batch(32, 5, seed=1)
    expected = _reference(outputs, targets, 2.0, 0.5).mean()
    assert DrainageLoss(2.0, 0.5)(outputs, targets).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("k", [5, 2])
def test_a1_b0_is_cross_entropy_over_k_plus_1(k):
    """With a = 1 and b -> 0 the loss is plain (K+1)-way cross-entropy."""
    outputs, targets = _batch(128, k, seed=7)
    loss = DrainageLoss(a=1.0, b=1e-12)(outputs, targets)
    torch.testing.assert_close(loss, F.cross_entropy(outputs, targets), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a", [0.25, 1.0, 4.0])
def test_b_defaults_to_one_over_a(a):
    """b=None means b = 1/a, as in the reference code."""
    outputs, targets = _batch(40, 5, seed=3)
    loss_fn = DrainageLoss(a=a)
    assert loss_fn.b == pytest.approx(1.0 / a)
    expected = _reference(outputs, targets, a, 1.0 / a)
    per_sample = DrainageLoss(a=a, reduction="none")(outputs, targets)
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(loss_fn(outputs, targets), DrainageLoss(a=a, b=1.0 / a)(outputs, targets))


def _assert_finite_with_finite_grad(outputs: torch.Tensor, targets: torch.Tensor, loss_fn: DrainageLoss):
    outputs = outputs.detach().requires_grad_(True)
    loss = loss_fn(outputs, targets)
    assert torch.isfinite(loss).all(), loss
    loss.sum().backward()
    grad = outputs.grad
    assert grad is not None and torch.isfinite(grad).all()
    # Adding a constant to all logits of a sample does not change softmax, so each row's gradient sums to 0.
    torch.testing.assert_close(grad.float().sum(1), torch.zeros(len(grad)), atol=1e-3, rtol=0)
    return loss.detach(), grad


@pytest.mark.parametrize("k", [5, 2])
def test_huge_logits_random_signs_float32(k):
    """Logits of +-1e4 give a finite loss and finite gradients in float32 (no exp overflow, no log 0)."""
    g = torch.Generator().manual_seed(11)
    signs = torch.randint(0, 2, (256, k + 1), generator=g).float() * 2 - 1
    targets = torch.randint(0, k, (256,), generator=g)
    for outputs in (signs * 1e4, torch.randn(256, k + 1, generator=g) * 1e4):
        _assert_finite_with_finite_grad(outputs, targets, DrainageLoss(a=2.0, b=0.5, reduction="none"))


def test_adversarial_target_low_drainage_high():
    """Target logit -1e4, drainage +1e4, others 0: l ~= z_d - z_t + log a = 2e4 + log a; grads finite."""
    k, a = 5, 3.0
    outputs = torch.zeros(4, k + 1)
    targets = torch.tensor([0, 1, 2, 4])
    outputs[torch.arange(4), targets] = -1e4
    outputs[:, k] = 1e4
    loss, grad = _assert_finite_with_finite_grad(outputs, targets, DrainageLoss(a=a, reduction="none"))
    torch.testing.assert_close(loss, torch.full((4,), 2e4 + math.log(a)), rtol=1e-6, atol=0.01)
    # d l / d z_t -> -1 and d l / d z_d -> +1 in this regime.
    torch.testing.assert_close(grad[torch.arange(4), targets], torch.full((4,), -1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(grad[:, k], torch.full((4,), 1.0), atol=1e-4, rtol=0)


def test_adversarial_target_high_drainage_low():
    """Target +1e4, drainage -1e4, others 0: l ~= LSE(z_J) - z_d + log b = 1e4 + log(K-1) + log b."""
    k, a, b = 5, 1.0, 0.5
    outputs = torch.zeros(4, k + 1)
    targets = torch.tensor([0, 1, 3, 4])
    outputs[torch.arange(4), targets] = 1e4
    outputs[:, k] = -1e4
    loss, _ = _assert_finite_with_finite_grad(outputs, targets, DrainageLoss(a=a, b=b, reduction="none"))
    expected = 1e4 + math.log(k - 1) + math.log(b)
    torch.testing.assert_close(loss, torch.full((4,), expected), rtol=1e-6, atol=0.01)


def test_huge_bfloat16_logits_under_autocast():
    """bfloat16 logits of magnitude 1e4 under CPU autocast: finite float32 loss, finite gradients."""
    k = 5
    g = torch.Generator().manual_seed(5)
    targets = torch.randint(0, k, (128,), generator=g)
    random_signs = (torch.randint(0, 2, (128, k + 1), generator=g).float() * 2 - 1) * 1e4
    adversarial = torch.zeros(128, k + 1)
    adversarial[torch.arange(128), targets] = -1e4
    adversarial[:, k] = 1e4
    flipped = -adversarial
    for logits in (random_signs, adversarial, flipped):
        x = logits.bfloat16().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = DrainageLoss(a=1.0)(x, targets)
        assert torch.isfinite(loss)
        loss.backward()
        assert x.grad is not None and x.grad.dtype == torch.bfloat16
        assert torch.isfinite(x.grad.float()).all()


def test_autocast_linear_layer_outputs():
    """Outputs of a Linear layer run under bf16 autocast (the real mixed-precision path) train finitely."""
    torch.manual_seed(0)
    k = 5
    layer = torch.nn.Linear(16, k + 1)
    with torch.no_grad():
        layer.weight.mul_(1e3)
    features = torch.randn(64, 16) * 10
    targets = torch.randint(0, k, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = layer(features)
        assert outputs.dtype == torch.bfloat16
        loss = DrainageLoss(a=1.0)(outputs, targets)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(layer.bias.grad).all()


@pytest.mark.parametrize(
    ("a", "b"),
    [(0.0, None), (-1.0, None), (0.0, 1.0), (-2.0, 1.0), (1.0, 0.0), (1.0, -0.5), (float("nan"), None),
     (float("nan"), 1.0), (1.0, float("nan"))],
)
def test_non_positive_weights_raise(a, b):
    """a <= 0, b <= 0 or NaN weights are refused with a message naming a and b."""
    with pytest.raises(ValueError) as excinfo:
        DrainageLoss(a=a, b=b)
    message = str(excinfo.value)
    assert "a=" in message and "b=" in message
    assert "a > 0" in message and "b > 0" in message


def test_bad_reduction_raises():
    """An unknown reduction is refused at construction."""
    with pytest.raises(ValueError, match="reduction"):
        DrainageLoss(reduction="avg")
