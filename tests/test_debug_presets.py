"""lightning-hydra-template's conventions: debug= presets, callbacks=early_stopping, the config tree, run tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from noisylab.utils.config_tree import config_tree, print_config_tree, save_config_tree
from noisylab.utils.tags import run_tags, tagged_logger_configs
from tests.conftest import CONF, compose_config

PRESETS = ("default", "fdr", "overfit", "limit", "profiler")
# Fewer files and no progress bar: the presets' own settings are what is tested.
PLAIN = ["callbacks.progress_bar=null", "trainer.enable_model_summary=false", "eval.plots=false"]


class BatchRecorder(L.Callback):
    """Records the sample indices of every training batch and counts validation/test batches (per loader)."""

    last: ClassVar[BatchRecorder | None] = None

    def __init__(self) -> None:
        self.train: dict[int, list[list[int]]] = {}
        self.val: dict[int, int] = {}
        self.test: dict[int, int] = {}
        BatchRecorder.last = self

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        self.train.setdefault(trainer.current_epoch, []).append(sorted(batch[2].tolist()))  # batch[2]: indices

    def on_validation_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self.val[trainer.current_epoch] = self.val.get(trainer.current_epoch, 0) + 1

    def on_test_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self.test[dataloader_idx] = self.test.get(dataloader_idx, 0) + 1


def _run(tmp_path: Path, overrides: list[str]) -> tuple[dict, BatchRecorder]:
    from noisylab.train import run

    recorder = "+callbacks.recorder._target_=tests.test_debug_presets.BatchRecorder"
    metrics = run(compose_config(tmp_path, [*PLAIN, recorder, *overrides], quick=False))
    assert BatchRecorder.last is not None
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    return metrics, BatchRecorder.last


def _epoch_losses(run_dir: Path) -> list[float]:
    import csv

    rows = list(csv.DictReader(next(run_dir.glob("csv/**/metrics.csv")).open()))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


# ----------------------------------------------------------------------------------------- composing the presets
@pytest.mark.parametrize("preset", PRESETS)
def test_debug_runs_go_to_their_own_folder_with_the_config_printed(preset: str) -> None:
    """Not outputs/ or multirun/: `noisylab-report outputs/` must never average a debug run into results."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={preset}"], return_hydra_config=True)
        plain = compose("train", overrides=[], return_hydra_config=True)
    assert str(cfg.hydra.run.dir).startswith("debug_runs/")
    assert str(cfg.hydra.sweep.dir).startswith("debug_runs/multirun/")
    assert cfg.print_config is True and list(cfg.tags) == ["debug"]
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1 and cfg.trainer.detect_anomaly
    assert (plain.print_config, list(plain.tags), plain.hydra.run.dir.startswith("outputs/")) == (False, [], True)


def test_debug_runs_log_to_csv_only_unless_the_command_line_says_otherwise(tmp_path: Path) -> None:
    """An experiment config that picks W&B does not send debug runs there; logger= on the command line wins."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "tracked.yaml").write_text("# @package _global_\ndefaults:\n"
                                                          "  - override /logger: wandb\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def loggers(*overrides: str) -> list[str]:
            return list(compose("train", overrides=[search, "experiment=tracked", *overrides]).logger)

        assert loggers() == ["wandb"]
        assert loggers("debug=fdr") == ["csv"]
        assert loggers("debug=fdr", "logger=mlflow") == ["mlflow"]


def test_early_stopping_adds_to_the_default_callbacks_and_watches_validation_accuracy(tmp_path: Path) -> None:
    default = compose_config(tmp_path, [], quick=False).callbacks
    cfg = compose_config(tmp_path, ["callbacks=early_stopping"], quick=False).callbacks
    assert list(cfg) == [*default, "early_stopping"]
    assert cfg.early_stopping.monitor == "val/acc" and cfg.early_stopping.mode == "max"


# ----------------------------------------------------------------------------------------- the config tree
def test_the_config_tree_shows_groups_in_run_order_with_values_resolved(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = compose_config(tmp_path, ["print_config=true", "seed=7"], quick=False)
    branches = [str(node.label) for node in config_tree(cfg).children]
    assert branches[:4] == ["data", "noise", "ood", "model"] and "seed" in branches and "tags" in branches
    print_config_tree(cfg)
    printed = capsys.readouterr().out
    assert "split_seed: 7" in printed  # ${seed}, resolved
    path = save_config_tree(cfg, tmp_path)
    assert path == tmp_path / "config_tree.log"
    text = path.read_text()
    assert "split_seed: 7" in text and "\x1b[" not in text  # plain text, no colour codes
    assert f"dirpath: {tmp_path}/checkpoints" in text


def test_no_tree_is_printed_or_written_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = compose_config(tmp_path, [], quick=False)
    print_config_tree(cfg)
    assert save_config_tree(cfg, tmp_path) is None
    assert capsys.readouterr().out == "" and not (tmp_path / "config_tree.log").exists()


def test_a_value_that_cannot_be_resolved_is_shown_as_written(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"logger": {"wandb": {"name": "${hydra:job.override_dirname}"}}, "seed": "???"})
    out = tmp_path / "tree"
    out.mkdir()
    save_config_tree(OmegaConf.merge(cfg, {"print_config": True}), out)
    text = (out / "config_tree.log").read_text()
    assert "${hydra:job.override_dirname}" in text and "???" in text


# ----------------------------------------------------------------------------------------- tags
def test_tags_are_a_list_of_distinct_words() -> None:
    assert run_tags(OmegaConf.create({"t": ["baseline", "lr_sweep", "baseline"]}).t) == ["baseline", "lr_sweep"]
    assert run_tags("baseline") == ["baseline"] and run_tags([2024]) == ["2024"] and run_tags(None) == []
    for bad, problem in ((OmegaConf.create({"a": 1}), "not a list of tags"), ([True], "true is not a tag"),
                         ([["a"]], "is not a tag"), ([" "], "is empty"), (["x" * 65], "65 characters")):
        with pytest.raises(ValueError, match=problem) as error:
            run_tags(bad)
        assert "tags=" in str(error.value) and "tags=[baseline,lr_sweep]" in str(error.value)


def test_tags_go_to_the_loggers_that_take_tags() -> None:
    logger = OmegaConf.create({
        "csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "x"},
        "wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "tags": ["own"],
                  "save_dir": "${..csv.save_dir}"},
        "mlflow": {"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tags": {"output_dir": "x"}},
        "off": None,
    })
    tagged = tagged_logger_configs(logger, ["baseline"])
    assert tagged["csv"] is logger.csv and tagged["off"] is None
    assert list(tagged["wandb"].tags) == ["own", "baseline"] and tagged["wandb"].save_dir == "x"
    assert dict(tagged["mlflow"].tags) == {"output_dir": "x", "baseline": "true"}
    assert list(logger.wandb.tags) == ["own"]  # the run's own config is left as it was
    assert tagged_logger_configs(logger, []) == dict(logger)


# ----------------------------------------------------------------------------------------- the presets, run
@pytest.mark.slow
def test_fast_dev_run_runs_one_batch_of_each_and_still_writes_its_results(tmp_path: Path) -> None:
    metrics, seen = _run(tmp_path, ["debug=fdr"])
    assert [len(batches) for batches in seen.train.values()] == [1]
    assert list(seen.val.values()) == [1] and set(seen.test.values()) == {1}
    # Lightning turns checkpointing and loggers off under fast_dev_run: the test used the weights in memory.
    assert metrics["tested_checkpoint"] is None and "test/acc" in metrics
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()


@pytest.mark.slow
def test_overfit_trains_on_the_same_few_batches_every_epoch(tmp_path: Path) -> None:
    _, seen = _run(tmp_path, ["debug=overfit", "trainer.max_epochs=3"])
    epochs = list(seen.train.values())
    assert len(epochs) == 3 and all(len(batches) == 3 for batches in epochs)
    assert epochs[0] == epochs[1] == epochs[2]  # the same samples, not a reshuffled draw
    losses = _epoch_losses(tmp_path)
    assert losses[0] > losses[1] > losses[2]


@pytest.mark.slow
def test_limit_runs_short_epochs_of_a_few_batches(tmp_path: Path) -> None:
    metrics, seen = _run(tmp_path, ["debug=limit"])
    assert [len(batches) for batches in seen.train.values()] == [5, 5, 5]
    assert all(count <= 2 for count in seen.val.values()) and all(count <= 2 for count in seen.test.values())
    assert metrics["epochs"] == 3 and (tmp_path / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.slow
def test_the_profiler_writes_its_timings_into_the_run_folder(tmp_path: Path) -> None:
    _run(tmp_path, ["debug=profiler", "++trainer.limit_train_batches=3", "++trainer.limit_val_batches=1",
                    "++trainer.limit_test_batches=1"])
    fit = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_epoch" in fit and "run_training_batch" in fit
    assert (tmp_path / "test-profile.txt").is_file()


@pytest.mark.slow
def test_early_stopping_ends_training_when_val_acc_stops_improving(tmp_path: Path) -> None:
    # min_delta=1: no epoch can improve val/acc by a whole point, so training stops after `patience` epochs.
    metrics, seen = _run(tmp_path, ["callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                                    "callbacks.early_stopping.min_delta=1.0", "trainer.max_epochs=10",
                                    "++trainer.limit_train_batches=2"])
    assert len(seen.train) == 2 and metrics["epochs"] == 2
    assert metrics["best_epoch"] == 0 and metrics["tested_checkpoint"].endswith("best.ckpt")
