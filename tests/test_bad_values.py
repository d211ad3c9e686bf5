"""Bad values in test outputs (issue 13): non-finite outputs refused by name, ties averaged, scores safe."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.methods.evaluation import NonFiniteOutputsError, check_finite_outputs
from noisylab.metrics.noise_detection import precision_at_noise_rate
from noisylab.metrics.scores import neg_entropy
from noisylab.train import run
from tests.conftest import compose_config


def _expected_precision_over_every_order(scores: list[float], noisy: list[bool]) -> float:
    """Mean over all permutations of the samples of topk-by-stable-order precision: the tie-averaged value."""
    k = sum(noisy)
    values = []
    for order in itertools.permutations(range(len(scores))):
        ranked = sorted(order, key=lambda i: -scores[i])  # stable: ties keep this permutation's order
        values.append(sum(noisy[i] for i in ranked[:k]) / k)
    return float(np.mean(values))


@pytest.mark.parametrize(("scores", "noisy"), [
    ([0.5] * 5, [True, True, False, False, False]),          # constant: the noise rate, not 1.0 or 0.0
    ([0.9, 0.5, 0.5, 0.5, 0.1], [True, False, True, False, False]),
    ([0.9, 0.8, 0.1, 0.7, 0.2], [True, False, False, True, False]),  # no ties
    ([0.3, 0.3, 0.9, 0.3, 0.3, 0.0], [False, True, True, True, False, False]),
])
def test_noise_detection_precision_averages_ties(scores: list[float], noisy: list[bool]) -> None:
    found = precision_at_noise_rate(torch.tensor(scores), torch.tensor(noisy))
    assert found == pytest.approx(_expected_precision_over_every_order(scores, noisy))


def test_neg_entropy_of_a_row_with_a_minus_infinite_logit() -> None:
    logits = torch.tensor([[2.0, 1.0, float("-inf")], [2.0, 1.0, -1e9]])
    values = neg_entropy(logits)
    assert torch.isfinite(values).all()
    assert values[0] == pytest.approx(values[1].item())  # p = 0 adds 0, as in the limit


def test_non_finite_outputs_are_refused_naming_the_set_and_count() -> None:
    good = {"outputs": torch.zeros(4, 3), "labels": torch.zeros(4)}
    bad = {"outputs": torch.tensor([[0.0, float("nan"), 0.0], [0.0, 1.0, 2.0], [float("inf"), 0.0, 0.0]])}
    ood = {"score/msp": torch.tensor([0.5, float("nan")])}
    with pytest.raises(NonFiniteOutputsError, match=r"test: 2 of 3 samples; ood/svhn: 1 of 2 samples.*optim.lr"):
        check_finite_outputs({"val": good, "test": bad, "ood/svhn": ood})
    check_finite_outputs({"val": good})


def test_evaluating_a_checkpoint_with_nan_weights_stops_with_the_message(tmp_path: Path) -> None:
    """eval.py on a checkpoint whose head weights hold a NaN refuses it instead of ranking NaN scores
    (AUROC 0 or 1) or failing in ECE's binning; eval.json is not written."""
    from hydra import compose, initialize_config_dir

    from noisylab.evaluate import evaluate
    from tests.conftest import CONF

    out = tmp_path / "run"
    run(compose_config(out, ["trainer.max_epochs=1", "eval.plots=false", "test_on=none"]))
    last = out / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and ".head." in f".{k}")
    checkpoint["state_dict"][name].fill_(float("nan"))
    torch.save(checkpoint, last)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={last}", "eval.plots=false"])
    with pytest.raises(NonFiniteOutputsError, match="test: .* samples"):
        evaluate(cfg)
    assert not (out / "eval.json").exists()


def test_the_ece_temperature_is_at_least_as_good_as_a_401_point_grid_and_often_better() -> None:
    """ECE is a step function of T: a grid brackets the minimum, the refinement inside the bracket must never
    be worse and should find lower ECE in most cases (issue 13: a bracketed search beat the grid in 3 of 4)."""
    import math

    from noisylab.metrics.calibration import T_MAX, T_MIN, ece, fit_temperature

    grid = np.exp(np.linspace(math.log(T_MIN), math.log(T_MAX), 401))
    better = 0
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 10, (400,), generator=generator)
        logits = torch.randn(400, 10, generator=generator) * 2
        logits[torch.arange(400), labels] += torch.rand(400, generator=generator) * 6  # over/under-confident mix
        on_grid = min(ece(logits / t, labels) for t in grid)
        found = ece(logits / fit_temperature(logits, labels, "ece"), labels)
        assert found <= on_grid + 1e-12
        better += found < on_grid - 1e-9
    assert better >= 3
