"""Our experiment presets (conf/experiment/drainage_*.yaml) against the Drainage reference's training configs.

Fixture: drainage_configs.json, one case per reference config/<dataset>_<loss>.json (its model, loss,
dataset and optim sections as data) plus the training transforms of its dataset.py. For each one, the
preset that claims it (drainage_<dataset> for alpha_dl, drainage_<dataset>_<loss> otherwise) is composed
as train.py composes it and compared key by key: exact for integers and names, rel 1e-9 for floats.

How the reference uses its keys (main.py, trainer.py, loss.py): loss.delta is an L1 penalty on every
parameter, applied only when loss.pass_model_to_loss is true (the ANL losses always take the model);
weight decay also covers every parameter; optim.grad_bound is the clip_grad_norm_ bound; the scheduler steps
once per epoch; alpha_dl's beta is 1/alpha when absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_config
from tests.parity.reference import load_fixture
from tests.parity.test_drainage_losses import SPEC, ZERO_KEYS

FIXTURE = load_fixture("drainage_configs")
OUR_MODEL = {"toymodel8l": ("noisylab.models.small.CNN8", None), "toymodel4l": ("noisylab.models.small.CNN4", None),
             "resnet34": ("noisylab.models.resnet.resnet", "resnet34"),
             "resnet50": ("noisylab.models.resnet.resnet", "resnet50")}
OPTIMIZERS = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}
SCHEDULERS = {"cosine": "torch.optim.lr_scheduler.CosineAnnealingLR", "steplr": "torch.optim.lr_scheduler.StepLR"}
# Loss-config keys that are not hyperparameters of the loss.
NON_LOSS_KEYS = {"name", "pass_model_to_loss", "drainage_idx", "delta"}


def preset_name(reference_name: str) -> str:
    dataset, loss = reference_name.split("_", 1)
    return f"drainage_{dataset}" if loss == "alpha_dl" else f"drainage_{dataset}_{loss}"


def composed(case: dict, tmp_path: Path):
    name = preset_name(case["name"])
    if not (CONF / "experiment" / f"{name}.yaml").is_file():
        pytest.fail(f"no preset conf/experiment/{name}.yaml for the reference's {case['inputs']['file']}")
    return OmegaConf.to_container(compose_config(tmp_path, [f"experiment={name}"], quick=False), resolve=True)


def mismatches(pairs: list[tuple[str, object, object]]) -> list[str]:
    """(key, ours, theirs) triples that differ."""
    out = []
    for key, ours, theirs in pairs:
        same = (ours == pytest.approx(theirs, rel=1e-9, abs=0) if isinstance(theirs, float) and
                isinstance(ours, (int, float)) and not isinstance(ours, bool) else ours == theirs)
        if not same:
            out.append(f"{key}: ours {ours!r}, reference {theirs!r}")
    return out


CASES = [pytest.param(c, id=c["name"]) for c in FIXTURE["cases"]]


@pytest.mark.parametrize("case", CASES)
def test_preset_training_settings_match_reference(case: dict, tmp_path: Path) -> None:
    cfg = composed(case, tmp_path)
    ref = case["outputs"]
    optim, data = ref["optim"], ref["dataset"]
    target, arch = OUR_MODEL[ref["model"]["name"]]
    pairs = [
        ("data.name", cfg["data"]["name"], data["name"]),
        ("data.batch_size", cfg["data"]["batch_size"], data["train_batchsize"]),
        ("model._target_", cfg["model"]["_target_"], target),
        ("optim._target_", cfg["optim"]["_target_"], OPTIMIZERS[optim["optimizer"]]),
        ("optim.lr", cfg["optim"]["lr"], optim["learning_rate"]),
        ("optim.momentum", cfg["optim"]["momentum"], optim["momentum"]),
        ("optim.weight_decay", cfg["optim"]["weight_decay"], optim["weight_decay"]),
        ("optim.nesterov", cfg["optim"].get("nesterov", False), optim.get("nesterov", False)),
        ("trainer.max_epochs", cfg["trainer"]["max_epochs"], optim["total_epoch"]),
        ("trainer.gradient_clip_val", cfg["trainer"]["gradient_clip_val"], optim["grad_bound"]),
        ("trainer.gradient_clip_algorithm", cfg["trainer"].get("gradient_clip_algorithm") or "norm", "norm"),
        ("sched._target_", cfg["sched"]["_target_"], SCHEDULERS[optim["scheduler"]]),
    ]
    if arch:
        pairs.append(("model.arch", cfg["model"]["arch"], arch))
    if ref["model"]["name"] == "resnet50":
        # utils.get_model: ImageNet IMAGENET1K_V2 weights except for WebVision (trained from scratch).
        pairs.append(("model.pretrained", cfg["model"]["pretrained"],
                      None if data["name"] == "webvision" else "IMAGENET1K_V2"))
    if optim["scheduler"] == "cosine":
        pairs += [("sched.T_max", cfg["sched"]["T_max"], optim["T_max"]),
                  ("sched.eta_min", cfg["sched"]["eta_min"], optim["eta_min"])]
    else:
        pairs += [("sched.step_size", cfg["sched"]["step_size"], optim["step_size"]),
                  ("sched.gamma", cfg["sched"]["gamma"], optim["gamma"])]
    problems = mismatches(pairs)
    assert not problems, f"{preset_name(case['name'])} vs {case['inputs']['file']}:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", CASES)
def test_preset_loss_matches_reference(case: dict, tmp_path: Path) -> None:
    """The preset's loss: the right criterion, the reference's hyperparameters under our names, the L1
    weight (delta, where the reference applies it) and weight decay / L1 on every parameter."""
    cfg = composed(case, tmp_path)
    ref_loss, optim = case["outputs"]["loss"], case["outputs"]["optim"]
    name = ref_loss["name"]
    source, keys = SPEC[name]
    expected = OmegaConf.to_container(OmegaConf.load(CONF / "loss" / f"{source}.yaml").criterion)
    criterion = cfg["loss"]["criterion"]

    def targets(node: object) -> object:
        if isinstance(node, dict):
            return {k: targets(v) for k, v in node.items() if k == "_target_" or isinstance(v, dict)}
        return node

    pairs: list[tuple[str, object, object]] = [("loss.criterion (targets)", targets(criterion), targets(expected))]
    for ref_key, value in ref_loss.items():
        if ref_key in NON_LOSS_KEYS or ref_key in ZERO_KEYS:
            continue
        our_keys = keys[ref_key]
        for our_key in (our_keys,) if isinstance(our_keys, str) else our_keys:
            pairs.append((f"loss.criterion.{our_key}", OmegaConf.select(OmegaConf.create(criterion), our_key), value))
    if name == "alpha_dl" and "beta" not in ref_loss:
        pairs.append(("loss.criterion.b (reference: 1/alpha)", criterion.get("b"), None))
    applies_l1 = bool(ref_loss.get("pass_model_to_loss")) or name.startswith("anl")
    l1 = float(ref_loss.get("delta", 0.0)) if applies_l1 else 0.0
    pairs.append(("loss.l1", float(cfg["loss"]["l1"]), l1))
    if l1 or optim["weight_decay"]:
        pairs.append(("method.decay_norm_and_bias", cfg["method"].get("decay_norm_and_bias"), True))
    problems = mismatches(pairs)
    assert not problems, f"{preset_name(case['name'])} vs {case['inputs']['file']}:\n" + "\n".join(problems)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_preset_augmentation_matches_reference(dataset: str, tmp_path: Path) -> None:
    """dataset.py trains CIFAR with RandomCrop(32, padding=4) + RandomHorizontalFlip (+ RandomRotation(20)
    for CIFAR-100)."""
    ref = FIXTURE["transforms"][dataset]["train"]
    cfg = OmegaConf.to_container(compose_config(tmp_path, [f"experiment=drainage_{dataset}"], quick=False),
                                 resolve=True)
    augment = cfg["data"]["augment"]
    problems = mismatches([("data.augment.crop_padding", augment.get("crop_padding", 0), ref["random_crop_padding"]),
                           ("data.augment.flip", augment.get("flip", False), ref["horizontal_flip"]),
                           ("data.augment.rotation", augment.get("rotation", 0), ref["rotation_degrees"])])
    assert not problems, "\n".join(problems)


def test_every_reference_config_has_a_case() -> None:
    assert len(FIXTURE["cases"]) == len({c["name"] for c in FIXTURE["cases"]}) == 41
