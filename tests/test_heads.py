"""Heads (linear, drainage, fixed drainage, IsoMax+, DisMax), their scores, FPR and temperature scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisylab.losses.dismax import EntropicCrossEntropy, FractionalProbabilityRegularization
from noisylab.metrics.calibration import ece, fit_temperature
from noisylab.metrics.scores import class_scores, display_value
from noisylab.models.heads import DisMaxHead, DrainageHead, FixedDrainageHead, IsoMaxPlusHead, LinearHead


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_scores_match_their_definitions() -> None:
    z = torch.randn(20, 6, generator=torch.Generator().manual_seed(0)) * 3
    zn = z.double().numpy()
    p = _softmax(zn)
    scores = class_scores(z, ("msp", "max_logit", "energy", "neg_entropy", "mmls", "mmles", "mmleps"))
    expected = {
        "msp": p.max(1),
        "max_logit": zn.max(1),
        "energy": np.log(np.exp(zn).sum(1)),
        "neg_entropy": (p * np.log(p)).sum(1),
        "mmls": zn.max(1) + zn.mean(1),
    }
    expected["mmles"] = expected["mmls"] + expected["neg_entropy"]
    expected["mmleps"] = expected["mmles"] + expected["msp"]
    for name, value in expected.items():
        shown = display_value(name, scores[name]).numpy()  # MSP is held as its log-odds
        np.testing.assert_allclose(shown, value, rtol=1e-12, atol=1e-12, err_msg=name)
        assert scores[name].dtype == torch.float64, name
    np.testing.assert_allclose(scores["msp"].numpy(), np.log(p.max(1) / (1 - p.max(1))), rtol=1e-10)
    # No log of 0: a one-hot-like softmax still gives a finite entropy.
    assert torch.isfinite(class_scores(torch.tensor([[1e4, -1e4, 0.0]]), ("neg_entropy",))["neg_entropy"]).all()


def test_dismax_logits_follow_the_paper() -> None:
    torch.manual_seed(0)
    head = DisMaxHead(in_features=8, num_classes=5)
    with torch.no_grad():
        head.distance_scale.fill_(-2.0)  # |s| is used
    f = torch.randn(7, 8)
    fn = F.normalize(f, dim=1).double().numpy()
    pn = F.normalize(head.prototypes.detach(), dim=1).double().numpy()
    d = np.linalg.norm(fn[:, None] - pn[None], axis=2) / math.sqrt(2) * 2.0
    np.testing.assert_allclose(head(f).detach().numpy(), -(d + d.mean(1, keepdims=True)), rtol=1e-5, atol=1e-6)
    assert list(head.id_scores(head(f)))[0] == "mmles"


def test_isomax_plus_logits_are_negative_scaled_distances() -> None:
    torch.manual_seed(1)
    head = IsoMaxPlusHead(in_features=4, num_classes=3)
    f = torch.randn(5, 4)
    d = torch.cdist(F.normalize(f, dim=1), F.normalize(head.prototypes.detach(), dim=1))
    torch.testing.assert_close(head(f).detach(), -d, rtol=1e-5, atol=1e-6)
    assert list(head.id_scores(head(f)))[0] == "max_logit"


def test_fixed_drainage_head_appends_a_constant_logit() -> None:
    head = FixedDrainageHead(in_features=4, num_classes=3, constant=1.5)
    out = head(torch.randn(6, 4))
    assert out.shape == (6, 4)
    assert torch.all(out[:, 3] == 1.5)
    assert sum(p.numel() for p in head.parameters()) == 4 * 3 + 3  # only the K class logits are learned
    expected = 1 - torch.softmax(out.double(), 1)[:, 3]
    held = head.id_scores(out)["one_minus_p_d"]
    torch.testing.assert_close(display_value("one_minus_p_d", held), expected)
    torch.testing.assert_close(held, torch.log(expected / (1 - expected)))  # held as log-odds


def test_drainage_head_drains_on_the_extra_node() -> None:
    head = DrainageHead(in_features=2, num_classes=3)
    outputs = torch.tensor([[3.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 5.0]])
    assert head.drained(outputs).tolist() == [False, True]
    assert head.class_logits(outputs).argmax(1).tolist() == [0, 0]
    assert list(head.id_scores(outputs))[:2] == ["one_minus_p_d", "msp"]
    assert not LinearHead(2, 3).drained(outputs[:, :3]).any()


def test_entropic_cross_entropy_scales_in_training_only_for_dismax() -> None:
    z, y = torch.randn(10, 4), torch.randint(0, 4, (10,))
    loss = EntropicCrossEntropy(entropic_scale=10.0, scale_in_eval=False)
    torch.testing.assert_close(loss(z, y), F.cross_entropy(10 * z, y))
    loss.eval()
    torch.testing.assert_close(loss(z, y), F.cross_entropy(z, y))
    keep = EntropicCrossEntropy(entropic_scale=10.0, scale_in_eval=True).eval()
    torch.testing.assert_close(keep(z, y), F.cross_entropy(10 * z, y))
    with pytest.raises(ValueError, match="entropic_scale"):
        EntropicCrossEntropy(entropic_scale=0)


def test_fpr_mosaic_takes_quadrants_from_the_previous_images() -> None:
    images = torch.arange(4).float().view(4, 1, 1, 1).expand(4, 1, 4, 4).clone()
    mosaic = FractionalProbabilityRegularization.mosaic(images)
    for i in range(4):
        assert torch.all(mosaic[i, 0, :2, :2] == i)  # top-left kept
        assert torch.all(mosaic[i, 0, 2:, :2] == (i - 1) % 4)  # bottom-left from one before
        assert torch.all(mosaic[i, 0, :2, 2:] == (i - 2) % 4)
        assert torch.all(mosaic[i, 0, 2:, 2:] == (i - 3) % 4)
    targets = FractionalProbabilityRegularization.soft_targets(torch.tensor([0, 1, 2, 2]), 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    # image 0 shows images 0, 3, 2, 1 -> labels 0, 2, 2, 1
    torch.testing.assert_close(targets[0], torch.tensor([0.25, 0.25, 0.5]))


def test_fpr_objective_loss_is_half_plain_plus_half_regulariser() -> None:
    torch.manual_seed(0)
    head = DisMaxHead(in_features=16, num_classes=3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 16), head)
    criterion = EntropicCrossEntropy()
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    loss, outputs, labels = FractionalProbabilityRegularization(alpha=0.0)(net, criterion, x, y)
    assert outputs.shape == (4, 3) and labels.shape == (4,)
    torch.testing.assert_close(loss, criterion(outputs, labels) / 2)
    loss.backward()
    assert head.prototypes.grad is not None and torch.isfinite(head.prototypes.grad).all()


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
    overconfident = true_logits * 3.0
    assert abs(fit_temperature(overconfident, labels, "nll") - 3.0) < 0.3
    t = fit_temperature(overconfident, labels, "ece")
    assert ece(overconfident / t, labels) < ece(overconfident, labels) / 2
    with pytest.raises(ValueError, match="eval.calibration"):
        fit_temperature(overconfident, labels, "brier")


def test_probability_scores_keep_their_order_where_float32_softmax_saturates() -> None:
    """Confident logits (gaps of 20-60) give MSP and 1 - p_d of exactly 1.0 in float32 and float64, so their
    order is lost; the held log-odds keep it, and the AUROC equals the one of the exact order."""
    gaps = torch.linspace(20.0, 60.0, 50)
    logits = torch.stack([gaps, torch.zeros(50), torch.zeros(50)], dim=1)
    assert (logits.softmax(1).amax(1) == 1.0).sum() > 40  # float32 ties them
    held = class_scores(logits, ("msp",))["msp"]
    assert torch.all(held[1:] > held[:-1])  # strictly increasing with the gap, as the exact MSP is
    drainage = torch.cat([torch.zeros(50, 2), -gaps.unsqueeze(1)], dim=1)  # drainage logit far below the classes
    held_d = DrainageHead(2, 2).id_scores(drainage)["one_minus_p_d"]
    assert torch.all(held_d[1:] > held_d[:-1])
    from noisylab.metrics.ood import ood_metrics

    is_id = torch.arange(50) % 2 == 0  # interleaved: the exact order gives AUROC from the gaps alone
    exact = ood_metrics(gaps[is_id].double(), gaps[~is_id].double())["auroc"]
    assert ood_metrics(held[is_id], held[~is_id])["auroc"] == exact
    float32 = logits.softmax(1).amax(1)
    assert ood_metrics(float32[is_id], float32[~is_id])["auroc"] != exact  # what saturation costs
