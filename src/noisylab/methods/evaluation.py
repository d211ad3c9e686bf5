"""Test-time evaluation shared by all methods: collect outputs per test set, then compute metrics once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from noisylab.metrics import classification_metrics, drainage_metrics, noise_detection_metrics, ood_metrics
from noisylab.metrics.calibration import ece, fit_temperature
from noisylab.metrics.classification import brier_score, selective_metrics
from noisylab.metrics.detectors import check_detectors, check_head, fit_detector
from noisylab.metrics.gather import first_occurrence, gather_rows
from noisylab.models.heads import LinearHead


class NonFiniteOutputsError(ValueError):
    """A test set's network outputs hold NaN or infinite values: no metric of them would mean anything."""


def check_finite_outputs(data: dict[str, dict[str, torch.Tensor]]) -> None:
    """Refuse NaN / inf outputs, naming each set and the count: ranked as scores they would silently count
    as most (or least) in-distribution, and ECE's binning would fail on them."""
    bad = []
    for name, rows in data.items():
        values = [v.float().reshape(len(v), -1) for k, v in rows.items() if k == "outputs" or k.startswith("score/")]
        if values:
            count = int((~torch.isfinite(torch.cat(values, dim=1))).any(dim=1).sum())
            if count:
                bad.append(f"{name}: {count} of {len(values[0])} samples")
    if bad:
        raise NonFiniteOutputsError(
            "the network's outputs are NaN or infinite on test sets (" + "; ".join(bad) + "), so no test metric "
            "can be computed. The weights diverged or overflow: check the run's train/loss, lower optim.lr, set "
            "trainer.gradient_clip_val, or train in trainer.precision=32-true"
        )


CALIBRATION_LABELS = ("val", "clean")


class TestSetEvaluator:
    """Holds each test set's per-sample results during `trainer.test` and turns them into named metrics.

    Test sets are named by the datamodule: "test" (in-distribution), "test/<name>" (further
    in-distribution test sets, e.g. ILSVRC12 for WebVision), "ood/<name>" (OOD sets), "val" (the
    validation split: temperature fitting) and "train" (the un-augmented training split, for noise
    detection and drainage of mislabeled samples). OOD sets keep only their scores, a few numbers per
    sample, so large OOD sets stream through. Per-sample rows are gathered from every DDP rank and
    de-duplicated by sample index, so each sample counts exactly once.

    Every OOD and selective-classification metric names its score (test/ood/<set>/<score>/auroc,
    test/selective/<score>/aurc): heads offer different default scores (1 - p_d, MSP, MMLES), and a number
    must say which it is. OOD sets are averaged within their group only (test/ood_near/..., test/ood_far/...,
    test/ood_other/...; the datamodule groups them), never near and far together. Calibrated metrics name
    the labels the temperature was fitted to (test/calibrated/<noisy_val|clean_val_oracle|official_val>/...).

    Args:
        calibration: fit a temperature on the validation split minimising "nll" or "ece" and report
            test/calibrated/<labels>/{temperature,ece,nll,brier}; None to skip.
        calibration_labels: "val": the labels the validation split carries (the noisy labels, unless
            data.clean_val or an official clean validation set); "clean": the split's clean labels, an
            oracle only synthetic noise or CIFAR-N allows (reported as clean_val_oracle).
        scores: scores to report (names from metrics.scores, or "one_minus_p_d"); None = all the head
            offers. The first is the run's default score: plots and the console table show it.
        coverage: the coverage of test/selective/<score>/acc_at_<coverage>.
        plots: write figures (PNG and PDF) into `plot_dir` (set by the entry point on the main process),
            annotated with `setting`, and log them to the run's loggers.
        detectors: feature-based OOD detectors (metrics.detectors: mahalanobis, knn, vim, react), fitted on
            the training split's penultimate features and noisy labels, reported as further scores
            (test/ood/<set>/<detector>/<metric>); empty = off, and no features are kept.
    """

    __test__ = False  # a name pytest would otherwise try to collect

    def __init__(self, calibration: str | None = "nll", scores: Sequence[str] | None = None, coverage: float = 0.9,
                 plots: bool = True, calibration_labels: str = "val", detectors: Sequence[str] = ()) -> None:
        if calibration not in (None, "nll", "ece"):
            raise ValueError(f"eval.calibration must be nll, ece or null, got {calibration!r}")
        if calibration_labels not in CALIBRATION_LABELS:
            raise ValueError(f"eval.calibration_labels must be one of {', '.join(CALIBRATION_LABELS)}, got "
                             f"{calibration_labels!r}")
        if not 0 < coverage <= 1:
            raise ValueError(f"eval.coverage must be in (0, 1], got {coverage}")
        self.calibration = calibration
        self.calibration_labels = calibration_labels
        self.scores = None if scores is None else list(scores)
        self.coverage = float(coverage)
        self.plots = bool(plots)
        self.detectors = check_detectors(detectors)
        self.plot_dir: Path | None = None
        self.samples_dir: Path | None = None  # per-sample outputs (noisylab.samples), set by the entry point
        self.setting: dict[str, object] = {}
        self.default_score: str | None = None  # the score plots and the console table use (set by compute)
        self.rows: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))

    def check_data(self, datamodule: object) -> None:
        """Refuse, before training, an oracle the data cannot give: clean labels of a dataset whose noise
        is real (its "clean" labels are its noisy ones)."""
        if self.calibration and self.calibration_labels == "clean" and not getattr(datamodule, "clean_labels_known",
                                                                                    True):
            raise ValueError(
                f"eval.calibration_labels=clean: {getattr(datamodule, 'name', 'this dataset')} has real label noise "
                "and no known clean labels for its training split; use eval.calibration_labels=val"
            )

    def check_network(self, head: LinearHead, method: str, one_network: bool) -> None:
        """Refuse, before training, detectors the method cannot feed: they need the penultimate features of
        the one network whose head makes the test outputs, and ViM and ReAct need that head's linear layer."""
        if not self.detectors:
            return
        if not one_network:
            raise ValueError(f"eval.detectors={self.detectors}: {method} tests with its own forward, not one "
                             "network's head on its features (DivideMix and InstanceGM average two networks), so "
                             "there are no penultimate features to fit detectors on; set eval.detectors=[]")
        check_head(self.detectors, head)

    def calibration_label_kind(self, datamodule: object) -> str:
        """noisy_val, clean_val_oracle or official_val: the labels the temperature is fitted to."""
        kind = getattr(datamodule, "val_labels_kind", "noisy_val")
        if self.calibration_labels == "clean" and kind == "noisy_val":
            return "clean_val_oracle"
        return kind

    # ------------------------------------------------------------------ collecting
    def add(self, name: str, head: LinearHead, outputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
            clean: torch.Tensor, features: torch.Tensor | None = None) -> None:
        """One batch of a test set; `features` (the penultimate features behind `outputs`) are kept only when
        detectors are on, and only of the sets they use: the training split (fit), the test and OOD sets."""
        rows = self.rows[name]
        outputs = outputs.detach().float()
        if self.detectors and (name in ("train", "test") or name.startswith("ood/")):
            if features is None:
                raise ValueError(f"eval.detectors={self.detectors} needs the penultimate features of test set "
                                 f"{name!r}, and the method passed none; set eval.detectors=[]")
            rows["features"].append(features.detach().float())
        if name.startswith("ood/"):
            for score, value in self._id_scores(head, outputs).items():
                rows[f"score/{score}"].append(value)
            rows["drained"].append(head.drained(outputs).float())
        else:
            rows["outputs"].append(outputs)
            rows["labels"].append(labels)
            rows["clean"].append(clean)
        rows["index"].append(index)

    def _collect(self, module: L.LightningModule, name: str) -> dict[str, torch.Tensor]:
        local = {key: torch.cat(parts) for key, parts in self.rows.get(name, {}).items()}
        gathered = {key: gather_rows(module, value) for key, value in local.items()}
        if "index" not in gathered:
            return {}
        keep = first_occurrence(gathered["index"])
        return {key: value[keep] for key, value in gathered.items()}

    # ------------------------------------------------------------------ metrics
    def compute(self, module: L.LightningModule, head: LinearHead, names: list[str]) -> dict[str, float]:
        """Every metric of every test set; identical on all ranks. Figures on the main process."""
        data = {name: self._collect(module, name) for name in names}
        self.rows.clear()
        data = {name: d for name, d in data.items() if d and len(d["index"])}
        check_finite_outputs(data)
        datamodule = module.trainer.datamodule
        metrics: dict[str, float] = {}
        test, val, train = data.get("test"), data.get("val"), data.get("train")
        ood_sets = {name: d for name, d in data.items() if name.startswith("ood/")}
        figures: dict[str, dict] = {}
        detected: dict[str, torch.Tensor] = {}

        if test is not None:
            metrics.update(self._in_distribution(head, test, figures))
            if self.calibration and val is not None:
                metrics.update(self._calibrated(head, test, val, self.calibration_label_kind(datamodule)))
            detected = self._detector_scores(head, train, test, ood_sets) if train is not None and ood_sets else {}
            metrics.update(self._ood(head, test, ood_sets, getattr(datamodule, "ood_group", _no_group), figures,
                                     detected))
        for name, extra in data.items():  # further in-distribution test sets
            if name.startswith("test/"):
                found = classification_metrics(head.class_logits(extra["outputs"]), extra["labels"])
                metrics.update({f"{name}/{k}": v for k, v in found.items()})
        if train is not None:
            metrics.update(self._training_set(head, train))
        if self.samples_dir is not None and module.trainer.is_global_zero:
            self._write_samples(module, head, data, detected)
        if self.plots and self.plot_dir is not None and module.trainer.is_global_zero:
            from noisylab import plots

            plots.write_all(self.plot_dir, figures, self.setting, module.loggers, step=module.trainer.global_step)
        return metrics

    def _write_samples(self, module: L.LightningModule, head: LinearHead, data: dict[str, dict[str, torch.Tensor]],
                       detected: dict[str, torch.Tensor]) -> None:
        """train.csv (the noisy training data: what the model thinks of each label), test.csv (what it said of
        each test and OOD sample) and, in cross-validation, fold.csv (out-of-sample probabilities)."""
        from noisylab import samples

        datamodule = module.trainer.datamodule
        names = samples.LabelNames(datamodule.labels.class_ids, datamodule.class_names)
        splits = ["train", "fold"] + ([] if datamodule.val_labels_kind == "official_val" else ["val"])
        parts = {}
        for split in splits:
            if (rows := data.get(split)) is None:
                continue
            outputs = rows["outputs"]
            suspicion = {head.mislabel_score_name: head.mislabel_scores(outputs, rows["labels"])}
            if split == "train":  # the method's own evidence is about the samples it trained on
                suspicion.update(module.suspicion_scores(rows["index"], outputs, rows["labels"]))
            drained = head.drained(outputs) if head.has_drainage else None
            parts[split] = samples.training_rows(split, rows, head.class_logits(outputs), suspicion, drained,
                                                 datamodule.source_index, names, datamodule.clean_labels_known)
        if trained := [part for split, part in parts.items() if split != "fold"]:
            samples.write_training_samples(self.samples_dir / "train.csv", trained)
        if "fold" in parts:  # out-of-sample: the fold was not trained on
            fold = data["fold"]
            samples.write_fold_samples(self.samples_dir / "fold.csv", parts["fold"],
                                       head.class_logits(fold["outputs"]), names)
        sets = {}
        for name, rows in data.items():
            if name != "test" and not name.startswith("ood/"):
                continue
            entry: dict[str, object] = {"index": _source_positions(datamodule, name, rows["index"])}
            if name == "test":
                entry.update({"labels": rows["labels"], "class_logits": head.class_logits(rows["outputs"]),
                              **{f"score/{k}": v for k, v in {**self._id_scores(head, rows["outputs"]),
                                                               **detected}.items()}})
                entry["drained"] = head.drained(rows["outputs"]) if head.has_drainage else None
            else:
                entry.update({k: v for k, v in rows.items() if k.startswith("score/")})
                entry["drained"] = rows["drained"].bool() if head.has_drainage else None
            sets[name] = entry
        if "test" in sets:
            score_names = [k.removeprefix("score/") for k in sets["test"] if str(k).startswith("score/")]
            samples.write_test_samples(self.samples_dir / "test.csv", sets, score_names, names)

    def _in_distribution(self, head: LinearHead, test: dict, figures: dict) -> dict[str, float]:
        class_logits, labels = head.class_logits(test["outputs"]), test["labels"]
        correct = class_logits.argmax(1) == labels
        metrics = {f"test/{k}": v for k, v in classification_metrics(class_logits, labels).items()}
        metrics["test/brier"] = brier_score(class_logits, labels)
        scores = self._id_scores(head, test["outputs"])
        for score, confidence in scores.items():
            found = selective_metrics(confidence, correct, self.coverage)
            metrics.update({f"test/selective/{score}/{k}": v for k, v in found.items()})
        primary = self.default_score = next(iter(scores))
        figures["risk_coverage"] = {"score": primary, "confidence": scores[primary], "correct": correct,
                                    "aurc": metrics[f"test/selective/{primary}/aurc"]}
        figures["reliability"] = {"class_logits": class_logits, "labels": labels, "ece": metrics["test/ece"]}
        if head.has_drainage:
            drained = head.drained(test["outputs"])
            metrics.update({f"test/{k}": v for k, v in drainage_metrics(drained, correct).items()})
        return metrics

    def _calibrated(self, head: LinearHead, test: dict, val: dict, kind: str) -> dict[str, float]:
        """Temperature scaling fitted on the validation split, with the labels `kind` names."""
        class_logits, labels = head.class_logits(test["outputs"]), test["labels"]
        val_labels = val["clean"] if self.calibration_labels == "clean" else val["labels"]
        temperature = fit_temperature(head.class_logits(val["outputs"]), val_labels, self.calibration)
        scaled = class_logits / temperature
        prefix = f"test/calibrated/{kind}"
        return {
            f"{prefix}/temperature": temperature,
            f"{prefix}/ece": ece(scaled, labels),
            f"{prefix}/nll": F.cross_entropy(scaled, labels).item(),
            f"{prefix}/brier": brier_score(scaled, labels),
        }

    def _training_set(self, head: LinearHead, train: dict) -> dict[str, float]:
        outputs, noisy, clean = train["outputs"], train["labels"], train["clean"]
        metrics = {"train/clean_acc": (head.class_logits(outputs).argmax(1) == clean).float().mean().item()}
        drained = head.drained(outputs) if head.has_drainage else None
        found = noise_detection_metrics(head.mislabel_scores(outputs, noisy), noisy != clean, drained)
        metrics.update({f"train/{k}": v for k, v in found.items()})
        return metrics

    def _id_scores(self, head: LinearHead, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        offered = head.id_scores(outputs)
        if self.scores is None:
            return offered
        missing = [name for name in self.scores if name not in offered]
        if missing:
            raise ValueError(f"eval.scores {missing} are not offered by {type(head).__name__}; it offers "
                             f"{list(offered)}")
        return {name: offered[name] for name in self.scores}

    def _detector_scores(self, head: LinearHead, train: dict, test: dict,
                         ood_sets: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Each detector fitted on the training split's features and noisy labels (what a user has): its
        scores of the test set, returned, and of each OOD set, added to that set as score/<detector>."""
        found = {}
        for name in self.detectors:
            score = fit_detector(name, head, train["features"], train["labels"])
            found[name] = score(test["features"])
            for ood in ood_sets.values():
                ood[f"score/{name}"] = score(ood["features"])
        return found

    def _ood(self, head: LinearHead, test: dict, ood_sets: dict[str, dict[str, torch.Tensor]],
             group_of: Callable[[str], str], figures: dict,
             detected: dict[str, torch.Tensor]) -> dict[str, float]:
        """Per OOD set and score: test/ood/<set>/<score>/<metric>; per group of sets (near, far, other):
        test/ood_<group>/<score>/<metric>, the mean over that group's sets. Detector scores (`detected`, of
        the test set) follow the head's, whose first stays the default."""
        metrics: dict[str, float] = {}
        id_scores = {**self._id_scores(head, test["outputs"]), **detected}
        correct = head.class_logits(test["outputs"]).argmax(1) == test["labels"]
        primary = next(iter(id_scores))
        per_group: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        shown: dict[str, dict[str, float]] = {}
        for name, ood in ood_sets.items():
            set_name = name.removeprefix("ood/")
            group = group_of(set_name)
            for score, id_values in id_scores.items():
                values = ood_metrics(id_values, ood[f"score/{score}"], correct)
                metrics.update({f"test/{name}/{score}/{k}": v for k, v in values.items()})
                for k, v in values.items():
                    per_group[(group, score, k)].append(v)
                if score == primary:
                    shown[set_name] = values
            if head.has_drainage:
                metrics[f"test/{name}/drainage_rate"] = ood["drained"].mean().item()
        metrics.update({f"test/ood_{group}/{score}/{k}": sum(v) / len(v) for (group, score, k), v in per_group.items()})
        if ood_sets:
            figures["score_histograms"] = {
                "score": primary, "id": id_scores[primary],
                "ood": {name.removeprefix("ood/"): ood[f"score/{primary}"] for name, ood in ood_sets.items()},
                "metrics": shown,
            }
        return metrics


def _source_positions(datamodule: object, name: str, index: torch.Tensor) -> torch.Tensor:
    """A test set's sample positions in the source's test set where the datamodule records them (the test
    set, held-out classes), else in the set itself (OOD datasets)."""
    mapping = getattr(datamodule, "test_source_index", {}).get(name)
    return index if mapping is None else torch.as_tensor(mapping)[index.cpu()]


def _no_group(set_name: str) -> str:
    return "near" if set_name == "holdout" else "other"
