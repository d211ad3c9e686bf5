"""Config mistakes are refused by check_config (or the noise model) before anything is built or written.

Each message names the key, the bad value, what is allowed and the fix. Every test composes a real config
in-process and calls check_config (or a constructor): no training, no subprocess.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from noisylab.config_checks import ConfigError, ConfigWarning, check_config
from noisylab.noise import AsymmetricNoise
from noisylab.train import build_datamodule
from tests.conftest import CONF, compose_config


def _refused(tmp_path: Path, overrides: list[str], *patterns: str) -> str:
    """check_config must refuse the config with a ValueError whose message holds every pattern."""
    with pytest.raises(ValueError) as excinfo:  # noqa: PT011 - each case checks its message below
        check_config(compose_config(tmp_path, overrides))
    message = str(excinfo.value)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in error message:\n{message}"
    return message


def _passes_silently(tmp_path: Path, overrides: list[str]) -> None:
    """check_config accepts the config without a ConfigWarning (at the preset's own epochs: the quick ones are
    fewer than DivideMix's warm-up, which is refused)."""
    cfg = compose_config(tmp_path, overrides, quick=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        check_config(cfg)


# ------------------------------------------------------------------------------------------- 1. epochs
@pytest.mark.parametrize(("value", "why"), [("-1", "train forever"), ("0", "untrained"), ("two", "whole number"),
                                            ("1.5", "whole number"), ("null", "whole number")])
def test_max_epochs_must_be_a_whole_number_of_at_least_one(tmp_path: Path, value: str, why: str) -> None:
    _refused(tmp_path, [f"trainer.max_epochs={value}"], f"trainer.max_epochs={value}", ">= 1", why)


# ------------------------------------------------------------------------------------------- 2. val_size
@pytest.mark.parametrize(("value", "hint"), [("1.0", "write 1 for one sample or a fraction below 1"),
                                             ("1.5", "below 1 (e.g. 0.1) or a whole number"), ("5000.0", "write 5000"),
                                             ("-0.1", ">= 0"), ("-3", ">= 0"), ("true", "a fraction")])
def test_val_size_that_is_neither_a_fraction_nor_a_count(tmp_path: Path, value: str, hint: str) -> None:
    _refused(tmp_path, [f"data.val_size={value}"], f"data.val_size={value}", hint)


@pytest.mark.parametrize("value", ["0.1", "0.5", "1", "50", "0"])
def test_val_size_fractions_and_counts_pass(tmp_path: Path, value: str) -> None:
    """0 passes too: datasets with an official validation split (Clothing1M) ignore val_size, and the
    datamodule refuses an empty split of the others."""
    _passes_silently(tmp_path, [f"data.val_size={value}"])


# ------------------------------------------------------------------------------------------- 3. class maps
DIGITS = tuple(str(d) for d in range(10))
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.mark.parametrize("class_map", [{3: 12}, {12: 3}, {3: 5, 5: 3, 10: 1}])
def test_class_map_naming_classes_the_dataset_lacks(class_map: dict[int, int]) -> None:
    noise = AsymmetricNoise(0.4, class_map=class_map)
    with pytest.raises(ValueError) as excinfo:
        noise.check_classes(CIFAR10)
    message = str(excinfo.value)
    for pattern in ("noise.class_map", "0 to 9", "3=cat", "ids"):
        assert pattern in message, message
    assert any(str(c) in message for c in (10, 12))


def test_class_map_of_the_dataset_passes() -> None:
    from noisylab.noise import class_maps

    AsymmetricNoise(0.4, class_map=class_maps.cifar10()).check_classes(CIFAR10)
    AsymmetricNoise(0.4, class_map=class_maps.mnist()).check_classes(DIGITS)


@pytest.mark.parametrize(("class_map", "bad"), [({"cat": "dog"}, "cat"), ({-1: 2}, "-1"), ({1: 2.5}, "2.5")])
def test_class_map_entries_must_be_class_ids(class_map: dict, bad: str) -> None:
    with pytest.raises(ValueError, match="noise.class_map") as excinfo:
        AsymmetricNoise(0.4, class_map=class_map)
    assert bad in str(excinfo.value) and "class ids" in str(excinfo.value)


def test_the_datamodule_checks_the_class_map(tmp_path: Path) -> None:
    """Through the real path: digits has 10 classes, so 12 is refused even though the pair 1 -> 2 applies."""
    cfg = compose_config(tmp_path, ["noise=asymmetric", "noise.class_map={1:2,3:12}", "ood=none"])
    with pytest.raises(ValueError, match="noise.class_map"):
        build_datamodule(cfg)


# ------------------------------------------------------------------------------------------- 4. loss heads
def test_drainage_loss_refuses_a_head_without_drainage_node(tmp_path: Path) -> None:
    _refused(tmp_path, ["loss=drainage", "loss.head._target_=noisylab.models.LinearHead"],
             "loss.head", "LinearHead", "loss.criterion", "DrainageLoss", "loss=drainage")


@pytest.mark.parametrize("loss", ["ce", "sce", "gce", "nce_rce", "tgce"])
@pytest.mark.parametrize("head", ["noisylab.models.DrainageHead", "noisylab.models.heads.FixedDrainageHead"])
def test_class_losses_refuse_a_drainage_head(tmp_path: Path, loss: str, head: str) -> None:
    _refused(tmp_path, [f"loss={loss}", f"loss.head._target_={head}"], "loss.head", "drainage node",
             "loss.criterion", "noisylab.models.LinearHead")


def test_drainage_loss_refuses_a_distance_head(tmp_path: Path) -> None:
    _refused(tmp_path, ["loss=drainage", "loss.head._target_=noisylab.models.heads.DisMaxHead"],
             "DisMaxHead", "DrainageLoss")


def test_unknown_head_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, ["loss=ce", "loss.head._target_=noisylab.models.LinearHeed"],
             "loss.head._target_=noisylab.models.LinearHeed", "noisylab.models.LinearHead")


def test_fpr_objective_refuses_a_criterion_without_log_probabilities(tmp_path: Path) -> None:
    _refused(tmp_path, ["loss=dismax", "loss.criterion._target_=noisylab.losses.CrossEntropy",
                        "~loss.criterion.entropic_scale", "~loss.criterion.scale_in_eval"],
             "loss.objective", "log_probabilities", "loss=dismax", "loss.objective=null")


@pytest.mark.parametrize("overrides", [
    ["loss=ce", "loss.head._target_=noisylab.models.heads.DisMaxHead"],
    ["loss=isomax_plus", "loss.head._target_=noisylab.models.LinearHead"],
])
def test_distance_head_and_entropic_loss_apart_are_warned_about(tmp_path: Path, overrides: list[str]) -> None:
    with pytest.warns(ConfigWarning, match="loss.head"):
        check_config(compose_config(tmp_path, overrides))


# ------------------------------------------------------------------------------------------- 5. types
@pytest.mark.parametrize(("override", "expected"), [
    ("noise.rate=abc", "must be a number"),
    ("noise=symmetric noise.rate=abc", "must be a number"),
    ("optim.lr=fast", "must be a number"),
    ("optim=adam optim.weight_decay=none", "must be a number"),
    ("seed=abc", "must be a whole number"),
    ("seed=-1", ">= 0"),
    ("resume=maybe", "true or false"),
    ("data.batch_size=many", "must be a whole number"),
    ("data.augment.crop_padding=wide", "must be a whole number"),
    ("loss.criterion.a=big", "must be a number"),
    ("loss=sce loss.criterion.passive.label_floor=tiny", "must be a number"),
    ("loss.l1=some", "must be a number"),
    ("trainer.enable_model_summary=maybe", "true or false"),
    ("trainer.gradient_clip_val=high", "must be a number"),
    ("method=dividemix method.lambda_u=lots", "must be a number"),
    ("sched=step sched.step_size=often", "must be a whole number"),
    ("callbacks.model_checkpoint.save_top_k=all", "must be a whole number"),
])
def test_strings_where_numbers_or_booleans_belong(tmp_path: Path, override: str, expected: str) -> None:
    *groups, setting = override.split()
    key, value = setting.split("=")
    _refused(tmp_path, [*groups, setting], f"{key}={value}", expected)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = _refused(tmp_path, ["noise.rate=abc", "optim.lr=fast", "trainer.max_epochs=0"],
                       "noise.rate=abc", "optim.lr=fast", "trainer.max_epochs=0")
    assert isinstance(ConfigError(message), ValueError)


def test_numbers_given_as_numbers_pass(tmp_path: Path) -> None:
    _passes_silently(tmp_path, ["noise.rate=0.2", "optim.lr=0.1", "seed=3", "optim.weight_decay=0",
                                "trainer.gradient_clip_val=5", "resume=false", "loss.l1=1e-4"])


# ------------------------------------------------------------------------------------------- 6. trainer
def test_gpu_trainer_without_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _refused(tmp_path, ["trainer=gpu"], "trainer.accelerator=gpu", "torch.cuda.is_available() is False",
             "trainer=cpu", "trainer=default")


def test_more_gpus_than_the_machine_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    _refused(tmp_path, ["trainer=gpu", "trainer.devices=4"], "trainer.devices=4", "1 CUDA GPU")
    _refused(tmp_path, ["trainer=gpu", "trainer.devices=[0,2]"], "trainer.devices=[0, 2]", "0 to 0")
    _passes_silently(tmp_path, ["trainer=gpu"])
    _passes_silently(tmp_path, ["trainer=ddp"])


@pytest.mark.parametrize(("override", "patterns"), [
    ("trainer.accelerator=gpus", ("trainer.accelerator=gpus", "cpu", "gpu", "trainer=cpu")),
    ("trainer.precision=17", ("trainer.precision=17", "one of", "bf16-mixed", "32-true")),
    ("trainer.precision=half", ("trainer.precision=half", "16-mixed")),
    ("trainer.devices=0", ("trainer.devices=0", ">= 1", "-1")),
    ("trainer.num_nodes=0", ("trainer.num_nodes=0", ">= 1")),
    ("+trainer.limit_train_batches=1.5", ("trainer.limit_train_batches=1.5", "[0, 1]")),
    ("+trainer.limit_val_batches=-2", ("trainer.limit_val_batches=-2", ">= 0")),
    ("trainer.check_val_every_n_epoch=0", ("trainer.check_val_every_n_epoch=0", ">= 1")),
])
def test_trainer_settings_lightning_would_refuse_late(tmp_path: Path, override: str, patterns: tuple[str, ...]) -> None:
    _refused(tmp_path, [override], *patterns)


def test_trainer_settings_lightning_accepts_pass(tmp_path: Path) -> None:
    _passes_silently(tmp_path, ["trainer=cpu", "trainer.precision=bf16-mixed", "+trainer.limit_train_batches=0.5",
                                "+trainer.limit_val_batches=3", "trainer.deterministic=warn"])
    _passes_silently(tmp_path, ["trainer=ddp_cpu"])


# ------------------------------------------------------------------------------------------- no false refusals
def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GROUP_OPTIONS = [f"{group}={option}" for group in ("loss", "method", "model", "optim", "sched", "logger", "ood",
                                                   "eval", "callbacks") for option in _options(group)]
EXPERIMENTS = _options("experiment")
GPU_TRAINERS = {"gpu", "ddp", "slurm_ddp"}


@pytest.mark.parametrize("choice", GROUP_OPTIONS)
def test_every_group_option_passes(tmp_path: Path, choice: str) -> None:
    _passes_silently(tmp_path, [choice])


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_every_trainer_preset_passes_where_it_can_run(tmp_path: Path, trainer: str) -> None:
    """The GPU presets pass on a machine with a CUDA GPU and are refused, naming the fix, on one without."""
    if trainer in GPU_TRAINERS and not torch.cuda.is_available():
        _refused(tmp_path, [f"trainer={trainer}"], "torch.cuda.is_available() is False", "trainer=cpu")
    else:
        _passes_silently(tmp_path, [f"trainer={trainer}"])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_passes(tmp_path: Path, experiment: str) -> None:
    """Presets for data that is not here pass too: check_config reads no data."""
    _passes_silently(tmp_path, [f"experiment={experiment}"])


@pytest.mark.parametrize("data", _options("data"))
def test_every_data_config_passes(tmp_path: Path, data: str) -> None:
    _passes_silently(tmp_path, [f"data={data}"])


@pytest.mark.parametrize("noise", _options("noise"))
def test_every_noise_config_passes_on_cifar10(tmp_path: Path, noise: str) -> None:
    _passes_silently(tmp_path, ["data=cifar10", f"noise={noise}"])


def test_the_defaults_pass_unquick(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [], quick=False)
    check_config(cfg)
