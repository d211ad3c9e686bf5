"""Feature-based OOD detectors (eval.detectors): pytorch-ood's own scores, negated, in the evaluator's key scheme."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from noisylab.methods.evaluation import TestSetEvaluator as Evaluator
from noisylab.metrics.detectors import DETECTORS, fit_detector
from noisylab.metrics.ood import ood_metrics
from noisylab.models.heads import DisMaxHead, DrainageHead, IsoMaxPlusHead, LinearHead
from noisylab.train import build_datamodule, build_method
from tests.conftest import compose_config, read_metrics, run_train

# Everything but the refusals runs pytorch-ood (in the test extra; pip install ".[ood]" installs it alone).
needs_library = pytest.mark.skipif(importlib.util.find_spec("pytorch_ood") is None,
                                   reason='pytorch-ood is not installed (pip install ".[ood]")')

K, D = 3, 16


def _clusters(n: int, seed: int, ood: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of K Gaussian class clusters (non-negative, like ReLU features), or of one OOD cluster between
    and beyond them; labels of the class clusters."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(K, D)
    centres[torch.arange(K), torch.arange(K)] = 6.0
    labels = torch.randint(0, K, (n,), generator=g)
    mean = torch.full((n, D), 3.0) if ood else centres[labels]
    return (mean + torch.randn(n, D, generator=g)).clamp(min=0), labels


def _head() -> DrainageHead:
    """A drainage head (K + 1 rows) whose class rows read the clusters: ViM and ReAct must use only those."""
    head = DrainageHead(D, K)
    with torch.no_grad():
        head.fc.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
        head.fc.weight[torch.arange(K), torch.arange(K)] += 1.0
    return head


def _library_scores(name: str, head: DrainageHead, train: tuple[torch.Tensor, torch.Tensor],
                    z: torch.Tensor) -> torch.Tensor:
    """pytorch-ood's outlier scores through its own fit(loader) / predict(x) with an identity encoder."""
    from pytorch_ood import detector

    loader = DataLoader(TensorDataset(*train), batch_size=64)
    weight, bias = head.fc.weight.detach()[:K], head.fc.bias.detach()[:K]
    if name == "mahalanobis":
        found = detector.Mahalanobis(nn.Identity())
    elif name == "knn":
        found = detector.KNN(nn.Identity(), k=50)
    elif name == "vim":
        found = detector.ViM(nn.Identity(), d=D // 2, w=weight, b=bias)
    else:
        linear = nn.Linear(D, K)
        linear.weight.data, linear.bias.data = weight.clone(), bias.clone()
        found = detector.ReAct(nn.Identity(), linear, percentile=0.9)
    return found.fit(loader).predict(z)


@needs_library
@pytest.mark.parametrize("name", DETECTORS)
def test_scores_are_pytorch_ood_outlier_scores_negated(name: str) -> None:
    head, train = _head(), _clusters(300, seed=0)
    z = torch.cat([_clusters(40, seed=1)[0], _clusters(40, seed=2, ood=True)[0]])
    ours = fit_detector(name, head, *train)(z)
    assert ours.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(ours, -_library_scores(name, head, train, z).double(), rtol=1e-6, atol=1e-6)


@needs_library
@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim"])
def test_detectors_separate_an_ood_cluster(name: str) -> None:
    """Higher = in-distribution, as every score here: the class clusters rank above the OOD cluster. (Not ReAct:
    here each sample has one large coordinate, which its clip at the 90th percentile of all activations cuts.)"""
    head, train = _head(), _clusters(300, seed=0)
    score = fit_detector(name, head, *train)
    id_scores, ood_scores = score(_clusters(100, seed=1)[0]), score(_clusters(100, seed=2, ood=True)[0])
    auroc = roc_auc_score(np.r_[np.ones(100), np.zeros(100)], torch.cat([id_scores, ood_scores]).numpy())
    assert auroc > 0.9, auroc


@needs_library
def test_pytorch_ood_energy_is_the_heads_energy_score() -> None:
    """Why eval.detectors offers no energy: on the class logits it is the head's own `energy` score."""
    from pytorch_ood.detector import EnergyBased

    head, (features, _) = _head(), _clusters(50, seed=0)
    with torch.no_grad():
        outputs = head(features)
    torch.testing.assert_close(head.id_scores(outputs)["energy"],
                               -EnergyBased(None).predict_logits(head.class_logits(outputs)).double())


def _module() -> SimpleNamespace:
    datamodule = SimpleNamespace(ood_group=lambda name: "near" if name == "holdout" else "far")
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, datamodule=datamodule, global_step=0)
    return SimpleNamespace(trainer=trainer, loggers=[])


def _fill(evaluator: Evaluator, head: DrainageHead, names: list[str]) -> dict[str, torch.Tensor]:
    """Rows of each set, in two batches, outputs made by the head from the features; returns the features."""
    kept = {}
    for offset, name in enumerate(names):
        features, labels = _clusters(200 if name == "train" else 60, seed=offset, ood=name.startswith("ood/"))
        with torch.no_grad():
            outputs = head(features)
        for part in (slice(0, 30), slice(30, None)):
            evaluator.add(name, head, outputs[part], labels[part], torch.arange(len(labels))[part] + 1000 * offset,
                          labels[part], features=features[part])
        kept[name] = features
    return kept


@needs_library
def test_detector_scores_get_every_ood_key_and_group_mean_and_never_the_default() -> None:
    head = _head()
    names = ["train", "val", "test", "ood/holdout", "ood/svhn", "ood/textures"]
    evaluator = Evaluator(detectors=list(DETECTORS))
    features = _fill(evaluator, head, names)
    assert "features" not in evaluator.rows["val"]  # only the sets the detectors use keep them
    train_labels = torch.cat(evaluator.rows["train"]["labels"])
    metrics = evaluator.compute(_module(), head, names)
    assert evaluator.default_score == "one_minus_p_d"
    correct = head.class_logits(head(features["test"])).argmax(1) == _clusters(60, seed=2)[1]
    for name in DETECTORS:
        score = fit_detector(name, head, features["train"], train_labels)
        for ood in ("holdout", "svhn", "textures"):
            want = ood_metrics(score(features["test"]), score(features[f"ood/{ood}"]), correct)
            assert {k: metrics[f"test/ood/{ood}/{name}/{k}"] for k in want} == pytest.approx(want), (name, ood)
        far = np.mean([metrics[f"test/ood/{ood}/{name}/auroc"] for ood in ("svhn", "textures")])
        assert metrics[f"test/ood_far/{name}/auroc"] == pytest.approx(far)
        assert f"test/ood_near/{name}/auroc" in metrics
        assert not any(key.startswith(f"test/selective/{name}/") for key in metrics)
    assert "test/ood/svhn/one_minus_p_d/auroc" in metrics  # the head's scores are still there


def test_without_detectors_no_features_are_kept() -> None:
    evaluator, head = Evaluator(), _head()
    features, labels = _clusters(10, seed=0)
    evaluator.add("train", head, head(features).detach(), labels, torch.arange(10), labels, features=features)
    assert "features" not in evaluator.rows["train"]


def test_unknown_names_a_string_and_a_missing_package_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"eval.detectors \['lof'\] unknown; choose from mahalanobis, knn, vim, "
                                         r"react$"):
        Evaluator(detectors=["mahalanobis", "lof"])
    with pytest.raises(ValueError, match="odin perturbs the inputs along a gradient"):
        Evaluator(detectors=["odin"])
    with pytest.raises(ValueError, match="energy is already a logit score"):
        Evaluator(detectors=["energy"])
    with pytest.raises(ValueError, match=r"eval.detectors must be a list, e.g. eval.detectors=\[knn\]"):
        Evaluator(detectors="knn")
    monkeypatch.setitem(sys.modules, "pytorch_ood", None)  # what an environment without it finds
    with pytest.raises(ValueError, match=r"eval.detectors=\['mahalanobis'\] needs the pytorch-ood package, which "
                                         r"is not installed: pip install \"noisylab\[ood\]\""):
        Evaluator(detectors=["mahalanobis"])
    Evaluator(detectors=[])  # off: nothing to import


@needs_library
@pytest.mark.parametrize("head", [IsoMaxPlusHead(D, K), DisMaxHead(D, K)])
def test_vim_and_react_need_a_linear_class_layer(head: LinearHead) -> None:
    with pytest.raises(ValueError, match=rf"eval.detectors \['vim', 'react'\] .* {type(head).__name__} has none"):
        Evaluator(detectors=["knn", "vim", "react"]).check_network(head, "StandardMethod", one_network=True)
    Evaluator(detectors=["mahalanobis", "knn"]).check_network(head, "StandardMethod", one_network=True)


@needs_library
def test_mahalanobis_refuses_a_class_without_training_samples() -> None:
    features, labels = _clusters(100, seed=0)
    with pytest.raises(ValueError, match=r"classes \[1\] have no training sample"):
        fit_detector("mahalanobis", _head(), features[labels != 1], labels[labels != 1])


@needs_library
def test_methods_that_average_two_networks_are_refused_before_training(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["method=dividemix", "eval.detectors=[knn]"])
    with pytest.raises(InstantiationException) as raised:  # Hydra's, around the method's own error
        build_method(cfg, build_datamodule(cfg))
    assert isinstance(raised.value.__cause__, ValueError)
    assert str(raised.value.__cause__).startswith("eval.detectors=['knn']: DivideMix tests with its own forward")


@needs_library
@pytest.mark.slow
def test_a_run_reports_the_detectors_next_to_the_logit_scores(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_train([f"hydra.run.dir={run}", "trainer.max_epochs=1", "callbacks.progress_bar=null",
               "eval.detectors=[mahalanobis,knn]", "eval.plots=false"], cwd=tmp_path)
    metrics = read_metrics(run)
    assert metrics["default_score"] == "one_minus_p_d"
    for name in ("mahalanobis", "knn", "one_minus_p_d"):
        assert np.isfinite(metrics[f"test/ood/holdout/{name}/auroc"]), name
        assert np.isfinite(metrics[f"test/ood_near/{name}/auroc"]), name
