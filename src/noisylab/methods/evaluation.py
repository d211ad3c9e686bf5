"""Test-time evaluation shared by all methods: collect outputs per test set, then compute metrics once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F

from noisylab.metrics import classification_metrics, drainage_metrics, noise_detection_metrics, ood_metrics
from noisylab.metrics.calibration import ece, fit_temperature
from noisylab.metrics.gather import first_occurrence, gather_rows
from noisylab.models.heads import LinearHead


class TestSetEvaluator:
    """Holds each test set's outputs during `trainer.test` and turns them into named metrics.

    Test sets are named by the datamodule: "test" (in-distribution), "test/<name>" (further
    in-distribution test sets, e.g. ILSVRC12 for WebVision), "ood/<name>" (OOD sets), "val"
    (the validation split: temperature fitting) and "train" (the un-augmented training split, for
    noise detection and drainage of mislabeled samples).

    Args:
        calibration: fit a temperature on the validation split minimising "nll" or "ece" and report
            test/temperature and test/calibrated/{ece,nll}; None to skip.
        scores: OOD scores to report (names from metrics.scores, or "drainage"); None = all the head
            offers. The first is reported unqualified (test/ood/<set>/auroc).
    """

    def __init__(self, calibration: str | None = "nll", scores: Sequence[str] | None = None) -> None:
        if calibration not in (None, "nll", "ece"):
            raise ValueError(f"eval.calibration must be nll, ece or null, got {calibration!r}")
        self.calibration = calibration
        self.scores = None if scores is None else list(scores)
        self.rows: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))

    def add(self, name: str, outputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
            clean: torch.Tensor) -> None:
        for key, value in (("outputs", outputs.float()), ("labels", labels), ("index", index), ("clean", clean)):
            self.rows[name][key].append(value.detach())

    def _collect(self, module: L.LightningModule, name: str, width: int) -> dict[str, torch.Tensor]:
        parts = self.rows.get(name, {})
        local = {
            "outputs": torch.cat(parts["outputs"]) if parts else torch.zeros(0, width, device=module.device),
            **{k: torch.cat(parts[k]) if parts else torch.zeros(0, dtype=torch.long, device=module.device)
               for k in ("labels", "index", "clean")},
        }
        gathered = {k: gather_rows(module, v) for k, v in local.items()}
        keep = first_occurrence(gathered["index"])
        return {k: v[keep] for k, v in gathered.items()}

    def compute(self, module: L.LightningModule, head: LinearHead, names: list[str]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        data = {name: self._collect(module, name, head.num_outputs) for name in names}
        self.rows.clear()

        test = data.get("test")
        if test is not None and len(test["labels"]):
            class_logits = head.class_logits(test["outputs"])
            metrics.update({f"test/{k}": v for k, v in classification_metrics(class_logits, test["labels"]).items()})
            if head.has_drainage:
                correct = class_logits.argmax(1) == test["labels"]
                metrics.update({f"test/{k}": v for k, v in drainage_metrics(head.drained(test["outputs"]),
                                                                            correct).items()})
            metrics.update(self._ood(head, test["outputs"], {n: d for n, d in data.items() if n.startswith("ood/")}))
            val = data.get("val")
            if self.calibration and val is not None and len(val["labels"]):
                temperature = fit_temperature(head.class_logits(val["outputs"]), val["labels"], self.calibration)
                scaled = class_logits / temperature
                metrics["test/temperature"] = temperature
                metrics["test/calibrated/ece"] = ece(scaled, test["labels"])
                metrics["test/calibrated/nll"] = F.cross_entropy(scaled, test["labels"]).item()

        for name, extra in data.items():  # further in-distribution test sets, e.g. ILSVRC12 for WebVision
            if name.startswith("test/") and len(extra["labels"]):
                found = classification_metrics(head.class_logits(extra["outputs"]), extra["labels"])
                metrics.update({f"{name}/{k}": v for k, v in found.items()})

        train = data.get("train")
        if train is not None and len(train["labels"]):
            outputs, noisy, clean = train["outputs"], train["labels"], train["clean"]
            metrics["train/clean_acc"] = (head.class_logits(outputs).argmax(1) == clean).float().mean().item()
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

    def _ood(self, head: LinearHead, id_outputs: torch.Tensor, ood_sets: dict[str, dict[str, torch.Tensor]]) -> dict:
        """Per OOD set: the head's default score unqualified (test/ood/<set>/auroc), other scores named
        (test/ood/<set>/<score>/auroc); test/ood/<metric> is the mean over sets of the default score."""
        metrics: dict[str, float] = {}
        id_scores = self._id_scores(head, id_outputs)
        primary = next(iter(id_scores))
        per_set: dict[str, list[float]] = defaultdict(list)
        for name, ood in ood_sets.items():
            if not len(ood["outputs"]):
                continue
            ood_scores = self._id_scores(head, ood["outputs"])
            for score_name in id_scores:
                values = ood_metrics(id_scores[score_name], ood_scores[score_name])
                prefix = f"test/{name}" if score_name == primary else f"test/{name}/{score_name}"
                metrics.update({f"{prefix}/{k}": v for k, v in values.items()})
                if score_name == primary:
                    for k, v in values.items():
                        per_set[k].append(v)
            if head.has_drainage:
                metrics[f"test/{name}/drainage_rate"] = head.drained(ood["outputs"]).float().mean().item()
        metrics.update({f"test/ood/{k}": sum(v) / len(v) for k, v in per_set.items()})
        return metrics
