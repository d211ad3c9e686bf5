"""data.exclude / data.relabel: retrain on an earlier run's cleaned labels, everything else unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisylab.data.errors import BadDataFileError
from noisylab.train import build_datamodule
from tests.conftest import compose_config


def _build(tmp_path: Path, *overrides: str):
    return build_datamodule(compose_config(tmp_path / "run", ["data.root=null", *overrides]))


def _source_indices(datamodule, dataset) -> set[int]:
    return set(datamodule.source_index[dataset.index.numpy()].tolist())


def test_exclude_drops_exactly_the_listed_samples_and_keeps_the_rest_as_the_earlier_run(tmp_path: Path) -> None:
    first = _build(tmp_path)
    train, val = _source_indices(first, first.train_set), _source_indices(first, first.val_set)
    dropped = sorted(train)[:5] + sorted(val)[:2]
    (tmp_path / "exclude.csv").write_text("index,score\n" + "".join(f"{i},0.9\n" for i in dropped))
    second = _build(tmp_path, f"data.exclude={tmp_path / 'exclude.csv'}")
    assert _source_indices(second, second.train_set) == train - set(dropped)
    assert _source_indices(second, second.val_set) == val - set(dropped)  # the same split, less what is dropped
    np.testing.assert_array_equal(second.labels.noisy, first.labels.noisy)  # the same noise
    assert second.cleaning_record["data/excluded"] == 7
    assert second.cleaning_record["data/exclude"] == str(tmp_path / "exclude.csv")


def test_relabel_sets_the_listed_labels_by_source_class_id(tmp_path: Path) -> None:
    """With held-out classes the contiguous training ids differ from the source's class ids."""
    first = _build(tmp_path)
    held = set(range(10)) - set(first.labels.class_ids.tolist())
    assert held  # the default digits run holds 2 classes out
    noisy_positions = np.flatnonzero(first.labels.is_noisy)[:6]
    rows = [(int(first.source_index[p]), int(first.labels.class_ids[first.labels.clean[p]])) for p in noisy_positions]
    (tmp_path / "relabel.csv").write_text("index,label\n" + "".join(f"{i},{label}\n" for i, label in rows))
    second = _build(tmp_path, f"data.relabel={tmp_path / 'relabel.csv'}")
    np.testing.assert_array_equal(second.labels.noisy[noisy_positions], first.labels.clean[noisy_positions])
    others = np.setdiff1d(np.arange(len(first.labels.noisy)), noisy_positions)
    np.testing.assert_array_equal(second.labels.noisy[others], first.labels.noisy[others])
    assert second.cleaning_record["data/relabelled"] == 6
    assert second.cleaning_record["noise/realised_rate_after_cleaning"] == pytest.approx(
        first.labels.rate - 6 / len(first.labels.noisy))
    bad = tmp_path / "held.csv"
    bad.write_text(f"index,label\n{rows[0][0]},{min(held)}\n")
    with pytest.raises(BadDataFileError, match="not trained classes of this dataset"):
        _build(tmp_path, f"data.relabel={bad}")


@pytest.mark.parametrize(("content", "message"), [
    ("sample\n3\n", "has no column 'index'"),
    ("index\n3\nthree\n", "line 3: index 'three' is not an integer"),
    ("index\n3\n3\n", "lists index 3 more than once"),
    ("index\n99999\n", "not training samples of this run's data"),
])  # fmt: skip
def test_bad_cleaning_files_are_refused_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "exclude.csv"
    path.write_text(content)
    with pytest.raises(BadDataFileError, match=message) as found:
        _build(tmp_path, f"data.exclude={path}")
    assert str(path) in str(found.value)
    with pytest.raises(FileNotFoundError, match="data.exclude=.*no such file"):
        _build(tmp_path, f"data.exclude={tmp_path / 'missing.csv'}")
