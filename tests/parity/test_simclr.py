"""SimCLR: NT-Xent against four reference implementations; our preset's colour jitter and projection head
against the implementation Ghosh & Lan pre-trained with (AndrewAtanov/simclr-pytorch).

Fixture: simclr_ntxent.json. NT-Xent cases: fixed raw embeddings (view 1 rows, then view 2 rows), the loss
and its gradient w.r.t. the raw embeddings from Atanov's and Ghosh & Lan's NTXent, sthalles' info_nce_loss
+ CrossEntropyLoss and Spijkervet's NT_Xent (float64; all four agree), at temperatures 0.5 and 0.1.
"colour_jitter": each reference's ColorJitter factor ranges (Atanov's CIFAR config: s = 0.5, i.e.
ColorJitter(0.4, 0.4, 0.4, 0.1)) and the measured output range of Atanov's jitter on a constant 0.5 grey
image, where only the brightness factor acts. "projection_heads": the layers of each reference's head.

Ours: SimCLR.contrastive_loss (pairing of the two views, positives, self-similarity removed) with the
embedding step replaced by L2 normalisation, so the loss is tested on the reference's inputs; and
noisylab.losses.contrastive.nt_xent directly. The colour jitter is measured the same way through our
ContrastiveAugment built from the simclr_cifar10 preset. Hue jitter is left out on purpose (docs/methods.md)
and not compared.

Tolerances: our loss computes in float32: value rtol 1e-5, gradient relative L2 error <= 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noisylab.data.augment import ContrastiveAugment
from noisylab.losses.contrastive import nt_xent
from noisylab.methods.simclr import SimCLR
from noisylab.models.classifier import Classifier
from noisylab.models.heads import LinearHead
from tests.conftest import compose_config
from tests.parity.reference import load_fixture

FIXTURE = load_fixture("simclr_ntxent")
NTXENT = [c for c in FIXTURE["cases"] if c["name"].startswith("ntxent")]
JITTER = next(c for c in FIXTURE["cases"] if c["name"] == "colour_jitter")["outputs"]
HEADS = next(c for c in FIXTURE["cases"] if c["name"] == "projection_heads")["outputs"]
IMPLEMENTATIONS = ["atanov", "ghosh_lan", "sthalles", "spijkervet"]


def tensor(value: object) -> torch.Tensor:
    """A fixture's numbers as int64 (integers) or float64, built in float64 directly (the shared
    tests.parity.reference.tensor rounds through float32 first)."""
    t = torch.tensor(value)
    return t if not t.is_floating_point() else torch.tensor(value, dtype=torch.float64)


def rel_l2(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs).norm() / theirs.norm())


class Features(nn.Identity):
    """A stand-in backbone: its input are the features."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features


def simclr_module(features: int, temperature: float = 0.5, projection_dim: int = 128) -> SimCLR:
    method = SimCLR(network=lambda: Classifier(Features(features), LinearHead(features, 2)),
                    criterion=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, temperature=temperature,
                    projection_dim=projection_dim)
    method.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False)
    return method


@pytest.mark.parametrize("case", NTXENT, ids=lambda c: c["name"])
def test_reference_implementations_agree(case: dict) -> None:
    """The fixture's four references give one NT-Xent (so any of them is the reference)."""
    ref = case["outputs"]["atanov"]
    for name in IMPLEMENTATIONS[1:]:
        assert case["outputs"][name]["loss"] == pytest.approx(ref["loss"], rel=1e-12)
        assert rel_l2(tensor(case["outputs"][name]["grad"]), tensor(ref["grad"])) < 1e-12


@pytest.mark.parametrize("case", NTXENT, ids=lambda c: c["name"])
def test_contrastive_loss_value_and_gradient(case: dict) -> None:
    raw = tensor(case["inputs"]["embeddings"]).float().requires_grad_(True)
    bs = case["params"]["batch_size"]
    method = simclr_module(raw.shape[1], temperature=case["params"]["temperature"])
    method._embed = lambda x: F.normalize(x.float(), dim=1)  # the reference's inputs are the embeddings
    loss = method.contrastive_loss(raw[:bs], raw[bs:])
    ref = case["outputs"]["atanov"]
    assert float(loss.detach()) == pytest.approx(ref["loss"], rel=1e-5)
    loss.backward()
    err = rel_l2(raw.grad, tensor(ref["grad"]))
    assert err <= 1e-5, f"d loss / d embeddings: relative L2 error {err:.2e}"


@pytest.mark.parametrize("case", NTXENT, ids=lambda c: c["name"])
def test_nt_xent_function(case: dict) -> None:
    raw = tensor(case["inputs"]["embeddings"]).float().requires_grad_(True)
    n = len(raw)
    z = F.normalize(raw, dim=1)
    rows = torch.arange(n)
    loss = nt_xent(z, z, (rows + n // 2) % n, rows, case["params"]["temperature"])
    ref = case["outputs"]["sthalles"]
    assert float(loss.detach()) == pytest.approx(ref["loss"], rel=1e-5)
    loss.backward()
    assert rel_l2(raw.grad, tensor(ref["grad"])) <= 1e-5


def test_preset_temperature(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["experiment=simclr_cifar10"], quick=False)
    settings = next(c for c in load_fixture("ghosh_lan_settings")["cases"] if c["name"] == "simclr_settings")
    assert cfg.method.temperature == settings["outputs"]["temperature"]
    assert cfg.method.projection_dim == settings["outputs"]["projection_dim"]


def test_colour_jitter_strength(tmp_path: Path) -> None:
    """Brightness factors of our distortion span the reference's range ([0.6, 1.4] for Atanov's s = 0.5).

    On a constant grey image contrast and saturation change nothing, so the output level is 0.5 x the
    brightness factor; 4000 draws come within 0.01 of both ends of the range."""
    ref = JITTER["atanov_cifar_config_s0.5"]
    lo, hi = ref["brightness"]
    assert ref["measured_grey_0.5_output_range"] == pytest.approx([0.5 * lo, 0.5 * hi], abs=0.01)
    method = compose_config(tmp_path, ["experiment=simclr_cifar10"], quick=False).method
    distort = ContrastiveAugment(tuple(method.crop_scale), method.jitter, jitter_probability=1.0,
                                 grey_probability=0.0)
    torch.manual_seed(0)
    levels = distort(torch.full((4000, 3, 8, 8), 0.5)).mean((1, 2, 3))
    ours = (float(levels.min()), float(levels.max()))
    assert ours[0] == pytest.approx(0.5 * lo, abs=0.01) and ours[1] == pytest.approx(0.5 * hi, abs=0.01), (
        f"our grey-image output spans {ours[0]:.3f}..{ours[1]:.3f}: brightness factors "
        f"{2 * ours[0]:.2f}..{2 * ours[1]:.2f}; the reference's are {lo}..{hi} (ColorJitter(0.8 s) with s = 0.5)")


def test_colour_jitter_probabilities(tmp_path: Path) -> None:
    ref = JITTER["atanov_cifar_config_s0.5"]
    method = compose_config(tmp_path, ["experiment=simclr_cifar10"], quick=False).method
    assert method.jitter_probability == ref["jitter_probability"]
    assert method.grey_probability == ref["grey_probability"]
    assert tuple(method.crop_scale) == (0.08, 1.0)


def head_layers(head: nn.Sequential) -> list[dict]:
    out = []
    for m in head:
        if isinstance(m, nn.Linear):
            out.append({"type": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None})
        elif isinstance(m, nn.BatchNorm1d):
            out.append({"type": "BatchNorm1d", "features": m.num_features,
                        "affine_bias_trained": bool(m.bias is not None and m.bias.requires_grad)})
        else:
            out.append({"type": type(m).__name__})
    return out


def test_projection_head(tmp_path: Path) -> None:
    """Ghosh & Lan's encoders come from Atanov's SimCLR: Linear(no bias)-BN-ReLU-Linear(no bias)-BN(no bias)."""
    method = compose_config(tmp_path, ["experiment=simclr_cifar10"], quick=False).method
    ours = head_layers(simclr_module(2048, projection_dim=method.projection_dim).projection)
    assert ours == HEADS["atanov"], f"ours: {ours}"
