"""The run's figures: PNG and PDF files, the setting and the numbers they carry, and logging to loggers."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from noisylab import plots
from noisylab.metrics.calibration import ece as ece_metric
from noisylab.metrics.classification import risk_coverage, selective_metrics
from noisylab.metrics.scores import msp

SETTING = {"data": "cifar10", "noise": "symmetric", "rate": 0.4, "method": "standard", "loss": "drainage"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figures(n: int = 200, k: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, k, (n,), generator=g)
    correct = class_logits.argmax(1) == labels
    held = msp(class_logits)
    return {
        "score_histograms": {
            "score": "one_minus_p_d",
            "id": torch.randn(n, generator=g, dtype=torch.float64) + 3,  # held as log-odds
            "ood": {"svhn": torch.randn(50, generator=g, dtype=torch.float64),
                    "cifar100": torch.randn(40, generator=g, dtype=torch.float64) + 1},
            "metrics": {"svhn": {"auroc": 0.91234, "fpr95_id_positive": 0.4321, "fpr95_ood_positive": 0.3876},
                        "cifar100": {"auroc": 0.75, "fpr95_id_positive": 0.8, "fpr95_ood_positive": 0.7}},
        },
        "risk_coverage": {"score": "msp", "confidence": held, "correct": correct,
                          "aurc": selective_metrics(held, correct)["aurc"]},
        "reliability": {"class_logits": class_logits, "labels": labels, "ece": ece_metric(class_logits, labels)},
    }


def _texts(fig) -> list[str]:
    """Every text of a figure: titles, legend entries, labels, annotations."""
    return [t.get_text() for t in fig.findobj(plt.Text)]


def _check_files(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC), path
        else:
            assert path.suffix == ".pdf" and data.startswith(b"%PDF") and b"%%EOF" in data[-64:], path


# ---------------------------------------------------------------------------------------------- files
def test_write_all_writes_png_and_pdf_of_each_figure(tmp_path: Path) -> None:
    written = plots.write_all(tmp_path / "plots", _figures(), SETTING)
    names = ["ood_scores", "risk_coverage", "reliability"]
    assert written == [tmp_path / "plots" / f"{n}.{ext}" for n in names for ext in ("png", "pdf")]
    _check_files(written)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in written)  # no temp files
    assert plt.get_fignums() == []  # every figure closed


def test_write_all_writes_only_the_figures_given(tmp_path: Path) -> None:
    figures = _figures()
    assert plots.write_all(tmp_path, {"reliability": figures["reliability"]}) == [
        tmp_path / "reliability.png", tmp_path / "reliability.pdf"]
    assert plots.write_all(tmp_path / "none", {}) == []


def test_transition_matrix_keeps_its_call_and_writes_pdf_beside_png(tmp_path: Path) -> None:
    t = np.full((3, 3), 0.2) + np.eye(3) * 0.4
    path = tmp_path / "plots" / "transition_matrix.png"
    written = plots.transition_matrix(path, t, ["a", "b", "c"])  # the call train.py makes
    assert written == [path, path.with_suffix(".pdf")]
    _check_files(written)
    fig = plots.transition_matrix_figure(t, ["a", "b", "c"], SETTING)
    assert "cifar10 · symmetric 0.4 · standard · loss drainage" in _texts(fig)
    assert "0.60" in _texts(fig)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the setting
def test_setting_line_names_the_run_and_skips_what_is_missing() -> None:
    assert plots.setting_line(SETTING, "one_minus_p_d") == (
        "cifar10 · symmetric 0.4 · standard · loss drainage · score 1 - p_d")
    assert plots.setting_line({"data": "cifar100", "method": "dividemix"}, "msp") == "cifar100 · dividemix · score MSP"
    assert plots.setting_line({"noise": "none", "rate": 0.0}) == "no noise"
    assert plots.setting_line({"rate": 0.2, "seed": 3}) == "noise 0.2 · seed 3"
    assert plots.setting_line(None) == ""


# ---------------------------------------------------------------------------------------------- histograms
def test_score_histograms_state_setting_score_label_and_metrics_per_ood_set() -> None:
    f = _figures()["score_histograms"]
    fig = plots.score_histograms_figure(f["score"], f["id"], f["ood"], f["metrics"], SETTING)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "1 - p_d (higher = in-distribution)"
    assert "drainage" not in ax.get_xlabel()
    assert ax.get_title() == "cifar10 · symmetric 0.4 · standard · loss drainage · score 1 - p_d"
    assert "1 - p_d" in fig.get_suptitle()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "in-distribution (test), n=200"
    assert legend[1] == "svhn: AUROC 0.912 · FPR95 0.432 (ID+) / 0.388 (OOD+)"
    assert legend[2] == "cifar100: AUROC 0.750 · FPR95 0.800 (ID+) / 0.700 (OOD+)"
    # drawn as the probability 1 - p_d (display_value), not the held log-odds (which reach ~6 here)
    low, high = ax.get_xlim()
    assert -0.1 < low and high < 1.1
    plt.close(fig)


def test_score_histograms_survive_constant_and_empty_sets() -> None:
    fig = plots.score_histograms_figure("max_logit", torch.full((10,), 2.0, dtype=torch.float64),
                                        {"empty": torch.empty(0, dtype=torch.float64)})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["in-distribution (test), n=10", "empty"]
    assert fig.axes[0].get_xlabel() == "max logit (higher = in-distribution)"
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- risk-coverage
def test_oracle_accepts_every_correct_sample_first() -> None:
    coverage, risk = plots.oracle_risk_coverage(torch.tensor([True, False, True, True, False]))
    assert torch.allclose(coverage, torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0], dtype=torch.float64))
    assert torch.allclose(risk, torch.tensor([0, 0, 0, 1 / 4, 2 / 5], dtype=torch.float64))
    # a score that ranks exactly so reaches the oracle's AURC
    correct = torch.tensor([True, False, True, True, False])
    perfect = correct.double() + torch.arange(5) * 1e-3
    assert selective_metrics(perfect, correct)["aurc"] == pytest.approx(plots.oracle_aurc(correct))


def test_risk_coverage_shows_aurc_and_a_dashed_oracle_curve() -> None:
    f = _figures()["risk_coverage"]
    fig = plots.risk_coverage_figure(f["score"], f["confidence"], f["correct"], f["aurc"], SETTING)
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    oracle = lines["oracle"]
    assert oracle.get_linestyle() == "--"
    n, c = len(f["correct"]), int(f["correct"].sum())
    k = np.arange(1, n + 1)
    np.testing.assert_allclose(oracle.get_xdata(), k / n)
    np.testing.assert_allclose(oracle.get_ydata(), np.maximum(k - c, 0) / k)
    coverage, risk = risk_coverage(f["confidence"], f["correct"])
    np.testing.assert_allclose(lines["score"].get_ydata(), risk.numpy())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"MSP (AURC {f['aurc']:.4f})"
    assert legend[1] == f"oracle (AURC {plots.oracle_aurc(f['correct']):.4f})"
    assert f"AURC {f['aurc']:.4f}" in fig.get_suptitle()
    assert ax.get_title() == "cifar10 · symmetric 0.4 · standard · loss drainage · score MSP"
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- reliability
def test_reliability_diagram_shows_ece_bin_counts_and_gaps() -> None:
    f = _figures(n=300)["reliability"]
    fig = plots.reliability_figure(f["class_logits"], f["labels"], f["ece"], SETTING)
    ax = fig.axes[0]
    assert fig.get_suptitle() == f"Reliability diagram (test): ECE {f['ece']:.4f}"
    assert ax.get_title() == "cifar10 · symmetric 0.4 · standard · loss drainage"
    counts = [t for t in fig.findobj(plt.Text) if t.get_gid() == "bin_count"]
    assert sum(int(t.get_text()) for t in counts) == 300
    count, accuracy, confidence = plots.reliability_bins(f["class_logits"], f["labels"])
    full = count > 0
    assert len(counts) == int(full.sum())
    gaps = [p for p in ax.patches if p.get_gid() == "gap"]
    np.testing.assert_allclose([p.get_height() for p in gaps], (accuracy - confidence).abs()[full].numpy())
    assert all(p.get_hatch() == "//" for p in gaps)
    # the gaps, weighted by the counts, are the ECE metrics reports
    weighted = sum(p.get_height() * int(t.get_text()) for p, t in zip(gaps, counts, strict=True)) / 300
    assert weighted == pytest.approx(f["ece"])
    plt.close(fig)
    computed = plots.reliability_figure(f["class_logits"], f["labels"])  # without a given ECE: computes it
    assert computed.get_suptitle() == f"Reliability diagram (test): ECE {f['ece']:.4f}"
    plt.close(computed)


# ---------------------------------------------------------------------------------------------- loggers
class WandbLogger:  # known by class name, as lightning's is; this one fails
    def log_image(self, key, images, **kwargs):
        raise RuntimeError("wandb is down")


class _Experiment:
    def __init__(self) -> None:
        self.logged: list[tuple] = []

    def log_figure(self, run_id, figure, artifact_file) -> None:
        self.logged.append((run_id, figure, artifact_file))


class MLFlowLogger:
    run_id = "run-1"

    def __init__(self) -> None:
        self.experiment = _Experiment()


def test_a_failing_logger_is_a_warning_and_costs_no_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from lightning.pytorch.loggers import CSVLogger

    mlflow = MLFlowLogger()
    loggers = [WandbLogger(), CSVLogger(tmp_path / "csv"), mlflow]
    with caplog.at_level(logging.WARNING, logger="noisylab.plots"):
        written = plots.write_all(tmp_path / "plots", _figures(), SETTING, loggers)
    assert len(written) == 6
    _check_files(written)
    assert sum("wandb is down" in r.getMessage() for r in caplog.records) == 3
    # the loggers after the failing one still get every figure
    assert [(run, file) for run, _, file in mlflow.experiment.logged] == [
        ("run-1", "figures/ood_scores.png"), ("run-1", "figures/risk_coverage.png"),
        ("run-1", "figures/reliability.png")]
    assert all(isinstance(fig, plt.Figure) for _, fig, _ in mlflow.experiment.logged)
    assert plt.get_fignums() == []


def test_figures_are_logged_to_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install .[tensorboard])")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    logger = TensorBoardLogger(save_dir=tmp_path, name="tb", version=0)
    written = plots.write_all(tmp_path / "plots", _figures(), SETTING, [logger], step=7)
    logger.experiment.flush()
    assert len(written) == 6
    events = EventAccumulator(logger.log_dir, size_guidance={IMAGES: 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert sorted(tags) == ["figures/ood_scores", "figures/reliability", "figures/risk_coverage"]
    image = events.Images("figures/reliability")[0]
    assert image.step == 7 and image.encoded_image_string.startswith(PNG_MAGIC)
    assert image.width > 100 and image.height > 100
