"""Bad input stops before training with a message that names the problem and the fix; nothing is overwritten."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from noisylab.train import run
from tests.conftest import compose_config, run_train


def _run_and_expect(tmp_path: Path, overrides: list[str], *patterns: str) -> str:
    """Run in-process; the error must mention every pattern, and no checkpoint may appear."""
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    cfg = compose_config(out, overrides)
    with pytest.raises(Exception) as excinfo:  # noqa: PT011 - each case checks its message below
        run(cfg)
    message = str(excinfo.value)
    cause = excinfo.value.__cause__
    if cause is not None:
        message += "\n" + str(cause)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in error message:\n{message}"
    assert not (out / "checkpoints").exists()
    return message


@pytest.mark.parametrize("rate", ["1.0", "1.5", "-0.1"])
def test_noise_rate_outside_unit_interval(tmp_path: Path, rate: str) -> None:
    _run_and_expect(tmp_path, [f"noise.rate={rate}"], "noise.rate must be in [0, 1)")


def test_asymmetric_noise_on_a_dataset_without_a_class_map(tmp_path: Path) -> None:
    _run_and_expect(tmp_path, ["noise=asymmetric"], "needs a class map", "noise.class_map")


@pytest.mark.parametrize(("key", "value"), [("a", "0"), ("a", "-1"), ("b", "0"), ("b", "-2")])
def test_drainage_weights_must_be_positive(tmp_path: Path, key: str, value: str) -> None:
    _run_and_expect(tmp_path, [f"loss.criterion.{key}={value}"], "a > 0 and b > 0")


def test_missing_checkpoint_path(tmp_path: Path) -> None:
    _run_and_expect(tmp_path, [f"ckpt_path={tmp_path / 'nope.ckpt'}"], "no such checkpoint", "nope.ckpt")


def test_resume_without_a_checkpoint(tmp_path: Path) -> None:
    _run_and_expect(tmp_path, ["resume=true"], "resume=true", "last.ckpt", "hydra.run.dir")


def test_validation_split_larger_than_training_set(tmp_path: Path) -> None:
    _run_and_expect(tmp_path, ["data.val_size=100000"], "data.val_size", "training set has only")


@pytest.mark.parametrize(("data", "expected"), [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("mnist", "train-images-idx3-ubyte"),
])
def test_missing_dataset_names_folder_layout_and_keys(tmp_path: Path, data: str, expected: str) -> None:
    root = tmp_path / "empty"
    message = _run_and_expect(tmp_path, [f"data={data}", f"data.root={root}"], str(root), expected,
                              "data.root", "download=true", "NOISYLAB_DATA_ROOT")
    assert "Expected layout" in message


def test_a_run_folder_with_checkpoints_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"precious")
    cfg = compose_config(out, [])
    with pytest.raises(FileExistsError, match="resume=true"):
        run(cfg)
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"precious"
    assert not (out / "noisy_labels.npz").exists()


def test_other_noisy_labels_in_the_run_folder_are_not_replaced(tmp_path: Path) -> None:
    """A run folder's noisy_labels.npz from another config is kept, and the run refuses to start."""
    import numpy as np

    out = tmp_path / "run"
    out.mkdir()
    np.savez(out / "noisy_labels.npz", noisy=np.zeros(3, dtype=np.int64), clean=np.zeros(3, dtype=np.int64),
             class_ids=np.arange(8))
    before = (out / "noisy_labels.npz").read_bytes()
    with pytest.raises(ValueError, match="different noisy labels"):
        run(compose_config(out, []))
    assert (out / "noisy_labels.npz").read_bytes() == before


@pytest.mark.slow
def test_missing_cifar100_stops_at_once_from_the_command_line(tmp_path: Path) -> None:
    """The headline command without data: a clear message within seconds, no traceback needed to understand it."""
    start = time.monotonic()
    proc = run_train(["loss=drainage", "data=cifar100", "noise=instance", "noise.rate=0.4",
                      f"data.root={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
    err = proc.stderr
    assert "cifar-100-python" in err and str(tmp_path / "nothing") in err and "data.root" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
