"""Every config option composes, builds and runs a forward pass with the data it is paired with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from noisylab.models.factory import NetworkFactory
from noisylab.train import build_datamodule, build_method
from tests.conftest import CONF, compose_config
from tests.fixtures import write_cifar10, write_cifar100

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("loss", ["ce", "drainage"])
def test_every_model_and_loss_builds_and_runs_on_cifar_shapes(tmp_path: Path, model: str, loss: str) -> None:
    cfg = compose_config(tmp_path, [f"model={model}", f"loss={loss}"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model.pop("init_from") is None  # every model config offers init_from (read by NetworkFactory)
    network = NetworkFactory(model, OmegaConf.to_container(cfg.loss.head), image_shape=(3, 32, 32), num_classes=10)()
    outputs = network(torch.randn(4, 3, 32, 32))
    assert outputs.shape == (4, 11 if loss == "drainage" else 10)


def test_each_dataset_config_picks_its_model(tmp_path: Path) -> None:
    expected = {"digits": "SmallCNN", "mnist": "CNN4", "cifar10": "CNN8"}
    for data, model in expected.items():
        cfg = compose_config(tmp_path, [f"data={data}"])
        assert cfg.model._target_.endswith(model), data
    assert compose_config(tmp_path, ["data=cifar100"]).model.arch == "resnet34"
    for data in ("clothing1m", "webvision"):
        cfg = compose_config(tmp_path, [f"data={data}"])
        assert cfg.model.arch == "resnet50" and cfg.noise._target_.endswith("NoNoise"), data
    assert compose_config(tmp_path, ["data=webvision", "noise=symmetric"]).noise._target_.endswith("SymmetricNoise")
    assert compose_config(tmp_path, ["data=cifar100", "model=cnn8"]).model._target_.endswith("CNN8")


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp", "ddp_cpu"])
def test_trainer_presets_compose(tmp_path: Path, trainer: str) -> None:
    cfg = compose_config(tmp_path, [f"trainer={trainer}"])
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if trainer == "gpu":
        assert cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize("variant", ["superclass", "blocks"])
def test_cifar100_asymmetric_variants_from_the_command_line(tmp_path: Path, variant: str) -> None:
    write_cifar100(tmp_path / "data", n_train=1000, n_test=100)
    cfg = compose_config(tmp_path, ["data=cifar100", "noise=asymmetric", "noise.rate=0.4", "ood=none",
                                    "data.val_size=0.1", f"data.asymmetric_map.variant={variant}"])
    labels = build_datamodule(cfg).labels
    from noisylab.noise.class_maps import CIFAR100_SUPERCLASS

    moved = labels.is_noisy
    assert moved.sum() == sum(int(0.4 * (labels.clean == c).sum()) for c in range(100))
    src, dst = labels.clean[moved], labels.noisy[moved]
    if variant == "blocks":
        assert np.array_equal(dst, 5 * (src // 5) + (src % 5 + 1) % 5)
    else:
        assert all(CIFAR100_SUPERCLASS[s] == CIFAR100_SUPERCLASS[d] for s, d in zip(src, dst, strict=True))


def test_method_is_sized_from_the_data(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data")
    cfg = compose_config(tmp_path, ["data=cifar10", "ood=holdout", "ood.holdout.classes=[0,1,2]", "data.val_size=0.1"])
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    assert datamodule.num_classes == 7
    assert method(torch.randn(2, 3, 32, 32)).shape == (2, 8)  # 7 classes + the drainage node


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_and_builds_its_loss(tmp_path: Path, experiment: str) -> None:
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    criterion = instantiate(cfg.loss.criterion)
    head = instantiate(cfg.loss.head, in_features=16, num_classes=10)
    outputs = head(torch.randn(8, 16))
    assert torch.isfinite(criterion(outputs, torch.randint(0, 10, (8,))))
    assert instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(1))]) is not None


def test_drainage_cifar10_preset_is_the_published_setting(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["experiment=drainage_cifar10"], quick=False)
    assert cfg.model._target_.endswith("CNN8") and cfg.data.name == "cifar10"
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.data.batch_size) == (0.01, 0.9, 128)
    assert cfg.sched._target_.endswith("CosineAnnealingLR") and cfg.sched.T_max == cfg.trainer.max_epochs == 120
    assert cfg.trainer.gradient_clip_val == 5.0
    assert (cfg.loss.criterion.a, cfg.loss.l1) == (1, 0.0002)
    cfg100 = compose_config(tmp_path, ["experiment=drainage_cifar100"])
    assert cfg100.model.arch == "resnet34" and cfg100.loss.criterion.a == 0.1
    assert instantiate(cfg100.loss.criterion).b == pytest.approx(10.0)
    dismax = compose_config(tmp_path, ["experiment=dismax_cifar10"], quick=False)
    assert dismax.optim.nesterov and list(dismax.sched.milestones) == [150, 200, 250]
    assert dismax.trainer.max_epochs == 300 and dismax.data.batch_size == 64


def test_more_dataset_configs_pick_their_models(tmp_path: Path) -> None:
    assert compose_config(tmp_path, ["data=svhn"]).model._target_.endswith("CNN8")
    assert compose_config(tmp_path, ["data=fashion_mnist"]).model._target_.endswith("CNN4")
    for data, label_set in (("cifar10n", "worst"), ("cifar100n", "noisy")):
        cfg = compose_config(tmp_path, [f"data={data}"])
        assert cfg.noise._target_.endswith("HumanNoise") and cfg.data.human_labels.default_set == label_set
        assert "holdout" not in cfg.ood  # human labels: every class trains; OOD from the standard sets found


def test_pretrained_weights_load_from_the_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    from noisylab.models.resnet import resnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resnet("resnet18", 3, 224, pretrained="IMAGENET1K_V1")
    reference = torchvision.models.resnet18()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / Path(url).name)
    loaded = resnet("resnet18", 3, 224, pretrained="IMAGENET1K_V1")
    assert torch.equal(loaded.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    with pytest.raises(ValueError, match="ImageNet-sized"):
        resnet("resnet18", 3, 32, pretrained="IMAGENET1K_V1")
