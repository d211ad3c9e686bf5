"""Evaluate a saved checkpoint with the data, noise and model of the run that made it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

from noisylab.epoch_log import progress_bar
from noisylab.quiet import note_test_deduplication
from noisylab.report_table import print_metrics
from noisylab.run_folder import record_noisy_labels
from noisylab.train import build_datamodule, build_method
from noisylab.utils.allocator import retain_freed_memory
from noisylab.utils.atomic import atomic_write_bytes, atomic_write_text
from noisylab.utils.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


def run_config_of(checkpoint_path: Path) -> DictConfig:
    """The resolved config stored in a noisylab checkpoint."""
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"ckpt_path={checkpoint_path}: no such checkpoint")
    config = read_checkpoint(checkpoint_path).get("hyper_parameters", {}).get("run_config")
    if config is None:
        raise ValueError(f"{checkpoint_path} holds no run config; it was not written by noisylab's train.py")
    return OmegaConf.create(config)


def _data_root(cfg: DictConfig) -> str | None:
    """Where the datasets are now: data.root=, as train.py takes it, or the older spelling data_root=; None keeps
    the training run's own data.root."""
    roots = {str(root) for root in (cfg.data.root, cfg.data_root) if root}
    if len(roots) > 1:
        raise ValueError(f"data.root={cfg.data.root} and data_root={cfg.data_root} disagree: give one of them "
                         "(data.root=, as train.py takes it)")
    return roots.pop() if roots else None


def _keep_previous(path: Path) -> None:
    """Results are never overwritten: an earlier eval.json is copied aside, named by its time (a copy, so
    eval.json exists at every moment until the new one atomically replaces it)."""
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        atomic_write_bytes(path.with_name(f"{path.stem}.{stamp}{path.suffix}"), path.read_bytes())


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test the checkpoint on its test set, its training run's OOD sets and `cfg.ood`; write eval.json."""
    retain_freed_memory(cfg.get("retain_freed_memory", True))
    checkpoint = Path(to_absolute_path(str(cfg.ckpt_path)))
    data_root = _data_root(cfg)  # checked before the checkpoint is read
    run_cfg = run_config_of(checkpoint)
    run_dir = checkpoint.parent.parent
    with open_dict(run_cfg):
        if data_root is not None:
            run_cfg.data.root = str(Path(to_absolute_path(data_root)))
        run_cfg.ood = OmegaConf.merge(run_cfg.get("ood") or {}, cfg.ood or {})
        run_cfg.eval = cfg.eval

    datamodule = build_datamodule(run_cfg)
    saved_labels = run_dir / "noisy_labels.npz"
    if saved_labels.exists():
        record_noisy_labels(datamodule.labels, saved_labels)  # checks they are the run's labels
    method = build_method(run_cfg, datamodule, load_init=False)
    method.evaluator.plot_dir = run_dir / "eval_plots"
    method.evaluator.samples_dir = run_dir / "eval_samples"  # beside, not over, the training run's
    trainer = L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=False,
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[progress_bar()])
    note_test_deduplication(trainer.world_size)
    metrics: dict[str, Any] = {}
    for per_loader in trainer.test(method, datamodule=datamodule, ckpt_path=str(checkpoint), verbose=False):
        metrics.update(per_loader)
    metrics["checkpoint"] = str(checkpoint)
    if method.evaluator.default_score is not None:
        metrics["default_score"] = method.evaluator.default_score
    metrics["ood_sets"] = [name for name in datamodule.test_set_names if name.startswith("ood/")]
    if trainer.is_global_zero:
        out = run_dir / "eval.json"
        _keep_previous(out)
        atomic_write_text(out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        print_metrics(metrics, title="noisylab evaluation", location=checkpoint)
        log.info("wrote %s", out)
    return metrics
