"""Confident learning from cleanlab over K-fold cross-validation runs, in our issues format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from noisylab.confident_learning import ConfidentLearningError, merge_folds
from noisylab.issues import main as issues_main
from noisylab.train import build_datamodule
from tests.conftest import QUICK, compose_config, run_train


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_folds_partition_the_training_split(tmp_path: Path) -> None:
    plain = build_datamodule(compose_config(tmp_path / "r", ["data.root=null"]))
    everything = set(plain.train_set.index.tolist())
    folds = []
    for fold in range(3):
        dm = build_datamodule(compose_config(tmp_path / "r", ["data.root=null", "data.num_folds=3",
                                                              f"data.fold={fold}"]))
        left_out, trained = set(dm.test_sets["fold"].index.tolist()), set(dm.train_set.index.tolist())
        assert left_out.isdisjoint(trained) and left_out | trained == everything
        np.testing.assert_array_equal(dm.val_set.index, plain.val_set.index)  # the validation split is the same
        folds.append(left_out)
    assert set.union(*folds) == everything and sum(map(len, folds)) == len(everything)
    with pytest.raises(Exception, match="num_folds >= 2 and 0 <= fold < num_folds"):  # Hydra wraps the ValueError
        build_datamodule(compose_config(tmp_path / "r", ["data.root=null", "data.num_folds=3", "data.fold=3"]))


@pytest.mark.slow
def test_cleanlab_over_three_folds_in_the_issues_format(tmp_path: Path) -> None:
    from cleanlab.filter import find_label_issues

    sweep = tmp_path / "sweep"
    run_train(["-m", "data.num_folds=3", "data.fold=0,1,2", "ood=none", "eval.plots=false",
               f"hydra.sweep.dir={sweep}", *QUICK], cwd=tmp_path, timeout=600)
    issues_main(["--cleanlab", str(sweep)])
    merged = sweep / "confident_learning"
    rows = _rows(merged / "samples" / "train.csv")
    folds = [_rows(sweep / str(k) / "samples" / "fold.csv") for k in range(3)]
    assert sorted(int(r["index"]) for r in rows) == sorted(int(r["index"]) for fold in folds for r in fold)
    assert [c for c in rows[0] if c.startswith("suspicion/")] == ["suspicion/cleanlab", "suspicion/p_d"]
    # cleanlab's own answer on the merged out-of-sample probabilities, recomputed here
    by_index = {int(r["index"]): r for fold in folds for r in fold}
    order = sorted(by_index)
    classes = [c for c in folds[0][0] if c.startswith("prob/")]
    position = {int(c.removeprefix("prob/")): k for k, c in enumerate(classes)}
    labels = np.array([position[int(by_index[i]["given_label"])] for i in order])
    probs = np.array([[float(by_index[i][c]) for c in classes] for i in order])
    flagged = np.array(order)[find_label_issues(labels, probs, filter_by="prune_by_noise_rate")]
    assert {int(r["index"]) for r in rows if r["cleanlab_issue"] == "1"} == set(flagged.tolist())
    issues = _rows(merged / "issues" / "label_issues.csv")
    assert {int(r["index"]) for r in issues} == set(flagged.tolist())  # the suspects are cleanlab's issues
    scores = [float(r["score"]) for r in issues]
    assert scores == sorted(scores, reverse=True)
    assert (merged / "issues" / "exclude.csv").is_file()
    (sweep / "1" / "samples" / "fold.csv").unlink()
    with pytest.raises(ConfidentLearningError, match=r"folds \[0, 2\] with num_folds \[3\]"):
        merge_folds(sweep)


@pytest.mark.slow
def test_cleanlab_on_a_cifar10_fixture_with_held_out_classes(tmp_path: Path) -> None:
    """CIFAR-10 in its on-disk format, 2 classes held out (positions shift): every fold's rows name their
    images, and cleanlab's issues come back under the source's indices and class ids."""
    from cleanlab.filter import find_label_issues

    from noisylab.data.sources import load_cifar10
    from tests.fixtures import write_cifar10

    write_cifar10(tmp_path / "data", n_per_batch=60, n_test=60)
    sweep = tmp_path / "sweep"
    run_train(["-m", "data=cifar10", f"data.root={tmp_path / 'data'}", "model=small_cnn", "ood=holdout",
               "noise=symmetric", "noise.rate=0.3", "data.val_size=0.1", "data.num_folds=2", "data.fold=0,1",
               "eval.plots=false",
               f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1", "callbacks.progress_bar=null",
               "trainer.enable_model_summary=false"], cwd=tmp_path, timeout=600)
    source = load_cifar10(tmp_path / "data")
    for fold in range(2):
        saved = np.load(sweep / str(fold) / "noisy_labels.npz")
        held = set(range(10)) - set(saved["class_ids"].tolist())
        assert len(held) == 2
        for name in ("train.csv", "fold.csv"):
            rows = _rows(sweep / str(fold) / "samples" / name)
            index = np.array([int(r["index"]) for r in rows])
            clean = np.array([int(r["clean_label"]) for r in rows])
            np.testing.assert_array_equal(clean, source.train_labels[index])  # each row's label is its image's
            assert not held & set(clean.tolist())
    issues_main(["--cleanlab", str(sweep)])
    folds = [_rows(sweep / str(k) / "samples" / "fold.csv") for k in range(2)]
    by_index = {int(r["index"]): r for fold in folds for r in fold}
    order = sorted(by_index)
    classes = [c for c in folds[0][0] if c.startswith("prob/")]
    assert sorted(int(c.removeprefix("prob/")) for c in classes) == sorted(saved["class_ids"].tolist())
    position = {int(c.removeprefix("prob/")): k for k, c in enumerate(classes)}
    labels = np.array([position[int(by_index[i]["given_label"])] for i in order])
    probs = np.array([[float(by_index[i][c]) for c in classes] for i in order])
    flagged = set(np.array(order)[find_label_issues(labels, probs, filter_by="prune_by_noise_rate")].tolist())
    issues = _rows(sweep / "confident_learning" / "issues" / "label_issues.csv")
    assert {int(r["index"]) for r in issues} == flagged
    for row in issues:  # the given label is the run's, is_noisy compares it with that image's own label
        given = int(row["given_label"])
        assert given == int(by_index[int(row["index"])]["given_label"])
        assert row["is_noisy"] == str(int(given != source.train_labels[int(row["index"])]))
