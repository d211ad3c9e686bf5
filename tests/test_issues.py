"""noisylab-issues: ranking, selection, detection metrics, per-class counts, output files, errors, --show."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

import noisylab.issues as issues
from noisylab.data.sources import load_digits
from noisylab.issues import main

HEADER = ["index", "split", "given_label", "given_class", "clean_label", "clean_class", "predicted_label",
          "predicted_class", "p_given", "suspicion/p_d", "suspicion/one_minus_p_given", "drained"]
# index, split, given, clean, predicted, p_given, p_d. Mislabeled: 7, 12, 9. Samples 5, 12 and 30 tie at
# p_d 0.8 and are listed out of index order.
ROWS = [
    (40, "train", 3, 3, 3, 0.9, 0.10),
    (7, "train", 3, 5, 5, 0.2, 0.90),
    (30, "train", 1, 1, 1, 0.8, 0.80),
    (12, "val", 1, 7, 7, 0.3, 0.80),
    (5, "train", 1, 1, 7, 0.4, 0.80),
    (21, "train", 3, 3, 3, 0.95, 0.05),
    (9, "val", 3, 8, 3, 0.7, 0.30),
    (16, "train", 5, 5, 5, 0.99, 0.01),
]
BY_P_D = [7, 5, 12, 30, 9, 40, 21, 16]  # score descending, ties by index
NOISY = {7, 12, 9}
DIGITS_CONFIG = {"data": {"name": "digits", "source": {"_target_": "hydra.utils.get_method",
                                                       "path": "noisylab.data.sources.load_digits"},
                          "root": None, "download": False, "source_kwargs": {}}, "seed": 0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(folder: Path, rows=ROWS, clean_known: bool = True, header=HEADER, config=DIGITS_CONFIG) -> Path:
    (folder / "samples").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text("{}")
    with open(folder / "samples" / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for index, split, given, clean, predicted, p_given, p_d in rows:
            row = {"index": index, "split": split, "given_label": given, "given_class": str(given),
                   "clean_label": clean if clean_known else "", "clean_class": str(clean) if clean_known else "",
                   "predicted_label": predicted, "predicted_class": str(predicted), "p_given": p_given,
                   "suspicion/p_d": p_d, "suspicion/one_minus_p_given": round(1 - p_given, 6),
                   "drained": int(p_d > 0.5)}
            writer.writerow([row[c] for c in header])
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary(out: Path) -> dict:
    return json.loads((out / "issues_summary.json").read_text())


def test_ranking_ties_by_index_and_default_threshold(tmp_path):
    run = make_run(tmp_path / "run")
    assert main([str(run)]) == 0
    out = run / "issues"
    rows = read_csv(out / "label_issues.csv")
    assert list(rows[0]) == ["rank", "index", "split", "given_label", "given_class", "suggested_label",
                             "suggested_class", "score", "is_noisy"]
    # default score: the first suspicion column (p_d); default threshold 0.5 for a probability
    assert [int(r["index"]) for r in rows] == BY_P_D[:4]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    assert [r["is_noisy"] for r in rows] == ["1", "0", "1", "0"]
    assert rows[1] == {"rank": "2", "index": "5", "split": "train", "given_label": "1", "given_class": "1",
                       "suggested_label": "7", "suggested_class": "7", "score": "0.8", "is_noisy": "0"}
    assert read_csv(out / "exclude.csv") == [{"index": str(i)} for i in BY_P_D[:4]]
    assert read_csv(out / "relabel.csv") == [{"index": "7", "label": "5"}, {"index": "5", "label": "7"},
                                             {"index": "12", "label": "7"}, {"index": "30", "label": "1"}]
    assert summary(out)["selection"] == {"threshold": 0.5}
    assert summary(out)["score"] == "suspicion/p_d"


def test_rank_is_stable_whatever_the_row_order(tmp_path):
    shuffled = [ROWS[i] for i in np.random.default_rng(0).permutation(len(ROWS))]
    run = make_run(tmp_path / "run", rows=shuffled)
    assert main([str(run), "--top", "8"]) == 0
    assert [int(r["index"]) for r in read_csv(run / "issues" / "label_issues.csv")] == BY_P_D


def test_top_k_and_threshold_selection(tmp_path):
    run = make_run(tmp_path / "run")
    assert main([str(run), "--top", "2", "--out", str(tmp_path / "top")]) == 0
    assert [int(r["index"]) for r in read_csv(tmp_path / "top" / "label_issues.csv")] == [7, 5]
    assert summary(tmp_path / "top")["selection"] == {"top": 2}
    assert main([str(run), "--top", "100", "--out", str(tmp_path / "all")]) == 0  # more than there are
    assert len(read_csv(tmp_path / "all" / "label_issues.csv")) == len(ROWS)
    assert main([str(run), "--threshold", "0.3", "--out", str(tmp_path / "t")]) == 0  # at least T
    assert [int(r["index"]) for r in read_csv(tmp_path / "t" / "label_issues.csv")] == BY_P_D[:5]
    assert main([str(run), "--threshold", "0.95", "--out", str(tmp_path / "none")]) == 0
    assert read_csv(tmp_path / "none" / "label_issues.csv") == []
    assert summary(tmp_path / "none")["precision_at_k"] is None
    with pytest.raises(SystemExit):
        main([str(run), "--top", "2", "--threshold", "0.5"])


def test_other_score_and_split(tmp_path):
    run = make_run(tmp_path / "run")
    assert main([str(run), "--score", "one_minus_p_given", "--top", "3", "--out", str(tmp_path / "a")]) == 0
    assert [int(r["index"]) for r in read_csv(tmp_path / "a" / "label_issues.csv")] == [7, 12, 5]
    assert summary(tmp_path / "a")["score"] == "suspicion/one_minus_p_given"
    assert main([str(run), "--split", "val", "--top", "5", "--out", str(tmp_path / "v")]) == 0
    assert [int(r["index"]) for r in read_csv(tmp_path / "v" / "label_issues.csv")] == [12, 9]
    assert main([str(run), "--split", "train", "--out", str(tmp_path / "t")]) == 0
    s = summary(tmp_path / "t")
    assert (s["samples"], s["mislabeled"], s["suspects"], s["precision_at_k"]) == (6, 1, 3, 1 / 3)
    assert main([str(run), "--score", "nope"]) == 1


def test_detection_metrics(tmp_path):
    run = make_run(tmp_path / "run")
    assert main([str(run)]) == 0
    s = summary(run / "issues")
    assert s["clean_labels_known"] is True
    assert (s["samples"], s["suspects"], s["mislabeled"], s["suspects_mislabeled"]) == (8, 4, 3, 2)
    assert s["noise_rate"] == pytest.approx(3 / 8)
    assert s["precision_at_k"] == pytest.approx(2 / 4)
    assert s["recall_at_k"] == pytest.approx(2 / 3)
    # k = 3: 7 above the 3rd score (0.8), 2 more of the 3 tied at 0.8, of which 1 is mislabeled
    assert s["precision_at_noise_rate"] == pytest.approx((1 + 2 * (1 / 3)) / 3)
    is_noisy = [r[0] in NOISY for r in ROWS]
    assert s["auroc"]["suspicion/p_d"] == pytest.approx(12 / 15)  # by hand: ties count 1/2
    assert s["auroc"]["suspicion/p_d"] == pytest.approx(roc_auc_score(is_noisy, [r[6] for r in ROWS]))
    assert s["auroc"]["suspicion/one_minus_p_given"] == pytest.approx(
        roc_auc_score(is_noisy, [1 - r[5] for r in ROWS]))
    assert main([str(run), "--top", "2", "--out", str(tmp_path / "top")]) == 0
    top = summary(tmp_path / "top")
    assert (top["precision_at_k"], top["recall_at_k"]) == (pytest.approx(1 / 2), pytest.approx(1 / 3))


def test_per_class_counts(tmp_path):
    run = make_run(tmp_path / "run")
    assert main([str(run)]) == 0
    rows = read_csv(run / "issues" / "per_class.csv")
    assert rows == [
        {"given_label": "1", "given_class": "1", "samples": "3", "suspects": "3", "suspects_mislabeled": "1",
         "mislabeled": "1"},
        {"given_label": "3", "given_class": "3", "samples": "4", "suspects": "1", "suspects_mislabeled": "1",
         "mislabeled": "2"},
        {"given_label": "5", "given_class": "5", "samples": "1", "suspects": "0", "suspects_mislabeled": "0",
         "mislabeled": "0"},
    ]


def test_unknown_clean_labels(tmp_path, capsys):
    run = make_run(tmp_path / "run", clean_known=False)
    assert main([str(run), "--top", "3"]) == 0
    out = run / "issues"
    assert [r["is_noisy"] for r in read_csv(out / "label_issues.csv")] == ["", "", ""]
    s = summary(out)
    assert s["clean_labels_known"] is False and "auroc" not in s and "precision_at_k" not in s
    assert list(read_csv(out / "per_class.csv")[0]) == ["given_label", "given_class", "samples", "suspects"]
    assert "AUROC" not in capsys.readouterr().out


def test_missing_file_and_columns(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "samples" / "train.csv") in err and "eval.py ckpt_path=" in err
    header = [c for c in HEADER if c not in ("p_given", "suspicion/p_d", "suspicion/one_minus_p_given")]
    run = make_run(tmp_path / "run", header=header)
    assert main([str(run)]) == 1
    err = capsys.readouterr().err
    assert "missing column(s) p_given, suspicion/<name>" in err and "train.csv" in err
    assert not (run / "issues").exists()


def test_bad_cell_is_named(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    path = run / "samples" / "train.csv"
    path.write_text(path.read_text().replace("0.99", "oops"))
    assert main([str(run)]) == 1
    assert "line 9, column p_given: 'oops'" in capsys.readouterr().err


def test_score_outside_unit_interval_needs_a_selection(tmp_path, capsys):
    rows = [(*r[:6], r[6] * 10) for r in ROWS]
    run = make_run(tmp_path / "run", rows=rows)
    assert main([str(run)]) == 1
    assert "--top K or --threshold T" in capsys.readouterr().err
    assert main([str(run), "--threshold", "5"]) == 0
    assert [int(r["index"]) for r in read_csv(run / "issues" / "label_issues.csv")] == BY_P_D[:4]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_show_draws_the_top_suspects_of_digits(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    drawn = {}
    real = issues.contact_sheet

    def spy(images, titles):
        fig = real(images, titles)
        drawn.update(images=images, titles=titles, axes=len(fig.axes))
        return fig

    monkeypatch.setattr(issues, "contact_sheet", spy)
    assert main([str(run), "--show", "3"]) == 0
    assert drawn["axes"] == 3
    assert drawn["titles"] == ["#1 7 3→5", "#2 5 1→7", "#3 12 1→7"]
    digits = load_digits().train_images
    for image, index in zip(drawn["images"], BY_P_D[:3], strict=True):
        np.testing.assert_array_equal(image, digits[index, 0])
    tile = issues.TILE_INCHES * issues.TILE_DPI
    assert png_size(run / "issues" / "top_suspects.png") == (round(3 * tile), round(tile))

    # more than fit in a row, fewer suspects than asked for: one tile per suspect, rows of 8
    assert main([str(run), "--top", "8", "--show", "20", "--out", str(tmp_path / "many")]) == 0
    assert drawn["axes"] == 8
    assert png_size(tmp_path / "many" / "top_suspects.png") == (round(8 * tile), round(tile))
    assert main([str(run), "--top", "0", "--show", "2", "--out", str(tmp_path / "none")]) == 0
    assert not (tmp_path / "none" / "top_suspects.png").exists()


def test_show_without_data_names_root_and_option(tmp_path, capsys):
    config = {"data": {"name": "mnist", "source": {"_target_": "hydra.utils.get_method",
                                                   "path": "noisylab.data.sources.load_mnist"},
                       "root": str(tmp_path / "no_data"), "source_kwargs": {}}}
    run = make_run(tmp_path / "run", config=config)
    assert main([str(run), "--show", "2"]) == 1
    err = capsys.readouterr().err
    assert f"data.root={tmp_path / 'no_data'}" in err and "--data-root" in err
    assert main([str(run), "--show", "2", "--data-root", str(tmp_path / "elsewhere")]) == 1
    assert f"data.root={tmp_path / 'elsewhere'}" in capsys.readouterr().err


def test_data_root_resolves_hydra_interpolations(tmp_path, monkeypatch):
    """A run's config.yaml keeps `${hydra:runtime.cwd}` (the default data.root); hydra.yaml beside it says
    what it was."""
    monkeypatch.delenv("NOISYLAB_DATA_ROOT", raising=False)
    config = {"data": {**DIGITS_CONFIG["data"], "root": "${paths.data_dir}"},
              "paths": {"data_dir": "${oc.env:NOISYLAB_DATA_ROOT,${hydra:runtime.cwd}/data}"}}
    run = make_run(tmp_path / "run", config=config)
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": "/somewhere"}}}))
    cfg = issues.load_run_config(run)
    assert issues.data_root(cfg, None) == Path("/somewhere/data")
    assert issues.data_root(cfg, tmp_path) == tmp_path
    monkeypatch.setenv("NOISYLAB_DATA_ROOT", str(tmp_path / "env"))
    assert issues.data_root(cfg, None) == tmp_path / "env"


def test_precision_at_the_noise_rate_is_the_runs_own_metric() -> None:
    """issues.py keeps a numpy copy (the CLI does not import torch); it must equal the metric runs report."""
    import torch

    from noisylab.issues import precision_at_noise_rate as cli_version
    from noisylab.metrics.noise_detection import precision_at_noise_rate as run_version

    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = np.round(rng.random(200), 1)  # many ties at the k-th score
        noisy = rng.random(200) < 0.3
        want = run_version(torch.from_numpy(scores), torch.from_numpy(noisy))
        assert cli_version(scores, noisy) == pytest.approx(want, abs=1e-12)


def test_a_score_left_empty_on_a_split_ranks_those_samples_last(tmp_path, capsys):
    """DivideMix's GMM scores only the training split: its column is empty on validation rows, as the run
    writes it. Those samples rank last (with a note), and --split train ranks the scored ones alone."""
    run = make_run(tmp_path / "run")
    path = run / "samples" / "train.csv"
    rows = read_csv(path)
    for row in rows:
        row["suspicion/p_d"] = "" if row["split"] == "val" else row["suspicion/p_d"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    assert main([str(run), "--top", "8"]) == 0
    assert "2 sample(s) without a p_d score rank last" in capsys.readouterr().err
    ranked = [int(r["index"]) for r in read_csv(run / "issues" / "label_issues.csv")]
    assert ranked == [i for i in BY_P_D if i not in (12, 9)] + [9, 12]  # the unscored last, by index
    assert main([str(run), "--split", "train", "--out", str(tmp_path / "train")]) == 0
    s = summary(tmp_path / "train")
    train = [r for r in ROWS if r[1] == "train"]
    assert s["samples"] == len(train)
    expected = roc_auc_score([r[2] != r[3] for r in train], [r[6] for r in train])
    assert s["auroc"]["suspicion/p_d"] == pytest.approx(expected)
