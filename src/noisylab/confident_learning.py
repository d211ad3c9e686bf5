"""Confident learning (Northcutt et al. 2021) as a baseline, from cleanlab itself: out-of-sample predicted
probabilities from K-fold cross-validation, then `cleanlab.filter.find_label_issues`.

    python train.py -m data.num_folds=5 data.fold=0,1,2,3,4 [your setting]
    noisylab-issues --cleanlab multirun/<date>/<time>

Each fold's run leaves its fold out of training and writes `samples/fold.csv` (train.csv's columns plus
`prob/<source class id>`). `merge_folds` checks that the folds are one cross-validation (the same
num_folds, every fold once, disjoint, the same setting otherwise) and writes a run folder of their own,
`<folder>/confident_learning/`, holding `samples/train.csv` with `suspicion/cleanlab` (1 - cleanlab's
self-confidence label quality) first, the head's out-of-sample scores after it, and `cleanlab_issue` (1 for
the samples find_label_issues returns); `noisylab-issues` then ranks and writes it like any run.
cleanlab is an optional dependency: pip install "noisylab[issues]".
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from noisylab.utils.atomic import atomic_open

FOLD_FILE = Path("samples") / "fold.csv"
MERGED = "confident_learning"


class ConfidentLearningError(Exception):
    """The fold runs are not one cross-validation, or cleanlab is missing: says which and how to fix it."""


def _fold_runs(folder: Path) -> list[tuple[int, int, Path]]:
    """(fold, num_folds, run folder) of every run below `folder` that wrote a fold.csv."""
    runs = []
    for path in sorted(folder.rglob(str(FOLD_FILE))):
        run = path.parent.parent
        if run.name == MERGED:
            continue
        config = run / ".hydra" / "config.yaml"
        if not config.is_file():
            raise ConfidentLearningError(f"{run} has {FOLD_FILE} but no .hydra/config.yaml: not a noisylab run folder")
        data = OmegaConf.load(config).get("data", {})
        runs.append((int(data.get("fold", 0)), int(data.get("num_folds", 0)), run))
    return runs


def _setting(run: Path) -> dict:
    """The run's config without what differs between the folds of one cross-validation."""
    config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"), resolve=False)
    config.get("data", {}).pop("fold", None)
    for key in ("paths", "hydra", "logger"):
        config.pop(key, None)
    return config


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ConfidentLearningError(f"{path} is empty")
    return rows[0], rows[1:]


def merge_folds(folder: Path) -> Path:
    """Check the fold runs below `folder`, run cleanlab on their merged out-of-sample probabilities and write
    the merged run folder; returns it."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise ConfidentLearningError('--cleanlab needs the cleanlab package: pip install "noisylab[issues]"') from None
    runs = _fold_runs(folder)
    if not runs:
        raise ConfidentLearningError(f"no run below {folder} wrote {FOLD_FILE}; train the folds first, e.g. "
                                     "python train.py -m data.num_folds=5 data.fold=0,1,2,3,4")
    counts = {k for _, k, _ in runs}
    folds = sorted(f for f, _, _ in runs)
    if len(counts) != 1 or folds != list(range(next(iter(counts)))):
        raise ConfidentLearningError(
            f"the fold runs below {folder} are not one cross-validation: folds {folds} with num_folds "
            f"{sorted(counts)}; each fold 0..num_folds-1 must be there exactly once (one setting per folder)")
    settings = [_setting(run) for _, _, run in runs]
    if any(s != settings[0] for s in settings[1:]):
        raise ConfidentLearningError(f"the fold runs below {folder} differ in more than data.fold; merge the folds "
                                     "of one setting (one seed, one noise) at a time")
    header, rows = None, []
    for _, _, run in sorted(runs):
        found_header, found = _read(run / FOLD_FILE)
        if header is not None and found_header != header:
            raise ConfidentLearningError(f"{run / FOLD_FILE} has other columns than the first fold's")
        header = found_header
        rows += found
    assert header is not None
    index = np.array([int(r[header.index("index")]) for r in rows])
    if len(np.unique(index)) != len(index):
        raise ConfidentLearningError(f"the folds below {folder} share samples: they come from different splits")
    prob_columns = [c for c in header if c.startswith("prob/")]
    class_ids = np.array([int(c.removeprefix("prob/")) for c in prob_columns])
    position = {int(c): k for k, c in enumerate(class_ids)}
    labels = np.array([position[int(r[header.index("given_label")])] for r in rows])
    pred_probs = np.array([[float(r[header.index(c)]) for c in prob_columns] for r in rows])
    issues = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate")
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")

    keep = [c for c in header if not c.startswith("prob/") and c not in ("split", "drained")]
    out_header = ["index", "split", *[c for c in keep if c != "index" and not c.startswith("suspicion/")],
                  "suspicion/cleanlab", *[c for c in keep if c.startswith("suspicion/")], "cleanlab_issue",
                  *(["drained"] if "drained" in header else [])]
    order = np.argsort(index, kind="stable")
    merged = folder / MERGED
    with atomic_open(merged / "samples" / "train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(out_header)
        for i in order:
            row = dict(zip(header, rows[i], strict=True))
            row.update({"split": "train", "suspicion/cleanlab": repr(float(1.0 - quality[i])),
                        "cleanlab_issue": int(issues[i])})
            writer.writerow([row[c] for c in out_header])
    (merged / ".hydra").mkdir(parents=True, exist_ok=True)  # the data to draw the suspects from
    shutil.copyfile(runs[0][2] / ".hydra" / "config.yaml", merged / ".hydra" / "config.yaml")
    if (runs[0][2] / ".hydra" / "hydra.yaml").is_file():
        shutil.copyfile(runs[0][2] / ".hydra" / "hydra.yaml", merged / ".hydra" / "hydra.yaml")
    return merged


def cleanlab_issues(merged: Path) -> np.ndarray:
    """The indices of the samples find_label_issues flagged, from a merged folder."""
    with (merged / "samples" / "train.csv").open(newline="", encoding="utf-8") as f:
        return np.array([int(row["index"]) for row in csv.DictReader(f) if row["cleanlab_issue"] == "1"], dtype=int)
