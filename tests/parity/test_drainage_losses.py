"""Our losses against the Drainage reference's loss.py: values and gradients on the same logits.

Fixtures: drainage_losses.json (10 classes, CIFAR-10 hyperparameters for the combinations, plus "wide"
logits that push probabilities below the 1e-7 clamps), drainage_losses_k100.json (100 classes, CIFAR-100
hyperparameters) and drainage_alpha_dl.json (the drainage loss with K + 1 outputs). The reference ran in
float64. Each loss is built from our own loss config (conf/loss/<name>.yaml, `criterion` node) through
hydra.utils.instantiate, with the reference's hyperparameters written into our config's keys, so the
config's parameter names are tested with the formula.

Tolerance: our zoo computes in float32 by design (see noisylab.losses), so the bounds are float32-level:
loss values rtol 1e-5; gradients relative L2 error ||g - g_ref|| / ||g_ref|| <= 1e-5 on moderate logits
and 1e-4 on the wide ones (entries down to 1e-15 there).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.parity.reference import load_fixture, tensor

LOSS_CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"

VALUE_RTOL = 1e-5
GRAD_REL_L2 = {"moderate": 1e-5, "wide": 1e-4}

# Reference loss name -> (our loss config, or a bare _target_ where we ship no config of its own;
# reference config key -> our criterion key(s)). Reference keys not listed must be 0 in the cases
# (delta: the L1 term, which lives in loss.l1 and is tested below).
SPEC: dict[str, tuple[str | dict[str, str], dict[str, str | tuple[str, ...]]]] = {
    "ce": ("ce", {}),
    "mae": ("mae", {}),
    "rce": ("rce", {}),
    "nce": ("nce", {}),
    "gce": ("gce", {"q": "q"}),
    "sce": ("sce", {"alpha": "alpha", "beta": "beta"}),
    "nnce": ({"_target_": "noisylab.losses.NormalizedNegativeCrossEntropy"}, {"min_prob": "min_prob"}),
    "fl": ("fl", {"gamma": "gamma"}),
    "nfl": ("nfl", {"gamma": "gamma"}),
    "nnfl": ({"_target_": "noisylab.losses.NormalizedNegativeFocalLoss"}, {"gamma": "gamma", "min_prob": "min_prob"}),
    "agce": ("agce", {"a": "a", "q": "q"}),
    "aul": ("aul", {"a": "a", "q": "q"}),
    "ael": ("ael", {"a": "a"}),
    "nce_mae": ("nce_mae", {"alpha": "alpha", "beta": "beta"}),
    "nce_rce": ("nce_rce", {"alpha": "alpha", "beta": "beta"}),
    "nfl_rce": ("nfl_rce", {"alpha": "alpha", "beta": "beta", "gamma": "active.gamma"}),
    "nce_agce": ("nce_agce", {"alpha": "alpha", "beta": "beta", "a": "passive.a", "q": "passive.q"}),
    "nce_aul": ("nce_aul", {"alpha": "alpha", "beta": "beta", "a": "passive.a", "q": "passive.q"}),
    "nce_ael": ("nce_ael", {"alpha": "alpha", "beta": "beta", "a": "passive.a"}),
    "anl_ce": ("anl_ce", {"alpha": "alpha", "beta": "beta", "min_prob": "passive.min_prob"}),
    "anl_fl": ("anl_fl", {"alpha": "alpha", "beta": "beta", "gamma": ("active.gamma", "passive.gamma"),
                          "min_prob": "passive.min_prob"}),
    "anl_ce_er": ("anl_ce_er", {"alpha": "loss.alpha", "beta": "loss.beta", "lamb": "lamb",
                                "min_prob": ("min_prob", "loss.passive.min_prob")}),
    "alpha_dl": ("drainage", {"alpha": "a", "beta": "b"}),
}
ZERO_KEYS = {"delta"}


def build_criterion(loss: str, params: dict[str, Any]) -> torch.nn.Module:
    """Our criterion for reference loss `loss`, its config filled with the reference's `params`."""
    source, keys = SPEC[loss]
    if isinstance(source, str):
        criterion = OmegaConf.load(LOSS_CONF / f"{source}.yaml").criterion
    else:
        criterion = OmegaConf.create(source)
    for ref_key, value in params.items():
        if ref_key in ZERO_KEYS:
            assert not value, f"{loss}: fixture case has {ref_key}={value}; the L1 term is tested separately"
            continue
        targets = keys[ref_key]
        for our_key in (targets,) if isinstance(targets, str) else targets:
            if isinstance(source, str):
                assert OmegaConf.select(criterion, our_key, default="<absent>") != "<absent>", (
                    f"conf/loss/{source}.yaml has no criterion.{our_key} (the reference's {ref_key})")
            OmegaConf.update(criterion, our_key, value, force_add=not isinstance(source, str))
    return instantiate(criterion)


def _cases(fixture: str) -> list[pytest.param]:
    data = load_fixture(fixture)
    return [pytest.param(data["input_sets"][case["inputs"]["set"]], case, id=case["name"]) for case in data["cases"]]


ALL_CASES = _cases("drainage_losses") + _cases("drainage_losses_k100") + _cases("drainage_alpha_dl")


def relative_l2(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).norm() / ref.norm())


@pytest.mark.parametrize(("inputs", "case"), ALL_CASES)
def test_loss_value_and_gradient_match_reference(inputs: dict, case: dict) -> None:
    logits = tensor(inputs["logits"]).requires_grad_(True)
    targets = tensor(inputs["targets"])
    criterion = build_criterion(case["loss"], case["params"])
    loss = criterion(logits, targets)
    loss.backward()
    loss = loss.detach()
    ref_value = case["outputs"]["loss"]
    ref_grad = tensor(case["outputs"]["grad_logits"])
    grad = logits.grad.to(torch.float64)
    err = relative_l2(grad, ref_grad)
    bound = GRAD_REL_L2["wide" if case["inputs"]["set"].endswith("w") else "moderate"]
    assert float(loss) == pytest.approx(ref_value, rel=VALUE_RTOL), (
        f"{case['name']}: loss {float(loss)!r}, reference {ref_value!r}")
    assert err <= bound, (
        f"{case['name']}: gradient differs from the reference: relative L2 error {err:.3e} > {bound:g} "
        f"(largest entry difference {float((grad - ref_grad).abs().max()):.3e}, |g_ref|max "
        f"{float(ref_grad.abs().max()):.3e})")


def test_every_reference_loss_is_covered() -> None:
    seen = {c.values[1]["loss"] for c in ALL_CASES}
    assert seen == set(SPEC), f"fixture losses {sorted(seen)} vs SPEC {sorted(SPEC)}"


def test_drainage_b_defaults_to_one_over_a_as_in_the_reference() -> None:
    # The reference's alpha_dl factory sets beta = 1/alpha when the config has none; our drainage.yaml has b: null.
    criterion = build_criterion("alpha_dl", {"alpha": 0.1, "beta": None})
    assert criterion.b == pytest.approx(10.0)


# ---------------------------------------------------------------- the L1 term (the reference's delta)


def _model_from(shapes: list[list[int]], values: list) -> torch.nn.Module:
    """Classifier(Linear(6, 5) + BatchNorm1d(5), LinearHead(5, 4)): the fixture's parameters, in order."""
    from noisylab.models import LinearHead
    from noisylab.models.classifier import Classifier

    net = Classifier(torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5)), LinearHead(5, 4))
    params = list(net.parameters())
    assert [list(p.shape) for p in params] == shapes
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(tensor(v))
    return net


@pytest.mark.parametrize("case", load_fixture("drainage_losses")["l1_cases"], ids=lambda c: c["name"])
def test_l1_penalty_matches_reference_delta(case: dict) -> None:
    """The reference adds delta * sum |p| over every parameter; ours is loss.l1 with decay_norm_and_bias=True
    (what the drainage_* presets set)."""
    from noisylab.methods.standard import StandardMethod

    net = _model_from(case["inputs"]["model_parameter_shapes"], case["inputs"]["model_parameters"])
    method = StandardMethod(network=lambda: net, criterion=torch.nn.Identity(), optimizer=torch.optim.SGD,
                            l1=case["params"]["delta"], decay_norm_and_bias=True)
    assert float(torch.as_tensor(method.l1_penalty()).detach()) == pytest.approx(case["outputs"]["l1_term"], rel=1e-6)


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
def test_weight_decay_covers_every_parameter_like_the_references_sgd(decay_norm_and_bias: bool) -> None:
    """The reference builds SGD(model.parameters(), weight_decay=wd): BatchNorm and biases decay too. With
    decay_norm_and_bias=True (the drainage_* presets) one of our steps equals that optimizer's step; with
    False, only the BatchNorm and bias parameters differ (they are exempt)."""
    import functools

    from noisylab.methods.standard import StandardMethod
    from noisylab.models import LinearHead
    from noisylab.models.classifier import Classifier

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten())
    reference_net = Classifier(backbone, LinearHead(4 * 6 * 6, 5))
    with torch.no_grad():  # no zero parameter (BatchNorm's bias starts at 0, which weight decay leaves alone)
        for p in reference_net.parameters():
            p.add_(torch.randn_like(p))
    ours_net = copy.deepcopy(reference_net)
    factory = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-3)
    method = StandardMethod(network=lambda: ours_net, criterion=torch.nn.Identity(), optimizer=factory,
                            decay_norm_and_bias=decay_norm_and_bias)
    ours = method.configure_optimizers()["optimizer"]
    reference = factory(reference_net.parameters())
    x = torch.randn(2, 3, 8, 8)
    for net, optimizer in ((reference_net, reference), (ours_net, ours)):
        net.head.class_logits(net(x)).square().mean().backward()
        optimizer.step()
    for (name, a), b in zip(reference_net.named_parameters(), ours_net.parameters(), strict=True):
        exempt = a.ndim == 1  # BatchNorm weight and bias, conv and linear biases
        assert torch.equal(a, b) == (decay_norm_and_bias or not exempt), name
