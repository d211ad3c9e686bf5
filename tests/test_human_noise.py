"""CIFAR-N human labels: safe loading, alignment checks, realised rates, and data=cifar10n end to end."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.noise import HumanNoise
from noisylab.noise.human import load_human_labels
from tests.conftest import SHARED_DATA, read_metrics, run_train
from tests.fixtures import write_cifar10


def _label_file(path: Path, clean: np.ndarray, worse: np.ndarray) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy()}, path)
    return {"path": str(path), "default_set": "worst"}


def test_human_labels_follow_the_file_and_the_sample_positions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, 200)
    worse = np.where(rng.random(200) < 0.4, rng.integers(0, 10, 200), clean)
    labels = _label_file(tmp_path / "h.pt", clean, worse)
    assert np.array_equal(HumanNoise(labels)(clean, None, np.arange(10)), worse)
    kept = np.flatnonzero(clean < 5)
    restricted = HumanNoise(labels)(clean[kept], None, np.arange(10), kept)
    assert np.array_equal(restricted, worse[kept])
    assert np.array_equal(HumanNoise(labels, label_set="aggre")(clean, None, np.arange(10)), clean)


def test_misaligned_or_unknown_label_sets_are_refused(tmp_path: Path) -> None:
    clean = np.arange(20) % 10
    labels = _label_file(tmp_path / "h.pt", clean, clean)
    with pytest.raises(ValueError, match="does not match"):
        HumanNoise(labels)(clean[::-1].copy(), None, np.arange(10))
    with pytest.raises(ValueError, match="noise.label_set"):
        HumanNoise(labels, label_set="median")
    with pytest.raises(ValueError, match="has no 'noisy' labels"):
        HumanNoise(labels, label_set="noisy")(clean, None, np.arange(10))
    shifted = HumanNoise(_label_file(tmp_path / "g.pt", clean, (clean + 8) % 10))
    kept = np.flatnonzero(clean < 8)
    with pytest.raises(ValueError, match="held-out class"):  # classes 8 and 9 held out, yet humans chose them
        shifted(clean[kept], None, np.arange(8), kept)
    with pytest.raises(ValueError, match="data=cifar10n"):
        HumanNoise(None)
    with pytest.raises(FileNotFoundError, match="data.human_labels.path"):
        HumanNoise({"path": str(tmp_path / "missing.pt"), "default_set": "worst"})


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_label_file_with_other_contents_is_refused_without_running_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"clean_label": np.arange(3), "worse_label": _Payload()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(ValueError, match="not a CIFAR-N label file"):
        load_human_labels(path)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(("name", "label_set", "rate"), [
    ("CIFAR-10_human.pt", "aggre", 0.0901), ("CIFAR-10_human.pt", "worst", 0.4021),
    ("CIFAR-10_human.pt", "random1", 0.1723), ("CIFAR-10_human.pt", "random2", 0.1812),
    ("CIFAR-10_human.pt", "random3", 0.1764), ("CIFAR-100_human.pt", "noisy", 0.4020),
])
def test_real_cifar_n_files_give_the_published_rates(name: str, label_set: str, rate: float) -> None:
    path = SHARED_DATA / "cifar-n" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the CIFAR-N files exist only on the project's own machines)")
    clean = load_human_labels(path)["clean_label"]
    k = int(clean.max()) + 1
    noisy = HumanNoise({"path": str(path), "default_set": label_set})(clean, None, np.arange(k))
    assert (noisy != clean).mean() == pytest.approx(rate, abs=5e-5)


@pytest.mark.slow
def test_cifar10n_end_to_end_on_a_fixture(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    write_cifar10(root)
    from noisylab.data.sources import load_cifar10

    clean = load_cifar10(root).train_labels
    worse = np.where(np.arange(len(clean)) % 3 == 0, (clean + 1) % 10, clean)
    _label_file(root / "cifar-n" / "CIFAR-10_human.pt", clean, worse)
    run = tmp_path / "run"
    run_train(["data=cifar10n", f"data.root={root}", "data.val_size=50", "trainer.max_epochs=1", f"hydra.run.dir={run}",
               "callbacks.progress_bar=null", "trainer.enable_model_summary=false"], cwd=tmp_path)
    assert read_metrics(run)["noise/realised_rate"] == pytest.approx((worse != clean).mean())
