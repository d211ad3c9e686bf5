"""Closed-set presets train on every class; holding classes out is an explicit choice (ood=holdout).

A dataset's default OOD evaluation is its standard OOD list: the sets found under data.root are used,
the others skipped, and one log line names both, so the training task never changes silently.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from noisylab.train import build_datamodule
from tests.conftest import CONF, compose_config
from tests.fixtures import write_cifar10, write_cifar100, write_mnist, write_svhn

DRAINAGE_CIFAR = sorted(p.stem for p in (CONF / "experiment").glob("drainage_cifar*.yaml"))


def _cifar10_fixture(root: Path) -> None:
    write_cifar10(root, n_per_batch=200, n_test=100)


def test_drainage_cifar10_asymmetric_trains_all_classes_at_the_asked_rate(tmp_path: Path) -> None:
    _cifar10_fixture(tmp_path / "data")
    cfg = compose_config(tmp_path, ["experiment=drainage_cifar10", "noise=asymmetric", "noise.rate=0.45",
                                     "data.val_size=0.1"])
    datamodule = build_datamodule(cfg)
    labels = datamodule.labels
    assert labels.num_classes == 10 and list(labels.class_ids) == list(range(10))
    assert len(labels.clean) == 1000  # every training sample of the 5 batches (the val split comes after noise)
    # Half of the classes flip (truck, bird, cat, dog, deer), each by floor(0.45 * n_class) samples.
    counts = np.bincount(labels.clean, minlength=10)
    expected = sum(int(0.45 * counts[c]) for c in (9, 2, 3, 5, 4)) / len(labels.clean)
    assert labels.rate == pytest.approx(expected)
    assert 0.2 < labels.rate < 0.25  # about 22.5%, not the 11.25% of a run that dropped 2 classes
    assert "ood/holdout" not in datamodule.test_sets


@pytest.mark.parametrize("experiment", DRAINAGE_CIFAR)
def test_every_drainage_cifar_preset_keeps_all_classes(tmp_path: Path, experiment: str) -> None:
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    assert "holdout" not in (cfg.ood or {})
    assert all(spec.optional for spec in cfg.ood.values())


@pytest.mark.parametrize("data", ["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "cifar10n", "cifar100n",
                                  "clothing1m", "webvision", "animal10n", "red_mini_imagenet", "imagenet_folder"])
def test_dataset_defaults_hold_no_class_out(tmp_path: Path, data: str) -> None:
    assert "holdout" not in (compose_config(tmp_path, [f"data={data}"]).ood or {})


def test_the_offline_demo_and_the_open_set_protocol_hold_classes_out(tmp_path: Path) -> None:
    assert "holdout" in compose_config(tmp_path, []).ood  # digits: the offline demo
    open_set = compose_config(tmp_path, ["experiment=drainage_cifar10", "ood=holdout", "ood.holdout.num_classes=4"])
    assert list(open_set.ood) == ["holdout"] and open_set.ood.holdout.num_classes == 4


def test_standard_sets_found_are_used_and_missing_ones_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data"
    _cifar10_fixture(root)
    write_cifar100(root)
    write_svhn(root)
    cfg = compose_config(tmp_path, ["data=cifar10", "noise=none", "data.val_size=0.1"])
    with caplog.at_level(logging.INFO, logger="noisylab.data.datamodule"):
        datamodule = build_datamodule(cfg)
    assert {"ood/cifar100", "ood/svhn"} <= set(datamodule.test_sets)
    assert not {"ood/textures", "ood/places365", "ood/lsun", "ood/tinyimagenet"} & set(datamodule.test_sets)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("OOD sets:")]
    assert len(lines) == 1
    used, missing = lines[0].split("; not found, skipped: ")
    assert used == "OOD sets: cifar100, svhn"
    for name in ("tinyimagenet", "textures", "places365", "lsun"):
        assert name in missing
    assert str(root.resolve()) in missing  # where it looked


def test_a_set_the_user_names_must_exist(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data")
    cfg = compose_config(tmp_path, ["data=mnist", "ood=[kmnist]", "data.val_size=0.1"])
    with pytest.raises(FileNotFoundError, match="kmnist"):
        build_datamodule(cfg)
