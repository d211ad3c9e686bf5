"""Our backbones + heads at initialisation against the Drainage reference's models.

Fixture: drainage_model_init.json, per reference model (the 4-layer MNIST CNN `toymodel4l`, the 8-layer
CIFAR-10 CNN `toymodel8l`, ResNet-34), built with K or K + 1 outputs (the drainage loss), for seeds 0-2:
each Conv2d / Linear / BatchNorm layer in module order with its weight shape, whether it has a bias, and
the seed-averaged mean, std and max|w|/std of its weight and bias. The reference initialises conv weights
with kaiming_uniform_(fan_in, relu) (std sqrt(2 / fan_in), max|w|/std = sqrt(3)), linear weights with
xavier_uniform_ (std sqrt(2 / (fan_in + fan_out))), and leaves biases and BatchNorm at PyTorch's defaults.

Our model is built as train.py builds it: the model config (conf/model/<name>.yaml) for the backbone and the
loss config's head (LinearHead for K outputs, DrainageHead for K + 1), seeded the same way. Layers are
matched by position (names differ). Tolerances are statistical: a std within 5/sqrt(n) + 2% (relative, n
elements per tensor, averaged over the 3 seeds), max|w|/std within 0.25 for tensors of >= 1000 elements
(uniform 1.73 vs normal >= 3.9 there), a mean within 5 std / sqrt(3 n) + 1e-3 of the reference's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from noisylab.models.factory import NetworkFactory
from tests.parity.reference import load_fixture

CONF = Path(__file__).resolve().parents[2] / "conf"
FIXTURE = load_fixture("drainage_model_init")
OUR_MODEL = {"toymodel4l": "cnn4", "toymodel8l": "cnn8", "resnet34": "resnet34"}
LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _stats(t: torch.Tensor) -> dict[str, float | None]:
    t = t.detach().double()
    std = float(t.std()) if t.numel() > 1 else 0.0
    return {"mean": float(t.mean()), "std": std, "absmax_over_std": float(t.abs().max() / std) if std > 0 else None}


def our_layers(case: dict) -> list[dict]:
    """Our network for the fixture case, described like the fixture (statistics averaged over its seeds)."""
    outputs = case["params"]["num_outputs"]
    drainage = outputs in (11, 101)
    model_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{OUR_MODEL[case['params']['model']]}.yaml"))
    model_cfg.pop("init_from", None)
    head = OmegaConf.to_container(OmegaConf.load(CONF / "loss" / ("drainage.yaml" if drainage else "ce.yaml")).head)
    factory = NetworkFactory(model=model_cfg, head=head, image_shape=tuple(case["inputs"]["image_shape"]),
                             num_classes=outputs - 1 if drainage else outputs)
    per_seed = []
    for seed in case["inputs"]["seeds"]:
        torch.manual_seed(seed)
        net = factory()
        layers = []
        for name, module in net.named_modules():
            if isinstance(module, LAYERS):
                entry = {"name": name, "type": type(module).__name__, "weight_shape": list(module.weight.shape),
                         "has_bias": module.bias is not None, "weight": _stats(module.weight)}
                if module.bias is not None:
                    entry["bias"] = _stats(module.bias)
                layers.append(entry)
        per_seed.append(layers)
    layers = per_seed[0]
    for i, entry in enumerate(layers):
        for part in ("weight", "bias"):
            if part in entry:
                for key in ("mean", "std", "absmax_over_std"):
                    values = [seed_layers[i][part][key] for seed_layers in per_seed]
                    entry[part][key] = None if values[0] is None else sum(values) / len(values)
    return layers


_CACHE: dict[str, list[dict]] = {}


def ours_for(case: dict) -> list[dict]:
    if case["name"] not in _CACHE:
        _CACHE[case["name"]] = our_layers(case)
    return _CACHE[case["name"]]


CASES = [pytest.param(c, id=c["name"]) for c in FIXTURE["cases"]]


@pytest.mark.parametrize("case", CASES)
def test_layer_structure_matches_reference(case: dict) -> None:
    ours = [(e["type"], e["weight_shape"]) for e in ours_for(case)]
    ref = [(e["type"], e["weight_shape"]) for e in case["outputs"]["layers"]]
    assert ours == ref


@pytest.mark.parametrize("case", CASES)
def test_bias_presence_matches_reference(case: dict) -> None:
    """cnn4/cnn8: the reference's convolutions have a bias (followed by BatchNorm); ResNet-34's do not."""
    ours, ref = ours_for(case), case["outputs"]["layers"]
    assert len(ours) == len(ref)
    wrong = [(r["name"], r["type"], o["has_bias"], r["has_bias"]) for o, r in zip(ours, ref, strict=True)
             if o["has_bias"] != r["has_bias"]]
    assert not wrong, f"{len(wrong)} layers (reference name, type, ours, reference): {wrong[:6]}"


def _weight_mismatches(ours: list[dict], ref: list[dict], part: str, types: tuple[str, ...]) -> list[str]:
    problems = []
    for o, r in zip(ours, ref, strict=True):
        if r["type"] not in types or part not in r or part not in o:
            continue
        n = math.prod(r["weight_shape"]) if part == "weight" else r["weight_shape"][0]
        so, sr = o[part], r[part]
        std_tol = 5 / math.sqrt(n) + 0.02
        if sr["std"] == 0:
            if so["std"] != 0 or so["mean"] != pytest.approx(sr["mean"]):
                problems.append(f"{r['name']} {part}: constant {sr['mean']} in the reference, ours mean "
                                f"{so['mean']:.4g} std {so['std']:.4g}")
            continue
        if abs(so["std"] / sr["std"] - 1) > std_tol:
            problems.append(f"{r['name']} {part}: std {so['std']:.4g}, reference {sr['std']:.4g} "
                            f"(ratio {so['std'] / sr['std']:.3f})")
        if abs(so["mean"] - sr["mean"]) > 5 * sr["std"] / math.sqrt(3 * n) + 1e-3:
            problems.append(f"{r['name']} {part}: mean {so['mean']:.4g}, reference {sr['mean']:.4g}")
        if n >= 1000 and abs(so["absmax_over_std"] - sr["absmax_over_std"]) > 0.25:
            problems.append(f"{r['name']} {part}: max|w|/std {so['absmax_over_std']:.3f}, reference "
                            f"{sr['absmax_over_std']:.3f} (uniform: 1.73)")
    return problems


@pytest.mark.parametrize("case", CASES)
def test_conv_weight_init_matches_reference(case: dict) -> None:
    """Reference: kaiming_uniform_(mode='fan_in', nonlinearity='relu') on every Conv2d weight."""
    problems = _weight_mismatches(ours_for(case), case["outputs"]["layers"], "weight", ("Conv2d",))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:12])


@pytest.mark.parametrize("case", CASES)
def test_linear_weight_init_matches_reference(case: dict) -> None:
    """Reference: xavier_uniform_ on every Linear weight, the classifier layer (our head) included."""
    problems = _weight_mismatches(ours_for(case), case["outputs"]["layers"], "weight", ("Linear",))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:12])


@pytest.mark.parametrize("case", CASES)
def test_bias_and_batchnorm_init_match_reference(case: dict) -> None:
    """Reference: biases and BatchNorm at PyTorch's defaults (BatchNorm weight 1, bias 0; conv/linear biases
    uniform in +-1/sqrt(fan_in)). Only layers that have a bias in both are compared here."""
    ours, ref = ours_for(case), case["outputs"]["layers"]
    problems = _weight_mismatches(ours, ref, "weight", ("BatchNorm1d", "BatchNorm2d"))
    problems += _weight_mismatches(ours, ref, "bias", ("Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d"))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:12])
