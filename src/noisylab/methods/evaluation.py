"""Test-time evaluation shared by all methods: collect outputs per test set, then compute metrics once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from noisylab.metrics import classification_metrics, drainage_metrics, noise_detection_metrics, ood_metrics
from noisylab.metrics.calibration import ece, fit_temperature
from noisylab.metrics.classification import brier_score, selective_metrics
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


class TestSetEvaluator:
    """Holds each test set's per-sample results during `trainer.test` and turns them into named metrics.

    Test sets are named by the datamodule: "test" (in-distribution), "test/<name>" (further
    in-distribution test sets, e.g. ILSVRC12 for WebVision), "ood/<name>" (OOD sets), "val" (the
    validation split: temperature fitting) and "train" (the un-augmented training split, for noise
    detection and drainage of mislabeled samples). OOD sets keep only their scores, a few numbers per
    sample, so large OOD sets stream through. Per-sample rows are gathered from every DDP rank and
    de-duplicated by sample index, so each sample counts exactly once.

    Args:
        calibration: fit a temperature on the validation split minimising "nll" or "ece" and report
            test/temperature and test/calibrated/{ece,nll,brier}; None to skip.
        scores: OOD scores to report (names from metrics.scores, or "drainage"); None = all the head
            offers. The first is reported unqualified (test/ood/<set>/auroc) and ranks samples for
            selective classification (test/aurc, test/acc_at_90).
        coverage: the coverage of test/acc_at_<coverage>.
        plots: write PNG figures into `plot_dir` (set by the entry point on the main process).
    """

    def __init__(self, calibration: str | None = "nll", scores: Sequence[str] | None = None, coverage: float = 0.9,
                 plots: bool = True) -> None:
        if calibration not in (None, "nll", "ece"):
            raise ValueError(f"eval.calibration must be nll, ece or null, got {calibration!r}")
        if not 0 < coverage <= 1:
            raise ValueError(f"eval.coverage must be in (0, 1], got {coverage}")
        self.calibration = calibration
        self.scores = None if scores is None else list(scores)
        self.coverage = float(coverage)
        self.plots = bool(plots)
        self.plot_dir: Path | None = None
        self.rows: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))

    # ------------------------------------------------------------------ collecting
    def add(self, name: str, head: LinearHead, outputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
            clean: torch.Tensor) -> None:
        rows = self.rows[name]
        outputs = outputs.detach().float()
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
        """Every metric of every test set; identical on all ranks. Plots on the main process."""
        data = {name: self._collect(module, name) for name in names}
        self.rows.clear()
        data = {name: d for name, d in data.items() if d and len(d["index"])}
        check_finite_outputs(data)
        metrics: dict[str, float] = {}
        test, val, train = data.get("test"), data.get("val"), data.get("train")
        ood_sets = {name: d for name, d in data.items() if name.startswith("ood/")}
        figures: dict[str, object] = {}

        if test is not None:
            metrics.update(self._in_distribution(head, test, val, figures))
            metrics.update(self._ood(head, test["outputs"], ood_sets, figures))
        for name, extra in data.items():  # further in-distribution test sets
            if name.startswith("test/"):
                found = classification_metrics(head.class_logits(extra["outputs"]), extra["labels"])
                metrics.update({f"{name}/{k}": v for k, v in found.items()})
        if train is not None:
            metrics.update(self._training_set(head, train))
        if self.plots and self.plot_dir is not None and module.trainer.is_global_zero:
            from noisylab import plots

            plots.write_all(self.plot_dir, figures)
        return metrics

    def _in_distribution(self, head: LinearHead, test: dict, val: dict | None, figures: dict) -> dict[str, float]:
        class_logits, labels = head.class_logits(test["outputs"]), test["labels"]
        correct = class_logits.argmax(1) == labels
        metrics = {f"test/{k}": v for k, v in classification_metrics(class_logits, labels).items()}
        metrics["test/brier"] = brier_score(class_logits, labels)
        confidence = next(iter(self._id_scores(head, test["outputs"]).values()))
        metrics.update({f"test/{k}": v for k, v in selective_metrics(confidence, correct, self.coverage).items()})
        figures["risk_coverage"] = (confidence, correct)
        figures["reliability"] = (class_logits, labels)
        if head.has_drainage:
            drained = head.drained(test["outputs"])
            metrics.update({f"test/{k}": v for k, v in drainage_metrics(drained, correct).items()})
        if self.calibration and val is not None:
            temperature = fit_temperature(head.class_logits(val["outputs"]), val["labels"], self.calibration)
            scaled = class_logits / temperature
            metrics["test/temperature"] = temperature
            metrics["test/calibrated/ece"] = ece(scaled, labels)
            metrics["test/calibrated/nll"] = F.cross_entropy(scaled, labels).item()
            metrics["test/calibrated/brier"] = brier_score(scaled, labels)
        return metrics

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

    def _ood(self, head: LinearHead, id_outputs: torch.Tensor, ood_sets: dict[str, dict[str, torch.Tensor]],
             figures: dict) -> dict[str, float]:
        """Per OOD set: the default score unqualified (test/ood/<set>/auroc), other scores named
        (test/ood/<set>/<score>/auroc); test/ood/<metric> is the mean over sets of the default score."""
        metrics: dict[str, float] = {}
        id_scores = self._id_scores(head, id_outputs)
        primary = next(iter(id_scores))
        per_set: dict[str, list[float]] = defaultdict(list)
        for name, ood in ood_sets.items():
            for score_name, id_values in id_scores.items():
                values = ood_metrics(id_values, ood[f"score/{score_name}"])
                prefix = f"test/{name}" if score_name == primary else f"test/{name}/{score_name}"
                metrics.update({f"{prefix}/{k}": v for k, v in values.items()})
                if score_name == primary:
                    for k, v in values.items():
                        per_set[k].append(v)
            if head.has_drainage:
                metrics[f"test/{name}/drainage_rate"] = ood["drained"].mean().item()
        metrics.update({f"test/ood/{k}": sum(v) / len(v) for k, v in per_set.items()})
        if ood_sets:
            figures["score_histograms"] = (primary, id_scores[primary],
                                           {name: ood[f"score/{primary}"] for name, ood in ood_sets.items()})
        return metrics
