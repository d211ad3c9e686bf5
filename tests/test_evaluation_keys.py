"""What each test metric's name says: the score behind it, its OOD group, the labels that calibrated it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import auc

from noisylab.data import NoisyLabelDataModule
from noisylab.data.sources import load_digits
from noisylab.methods.evaluation import TestSetEvaluator as Evaluator
from noisylab.metrics.calibration import fit_temperature
from noisylab.metrics.ood import ood_metrics, oscr
from noisylab.models.heads import DrainageHead
from noisylab.noise import SymmetricNoise

GROUPS = {"near": ["cifar100"], "far": ["svhn", "textures"]}


def _datamodule(**kwargs) -> NoisyLabelDataModule:
    return NoisyLabelDataModule(name="digits", source=load_digits, root=None, noise=SymmetricNoise(rate=0.2),
                                ood_groups=GROUPS, **kwargs)


def _module(datamodule: object) -> SimpleNamespace:
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, datamodule=datamodule, global_step=0)
    return SimpleNamespace(trainer=trainer, loggers=[])


def _fill(evaluator: Evaluator, head: DrainageHead, names: list[str], seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for offset, name in enumerate(names):
        outputs = torch.randn(60, 4, generator=g) * 2 + (0 if name.startswith("ood/") else torch.tensor([2.0, 0, 0, 0]))
        labels = torch.randint(0, 3, (60,), generator=g)
        clean = torch.where(torch.rand(60, generator=g) < 0.3, torch.randint(0, 3, (60,), generator=g), labels)
        evaluator.add(name, head, outputs, labels, torch.arange(60) + 1000 * offset, clean)


def test_every_ood_and_selective_metric_names_its_score_and_groups_never_mix() -> None:
    head = DrainageHead(2, 3)
    names = ["test", "val", "ood/holdout", "ood/cifar100", "ood/svhn", "ood/textures", "ood/lsun"]
    evaluator = Evaluator()
    _fill(evaluator, head, names)
    metrics = evaluator.compute(_module(_datamodule()), head, names)
    scores = ["one_minus_p_d", "msp", "max_logit", "energy", "neg_entropy"]
    assert evaluator.default_score == "one_minus_p_d"
    assert not any(key.startswith("test/ood/") and key.count("/") == 2 for key in metrics)  # no unnamed mean
    assert "test/aurc" not in metrics and "test/acc_at_90" not in metrics
    per_set = ["auroc", "aupr_in", "aupr_out", "fpr95_id_positive", "fpr95_ood_positive", "oscr"]
    for score in scores:
        assert {f"test/selective/{score}/aurc", f"test/selective/{score}/acc_at_90"} <= set(metrics)
        for ood in ("holdout", "cifar100", "svhn", "textures", "lsun"):
            assert {f"test/ood/{ood}/{score}/{m}" for m in per_set} <= set(metrics), (ood, score)
        # near: held-out classes and cifar100; far: svhn and textures; lsun is named in no group: other
        for group, members in {"near": ["holdout", "cifar100"], "far": ["svhn", "textures"], "other": ["lsun"]}.items():
            want = np.mean([metrics[f"test/ood/{m}/{score}/auroc"] for m in members])
            assert metrics[f"test/ood_{group}/{score}/auroc"] == pytest.approx(want, abs=1e-15), (group, score)


@pytest.mark.parametrize(("labels", "clean_val", "kind"), [
    ("val", False, "noisy_val"), ("clean", False, "clean_val_oracle"), ("val", True, "clean_val_oracle"),
])  # fmt: skip
def test_calibrated_metrics_name_the_labels_the_temperature_was_fitted_to(labels: str, clean_val: bool,
                                                                          kind: str) -> None:
    head = DrainageHead(2, 3)
    datamodule = _datamodule(clean_val=clean_val)
    datamodule.val_labels_kind = "clean_val_oracle" if clean_val else "noisy_val"  # what build() records
    evaluator = Evaluator(calibration_labels=labels)
    _fill(evaluator, head, ["test", "val"])
    val = {key: torch.cat(parts) for key, parts in evaluator.rows["val"].items()}
    metrics = evaluator.compute(_module(datamodule), head, ["test", "val"])
    assert [k for k in metrics if k.startswith("test/calibrated/")] == [
        f"test/calibrated/{kind}/{m}" for m in ("temperature", "ece", "nll", "brier")]
    fitted_to = val["clean"] if labels == "clean" else val["labels"]
    assert metrics[f"test/calibrated/{kind}/temperature"] == fit_temperature(head.class_logits(val["outputs"]),
                                                                             fitted_to)


def test_clean_label_calibration_is_refused_where_the_noise_is_real() -> None:
    real = SimpleNamespace(name="webvision", clean_labels_known=False)
    with pytest.raises(ValueError, match="eval.calibration_labels=clean: webvision has real label noise"):
        Evaluator(calibration_labels="clean").check_data(real)
    Evaluator(calibration_labels="val").check_data(real)
    with pytest.raises(ValueError, match="eval.calibration_labels must be one of val, clean"):
        Evaluator(calibration_labels="test")


def test_ood_groups_of_the_datamodule() -> None:
    datamodule = _datamodule()
    assert [datamodule.ood_group(n) for n in ("holdout", "cifar100", "svhn", "lsun")] == ["near", "near", "far",
                                                                                           "other"]
    with pytest.raises(ValueError, match=r"data.ood_groups has groups \['middle'\]"):
        NoisyLabelDataModule(name="digits", source=load_digits, root=None, noise=SymmetricNoise(rate=0.2),
                             ood_groups={"middle": ["svhn"]})


def test_oscr_is_the_area_under_ccr_against_fpr() -> None:
    """By its definition (Dhamija et al. 2018), traced threshold by threshold with ties in the scores."""
    g = torch.Generator().manual_seed(1)
    id_scores = torch.round(torch.randn(200, generator=g) + 1, decimals=1).double()
    ood_scores = torch.round(torch.randn(150, generator=g), decimals=1).double()
    correct = torch.rand(200, generator=g) < 0.7
    thresholds = np.r_[np.inf, np.unique(torch.cat([id_scores, ood_scores]).numpy())[::-1]]
    ccr = [((id_scores.numpy() >= t) & correct.numpy()).mean() for t in thresholds]
    fpr = [(ood_scores.numpy() >= t).mean() for t in thresholds]
    assert oscr(id_scores, correct, ood_scores) == pytest.approx(auc(fpr, ccr), abs=1e-12)
    assert ood_metrics(id_scores, ood_scores, correct)["oscr"] == pytest.approx(auc(fpr, ccr), abs=1e-12)
    everything_right = torch.ones(200, dtype=torch.bool)  # all correct: OSCR is the AUROC
    assert oscr(id_scores, everything_right, ood_scores) == pytest.approx(ood_metrics(id_scores, ood_scores)["auroc"])
