"""The sweep report: grouping by config up to the seed, mean ± std, best per column, incomplete runs, files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure

import noisylab.report as report
from noisylab.report import (
    Run,
    Setting,
    direction,
    group_runs,
    load_runs,
    main,
    metric_figure,
    metric_label,
    setting_columns,
)
from tests.conftest import QUICK, REPO, run_train

LOSSES = {"ce": "noisylab.losses.CrossEntropyLoss", "drainage": "noisylab.losses.DrainageLoss"}
RATES = (0.2, 0.4)
SEEDS = (1, 2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The OOD scores each head reports, its default first (as the evaluator does): a column must never mix them.
SCORES = {"ce": ("msp", "max_logit"), "drainage": ("one_minus_p_d", "msp")}
LABELS = {"msp": "MSP", "max_logit": "max logit", "one_minus_p_d": "1 - p_d"}
SORTED_SCORES = ("max_logit", "msp", "one_minus_p_d")  # a pattern's keys come sorted


def fake_metrics(loss: str, rate: float, seed: int) -> dict:
    """Made-up results: drainage has the best accuracy at 0.2, ce the lowest (best) ECE at 0.2; OOD and
    selective metrics per score, in the evaluator's key scheme."""
    metrics = {
        "test/acc": {"ce": 0.80, "drainage": 0.85}[loss] - rate / 2 + 0.01 * seed,
        "test/ece": {"ce": 0.05, "drainage": 0.10}[loss] + rate / 10 + 0.003 * seed,
        "val/best_acc": 0.6 + 0.001 * seed,
        "noise/realised_rate": rate + 0.001 * seed,
        "test/calibrated/noisy_val/temperature": 1.2 + rate + 0.01 * seed,
        "best_epoch": 2,
        "tested_checkpoint": "checkpoints/best.ckpt",
    }
    for i, score in enumerate(SCORES[loss]):
        near = {"ce": 0.70, "drainage": 0.76}[loss] - rate / 4 + 0.02 * seed - 0.03 * i
        metrics[f"test/ood_near/{score}/auroc"] = near
        metrics[f"test/ood_far/{score}/auroc"] = near + 0.15
        metrics[f"test/ood/svhn/{score}/auroc"] = near + 0.16
        aurc = {"ce": 0.10, "drainage": 0.07}[loss] + rate / 5 + 0.01 * seed + 0.02 * i
        metrics[f"test/selective/{score}/aurc"] = aurc
    if loss == "drainage":
        metrics["test/drainage_rate"] = rate / 2 + 0.005 * seed
        metrics["test/ood/svhn/drainage_rate"] = 0.5 + rate / 4
    return metrics


def write_run(folder: Path, loss: str, seed: int, metrics: dict | None, **config: object) -> Path:
    """A run folder as train.py leaves it (config, Hydra's group choices, metrics.json unless None); `config`
    sets or adds top-level config entries."""
    cfg = {
        "model": {"_target_": "noisylab.models.small.SmallCNN", "width": 32},
        "noise": {"_target_": "noisylab.noise.InstanceNoise", "rate": 0.4, "seed": "${seed}"},
        # shuffle_seed written out (as `data.shuffle_seed=<seed>` would): the same config as `${seed}`.
        "data": {"name": "digits", "root": "${paths.data_dir}", "split_seed": "${seed}", "shuffle_seed": seed},
        "loss": {"criterion": {"_target_": LOSSES[loss]}},
        "trainer": {"max_epochs": 3, "default_root_dir": "${paths.output_dir}"},
        "callbacks": {"model_checkpoint": {"dirpath": "${paths.output_dir}/checkpoints"}, "epoch_seed": {"seed": seed}},
        "logger": {"csv": {"save_dir": str(folder)}},
        "paths": {"data_dir": "${hydra:runtime.cwd}/data", "output_dir": str(folder)},  # differs in every run
        "seed": seed,
        **config,
    }
    choices = {"model": "small_cnn", "noise": "instance", "data": "digits", "loss": loss, "hydra/launcher": "basic"}
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 losses x 2 noise rates x 2 seeds in Hydra's multirun layout, plus one job that stopped after a
    checkpoint at epoch 1."""
    import torch

    root = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    job = 0
    for loss in LOSSES:
        for rate in RATES:
            for seed in SEEDS:
                noise = {"_target_": "noisylab.noise.InstanceNoise", "rate": rate, "seed": "${seed}"}
                write_run(root / str(job), loss, seed, fake_metrics(loss, rate, seed), noise=noise)
                job += 1
    crashed = write_run(root / str(job), "ce", 3, None)
    (crashed / "checkpoints").mkdir()
    torch.save({"epoch": 1, "state_dict": {}}, crashed / "checkpoints" / "last.ckpt")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the first markdown table (header included, separator line left out)."""
    lines = markdown.split("\n\n")[2].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("| ---")]


def test_runs_that_differ_only_by_seed_form_one_setting(sweep: Path) -> None:
    runs, incomplete = load_runs(sweep)
    assert len(runs) == 8 and [i.folder.name for i in incomplete] == ["8"]
    settings = group_runs(runs)
    assert setting_columns(settings) == ["loss", "noise.rate"]  # not the seeds, paths, or per-loss config keys
    assert len(settings) == 4
    for setting in settings:
        assert sorted(run.config["seed"] for run in setting.runs) == list(SEEDS)


def test_a_seed_that_does_not_follow_the_run_seed_is_part_of_the_setting(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fixed = {"_target_": "noisylab.noise.InstanceNoise", "rate": 0.4, "seed": 7}
    for job, seed in enumerate([1, 2, 1, 2, 2]):  # the first two with noise.seed=7, the others following the seed
        config = {"noise": fixed} if job < 2 else {}
        write_run(tmp_path / str(job), "ce", seed, fake_metrics("ce", 0.4, seed), **config)
    assert main([str(tmp_path)]) == 0
    assert [(r["noise.seed"], r["n_seeds"]) for r in read_csv(tmp_path / "summary.csv")] == [("7", "2"), ("seed", "3")]
    assert "note: seed 2 ran 2 times in one setting" in capsys.readouterr().err


def near(score: str) -> str:
    return f"test/ood_near/{score}/auroc"


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """metric -> the figure that main() built for its plot (kept after it is saved and closed)."""
    built: dict[str, Figure] = {}
    real = report.metric_figure

    def recording(settings, columns, x, metric, colours=None):  # noqa: ANN001, ANN202
        built[metric] = fig = real(settings, columns, x, metric, colours)
        return fig

    monkeypatch.setattr(report, "metric_figure", recording)
    return built


def line_colours(fig: Figure) -> dict[str, str]:
    """Legend label -> colour of each line (errorbar) in a figure."""
    return {c.get_label(): c.lines[0].get_color() for c in fig.axes[0].containers}


def error_bar_ends(fig: Figure) -> list[tuple[float, float, float]]:
    """(x, bottom, top) of every error bar in a figure."""
    ends = []
    for container in fig.axes[0].containers:
        for segment in container.lines[2][0].get_segments():
            (x, bottom), (_, top) = segment
            ends.append((float(x), float(bottom), float(top)))
    return sorted(ends)


def test_csv_holds_mean_std_and_count_over_seeds_with_raw_keys(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    rows = read_csv(out / "summary.csv")
    assert list(rows[0])[:3] == ["loss", "noise.rate", "n_seeds"]
    assert [(r["loss"], r["noise.rate"], r["n_seeds"]) for r in rows] == [
        ("ce", "0.2", "2"), ("ce", "0.4", "2"), ("drainage", "0.2", "2"), ("drainage", "0.4", "2")]
    for row in rows:
        loss, rate = row["loss"], float(row["noise.rate"])
        for metric in ("test/acc", "test/ece", "val/best_acc", *(near(s) for s in SCORES[loss]),
                       *(f"test/selective/{s}/aurc" for s in SCORES[loss])):
            values = [fake_metrics(loss, rate, s)[metric] for s in SEEDS]
            assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))
            assert row[f"{metric}_n"] == "2"
    assert [bool(r["test/drainage_rate_mean"]) for r in rows] == [False, False, True, True]  # ce has none
    assert [r[f"{near('one_minus_p_d')}_n"] for r in rows] == ["0", "0", "2", "2"]
    assert [r[f"{near('max_logit')}_mean"] == "" for r in rows] == [False, False, True, True]
    assert "test/selective_acc_mean" not in rows[0]  # no run reports it
    assert "test/ood/auroc_mean" not in rows[0]


def test_default_patterns_give_one_column_per_score(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    with (out / "summary.csv").open(newline="") as f:
        csv_header = next(csv.reader(f))
    metrics = [c.removesuffix("_mean") for c in csv_header if c.endswith("_mean")]
    assert metrics == [
        "test/acc", "test/drainage_rate", "test/ece", *(near(s) for s in SORTED_SCORES),
        *(f"test/ood_far/{s}/auroc" for s in SORTED_SCORES), *(f"test/selective/{s}/aurc" for s in SORTED_SCORES),
        "val/best_acc",
    ]  # no test/ood_other (no run reports it), no noise detection
    markdown = (out / "summary.md").read_text()
    header, *rows = table_rows(markdown)
    assert header == [
        "loss", "noise.rate", "n_seeds", "test/acc", "test/drainage_rate", "test/ece",
        *(f"near-OOD AUROC ({LABELS[s]})" for s in SORTED_SCORES),
        *(f"far-OOD AUROC ({LABELS[s]})" for s in SORTED_SCORES),
        *(f"AURC ({LABELS[s]})" for s in SORTED_SCORES), "val/best_acc",
    ]
    # Each column holds one score: 1 - p_d only for drainage, max logit only for ce, MSP for both heads.
    column = header.index("near-OOD AUROC (1 - p_d)")
    assert [r[column] == "—" for r in rows] == [True, True, False, False]
    for row in rows:
        loss, rate = row[0], float(row[1])
        values = [fake_metrics(loss, rate, s)[near("msp")] for s in SEEDS]
        cell = row[header.index("near-OOD AUROC (MSP)")].strip("*")
        assert cell == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    assert "Keys in summary.csv: " in markdown
    assert "near-OOD AUROC (1 - p_d): `test/ood_near/one_minus_p_d/auroc`" in markdown
    assert "AURC (MSP): `test/selective/msp/aurc`" in markdown


def test_metrics_option_takes_patterns(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out), "--metrics",
                 "test/ood/*/auroc,test/calibrated/*,test/nothing/*,test/acc"]) == 0
    rows = read_csv(out / "summary.csv")
    assert list(rows[0])[3::3] == [  # the means, keys as in metrics.json
        *(f"test/ood/svhn/{s}/auroc_mean" for s in SORTED_SCORES), "test/calibrated/noisy_val/temperature_mean",
        "test/acc_mean"]
    header = table_rows((out / "summary.md").read_text())[0]
    assert header[3:] == [*(f"OOD svhn AUROC ({LABELS[s]})" for s in SORTED_SCORES),
                          "test/calibrated/noisy_val/temperature", "test/acc"]
    assert "note: no run reports test/nothing/*" in capsys.readouterr().err


def bold_rows(markdown: str, column_name: str) -> list[tuple[str, str]]:
    header, *rows = table_rows(markdown)
    column = header.index(column_name)
    return [(r[0], r[1]) for r in rows if r[column].startswith("**")]


def best_row(metric: str, lowest: bool) -> tuple[str, str]:
    """The (loss, rate) of the best mean over the seeds of the sweep's settings that report `metric`."""
    means = {(loss, str(rate)): np.mean([fake_metrics(loss, rate, s)[metric] for s in SEEDS])
             for loss in LOSSES for rate in RATES if metric in fake_metrics(loss, rate, 1)}
    return (min if lowest else max)(means, key=means.get)


def test_markdown_bolds_the_best_mean_only_where_a_direction_is_known(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out), "--metrics", "test/acc,test/ece,test/ood_near/*/auroc,test/selective/*/aurc,"
          "test/drainage_rate,noise/realised_rate,test/calibrated/*/temperature,best_epoch,test/ood/*/drainage_rate"])
    markdown = (out / "summary.md").read_text()
    assert bold_rows(markdown, "test/acc") == [("drainage", "0.2")]
    assert bold_rows(markdown, "test/ece") == [("ce", "0.2")]  # lower is better
    for score in SORTED_SCORES:
        label = LABELS[score]
        assert bold_rows(markdown, f"near-OOD AUROC ({label})") == [best_row(near(score), lowest=False)]
        assert bold_rows(markdown, f"AURC ({label})") == [best_row(f"test/selective/{score}/aurc", lowest=True)]
    assert best_row("test/selective/msp/aurc", True) != best_row("test/selective/msp/aurc", False)
    no_best = ["test/drainage_rate", "noise/realised_rate", "test/calibrated/noisy_val/temperature", "best_epoch",
               "test/ood/svhn/drainage_rate"]
    for column in no_best:
        assert bold_rows(markdown, column) == [], column
    assert f"No best (no better direction): {', '.join(no_best)}." in markdown
    header, *rows = table_rows(markdown)
    ce_02 = rows[0][header.index("test/acc")]
    values = [fake_metrics("ce", 0.2, s)["test/acc"] for s in SEEDS]
    assert ce_02 == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    assert rows[0][header.index("test/drainage_rate")] == "—"


@pytest.mark.parametrize(("metric", "expected"), [
    ("test/acc", "higher"), ("val/best_acc", "higher"), ("train/clean_acc", "higher"), ("test/selective_acc", "higher"),
    ("test/ood_near/msp/auroc", "higher"), ("test/ood/svhn/energy/aupr_in", "higher"),
    ("test/ood_far/mmles/aupr_out", "higher"), ("test/ood_other/msp/oscr", "higher"),
    ("test/selective/msp/acc_at_90", "higher"), ("train/noise_detection_auroc", "higher"),
    ("train/noise_detection_precision", "higher"), ("train/drainage_precision", "higher"),
    ("train/drainage_recall", "higher"),
    ("test/ece", "lower"), ("test/nll", "lower"), ("test/brier", "lower"), ("test/calibrated/noisy_val/ece", "lower"),
    ("test/calibrated/official_val/nll", "lower"), ("test/ood_near/msp/fpr95_id_positive", "lower"),
    ("test/ood/svhn/one_minus_p_d/fpr95_ood_positive", "lower"), ("test/selective/msp/aurc", "lower"),
    ("train/loss", "lower"),
    ("test/drainage_rate", None), ("test/ood/svhn/drainage_rate", None), ("train/drainage_rate", None),
    ("test/calibrated/noisy_val/temperature", None), ("noise/realised_rate", None), ("best_epoch", None),
    ("epochs", None), ("train/generative/kl", None), ("test/accuracy_of_something", None),
])  # fmt: skip
def test_direction_of_each_metric(metric: str, expected: str | None) -> None:
    assert direction(metric) == expected


def test_readable_labels_name_the_score() -> None:
    assert metric_label("test/ood_near/one_minus_p_d/auroc") == "near-OOD AUROC (1 - p_d)"
    assert metric_label("test/ood_far/msp/fpr95_id_positive") == "far-OOD FPR95 ID-positive (MSP)"
    assert metric_label("test/ood_other/max_logit/aupr_in") == "other-OOD AUPR-In (max logit)"
    assert metric_label("test/ood/svhn/mmles/oscr") == "OOD svhn OSCR (MMLES)"
    assert metric_label("test/selective/msp/acc_at_90") == "acc at 90% coverage (MSP)"
    for unchanged in ("test/acc", "test/ood/svhn/drainage_rate", "test/calibrated/noisy_val/ece", "best_epoch"):
        assert metric_label(unchanged) == unchanged


def test_a_metric_fewer_seeds_report_shows_its_count(tmp_path: Path) -> None:
    """Seed 3 at rate 0.2 lacks the near-OOD MSP AUROC; seed 2 at rate 0.4 has a NaN ECE (undefined)."""
    for job, (rate, seed) in enumerate((rate, seed) for rate in RATES for seed in (1, 2, 3)):
        metrics = fake_metrics("ce", rate, seed)
        if (rate, seed) == (0.2, 3):
            del metrics[near("msp")]
        if (rate, seed) == (0.4, 2):
            metrics["test/ece"] = float("nan")
        noise = {"_target_": "noisylab.noise.InstanceNoise", "rate": rate, "seed": "${seed}"}
        write_run(tmp_path / str(job), "ce", seed, metrics, noise=noise)
    assert main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["n_seeds"] for r in rows] == ["3", "3"]
    assert [r[f"{near('msp')}_n"] for r in rows] == ["2", "3"]
    assert [r["test/ece_n"] for r in rows] == ["3", "2"]
    assert [r["test/acc_n"] for r in rows] == ["3", "3"]
    ece = [fake_metrics("ce", 0.4, s)["test/ece"] for s in (1, 3)]
    assert float(rows[1]["test/ece_mean"]) == pytest.approx(np.mean(ece))  # the NaN left out, not a NaN mean
    header, *cells = table_rows((tmp_path / "summary.md").read_text())
    values = [fake_metrics("ce", 0.2, s)[near("msp")] for s in (1, 2)]
    text = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    assert cells[0][header.index("near-OOD AUROC (MSP)")].replace("**", "") == f"{text} (2/3 seeds)"
    assert cells[1][header.index("test/ece")].replace("**", "").endswith(" (2/3 seeds)")
    assert "seeds" not in cells[0][header.index("test/acc")] + cells[1][header.index("near-OOD AUROC (MSP)")]
    assert '"(k/n seeds)": only k of the setting\'s n seeds report the metric' in (tmp_path / "summary.md").read_text()


def test_incomplete_run_is_listed_with_its_last_epoch(sweep: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    reason = "no metrics.json; last checkpoint epoch 1 (counted from 0) of 3"
    section = f"## Incomplete runs\n\n| folder | reason |\n| --- | --- |\n| 8 | {reason} |\n"
    assert section in (out / "summary.md").read_text()
    assert f"8: {reason}" in capsys.readouterr().err


def test_plots_against_the_noise_rate_one_per_score(sweep: Path, figures: dict[str, Figure],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    main([str(sweep)])  # writes into the sweep folder by default
    names = ["acc", *(f"ood_{group}_auroc_{s}" for group in ("near", "far") for s in SORTED_SCORES), "drainage_rate"]
    for name in names:
        assert (sweep / f"{name}_vs_noise.png").read_bytes().startswith(PNG_MAGIC), name
    assert sorted(p.name for p in sweep.glob("*.png")) == sorted(f"{name}_vs_noise.png" for name in names)
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()
    assert "ood_other_auroc_*_vs_noise.png skipped: no run reports test/ood_other/*/auroc" in capsys.readouterr().err
    # A plot per score, named by it, with only the heads that report that score.
    ax = figures[near("one_minus_p_d")].axes[0]
    assert ax.get_title() == "near-OOD AUROC (1 - p_d) (mean ± std over seeds)"
    assert ax.get_ylabel() == "near-OOD AUROC (1 - p_d)"
    assert list(line_colours(figures[near("one_minus_p_d")])) == ["drainage"]
    assert list(line_colours(figures[near("max_logit")])) == ["ce"]
    assert list(line_colours(figures[near("msp")])) == ["ce", "drainage"]


def test_a_setting_keeps_its_colour_in_every_plot(sweep: Path, figures: dict[str, Figure]) -> None:
    main([str(sweep), "--out", str(sweep / "r")])
    colours = line_colours(figures["test/acc"])
    assert list(colours) == ["ce", "drainage"] and colours["ce"] != colours["drainage"]
    # drainage_rate has the drainage line alone: it keeps drainage's colour, not the first of the cycle.
    assert line_colours(figures["test/drainage_rate"]) == {"drainage": colours["drainage"]}
    assert line_colours(figures[near("one_minus_p_d")]) == {"drainage": colours["drainage"]}
    assert line_colours(figures[near("max_logit")]) == {"ce": colours["ce"]}
    for fig in figures.values():
        assert line_colours(fig).items() <= colours.items()


def test_x_ticks_are_the_swept_values(sweep: Path, figures: dict[str, Figure]) -> None:
    main([str(sweep), "--out", str(sweep / "r")])
    for metric, fig in figures.items():
        ax = fig.axes[0]
        assert list(ax.get_xticks()) == list(RATES), metric  # not matplotlib's 0.20, 0.25, ...
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.2", "0.4"]
        assert ax.get_xlabel() == "noise.rate"


def fake_settings(metric: str, values: dict[float, list[float]]) -> list[Setting]:
    """One setting per noise rate, a run per value."""
    return [Setting({"noise.rate": rate}, [Run(Path(f"{rate}/{i}"), {"seed": i}, {}, {metric: v})
                                           for i, v in enumerate(vs)]) for rate, vs in values.items()]


@pytest.mark.parametrize(("metric", "low", "high"), [
    ("test/acc", 0.0, 1.0), ("test/selective/msp/aurc", 0.0, 1.0), ("test/ood_near/msp/fpr95_id_positive", 0.0, 1.0),
    ("test/drainage_rate", 0.0, 1.0), ("test/ood_far/mmles/oscr", 0.0, 1.0), ("test/brier", 0.0, 2.0),
    ("test/nll", 0.0, np.inf), ("train/generative/kl", -np.inf, np.inf),
])  # fmt: skip
def test_error_bars_stay_in_the_metric_range(metric: str, low: float, high: float) -> None:
    values = {0.1: [0.99, 0.90], 0.3: [0.5, 0.6], 0.5: [0.01, 0.10], 0.7: [1.95, 1.7], 0.9: [0.4]}
    if high == 1.0:
        del values[0.7]
    fig = metric_figure(fake_settings(metric, values), ["noise.rate"], "noise.rate", metric)
    assert fig is not None
    expected = []
    for rate, vs in values.items():
        mean, std = np.mean(vs), (np.std(vs, ddof=1) if len(vs) > 1 else 0.0)
        expected.append((rate, max(mean - std, low), min(mean + std, high)))
    np.testing.assert_allclose(error_bar_ends(fig), expected, rtol=0, atol=1e-12)
    if high == 1.0:  # clipped at both ends: 0.945 + 0.064 would pass 1, 0.055 - 0.064 would pass 0
        assert error_bar_ends(fig)[0][2] == 1.0 and error_bar_ends(fig)[2][1] == 0.0
    elif low == -np.inf:
        assert error_bar_ends(fig)[2][1] < 0  # a metric of unknown range: the plain ± std


def test_without_a_noise_rate_sweep_plots_against_the_swept_number(tmp_path: Path, figures: dict[str, Figure],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for job, (lr, seed) in enumerate([(0.1, 1), (0.1, 2), (0.01, 1), (0.01, 2)]):
        write_run(tmp_path / str(job), "ce", seed, fake_metrics("ce", 0.4, seed) | {"test/acc": lr + seed},
                  optim={"_target_": "torch.optim.SGD", "lr": lr})
    assert main([str(tmp_path), "--metrics", "test/acc,test/nll"]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert list(rows[0]) == ["optim.lr", "n_seeds", "test/acc_mean", "test/acc_std", "test/acc_n"]
    assert [float(r["test/acc_mean"]) for r in rows] == pytest.approx([1.51, 1.6])
    assert (tmp_path / "acc_vs_optim_lr.png").read_bytes().startswith(PNG_MAGIC)
    ax = figures["test/acc"].axes[0]
    assert list(ax.get_xticks()) == [0.01, 0.1] and ax.get_xlabel() == "optim.lr"
    err = capsys.readouterr().err
    assert "no run reports test/nll" in err and "drainage_rate_vs_optim_lr.png skipped" in err


def test_exit_status_1_without_a_complete_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 1
    assert f"no complete run below {tmp_path}" in capsys.readouterr().err
    write_run(tmp_path / "0", "ce", 1, None)
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "0: no metrics.json; no checkpoint" in err and "no complete run" in err
    assert not (tmp_path / "summary.md").exists()


def test_python_dash_m_prints_the_table(sweep: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "noisylab.report", str(sweep), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| loss | noise.rate | n_seeds | test/acc |")
    assert "**" in proc.stdout and "8 complete runs, 4 settings" in proc.stderr


@pytest.mark.slow
def test_report_of_a_real_multirun(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    quick = [o for o in QUICK if not o.startswith("trainer.max_epochs=")]
    run_train(["-m", *quick, "trainer.max_epochs=1", "seed=1,2", "loss=ce,drainage", "data.batch_size=256",
               "eval.plots=false", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert main([str(sweep)]) == 0
    rows = read_csv(sweep / "summary.csv")
    assert [(r["loss"], r["n_seeds"]) for r in rows] == [("ce", "2"), ("drainage", "2")]
    assert all(0 <= float(r["test/acc_mean"]) <= 1 for r in rows)
    assert rows[0]["test/drainage_rate_mean"] == "" and rows[1]["test/drainage_rate_mean"] != ""
    # The digits demo holds classes out (near OOD): a column per score, 1 - p_d for drainage alone.
    assert rows[0]["test/ood_near/msp/auroc_n"] == "2" and rows[1]["test/ood_near/one_minus_p_d/auroc_n"] == "2"
    assert rows[0]["test/ood_near/one_minus_p_d/auroc_n"] == "0"
    assert "Incomplete runs" not in (sweep / "summary.md").read_text()


def test_default_columns_keep_the_scores_that_are_some_runs_default(tmp_path: Path) -> None:
    """Every head reports every score; by default the table shows each head's own (the runs' default_score),
    one column per score, and --metrics still reaches the others."""
    root = tmp_path / "runs"
    for loss, default in (("ce", "msp"), ("drainage", "one_minus_p_d")):
        for seed in SEEDS:
            metrics = {**fake_metrics(loss, 0.2, seed), "default_score": default}
            write_run(root / f"{loss}{seed}", loss, seed, metrics)
    out = tmp_path / "report"
    main([str(root), "--out", str(out)])
    with (out / "summary.csv").open(newline="") as f:
        header = next(csv.reader(f))
    scored = [c.removesuffix("_mean") for c in header if c.endswith("_mean") and "ood_near" in c]
    assert scored == [near("msp"), near("one_minus_p_d")]  # not max_logit: no run's default
    main([str(root), "--out", str(out), "--metrics", "test/ood_near/*/auroc"])
    with (out / "summary.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert [c.removesuffix("_mean") for c in header if c.endswith("_mean")] == [near(s) for s in SORTED_SCORES]
