"""Per-sample outputs of a run: which training samples the model thinks are mislabeled, and what it said
about each test sample. `noisylab-issues` ranks the first; anything that reads CSV reads both.

CSV, not Parquet: it needs no optional dependency (pyarrow is heavy, and a run must not fail at its end
for a missing package), every tool a researcher uses opens it, and it is written row by row. Both files are
written atomically.

`samples/train.csv`, one row per sample of the noisy training data (the validation split included, with
split = val; an official validation set of the dataset is not training data and is left out):
    index                    the sample's position in the source dataset's training set: stable across
                             held-out classes, splits and runs (the index data.exclude / data.relabel take)
    split                    train or val
    given_label, given_class the label the run trained with (noisy), as the source's class id and name
    clean_label, clean_class the clean label; empty where the dataset's noise is real (no clean labels known)
    predicted_label, ...     the model's prediction (source class id and name)
    p_given                  the model's probability of the given label
    suspicion/<name>         evidence that the given label is wrong, higher = more suspicious; the first is
                             the method's default (p_d for drainage heads, one_minus_p_given otherwise; the
                             method's own, e.g. DivideMix's gmm_noisy, follow)
    drained                  1 if the largest output is the drainage node (drainage heads only)

`samples/fold.csv` (cross-validation, data.num_folds): the left-out fold's rows in train.csv's columns
(split = fold), plus prob/<source class id>, the out-of-sample probability of each trained class.

`samples/test.csv`, one row per test and OOD sample: set (test or ood/<name>), index (position in that
set), label and label_class (test set only), predicted_label and predicted_class (test set only),
drained (drainage heads), and score/<name> for every score, as the quantity its name says (MSP, 1 - p_d).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from noisylab.metrics.scores import display_value
from noisylab.utils.atomic import atomic_open


class LabelNames:
    """Contiguous training class ids -> the source dataset's class ids and names."""

    def __init__(self, class_ids: np.ndarray, class_names: Sequence[str]) -> None:
        self.class_ids = np.asarray(class_ids)
        self.class_names = list(class_names)

    def ids(self, labels: torch.Tensor) -> np.ndarray:
        return self.class_ids[labels.cpu().numpy()]

    def names(self, source_ids: np.ndarray) -> list[str]:
        return [self.class_names[i] for i in source_ids]


def _write(path: Path, header: list[str], columns: Iterable[Sequence[object]]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))


def _number(values: torch.Tensor | np.ndarray) -> list[str]:
    """Floats written exactly (repr round-trips a float64)."""
    array = values.detach().double().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    return [repr(float(v)) for v in array]


def training_rows(split: str, rows: Mapping[str, torch.Tensor], class_logits: torch.Tensor,
                  suspicion: Mapping[str, torch.Tensor], drained: torch.Tensor | None, source_index: np.ndarray,
                  names: LabelNames, clean_known: bool) -> dict[str, list[object]]:
    """One split's columns of train.csv (see the module docstring)."""
    given = names.ids(rows["labels"])
    predicted = names.ids(class_logits.argmax(1))
    probs = class_logits.double().softmax(1)
    columns: dict[str, list[object]] = {
        "index": source_index[rows["index"].cpu().numpy()].tolist(),
        "split": [split] * len(given),
        "given_label": given.tolist(), "given_class": names.names(given),
    }
    if clean_known:
        clean = names.ids(rows["clean"])
        columns.update({"clean_label": clean.tolist(), "clean_class": names.names(clean)})
    else:
        columns.update({"clean_label": [""] * len(given), "clean_class": [""] * len(given)})
    columns.update({
        "predicted_label": predicted.tolist(), "predicted_class": names.names(predicted),
        "p_given": _number(probs.gather(1, rows["labels"].view(-1, 1).to(probs.device)).squeeze(1)),
        **{f"suspicion/{name}": _number(values) for name, values in suspicion.items()},
    })
    if drained is not None:
        columns["drained"] = drained.int().tolist()
    return columns


def write_training_samples(path: Path, parts: Sequence[dict[str, list[object]]]) -> None:
    """train.csv from the splits' columns, rows ordered by index; a column one split lacks (the method's own
    suspicion of the samples it did not train on) is empty there, and drained stays last."""
    header = list(dict.fromkeys(key for part in parts for key in part))
    if "drained" in header:
        header = [key for key in header if key != "drained"] + ["drained"]
    merged = {key: [v for part in parts for v in part.get(key, [""] * len(part["index"]))] for key in header}
    order = np.argsort(np.asarray(merged["index"]), kind="stable")
    _write(path, header, ([merged[key][i] for i in order] for key in header))


def write_fold_samples(path: Path, part: dict[str, list[object]], class_logits: torch.Tensor,
                       names: LabelNames) -> None:
    """fold.csv of cross-validation: the left-out fold's rows as in train.csv (split = fold), and the
    out-of-sample probability of every trained class, `prob/<source class id>`: confident learning's input
    (cleanlab's pred_probs), merged over the folds by `noisylab-issues --cleanlab`."""
    probs = class_logits.double().softmax(1)
    columns = {**part, **{f"prob/{c}": _number(probs[:, k]) for k, c in enumerate(names.class_ids.tolist())}}
    write_training_samples(path, [columns])


def write_test_samples(path: Path, sets: Mapping[str, dict[str, object]], score_names: Sequence[str],
                       names: LabelNames) -> None:
    """test.csv: the test set's rows, then each OOD set's. `sets` maps a set name to its `index`, optional
    `labels` and `class_logits`, optional `drained` and the held scores `score/<name>`."""
    header = ["set", "index", "label", "label_class", "predicted_label", "predicted_class", "drained",
              *(f"score/{s}" for s in score_names)]
    columns: dict[str, list[object]] = {key: [] for key in header}
    for set_name, rows in sets.items():
        n = len(rows["index"])
        columns["set"] += [set_name] * n
        columns["index"] += rows["index"].cpu().numpy().tolist()
        if "labels" in rows:
            label, predicted = names.ids(rows["labels"]), names.ids(rows["class_logits"].argmax(1))
            columns["label"] += label.tolist()
            columns["label_class"] += names.names(label)
            columns["predicted_label"] += predicted.tolist()
            columns["predicted_class"] += names.names(predicted)
        else:
            for key in ("label", "label_class", "predicted_label", "predicted_class"):
                columns[key] += [""] * n
        columns["drained"] += rows["drained"].int().tolist() if rows.get("drained") is not None else [""] * n
        for score in score_names:
            columns[f"score/{score}"] += _number(display_value(score, rows[f"score/{score}"]))
    _write(path, header, (columns[key] for key in header))
