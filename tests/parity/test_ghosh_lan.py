"""Ghosh & Lan (arghosh/noisy_label_pretrain): their L_q loss, and our ghosh_lan_* presets against their settings.

Fixture: ghosh_lan_settings.json. "qloss_q*" cases: FineTune.step with loss 'qloss' (mean of
(1 - p_y^q) / q, untruncated) on fixed logits, float64: value and d loss / d logits. Settings cases, read
from configs/cifar10.yaml, cifar100.yaml, train.py, scheduler.py (the sweep that produced the paper's
runs) and models/noisy_models.py.

Our GCE is built from conf/loss/gce.yaml with the reference's q. The presets are composed as train.py
composes them and compared with the reference's settings. Not compared, on purpose (the presets say so):
the reference's 1% linear learning-rate warm-up (588 iterations; our schedulers step per epoch), and the
model selection (the reference selects on its 1000 clean samples, we on a noisy validation split).

Tolerances: our GCE computes in float32: value rtol 1e-5, gradient relative L2 error <= 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.parity.reference import load_fixture

CONF = Path(__file__).resolve().parents[2] / "conf"
FIXTURE = load_fixture("ghosh_lan_settings")
CASES = {c["name"]: c for c in FIXTURE["cases"]}
FINETUNE = CASES["finetune_settings"]["outputs"]
MWNET = CASES["mwnet_settings"]["outputs"]
DATASETS = ["cifar10", "cifar100"]


def tensor(value: object) -> torch.Tensor:
    """A fixture's numbers as int64 (integers) or float64, built in float64 directly (the shared
    tests.parity.reference.tensor rounds through float32 first)."""
    t = torch.tensor(value)
    return t if not t.is_floating_point() else torch.tensor(value, dtype=torch.float64)


def composed(tmp_path: Path, preset: str):
    return compose_config(tmp_path, [f"experiment={preset}", "model.init_from=encoder.ckpt"], quick=False)


@pytest.mark.parametrize("case", [c for c in FIXTURE["cases"] if c["name"].startswith("qloss")],
                         ids=lambda c: c["name"])
def test_qloss_value_and_gradient(case: dict) -> None:
    criterion = instantiate(OmegaConf.load(CONF / "loss" / "gce.yaml").criterion, q=case["params"]["q"])
    logits = tensor(case["inputs"]["logits"]).float().requires_grad_(True)
    loss = criterion(logits, tensor(case["inputs"]["targets"]))
    assert float(loss.detach()) == pytest.approx(case["outputs"]["loss"], rel=1e-5)
    loss.backward()
    ref = tensor(case["outputs"]["grad_logits"])
    err = float((logits.grad.double() - ref).norm() / ref.norm())
    assert err <= 1e-5, f"d loss / d logits: relative L2 error {err:.2e}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_gce_preset_uses_their_q(dataset: str, tmp_path: Path) -> None:
    """Their sweep runs qloss at q = 0.66 (the default of train.py) and 0.5; 0.7 is Zhang & Sabuncu's value."""
    cfg = composed(tmp_path, f"ghosh_lan_{dataset}_gce")
    assert cfg.loss.criterion._target_ == "noisylab.losses.GeneralizedCrossEntropy"
    assert cfg.loss.criterion.q in FINETUNE["q_swept_for_qloss"], (
        f"q = {cfg.loss.criterion.q}; Ghosh & Lan use q = {FINETUNE['q_default']} "
        f"(their sweep: {FINETUNE['q_swept_for_qloss']})")


@pytest.mark.parametrize("preset", [f"ghosh_lan_{d}{s}" for d in DATASETS for s in ("", "_gce", "_mwn")
                                    if (CONF / "experiment" / f"ghosh_lan_{d}{s}.yaml").is_file()])
def test_finetune_settings(preset: str, tmp_path: Path) -> None:
    cfg = composed(tmp_path, preset)
    pairs = [("data.batch_size", cfg.data.batch_size, FINETUNE["batch_size"]),
             ("optim", cfg.optim._target_, f"torch.optim.{FINETUNE['optimizer']}"),
             ("optim.lr", cfg.optim.lr, FINETUNE["lr"]),
             ("optim.momentum", cfg.optim.momentum, FINETUNE["momentum"]),
             ("optim.nesterov", cfg.optim.nesterov, FINETUNE["nesterov"]),
             ("optim.weight_decay", cfg.optim.weight_decay, FINETUNE["weight_decay"]),
             ("trainer.max_epochs", cfg.trainer.max_epochs, FINETUNE["epochs"]),
             ("model.arch", cfg.model.get("arch"), "resnet50"),
             ("sched", cfg.sched._target_, "torch.optim.lr_scheduler.CosineAnnealingLR"),
             ("sched.T_max", cfg.sched.T_max, FINETUNE["epochs"]),
             ("sched.eta_min", cfg.sched.eta_min, 0.0)]
    wrong = [f"{key}: ours {ours!r}, reference {theirs!r}" for key, ours, theirs in pairs if ours != theirs]
    assert not wrong, "; ".join(wrong)
    # The reference's epochs: iters / (train size / batch size).
    assert FINETUNE["iters"] / (FINETUNE["train_size"] / FINETUNE["batch_size"]) == FINETUNE["epochs"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_finetune_augmentation(dataset: str, tmp_path: Path) -> None:
    """From a SimCLR encoder, the reference fine-tunes on flipped images only (RandomHorizontalFlip, ToTensor,
    clamp): no random crop."""
    assert "no crop" in FINETUNE["train_transform_simclr_init"]
    augment = composed(tmp_path, f"ghosh_lan_{dataset}").data.augment
    assert augment.flip is True
    assert not augment.get("crop_padding"), (
        f"ours crops with padding {augment.crop_padding}; the reference does not crop")


@pytest.mark.parametrize("dataset", DATASETS)
def test_mwnet_settings(dataset: str, tmp_path: Path) -> None:
    preset = f"ghosh_lan_{dataset}_mwn"
    if not (CONF / "experiment" / f"{preset}.yaml").is_file():
        pytest.fail(f"no preset conf/experiment/{preset}.yaml")
    cfg = composed(tmp_path, preset)
    meta = MWNET["meta_optimizer"]
    assert cfg.method._target_ == "noisylab.methods.MetaWeightNet"
    assert cfg.loss.criterion._target_ == "noisylab.losses.CrossEntropy"
    assert cfg.method.hidden == MWNET["vnet"]["layers"][0]["out"]
    assert cfg.method.inner_lr == MWNET["inner_lr"]
    ours = cfg.method.meta_optimizer
    assert (ours._target_, ours.lr, ours.momentum, ours.nesterov, ours.weight_decay) == (
        f"torch.optim.{meta['type']}", meta["lr"], meta["momentum"], meta["nesterov"], meta["weight_decay"])
    assert cfg.data.meta_size == 1000  # their 1000 clean samples split off the training set
    assert (cfg.method.meta_batch_size or cfg.data.batch_size) == FINETUNE["batch_size"]
