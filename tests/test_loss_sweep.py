"""Every loss config trains: one multirun over all of them on digits, as a user would sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF, read_metrics, run_train

pytestmark = pytest.mark.slow


def test_one_multirun_over_every_loss_config(tmp_path: Path) -> None:
    losses = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))
    assert {"ce", "drainage", "dismax", "isomax_plus", "drainage_open", "tgce"} <= set(losses)
    sweep = tmp_path / "sweep"
    run_train(["-m", f"loss={','.join(losses)}", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1",
               "+trainer.limit_train_batches=3", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
               "eval.plots=false"], cwd=tmp_path, timeout=900)
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    assert len(jobs) == len(losses)
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        metrics = read_metrics(job)
        assert math.isfinite(metrics["test/acc"]), overrides
        assert math.isfinite(metrics[f"test/ood_near/{metrics['default_score']}/auroc"]), overrides


def test_truncated_gce_refreshes_its_weights_in_a_real_run(tmp_path: Path) -> None:
    """The weight refresh runs a pass over the training set mid-training; the weights are checkpointed."""
    import torch

    run = tmp_path / "run"
    proc = run_train(["loss=tgce", "loss.criterion.start_epoch=1", "loss.criterion.update_every=1",
                      "trainer.max_epochs=3", f"hydra.run.dir={run}", "callbacks.progress_bar=null",
                      "trainer.enable_model_summary=false"], cwd=tmp_path)
    assert "truncated GCE: epoch 1 keeps" in proc.stdout and "truncated GCE: epoch 2 keeps" in proc.stdout
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["criterion.weights"]
    assert weights.numel() > 1000 and set(weights.unique().tolist()) <= {0.0, 1.0}
