"""What a run prints and logs: one line per epoch without a terminal, the same lines and the results table in
train.log, an 80-column table with the per-set OOD rows, and none of Lightning's noise."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from noisylab.epoch_log import EpochLog, NoProgressBar, RichBar, epoch_line, progress_bar
from noisylab.evaluate import _data_root
from noisylab.quiet import ModelSummary, note_test_deduplication, quiet_lightning, summary_text
from noisylab.report_table import WIDTH, metrics_text
from tests.conftest import CONF, run_eval, run_train

EPOCH_LINE = re.compile(r"^epoch (\d+)/1  train/loss \d+\.\d{4}  val/acc \d\.\d{4}  lr [0-9.e-]+  \d+\.\d s$")
NOISE = ("v_num", "GPU available", "TPU available", "💡", "litlogger", "FLOPs", "LeafSpec", "is deprecated",
         "DistributedSampler")


def test_epoch_line_shows_what_the_run_has() -> None:
    metrics = {"train/loss_epoch": 1.23456, "train/loss_step": 9.0, "val/acc": 0.5, "val/loss": 2.0}
    assert epoch_line(3, 30, metrics, 0.05, 2.04) == "epoch 3/29  train/loss 1.2346  val/acc 0.5000  lr 0.05  2.0 s"
    simclr = epoch_line(0, None, {"train/loss_epoch": 4.0, "val/loss": 3.5}, None, 10.0)
    assert simclr == "epoch 0  train/loss 4.0000  val/loss 3.5000  10.0 s"


def test_progress_bar_is_rich_on_a_terminal_and_none_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert type(progress_bar()) is RichBar
    assert type(progress_bar("none")) is NoProgressBar
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert type(progress_bar()) is NoProgressBar
    assert type(progress_bar("rich")) is RichBar
    with pytest.raises(ValueError, match=r"callbacks\.progress_bar\.style='tqdm': must be one of auto, rich, none"):
        progress_bar("tqdm")


def test_epoch_lines_are_printed_only_without_a_visible_bar(tmp_path: Path) -> None:
    for bar, echo in ((RichBar(), False), (NoProgressBar(), True), (None, True)):
        log = EpochLog(tmp_path / "train.log")
        log.setup(SimpleNamespace(progress_bar_callback=bar), None, "fit")
        assert log.echo is echo, bar
    forced = EpochLog(None, echo=False)
    forced.setup(SimpleNamespace(progress_bar_callback=None), None, "fit")
    assert forced.echo is False


def test_the_rich_bar_drops_v_num(tmp_path: Path) -> None:
    import lightning as L

    trainer = L.Trainer(logger=CSVLogger(tmp_path), callbacks=[RichBar()], enable_checkpointing=False)
    assert "v_num" in RichProgressBar().get_metrics(trainer, None)  # what Lightning's own bar shows
    assert "v_num" not in trainer.progress_bar_callback.get_metrics(trainer, None)


def test_model_summary_drops_the_flops_column_only_when_nothing_was_counted() -> None:
    from lightning.pytorch import LightningModule
    from lightning.pytorch.utilities.model_summary import summarize
    from torch import nn

    class Tiny(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3, 2)

    summary = summarize(Tiny(), max_depth=1)
    data = summary._get_summary_data()
    assert "FLOPs" in [name for name, _ in data]  # the column Lightning adds, all zeros without example inputs
    args = (data, summary.total_parameters, summary.trainable_parameters, summary.model_size,
            summary.total_training_modes)
    plain = summary_text(*args, total_flops=0)
    assert "FLOPs" not in plain and "layer" in plain and "Linear" in plain and "8 trainable parameters" in plain
    assert "FLOPs" in summary_text(*args, total_flops=1200)
    ModelSummary(enabled=False).on_fit_start(None, None)  # trainer.enable_model_summary=false: nothing to do


def test_quiet_lightning_drops_the_noise_and_keeps_the_rest() -> None:
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_lightning()
            quiet_lightning()  # a multirun calls it once per job
            rank_zero_info("GPU available: False, used: False")
            rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
            rank_zero_info("Restoring states from the checkpoint path at best.ckpt")
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
            warnings.warn("Using `DistributedSampler` with the dataloaders. During `trainer.test()`, it is ...",
                          stacklevel=1)
            warnings.warn("a warning nobody judged yet", stacklevel=1)
    finally:
        rank_zero.removeHandler(handler)
    assert records == ["Restoring states from the checkpoint path at best.ckpt"]
    assert [str(w.message) for w in caught] == ["a warning nobody judged yet"]


def test_a_multi_process_test_says_once_that_samples_are_deduplicated(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="noisylab.quiet"):
        note_test_deduplication(1)
        assert not caplog.records
        note_test_deduplication(2)
    assert len(caplog.records) == 1 and "de-duplicated by sample index" in caplog.records[0].getMessage()


def _metrics() -> dict:
    metrics = {"test/acc": 0.8, "default_score": "msp", "best_epoch": 4,
               "test/ood_near/msp/auroc": 0.7, "test/ood_far/msp/auroc": 0.9, "test/selective/msp/aurc": 0.1}
    for name, value in (("cifar100", 0.7), ("tinyimagenet", 0.71), ("svhn", 0.92), ("textures", 0.88)):
        metrics[f"test/ood/{name}/msp/auroc"] = value
        metrics[f"test/ood/{name}/energy/auroc"] = value - 0.1
        metrics[f"test/ood/{name}/msp/fpr95_id_positive"] = 0.5
    return metrics


def test_the_results_table_fits_80_columns_and_shows_every_ood_set() -> None:
    location = "/very/long/path/" + "nested/" * 12 + "outputs/2026-01-01/12-00-00"
    text = metrics_text(_metrics(), "noisylab results", location)
    lines = text.splitlines()
    assert lines[:2] == ["noisylab results", location]  # the path whole, on its own line
    assert all(len(line) <= WIDTH for line in lines[2:]), text
    rows = [line.split()[1] for line in lines if line.startswith("│")]
    for name in ("cifar100", "tinyimagenet", "svhn", "textures"):
        assert f"test/ood/{name}/msp/auroc" in rows  # each set, for the default score only
    assert not [row for row in rows if "/energy/" in row or "/fpr95" in row and row.startswith("test/ood/")]
    assert "\x1b[" not in text  # plain text for train.log


def test_eval_takes_data_root_as_train_spells_it() -> None:
    def config(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("evaluate", overrides=["ckpt_path=x.ckpt", *overrides])

    assert _data_root(config()) is None
    assert _data_root(config("data.root=/datasets")) == "/datasets"
    assert _data_root(config("data_root=/datasets")) == "/datasets"
    assert _data_root(config("data.root=/datasets", "data_root=/datasets")) == "/datasets"
    with pytest.raises(ValueError, match=r"data\.root=/a and data_root=/b disagree"):
        _data_root(config("data.root=/a", "data_root=/b"))


@pytest.fixture(scope="module")
def run_without_a_terminal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2-epoch default run whose stdout is a pipe, as under SLURM, nohup or CI."""
    tmp_path = tmp_path_factory.mktemp("output")
    run = tmp_path / "run"
    proc = run_train([f"hydra.run.dir={run}", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
                      "trainer.log_every_n_steps=1", "eval.plots=false"], cwd=tmp_path, fresh=True)
    return run, proc


@pytest.mark.slow
def test_without_a_terminal_each_epoch_is_one_line_in_stdout_and_train_log(run_without_a_terminal) -> None:
    run, proc = run_without_a_terminal
    printed = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [EPOCH_LINE.match(line).group(1) for line in printed] == ["0", "1"], proc.stdout
    log = (run / "train.log").read_text()
    assert [line for line in log.splitlines() if line.startswith("epoch ")] == printed
    table = log[log.index("noisylab results"):]
    assert table.splitlines()[1] == str(run) and "test/acc" in table
    assert "test/ood/holdout/one_minus_p_d/auroc" in table and "test/ood/holdout/one_minus_p_d/auroc" in proc.stdout
    assert "━━" not in proc.stdout.split("noisylab results")[0]  # no progress bar before the table


@pytest.mark.slow
def test_lightning_noise_is_gone(run_without_a_terminal) -> None:
    _, proc = run_without_a_terminal
    output = proc.stdout + proc.stderr
    assert [noise for noise in NOISE if noise in output] == [], output[-3000:]
    assert "| Name" in proc.stdout  # the model summary stays, without its FLOPs column
    assert not [line for line in proc.stderr.splitlines() if line.startswith("INFO: ")]  # no message twice


@pytest.mark.slow
def test_eval_data_root_is_where_it_looks(run_without_a_terminal, tmp_path: Path) -> None:
    run, _ = run_without_a_terminal
    proc = run_eval([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"data.root={tmp_path / 'nothing'}",
                     "ood=[svhn]"], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert f"looked in {tmp_path / 'nothing'}" in proc.stderr and "data.root=" in proc.stderr
    assert "Traceback" not in proc.stderr
