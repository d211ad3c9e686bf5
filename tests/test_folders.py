"""Folder datasets (Clothing1M, mini-WebVision + ILSVRC12, ImageFolder) on fixtures in their download layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.data import DatasetNotFoundError, NoisyLabelDataModule
from noisylab.data.folders import load_clothing1m, load_image_folder, load_webvision, read_file_list
from noisylab.noise import InstanceNoise, NoNoise, SymmetricNoise
from tests.conftest import read_metrics, run_train
from tests.fixtures import write_clothing1m, write_image_folder, write_webvision


def test_clothing1m_lists_and_official_clean_validation(tmp_path: Path) -> None:
    write_clothing1m(tmp_path)
    source = load_clothing1m(tmp_path)
    assert source.num_classes == 14 and len(source.train_files) == 56 and len(source.val_files) == 28
    assert source.real_noise and source.train_files[0].startswith("images/")
    dm = NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), NoNoise(), official_val=True)
    dm.build()
    assert len(dm.val_set) == 28 and len(dm.train_set) == 56  # the official split; training keeps everything
    image, label, index, clean = dm.train_set[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 224, 224)
    assert dm.test_sets["test"][3][0].shape == (3, 224, 224)


def test_webvision_keeps_the_first_50_classes_and_adds_ilsvrc12(tmp_path: Path) -> None:
    _, imagenet = write_webvision(tmp_path)
    source = load_webvision(tmp_path, num_classes=50, imagenet_root=imagenet)
    assert source.train_labels.max() == 49 and len(source.train_labels) == 100  # classes 50..59 dropped
    assert source.test_files[0].startswith("val_images_256/")
    assert source.class_names[0] == "class 0"
    labels = source.extra_test_sets["ilsvrc12"]
    assert len(labels) == 50 and sorted(set(labels.tolist())) == list(range(50))
    dm = NoisyLabelDataModule("webvision", load_webvision, str(tmp_path), NoNoise(), val_size=10,
                              source_kwargs={"imagenet_root": str(imagenet)})
    dm.build()
    assert "test/ilsvrc12" in dm.test_sets and dm.test_sets["test/ilsvrc12"][0][0].shape == (3, 224, 224)


def test_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    source = load_image_folder(tmp_path)
    assert source.class_names == ("class_0", "class_1", "class_2")
    assert len(source.train_files) == 18 and len(source.test_files) == 9


@pytest.mark.parametrize(("loader", "expected"), [
    (load_clothing1m, "noisy_train.txt"), (load_webvision, "train_filelist_google.txt"),
    (load_image_folder, "<class>"),
])
def test_missing_folder_data_names_the_layout(tmp_path: Path, loader, expected: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="data.root") as excinfo:
        loader(tmp_path)
    assert expected in str(excinfo.value) and str(tmp_path) in str(excinfo.value)


def test_bad_file_list_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(ValueError, match="list.txt:2"):
        read_file_list(path)


def test_instance_noise_refuses_file_datasets_and_synthetic_noise_warns(tmp_path: Path) -> None:
    write_clothing1m(tmp_path)
    with pytest.raises(ValueError, match=r"noise=instance .*needs the pixels"):
        NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), InstanceNoise(0.2)).build()
    with pytest.warns(UserWarning, match="already has real label noise"):
        labels = NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), SymmetricNoise(0.5)).build()
    assert labels.rate == pytest.approx(0.5, abs=0.02)
    assert np.array_equal(labels.clean, load_clothing1m(tmp_path).train_labels)


@pytest.mark.slow
def test_train_on_clothing1m_fixture(tmp_path: Path) -> None:
    """data=clothing1m end to end, decoding JPEGs in worker processes; a small model keeps it quick."""
    write_clothing1m(tmp_path / "datasets")
    run = tmp_path / "run"
    run_train(["data=clothing1m", f"data.root={tmp_path / 'datasets'}", "model=small_cnn", "ood=none",
               "data.batch_size=8", "data.num_workers=2", "trainer.max_epochs=1", f"hydra.run.dir={run}",
               "callbacks.progress_bar=null", "trainer.enable_model_summary=false"], cwd=tmp_path)
    metrics = read_metrics(run)
    assert 0 <= metrics["test/acc"] <= 1 and metrics["noise/realised_rate"] == 0.0


def test_animal10n_labels_come_from_file_names(tmp_path: Path) -> None:
    from noisylab.data.folders import load_animal10n
    from tests.fixtures import write_animal10n

    write_animal10n(tmp_path)
    source = load_animal10n(tmp_path)
    assert source.num_classes == 10 and source.image_shape == (3, 64, 64) and source.real_noise
    assert source.train_labels.tolist() == [int(Path(f).name[0]) for f in source.train_files]
    image = source.dataset("train", np.arange(3), source.train_labels[:3], source.train_labels[:3], augment=True)[0][0]
    assert image.shape == (3, 64, 64)
    with pytest.raises(DatasetNotFoundError, match="animal10n/training"):
        load_animal10n(tmp_path / "nothing")


def test_red_mini_imagenet_split_files_and_sizes(tmp_path: Path) -> None:
    from noisylab.data.folders import load_red_mini_imagenet, red_split_name
    from tests.fixtures import write_red_mini_imagenet

    assert [red_split_name(r) for r in (0.0, 0.05, 0.4, 0.8)] == [
        "red_noise_nl_0.0", "red_noise_nl_0.05", "red_noise_nl_0.4", "red_noise_nl_0.8"]
    write_red_mini_imagenet(tmp_path, noise_rate=0.4)
    source = load_red_mini_imagenet(tmp_path, noise_rate=0.4)
    assert source.num_classes == 100 and len(source.train_files) == 40
    assert source.test_files[0].startswith("validation/")
    eval_image = source.dataset("test", np.arange(2), source.test_labels[:2], source.test_labels[:2])[0][0]
    assert eval_image.shape == (3, 32, 32)
    with pytest.raises(DatasetNotFoundError, match="red_noise_nl_0.6"):
        load_red_mini_imagenet(tmp_path, noise_rate=0.6)
