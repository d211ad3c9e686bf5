"""End-to-end runs of train.py as a user runs it (subprocesses, CPU, tiny data)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import QUICK, read_metrics, run_train
from tests.fixtures import write_cifar10, write_cifar100

pytestmark = pytest.mark.slow

HEADLINE = ["test/acc", "test/drainage_rate", "test/selective_acc", "test/ece", "test/ood_near/one_minus_p_d/auroc",
            "test/selective/one_minus_p_d/aurc", "test/calibrated/noisy_val/ece"]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_default_run_trains_tests_and_writes_its_run_folder(tmp_path: Path) -> None:
    """`python train.py` with no arguments: digits, instance noise, drainage; prints the headline table."""
    run = tmp_path / "run"
    proc = run_train([f"hydra.run.dir={run}"], cwd=tmp_path)
    for name in HEADLINE:
        assert name in proc.stdout, f"{name} missing from the printed table"
    metrics = read_metrics(run)
    for name in [*HEADLINE, "train/noise_detection_auroc", "train/drainage_precision", "val/best_acc"]:
        assert np.isfinite(metrics[name]), name
    assert metrics["test/acc"] > 0.5  # 8 classes after holding out 2: chance is 0.125
    assert metrics["test/ood_near/one_minus_p_d/auroc"] > 0.5
    assert "rank by the score 1 - p_d" in " ".join(proc.stdout.split())  # the console says which score
    assert abs(metrics["noise/realised_rate"] - 0.4) < 0.05
    assert metrics["tested_checkpoint"].endswith("best.ckpt")
    for path in [".hydra/config.yaml", "noisy_labels.npz", "checkpoints/last.ckpt", "checkpoints/best.ckpt"]:
        assert (run / path).is_file(), path
    assert list((run / "csv").glob("version_*/metrics.csv"))
    # Checkpoints hold only plain data: they load with weights_only=True.
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["run_config"]["loss"]["criterion"]["_target_"].endswith("DrainageLoss")
    labels = np.load(run / "noisy_labels.npz")
    assert {"noisy", "clean", "transition", "rate", "class_ids"} <= set(labels.files)


def test_cifar100_headline_command_on_a_fixture(tmp_path: Path) -> None:
    """The README's headline command on CIFAR-100 files in the official layout; the model is picked for it,
    every class trains, and the standard OOD sets found under data.root (here CIFAR-10) are evaluated."""
    write_cifar100(tmp_path / "datasets", n_train=400, n_test=200)
    write_cifar10(tmp_path / "datasets", n_per_batch=20, n_test=60)
    run = tmp_path / "run"
    run_train(["loss=drainage", "data=cifar100", "noise=instance", "noise.rate=0.4",
               f"data.root={tmp_path / 'datasets'}", f"hydra.run.dir={run}", "data.val_size=50",
               "+trainer.limit_train_batches=2", *QUICK[1:], "trainer.max_epochs=1"], cwd=tmp_path, timeout=600)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["model"]["arch"] == "resnet34"
    assert config["data"]["name"] == "cifar100"
    metrics = read_metrics(run)
    assert "test/acc" in metrics and "test/ood/cifar10/one_minus_p_d/auroc" in metrics
    # OpenOOD v1.5's CIFAR-100 grouping: CIFAR-10 is near OOD
    assert metrics["test/ood_near/one_minus_p_d/auroc"] == metrics["test/ood/cifar10/one_minus_p_d/auroc"]
    assert not any("holdout" in key for key in metrics)
    noisy = np.load(run / "noisy_labels.npz")
    assert len(np.unique(noisy["clean"])) == 100  # all classes of the fixture train


def test_data_root_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NOISYLAB_DATA_ROOT sets data.root when the command line does not."""
    write_cifar100(tmp_path / "elsewhere", n_train=200, n_test=100)
    monkeypatch.setenv("NOISYLAB_DATA_ROOT", str(tmp_path / "elsewhere"))
    run = tmp_path / "run"
    run_train(["data=cifar100", "model=cnn8", "noise=symmetric", f"hydra.run.dir={run}", "data.val_size=20",
               *QUICK[1:], "trainer.max_epochs=1"], cwd=tmp_path)
    assert read_metrics(run)["test/acc"] >= 0


def test_mnist_from_shared_data(tmp_path: Path, shared_data: Path) -> None:
    """Real MNIST in torchvision's layout (../shared/data), a short run of the MNIST CNN."""
    run = tmp_path / "run"
    run_train(["data=mnist", f"data.root={shared_data}", "noise=asymmetric", f"hydra.run.dir={run}",
               "+trainer.limit_train_batches=30", "+trainer.limit_test_batches=5", *QUICK[1:],
               "trainer.max_epochs=1"], cwd=tmp_path)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["model"]["_target_"].endswith("CNN4")
    labels = np.load(run / "noisy_labels.npz")
    flipped = labels["transition"]
    assert labels["noisy"].shape == labels["clean"].shape and len(labels["clean"]) > 40000
    assert 0.0 < float(labels["rate"]) < 0.4
    # Only the mapped classes move (7->1, 2->7, 5<->6, 3->8), restricted to the classes kept in training.
    ids = list(labels["class_ids"])
    off_diagonal = flipped - np.diag(np.diag(flipped))
    for src, dst in zip(*np.nonzero(off_diagonal), strict=True):
        assert {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}[ids[src]] == ids[dst]
    assert read_metrics(run)["test/acc"] > 0.5


def test_multirun_gives_each_job_its_own_run_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_train(["-m", "noise.rate=0.2,0.4", "seed=1,2", f"hydra.sweep.dir={sweep}", *QUICK[1:],
               "trainer.max_epochs=1"], cwd=tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    rates = []
    for job in jobs:
        for path in [".hydra/config.yaml", "metrics.json", "noisy_labels.npz", "checkpoints/last.ckpt"]:
            assert (job / path).exists(), f"{job.name}/{path}"
        rates.append(read_metrics(job)["noise/realised_rate"])
    assert rates[0] < rates[2] and rates[1] < rates[3]  # noise.rate 0.2 jobs come first
    assert not (tmp_path / "outputs").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """Stopped after epoch 2 of 4 and resumed (resume=true, or ckpt_path=) equals 4 uninterrupted epochs."""
    common = ["trainer.deterministic=true", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
              "sched.T_max=4"]
    full, split, moved = tmp_path / "full", tmp_path / "split", tmp_path / "moved"
    run_train([*common, "trainer.max_epochs=4", f"hydra.run.dir={full}"], cwd=tmp_path)
    run_train([*common, "trainer.max_epochs=2", f"hydra.run.dir={split}"], cwd=tmp_path)
    first_half = tmp_path / "after_epoch_2.ckpt"
    shutil.copy(split / "checkpoints" / "last.ckpt", first_half)
    noisy_before = _digest(split / "noisy_labels.npz")

    run_train([*common, "trainer.max_epochs=4", "resume=true", f"hydra.run.dir={split}"], cwd=tmp_path)
    run_train([*common, "trainer.max_epochs=4", f"ckpt_path={first_half}", f"hydra.run.dir={moved}"],
              cwd=tmp_path)

    reference = _weights(full / "checkpoints" / "last.ckpt")
    for resumed in (split, moved):
        weights = _weights(resumed / "checkpoints" / "last.ckpt")
        assert weights.keys() == reference.keys()
        for key, value in reference.items():
            assert torch.equal(value, weights[key]), f"{resumed.name}: {key} differs"
        ours, theirs = read_metrics(resumed), read_metrics(full)
        for key, value in theirs.items():
            if key.startswith(("test/", "train/", "val/")) or key == "best_epoch":
                assert ours[key] == value, f"{resumed.name}: {key} {ours[key]} != {value}"
    assert _digest(split / "noisy_labels.npz") == noisy_before
    assert len(list((split / "csv").glob("version_*"))) == 2  # the resumed run's logs did not replace the first


def test_ddp_on_cpu_in_a_multirun(tmp_path: Path) -> None:
    """trainer=ddp_cpu: 2 gloo processes per job, one run folder per job, even inside a Hydra multirun."""
    sweep = tmp_path / "sweep"
    run_train(["-m", "trainer=ddp_cpu", "seed=3,4", f"hydra.sweep.dir={sweep}", *QUICK], cwd=tmp_path,
              timeout=600)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    single = tmp_path / "single"
    run_train(["seed=3", f"hydra.run.dir={single}", *QUICK], cwd=tmp_path)
    core = {"test/acc", "test/drainage_rate", "test/ece", "test/ood_near/one_minus_p_d/auroc",
            "train/noise_detection_auroc", "val/best_acc", "best_epoch"}
    assert core <= set(read_metrics(single))
    for job in jobs:
        metrics = read_metrics(job)
        assert core <= set(metrics)
        assert (job / "checkpoints" / "last.ckpt").is_file()
    # Both ranks built identical labels (checked at setup), and they equal the single-process run's.
    assert np.array_equal(np.load(jobs[0] / "noisy_labels.npz")["noisy"], np.load(single / "noisy_labels.npz")["noisy"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single", "sweep"]  # no stray run folders


def test_bf16_mixed_precision_on_cpu(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_train(["trainer.precision=bf16-mixed", f"hydra.run.dir={run}", *QUICK], cwd=tmp_path)
    assert np.isfinite(read_metrics(run)["test/acc"])


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    """The loss turns NaN in epoch 1 (digits: 17 steps per epoch): the run stops with the message, and
    last.ckpt holds the last good epoch, 0, intact."""
    run = tmp_path / "run"
    proc = run_train(["loss=ce", f"hydra.run.dir={run}", *QUICK[1:], "trainer.max_epochs=3",
                      "loss.criterion._target_=tests.helpers.ExplodingLoss", "+loss.criterion.healthy_calls=20"],
                     cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "non-finite training loss" in proc.stdout + proc.stderr
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (run / "metrics.json").exists()


def test_channels_last_and_torch_compile(tmp_path: Path) -> None:
    """Both options train, and checkpoints keep the plain parameter names (loadable without compile)."""
    run = tmp_path / "run"
    run_train(["method.channels_last=true", "method.compile=true", f"hydra.run.dir={run}", *QUICK[1:],
               "trainer.max_epochs=1"], cwd=tmp_path)
    assert np.isfinite(read_metrics(run)["test/acc"])
    weights = _weights(run / "checkpoints" / "last.ckpt")
    assert not any("_orig_mod" in key for key in weights)
