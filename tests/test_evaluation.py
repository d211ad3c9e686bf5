"""Evaluation: selective classification, Brier, noise-detection precision, OOD sets and eval.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.data import DatasetNotFoundError, OODSet
from noisylab.data.ood import convert_images
from noisylab.data.sources import load_cifar10, load_photo_patches
from noisylab.metrics.classification import brier_score, risk_coverage, selective_metrics
from noisylab.metrics.noise_detection import precision_at_noise_rate
from tests.conftest import QUICK, read_metrics, run_eval, run_train
from tests.fixtures import write_cifar10, write_image_folder


def test_selective_metrics_by_hand() -> None:
    confidence = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = torch.tensor([True, False, True, True, False])
    coverage, risk = risk_coverage(confidence, correct)
    np.testing.assert_allclose(coverage.numpy(), [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(risk.numpy(), [0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    found = selective_metrics(confidence, correct, coverage=0.6)
    assert found["aurc"] == pytest.approx(np.mean([0, 1 / 2, 1 / 3, 1 / 4, 2 / 5]))
    assert found["acc_at_60"] == pytest.approx(2 / 3)


def test_risk_coverage_treats_ties_as_one_step() -> None:
    coverage, risk = risk_coverage(torch.tensor([0.5, 0.5, 0.5, 0.1]), torch.tensor([True, False, True, True]))
    np.testing.assert_allclose(coverage.numpy(), [0.75, 1.0])
    np.testing.assert_allclose(risk.numpy(), [1 / 3, 1 / 4])


def test_brier_score_against_numpy() -> None:
    logits, labels = torch.randn(50, 4), torch.randint(0, 4, (50,))
    p = torch.softmax(logits.double(), 1).numpy()
    expected = ((p - np.eye(4)[labels.numpy()]) ** 2).sum(1).mean()
    assert brier_score(logits, labels) == pytest.approx(expected, rel=1e-5)


def test_precision_at_the_true_noise_rate() -> None:
    scores = torch.tensor([0.9, 0.8, 0.1, 0.7, 0.2])
    noisy = torch.tensor([True, False, False, True, False])
    assert precision_at_noise_rate(scores, noisy) == pytest.approx(0.5)  # top 2: samples 0 (noisy) and 1 (clean)


def test_convert_images_between_shapes() -> None:
    rgb = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    rgb[:, 0] = 255  # pure red
    grey = convert_images(rgb, (1, 8, 8))
    assert grey.shape == (2, 1, 8, 8) and grey.dtype == torch.uint8 and int(grey[0, 0, 0, 0]) == 76  # 0.299 * 255
    back = convert_images(grey, (3, 28, 28))
    assert back.shape == (2, 3, 28, 28) and torch.equal(back[:, 0], back[:, 2])


def test_ood_sets_from_a_dataset_and_from_a_folder(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_test=40)
    from_source = OODSet(source=load_cifar10, max_samples=25).dataset(tmp_path, (1, 8, 8), in_memory=True)
    images, labels, index, _ = from_source.__getitems__(list(range(25)))
    assert images.shape == (25, 1, 8, 8) and torch.all(labels == -1) and len(from_source) == 25
    write_image_folder(tmp_path, name="somewhere")
    from_folder = OODSet(folder="somewhere").dataset(tmp_path, (3, 32, 32), in_memory=True)
    assert len(from_folder) == 27 and from_folder[0][0].shape == (3, 32, 32)
    grey = OODSet(folder=str(tmp_path / "somewhere")).dataset(Path("/nonexistent"), (1, 8, 8), in_memory=True)
    assert grey[0][0].shape == (1, 8, 8)


def test_missing_ood_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        OODSet(source=load_cifar10).dataset(tmp_path, (3, 32, 32), in_memory=True)
    with pytest.raises(DatasetNotFoundError, match="image files"):
        OODSet(folder="missing").dataset(tmp_path, (3, 32, 32), in_memory=True)
    with pytest.raises(ValueError, match="exactly one"):
        OODSet()


def test_photo_patches_ship_with_scikit_learn() -> None:
    source = load_photo_patches(num=50)
    assert source.test_images.shape == (50, 1, 32, 32) and source.test_images.dtype == np.uint8
    assert source.test_images.std() > 10  # texture, not blank


@pytest.mark.slow
def test_eval_py_reproduces_the_training_runs_test_metrics_and_adds_ood_sets(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_train([f"hydra.run.dir={run}", *QUICK, "eval.plots=true"], cwd=tmp_path)
    for name in ("transition_matrix", "ood_scores", "risk_coverage", "reliability"):
        assert (run / "plots" / f"{name}.png").is_file(), name
    checkpoint = f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"
    for _ in range(2):  # the second evaluation keeps the first one's eval.json
        proc = run_eval([checkpoint, "ood=[photo_patches]"], cwd=tmp_path)
    assert "test/acc" in proc.stdout
    trained, evaluated = read_metrics(run), json.loads((run / "eval.json").read_text())
    for key, value in trained.items():
        if key.startswith(("test/", "train/")):  # photo_patches is in no group: the near mean stays holdout's
            assert evaluated[key] == pytest.approx(value, abs=1e-6), key
    assert "test/ood/photo_patches/one_minus_p_d/auroc" in evaluated
    assert evaluated["test/ood_other/one_minus_p_d/auroc"] == evaluated["test/ood/photo_patches/one_minus_p_d/auroc"]
    assert evaluated["default_score"] == "one_minus_p_d"
    assert evaluated["ood_sets"] == ["ood/holdout", "ood/photo_patches"]
    assert len(list(run.glob("eval.*.json"))) == 1
    assert (run / "eval_plots" / "ood_scores.png").is_file()
    missing = run_eval([checkpoint, "ood=[svhn]", f"data_root={tmp_path / 'nothing'}"], cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "test_32x32.mat" in missing.stderr


def test_svhn_and_mnist_like_ood_sources(tmp_path: Path) -> None:
    from scipy.io import loadmat

    from noisylab.data.sources import load_fashion_mnist, load_kmnist, load_svhn
    from tests.fixtures import write_mnist, write_svhn

    write_svhn(tmp_path)
    source = load_svhn(tmp_path)
    raw = loadmat(tmp_path / "test_32x32.mat")
    assert source.test_images.shape == (30, 3, 32, 32)
    assert np.array_equal(source.test_images[4].transpose(1, 2, 0), raw["X"][..., 4])
    assert np.array_equal(source.test_labels, raw["y"].reshape(-1) % 10) and source.test_labels.max() <= 9
    write_mnist(tmp_path / "fm")
    (tmp_path / "fm" / "MNIST").rename(tmp_path / "fm" / "FashionMNIST")
    assert load_fashion_mnist(tmp_path / "fm").test_images.shape == (100, 1, 28, 28)
    with pytest.raises(DatasetNotFoundError, match="KMNIST"):
        load_kmnist(tmp_path)


@pytest.mark.slow
def test_eval_under_ddp_counts_every_sample_once(tmp_path: Path) -> None:
    """Two processes (the test sets are split, padded and gathered) give exactly the single-process metrics."""
    run = tmp_path / "run"
    run_train([f"hydra.run.dir={run}", *QUICK], cwd=tmp_path)
    command = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "ood=[photo_patches]", "eval.plots=false"]
    results = []
    for extra in ([], ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]):
        run_eval([*command, *extra], cwd=tmp_path)
        results.append(json.loads((run / "eval.json").read_text()))
    single, ddp = results
    numeric = [k for k, v in single.items() if isinstance(v, float)]
    assert len(numeric) > 30
    for key in numeric:
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key


@pytest.mark.slow
def test_training_in_bf16_tests_in_float32_like_eval_py(tmp_path: Path) -> None:
    """trainer.precision=bf16-mixed trains in bfloat16, but its final test and eval.py (32-true) give one
    checkpoint the same numbers."""
    run = tmp_path / "run"
    run_train([f"hydra.run.dir={run}", "trainer.precision=bf16-mixed", "eval.plots=false", *QUICK], cwd=tmp_path)
    run_eval([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "eval.plots=false"], cwd=tmp_path)
    trained, evaluated = read_metrics(run), json.loads((run / "eval.json").read_text())
    compared = [key for key in trained if key.startswith(("test/", "train/"))]
    assert len(compared) > 20
    for key in compared:
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
