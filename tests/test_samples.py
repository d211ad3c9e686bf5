"""Per-sample outputs: each row names the image it describes, and the issues loop closes into a retrain."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylab.data.sources import load_digits
from noisylab.issues import main as issues_main
from noisylab.samples import LabelNames, training_rows, write_training_samples
from tests.conftest import QUICK, read_metrics, run_train


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_split_without_the_methods_own_suspicion_leaves_its_cells_empty(tmp_path: Path) -> None:
    names = LabelNames(np.array([3, 7]), [str(c) for c in range(10)])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    rows = {"labels": torch.tensor([0, 0]), "clean": torch.tensor([0, 1]), "index": torch.tensor([1, 0])}
    train = training_rows(
        "train",
        rows,
        logits,
        {
            "p_d": torch.tensor([0.1, 0.9], dtype=torch.float64),
            "gmm_noisy": torch.tensor([0.2, 0.8], dtype=torch.float64),
        },
        None,
        np.array([40, 50]),
        names,
        clean_known=True,
    )
    val = training_rows(
        "val",
        {**rows, "index": torch.tensor([2])} | {"labels": torch.tensor([1]), "clean": torch.tensor([1])},
        logits[:1],
        {"p_d": torch.tensor([0.5])},
        None,
        np.array([40, 50, 10]),
        names,
        clean_known=False,
    )
    write_training_samples(tmp_path / "train.csv", [train, val])
    got = _rows(tmp_path / "train.csv")
    assert [r["index"] for r in got] == ["10", "40", "50"]  # source indices, ordered
    assert [r["given_label"] for r in got] == ["7", "3", "3"]  # source class ids, not contiguous ones
    assert got[0]["suspicion/gmm_noisy"] == "" and got[0]["clean_label"] == ""
    assert got[1]["suspicion/gmm_noisy"] == "0.8" and got[1]["clean_class"] == "7"
    assert float(got[2]["p_given"]) == pytest.approx(torch.softmax(logits[0], 0)[0].item())


@pytest.mark.slow
def test_rows_name_their_images_and_the_issues_file_retrains(tmp_path: Path) -> None:
    """The default run holds 2 of the 10 digit classes out: positions shift, the index must not. Then:
    train -> noisylab-issues -> train with data.exclude, as a user would."""
    run = tmp_path / "run"
    run_train([f"hydra.run.dir={run}", *QUICK], cwd=tmp_path)
    train = _rows(run / "samples" / "train.csv")
    saved = np.load(run / "noisy_labels.npz")
    held = set(range(10)) - set(saved["class_ids"].tolist())
    assert len(held) == 2 and len(train) == len(saved["noisy"])  # the training and validation splits
    index = np.array([int(r["index"]) for r in train])
    clean = np.array([int(r["clean_label"]) for r in train])
    source = load_digits(root=None)  # the source's own labels, by position in its training and test sets
    targets = {"train": source.train_labels, "test": source.test_labels}
    np.testing.assert_array_equal(clean, targets["train"][index])  # the row's clean label is its image's label
    position = {int(i): k for k, i in enumerate(saved["index"])}
    given = np.array([saved["class_ids"][saved["noisy"][position[i]]] for i in index])
    np.testing.assert_array_equal(np.array([int(r["given_label"]) for r in train]), given)
    assert not held & set(clean.tolist())
    assert {r["split"] for r in train} == {"train", "val"}
    test = [r for r in _rows(run / "samples" / "test.csv") if r["set"] == "test"]
    test_index = np.array([int(r["index"]) for r in test])
    np.testing.assert_array_equal(np.array([int(r["label"]) for r in test]), targets["test"][test_index])
    holdout = [r for r in _rows(run / "samples" / "test.csv") if r["set"] == "ood/holdout"]
    assert {int(targets["test"][int(r["index"])]) for r in holdout} == held

    issues_main([str(run), "--top", "25"])
    excluded = {int(r["index"]) for r in _rows(run / "issues" / "exclude.csv")}
    assert len(excluded) == 25
    again = tmp_path / "cleaned"
    run_train([f"hydra.run.dir={again}", f"data.exclude={run / 'issues' / 'exclude.csv'}", *QUICK], cwd=tmp_path)
    metrics = read_metrics(again)
    assert metrics["data/excluded"] == 25 and metrics["data/exclude"] == str(run / "issues" / "exclude.csv")
    retrained = {int(r["index"]) for r in _rows(again / "samples" / "train.csv")}
    assert retrained == set(index.tolist()) - excluded
