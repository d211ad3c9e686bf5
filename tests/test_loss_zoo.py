"""The robust-loss zoo: every loss config is finite and trainable at extreme logits; every loss matches its formula.

Config-level checks run on every conf/loss/*.yaml but drainage.yaml (found by glob, so new configs are
covered); formula checks compare each class with an independent float64 numpy computation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from noisylab.losses import (
    AsymmetricExponentialLoss,
    AsymmetricGCE,
    AsymmetricUnhingedLoss,
    CrossEntropy,
    FocalLoss,
    GeneralizedCrossEntropy,
    MeanAbsoluteError,
    MeanPredictionEntropyRegularised,
    NormalizedCrossEntropy,
    NormalizedFocalLoss,
    NormalizedNegativeCrossEntropy,
    NormalizedNegativeFocalLoss,
    PerSampleLoss,
    ReverseCrossEntropy,
    WeightedPair,
)
from tests.conftest import CONF

LOSS_CONFIGS = sorted(p.stem for p in (CONF / "loss").glob("*.yaml") if p.stem != "drainage")
K = 10


@cache
def _loss_config(name: str, overrides: tuple[str, ...] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"loss={name}", *overrides]).loss


def build(name: str, *overrides: str) -> tuple[nn.Module, nn.Module]:
    """(head, criterion) of conf/loss/<name>.yaml, as train.py builds them."""
    cfg = _loss_config(name, overrides)
    return instantiate(cfg.head, in_features=8, num_classes=K), instantiate(cfg.criterion)


def extreme_logits(num_outputs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of +-1e4 with random signs, plus adversarial rows: the target at -1e4 with another class
    at +1e4 (and the reverse), all logits tied at 1e4, and the target alone above a floor of -1e4."""
    targets = torch.randint(0, K, (12,), generator=generator)
    logits = 1e4 * (2 * torch.randint(0, 2, (12, num_outputs), generator=generator) - 1).float()
    rows = torch.arange(6, 12)
    other = (targets[rows] + 1) % K
    logits[6:8] = 0.0
    logits[6, targets[6]], logits[6, other[0]] = -1e4, 1e4
    logits[7, targets[7]], logits[7, other[1]] = 1e4, -1e4
    logits[8] = 1e4
    logits[9] = -1e4
    logits[9, targets[9]] = 1e4
    logits[10] = 0.0
    logits[10, targets[10]] = -1e4
    logits[11] = -1e4
    logits[11, other[5]] = 1e4
    return logits, targets


# ---------------------------------------------------------------- every loss config

@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_config_gives_a_finite_scalar_and_finite_gradients_through_the_head(name: str) -> None:
    torch.manual_seed(0)
    head, criterion = build(name)
    outputs = head(torch.randn(16, 8))
    loss = criterion(outputs, torch.randint(0, K, (16,)))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_config_has_finite_gradients_at_extreme_float32_logits(name: str) -> None:
    head, criterion = build(name)
    logits, targets = extreme_logits(head.num_outputs, torch.Generator().manual_seed(1))
    logits.requires_grad_(True)
    loss = criterion(logits, targets)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(logits.grad).all(), logits.grad


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_config_has_finite_gradients_for_bfloat16_logits_under_autocast(name: str) -> None:
    head, criterion = build(name)
    logits, targets = extreme_logits(head.num_outputs, torch.Generator().manual_seed(2))
    logits = logits.to(torch.bfloat16).requires_grad_(True)
    features = torch.randn(12, 8, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = criterion(logits, targets)
        head_loss = criterion(head(features), targets)
    (loss + head_loss).backward()
    assert torch.isfinite(loss) and torch.isfinite(head_loss)
    assert torch.isfinite(logits.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_config_loss_decreases_when_the_target_logit_increases(name: str) -> None:
    head, criterion = build(name)
    generator = torch.Generator().manual_seed(4)
    targets = torch.arange(4 * K) % K  # every class equally often, as in a shuffled batch
    logits = torch.randn(4 * K, head.num_outputs, generator=generator)
    raised = logits.scatter_add(1, targets.view(-1, 1), torch.ones(4 * K, 1))
    assert criterion(raised, targets) < criterion(logits, targets)


# ---------------------------------------------------------------- formulas, against float64 numpy

def np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_pick(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    return values[np.arange(len(y)), y]


def np_focal(p: np.ndarray, gamma: float, factor_p: np.ndarray | None = None) -> np.ndarray:
    """-(1 - p)^gamma log p; with `factor_p`, the factor is taken at those (frozen) probabilities."""
    return -((1 - (p if factor_p is None else factor_p)) ** gamma) * np.log(p)


def np_ce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np_pick(np_log_softmax(z), y)


def np_fl(z: np.ndarray, y: np.ndarray, gamma: float, factor_at: np.ndarray | None = None) -> np.ndarray:
    frozen = None if factor_at is None else np_pick(np.exp(np_log_softmax(factor_at)), y)
    return np_focal(np_pick(np.exp(np_log_softmax(z)), y), gamma, frozen)


def np_mae(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1 - np_pick(np.exp(np_log_softmax(z)), y)


def np_rce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(np.exp(np_log_softmax(z)), 1e-7, 1)
    one_hot = np.clip(np.eye(z.shape[1])[y], 1e-4, 1)
    return -(p * np.log(one_hot)).sum(axis=1)


def np_gce(z: np.ndarray, y: np.ndarray, q: float) -> np.ndarray:
    return (1 - np_pick(np.exp(np_log_softmax(z)), y) ** q) / q


def np_nce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    log_p = np_log_softmax(z)
    return -np_pick(log_p, y) / -log_p.sum(axis=1)


def np_nfl(z: np.ndarray, y: np.ndarray, gamma: float, factor_at: np.ndarray | None = None) -> np.ndarray:
    frozen = None if factor_at is None else np.exp(np_log_softmax(factor_at))
    fl = np_focal(np.exp(np_log_softmax(z)), gamma, frozen)
    return np_pick(fl, y) / fl.sum(axis=1)


def np_nnce(z: np.ndarray, y: np.ndarray, min_prob: float) -> np.ndarray:
    shifted = -np.log(min_prob) + np.log(np.clip(np.exp(np_log_softmax(z)), min_prob, 1))
    return 1 - np_pick(shifted, y) / shifted.sum(axis=1)


def np_nnfl(z: np.ndarray, y: np.ndarray, gamma: float, min_prob: float,
            factor_at: np.ndarray | None = None) -> np.ndarray:
    def clamped(logits: np.ndarray) -> np.ndarray:
        return np.clip(np.exp(np_log_softmax(logits)), min_prob, 1)
    frozen = None if factor_at is None else clamped(factor_at)
    negative = -((1 - min_prob) ** gamma) * np.log(min_prob) - np_focal(clamped(z), gamma, frozen)
    return 1 - np_pick(negative, y) / negative.sum(axis=1)


def np_agce(z: np.ndarray, y: np.ndarray, a: float, q: float) -> np.ndarray:
    return ((a + 1) ** q - (a + np_pick(np.exp(np_log_softmax(z)), y)) ** q) / q


def np_aul(z: np.ndarray, y: np.ndarray, a: float, q: float) -> np.ndarray:
    return ((a - np_pick(np.exp(np_log_softmax(z)), y)) ** q - (a - 1) ** q) / q


def np_ael(z: np.ndarray, y: np.ndarray, a: float) -> np.ndarray:
    return np.exp(-np_pick(np.exp(np_log_softmax(z)), y) / a)


def np_mean_prediction_penalty(z: np.ndarray, min_prob: float) -> float:
    p = np.clip(np.exp(np_log_softmax(z)), min_prob, 1 - min_prob)
    mean = np.clip(p.sum(axis=0) / p.sum(), min_prob, 1 - min_prob)
    return np.log(z.shape[1]) + (mean * np.log(mean)).sum()


NpLoss = Callable[[np.ndarray, np.ndarray], np.ndarray]
CASES: dict[str, tuple[Callable[[], PerSampleLoss], NpLoss]] = {
    "ce": (CrossEntropy, np_ce),
    "fl_0.5": (lambda: FocalLoss(0.5), lambda z, y: np_fl(z, y, 0.5)),
    "fl_2": (lambda: FocalLoss(2.0), lambda z, y: np_fl(z, y, 2.0)),
    "mae": (MeanAbsoluteError, np_mae),
    "rce": (ReverseCrossEntropy, np_rce),
    "gce": (lambda: GeneralizedCrossEntropy(0.7), lambda z, y: np_gce(z, y, 0.7)),
    "nce": (NormalizedCrossEntropy, np_nce),
    "nfl": (lambda: NormalizedFocalLoss(0.5), lambda z, y: np_nfl(z, y, 0.5)),
    "nnce": (lambda: NormalizedNegativeCrossEntropy(1e-7), lambda z, y: np_nnce(z, y, 1e-7)),
    "nnce_clamped": (lambda: NormalizedNegativeCrossEntropy(1e-3), lambda z, y: np_nnce(z, y, 1e-3)),
    "nnfl": (lambda: NormalizedNegativeFocalLoss(0.5, 1e-7), lambda z, y: np_nnfl(z, y, 0.5, 1e-7)),
    "nnfl_clamped": (lambda: NormalizedNegativeFocalLoss(1.0, 1e-3), lambda z, y: np_nnfl(z, y, 1.0, 1e-3)),
    "agce": (lambda: AsymmetricGCE(6.0, 1.5), lambda z, y: np_agce(z, y, 6.0, 1.5)),
    "aul": (lambda: AsymmetricUnhingedLoss(6.3, 1.5), lambda z, y: np_aul(z, y, 6.3, 1.5)),
    "ael": (lambda: AsymmetricExponentialLoss(5.0), lambda z, y: np_ael(z, y, 5.0)),
    "pair": (lambda: WeightedPair(NormalizedCrossEntropy(), ReverseCrossEntropy(), alpha=0.3, beta=2.0),
             lambda z, y: 0.3 * np_nce(z, y) + 2.0 * np_rce(z, y)),
    "anl_ce_er": (
        lambda: MeanPredictionEntropyRegularised(
            WeightedPair(NormalizedCrossEntropy(), NormalizedNegativeCrossEntropy(1e-7), 5.0, 5.0), lamb=2.0),
        lambda z, y: 5 * np_nce(z, y) + 5 * np_nnce(z, y, 1e-7) + 2 * np_mean_prediction_penalty(z, 1e-7)),
}
# Focal losses detach their factors (1 - p)^gamma (as the reference code does): their gradient is that of
# the loss with the factors frozen at the current logits.
FROZEN_FACTOR: dict[str, Callable[[np.ndarray], NpLoss]] = {
    "fl_0.5": lambda z0: lambda z, y: np_fl(z, y, 0.5, factor_at=z0),
    "fl_2": lambda z0: lambda z, y: np_fl(z, y, 2.0, factor_at=z0),
    "nfl": lambda z0: lambda z, y: np_nfl(z, y, 0.5, factor_at=z0),
    "nnfl": lambda z0: lambda z, y: np_nnfl(z, y, 0.5, 1e-7, factor_at=z0),
    "nnfl_clamped": lambda z0: lambda z, y: np_nnfl(z, y, 1.0, 1e-3, factor_at=z0),
}


def random_batch(scale: float, seed: int = 5, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, K)), rng.integers(0, K, n)


@pytest.mark.parametrize("case", CASES)
def test_per_sample_values_match_numpy(case: str) -> None:
    make, reference = CASES[case]
    z, y = random_batch(scale=4.0)  # wide enough to hit the 1e-3 clamps
    got = make().per_sample(torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    np.testing.assert_allclose(got.numpy(), reference(z, y), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_numpy_finite_differences(case: str) -> None:
    make, reference = CASES[case]
    z, y = random_batch(scale=1.5, seed=6, n=8)
    reference = FROZEN_FACTOR.get(case, lambda z0: reference)(z.copy())
    logits = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    make()(logits, torch.tensor(y)).backward()
    expected, h = np.zeros_like(z), 1e-6
    for index in np.ndindex(z.shape):
        step = np.zeros_like(z)
        step[index] = h
        expected[index] = (reference(z + step, y).mean() - reference(z - step, y).mean()) / (2 * h)
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_reductions_agree(case: str) -> None:
    z, y = random_batch(scale=2.0, seed=7)
    logits, targets = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    per_sample = CASES[case][0]()
    per_sample.reduction = "none"
    values = per_sample(logits, targets)
    assert values.shape == (len(y),)
    mean_loss, sum_loss = CASES[case][0](), CASES[case][0]()
    sum_loss.reduction = "sum"
    torch.testing.assert_close(mean_loss(logits, targets), values.mean())
    torch.testing.assert_close(sum_loss(logits, targets), values.sum())


# ---------------------------------------------------------------- limits and bounds

def test_gce_tends_to_cross_entropy_as_q_goes_to_zero() -> None:
    z, y = random_batch(scale=2.0)
    logits, targets = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    gce = GeneralizedCrossEntropy(q=1e-6, reduction="none")(logits, targets)
    torch.testing.assert_close(gce, CrossEntropy(reduction="none")(logits, targets), rtol=0, atol=1e-4)


def test_sce_with_beta_zero_is_cross_entropy() -> None:
    z, y = random_batch(scale=2.0)
    logits, targets = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    _, sce = build("sce", "loss.criterion.alpha=1.0", "loss.criterion.beta=0.0")
    _, ce = build("ce")
    torch.testing.assert_close(sce(logits, targets), ce(logits, targets))
    torch.testing.assert_close(ce(logits, targets), nn.functional.cross_entropy(logits, targets))


def test_weighted_pair_with_alpha_one_beta_zero_is_the_active_loss() -> None:
    z, y = random_batch(scale=2.0)
    logits, targets = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    pair = WeightedPair(NormalizedFocalLoss(0.5), AsymmetricGCE(6.0, 1.5), alpha=1.0, beta=0.0)
    torch.testing.assert_close(pair(logits, targets), NormalizedFocalLoss(0.5)(logits, targets))


@pytest.mark.parametrize("loss", [NormalizedCrossEntropy, NormalizedNegativeCrossEntropy, NormalizedFocalLoss,
                                  NormalizedNegativeFocalLoss])
def test_normalised_losses_lie_in_the_unit_interval(loss: type[PerSampleLoss]) -> None:
    generator = torch.Generator().manual_seed(8)
    wide = 30 * torch.randn(64, K, generator=generator)
    extreme, targets = extreme_logits(K, generator)
    for logits, y in ((wide, torch.randint(0, K, (64,), generator=generator)), (extreme, targets)):
        values = loss(reduction="none")(logits, y)
        assert torch.all((values >= 0) & (values <= 1)), values


def test_mae_is_one_minus_p_y() -> None:
    z, y = random_batch(scale=3.0)
    logits, targets = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    p_y = logits.softmax(1).gather(1, targets.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(MeanAbsoluteError(reduction="none")(logits, targets), 1 - p_y)


def test_mean_prediction_penalty_is_zero_for_uniform_and_log_k_for_collapsed_predictions() -> None:
    regularised = MeanPredictionEntropyRegularised(CrossEntropy(), lamb=1.0)
    assert abs(float(regularised.regulariser(torch.zeros(4, K)))) < 1e-6
    collapsed = torch.full((4, K), -1e4)
    collapsed[:, 3] = 1e4
    assert math.isclose(float(regularised.regulariser(collapsed)), math.log(K), rel_tol=1e-4)


# ---------------------------------------------------------------- bad parameters

@pytest.mark.parametrize(("make", "message"), [
    (lambda: GeneralizedCrossEntropy(q=0.0), "loss.criterion.q"),
    (lambda: GeneralizedCrossEntropy(q=1.5), "loss.criterion.q"),
    (lambda: FocalLoss(gamma=-1.0), "loss.criterion.gamma"),
    (lambda: AsymmetricGCE(a=0.0, q=1.0), "loss.criterion.passive.a"),
    (lambda: AsymmetricGCE(a=1.0, q=0.0), "loss.criterion.passive.q"),
    (lambda: AsymmetricUnhingedLoss(a=1.0, q=1.0), "loss.criterion.passive.a"),
    (lambda: AsymmetricExponentialLoss(a=-2.0), "loss.criterion.passive.a"),
    (lambda: NormalizedNegativeCrossEntropy(min_prob=0.0), "min_prob"),
    (lambda: ReverseCrossEntropy(label_floor=0.0), "label_floor"),
    (lambda: WeightedPair(CrossEntropy(), ReverseCrossEntropy(), alpha=-1.0), "loss.criterion.alpha"),
    (lambda: WeightedPair(CrossEntropy(), nn.CrossEntropyLoss()), "loss.criterion.passive"),
    (lambda: MeanPredictionEntropyRegularised(CrossEntropy(), lamb=-1.0), "loss.criterion.lamb"),
    (lambda: CrossEntropy(reduction="avg"), "reduction"),
])
def test_bad_parameters_name_their_config_key(make: Callable[[], object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace(".", r"\.")):
        make()


def test_min_prob_too_large_for_the_number_of_classes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"min_prob < 1 / 10"):
        NormalizedNegativeFocalLoss(min_prob=0.2)(torch.zeros(2, K), torch.zeros(2, dtype=torch.long))
