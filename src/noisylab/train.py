"""Build data, model and trainer from a Hydra config, train, test and write the run's results."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate, to_absolute_path
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from noisylab.config_checks import check_config
from noisylab.data import NoisyLabelDataModule
from noisylab.models.factory import NetworkFactory
from noisylab.report_table import print_metrics
from noisylab.run_folder import (
    ResumeMismatchError,
    RunFolderBusyError,
    check_resume_matches,
    checkpoint_to_resume,
    clear_failure,
    finished_metrics,
    record_noisy_labels,
    resume_config,
    run_folder_lock,
    saved_run_config,
)
from noisylab.utils.allocator import retain_freed_memory
from noisylab.utils.atomic import atomic_write_text, remove_torn_temporaries
from noisylab.utils.checkpoints import AtomicCheckpointIO, check_mid_epoch_support
from noisylab.utils.config_tree import print_config_tree, save_config_tree
from noisylab.utils.ddp import release_distributed
from noisylab.utils.hydra_callbacks import restore_hydra_record
from noisylab.utils.loggers import check_logger_packages, finish_loggers
from noisylab.utils.tags import run_tags, tagged_logger_configs

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> NoisyLabelDataModule:
    """The datamodule with its noise model and OOD sets, built (errors surface here, before training)."""
    ood = {name: instantiate(spec) for name, spec in (cfg.get("ood") or {}).items()}
    datamodule = instantiate(cfg.data, noise=instantiate(cfg.noise), ood=ood, _recursive_=True)
    datamodule.build()
    return datamodule


def network_factory(cfg: DictConfig, datamodule: NoisyLabelDataModule, load_init: bool = True) -> NetworkFactory:
    """Builds fresh backbone + head pairs for the data (methods with two networks call it twice, so each
    network gets its own random initialisation). `load_init=False` ignores `model.init_from` (weights
    come from a checkpoint anyway, e.g. in eval.py)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    init_from = model_cfg.pop("init_from", None)
    path = Path(to_absolute_path(str(init_from))) if init_from and load_init else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"model.init_from={init_from}: no such checkpoint ({path})")
    return NetworkFactory(model=model_cfg, head=OmegaConf.to_container(cfg.loss.head, resolve=True),
                          image_shape=datamodule.image_shape, num_classes=datamodule.num_classes,
                          init_from=str(path) if path else None)


def _class_name(spec: Any, suffix: str = "") -> str | None:
    target = spec.get("_target_") if spec is not None else None
    return None if target is None else target.rsplit(".", 1)[-1].removesuffix(suffix)


def run_setting(cfg: DictConfig) -> dict[str, Any]:
    """What a figure says it shows: dataset, noise model and rate, method and loss (None where unset)."""
    noise = cfg.get("noise")
    return {
        "data": cfg.data.get("name"),
        "noise": (_class_name(noise, "Noise") or "").lower() or None,
        "rate": noise.get("rate") if noise is not None else None,
        "method": (_class_name(cfg.get("method"), "Method") or "").lower() or None,
        "loss": _class_name(cfg.loss.get("criterion"), "Loss"),
    }


def build_method(cfg: DictConfig, datamodule: NoisyLabelDataModule, load_init: bool = True) -> L.LightningModule:
    """The configured method with its network(s) sized from the data, head from the loss config."""
    # Not recursive: run_config holds _target_ keys that must stay plain data in the checkpoint.
    evaluator = instantiate(cfg.eval)
    evaluator.check_data(datamodule)
    evaluator.setting = run_setting(cfg)
    return instantiate(
        cfg.method,
        _recursive_=False,
        _convert_="all",
        network=network_factory(cfg, datamodule, load_init),
        criterion=instantiate(cfg.loss.criterion),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.sched),
        evaluator=evaluator,
        objective=instantiate(cfg.loss.get("objective")),
        l1=cfg.loss.get("l1", 0.0),
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """The Trainer, with checkpoints saved atomically. Built before any file is written: a trainer setting
    Lightning refuses (no GPU for trainer=gpu, an unknown precision) stops the run with nothing changed."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger_cfg = tagged_logger_configs(cfg.get("logger"), run_tags(cfg.get("tags")))  # W&B and MLflow take tags
    loggers = [instantiate(c) for c in (logger_cfg or {}).values() if c is not None]
    plugins = [AtomicCheckpointIO(), *(instantiate(cfg.trainer.get("plugins")) or [])]
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    except Exception as exc:  # Lightning's MisconfigurationException and friends, wrapped by Hydra
        cause = exc.__cause__ or exc
        raise ValueError(f"the trainer config (trainer.*, e.g. trainer=cpu or trainer.accelerator, "
                         f"trainer.precision, trainer.devices) is not usable here: {cause}") from exc


def _best_checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps best.ckpt (the first ModelCheckpoint with a monitored metric)."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)


def _test_checkpoint(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """best (by val/acc, the default), last (the last epoch's last.ckpt), or None for the weights in memory."""
    best = _best_checkpoint_callback(trainer)
    own = Path(cfg.paths.output_dir).resolve()
    # A ckpt_path= run that trains no further epoch still holds the other run's best_model_path: not ours.
    if (cfg.test_on == "best" and best is not None and best.best_model_path
            and Path(best.best_model_path).resolve().is_relative_to(own)):
        return best.best_model_path
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if cfg.test_on == "last" and last.is_file():
        return str(last)
    return None


def _run_summary(trainer: L.Trainer, tested: str | None, datamodule: NoisyLabelDataModule) -> dict[str, Any]:
    summary: dict[str, Any] = {"noise/realised_rate": datamodule.labels.rate, "epochs": trainer.current_epoch}
    checkpoint = _best_checkpoint_callback(trainer)
    if checkpoint is not None and checkpoint.best_model_path and checkpoint.best_model_score is not None:
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True, mmap=True)
        summary["best_epoch"] = int(best["epoch"])
        name = "val/best_acc" if checkpoint.monitor == "val/acc" else f"{checkpoint.monitor}/best"
        summary[name] = float(checkpoint.best_model_score)
    summary["tested_checkpoint"] = tested
    summary.update(datamodule.run_record)  # held-out classes, meta/val sizes, what data.exclude / relabel changed
    return summary


def _job_of_a_sweep() -> bool:
    """True in a job of a Hydra multirun, and in the DDP ranks a job starts (they run in RUN mode, and
    follow their rank 0, which decided already whether there is a checkpoint to resume)."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return True
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# Refusals because the run folder belongs to another run: the Hydra record Hydra rewrote is put back.
FOLDER_REFUSALS = (FileExistsError, ResumeMismatchError, RunFolderBusyError)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test as configured; returns (and writes to metrics.json) the final metrics.

    The run folder is locked for the whole run (rank 0; the other DDP ranks follow it)."""
    check_config(cfg)  # values of the wrong kind or range, named by key, before anything is built
    retain_freed_memory(cfg.get("retain_freed_memory", True))  # before the first batch (and worker) exists
    if cfg.test_on not in ("best", "last", "none"):
        raise ValueError(f"test_on must be best, last or none, got {cfg.test_on!r}")
    check_logger_packages(cfg.get("logger"))
    run_tags(cfg.get("tags"))  # a tags= value that is no list of words is refused before anything is built
    print_config_tree(cfg)  # print_config=true: the composed config as a tree (rank 0)
    output_dir = Path(cfg.paths.output_dir)
    lock = run_folder_lock(output_dir) if rank_zero_only.rank == 0 else contextlib.nullcontext()
    try:
        with lock:
            return _run_in_locked_folder(cfg, output_dir)
    except FOLDER_REFUSALS:
        restore_hydra_record(output_dir)
        raise


def _override_key(override: str) -> str:
    """`+data.root=x` -> `data.root`."""
    return override.split("=", 1)[0].lstrip("+~")


def _adopt_run_config(cfg: DictConfig, checkpoint: Path, output_dir: Path) -> None:
    """Turn `cfg`, in place, into the config of the run being resumed: the one stored in its checkpoint (the
    source of truth: Hydra rewrote <run>/.hydra for this launch), with the keys this command line gave.

    So `resume=true hydra.run.dir=<run>` needs no override retyped. A key given here that differs from the
    run's and may not change on resume is refused with the list (ResumeMismatchError); keys that follow this
    launch (paths, test_on) come from it. The run's .hydra record is put back and its config.yaml and
    overrides.yaml updated to what the resumed run trains with (rank 0)."""
    saved = saved_run_config(checkpoint)
    if not saved:  # a checkpoint from outside noisylab's training: nothing to adopt or compare
        return
    requested = OmegaConf.to_container(cfg, resolve=True)
    hydra_run = HydraConfig.initialized() and GlobalHydra.instance().is_initialized()
    launch = list(HydraConfig.get().overrides.task) if hydra_run else []
    # The config without this command line's overrides: a key differing from it was given here.
    baseline = OmegaConf.to_container(compose(HydraConfig.get().job.config_name), resolve=False) if hydra_run \
        else None
    effective, taken = resume_config(saved, requested, OmegaConf.to_container(cfg, resolve=False), baseline,
                                     named={_override_key(o) for o in launch})
    check_resume_matches(checkpoint, effective, saved)
    with open_dict(cfg):
        for key in [k for k in cfg if k not in effective]:
            del cfg[key]
        for key, value in effective.items():
            cfg[key] = value
    try:
        check_config(cfg)  # e.g. the run's method.warmup_epochs against the trainer.max_epochs given now
    except ValueError:
        restore_hydra_record(output_dir)  # refused: the folder's record stays the run's
        raise
    if taken:
        shown = ", ".join(f"{key}={value}" for key, value in taken[:12]) + (
            f" and {len(taken) - 12} more" if len(taken) > 12 else "")
        log.info("resume=true: %s continues with its own config (stored in %s); from the run, not this command "
                 "line's defaults: %s", output_dir, checkpoint.name, shown)
    hydra_dir = output_dir / ".hydra"
    if not hydra_run or rank_zero_only.rank != 0 or not hydra_dir.is_dir():
        return
    restore_hydra_record(output_dir)  # the run's own hydra.yaml (its config group choices) and overrides.yaml
    atomic_write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    overrides_file = hydra_dir / "overrides.yaml"
    original = (yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None) or []
    given = {_override_key(o) for o in launch}
    merged = [o for o in original if _override_key(o) not in given] + launch
    atomic_write_text(overrides_file, yaml.safe_dump(merged, default_flow_style=False))


def _resume_point(cfg: DictConfig, output_dir: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """(checkpoint to continue from, metrics of an already finished run to return instead of training).
    Resuming makes `cfg` the run's own config (see _adopt_run_config)."""
    resume_from = checkpoint_to_resume(cfg.ckpt_path, cfg.resume, output_dir, start_if_missing=_job_of_a_sweep())
    if cfg.resume and rank_zero_only.rank == 0:  # the other ranks start while rank 0 may already be saving
        for folder in (output_dir, output_dir / "checkpoints"):
            for torn in remove_torn_temporaries(folder):
                log.info("removed %s, the unfinished save of the killed run", torn)
    if cfg.resume and resume_from is not None:
        _adopt_run_config(cfg, resume_from, output_dir)
        done = finished_metrics(output_dir, cfg.trainer.max_epochs)
        if done is not None:  # re-running a sweep with resume=true skips its finished jobs
            log.info("%s already finished %s epochs (metrics.json): nothing to resume", output_dir, done["epochs"])
            return resume_from, done
    return resume_from, None


def _run_in_locked_folder(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    resume_from, done = _resume_point(cfg, output_dir)
    if done is not None:
        return done
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    # Everything is built (and so checked) before the first file is written.
    datamodule = build_datamodule(cfg)
    labels = datamodule.labels
    method = build_method(cfg, datamodule)
    method.evaluator.plot_dir = output_dir / "plots"
    method.evaluator.samples_dir = output_dir / "samples"
    trainer = build_trainer(cfg)
    check_mid_epoch_support(trainer.callbacks, method)

    log.info("noise: %s, realised rate %.4f on %d training samples", datamodule.noise, labels.rate,
             len(labels.noisy))
    if labels.num_classes <= 10:
        log.info("realised transition matrix P(noisy | clean):\n%s", np.array2string(labels.transition, precision=3))
    if rank_zero_only.rank == 0:
        clear_failure(output_dir)
        record_noisy_labels(labels, output_dir / "noisy_labels.npz")
        save_config_tree(cfg, output_dir)  # <run>/config_tree.log, with print_config=true
        if cfg.eval.get("plots", True):
            from noisylab import plots

            names = [datamodule.class_names[i] for i in labels.class_ids]
            plots.transition_matrix(output_dir / "plots" / "transition_matrix.png", labels.transition, names,
                                    setting=method.evaluator.setting)

    for logger in trainer.loggers:
        logger.log_metrics({"noise/realised_rate": labels.rate}, step=0)
    metrics: dict[str, Any] = {}
    tested = None
    status = "failed"
    try:
        trainer.fit(method, datamodule=datamodule, ckpt_path=resume_from)
        if cfg.test_on != "none":
            tested = _test_checkpoint(cfg, trainer)
            for per_loader in trainer.test(method, datamodule=datamodule, ckpt_path=tested, verbose=False):
                metrics.update(per_loader)
        status = "success"
    finally:
        finish_loggers(trainer.loggers, status)  # each job of a multirun ends its own logger run (W&B)
        release_distributed(trainer.strategy)
    metrics.update(_run_summary(trainer, tested, datamodule))
    metrics["tags"] = run_tags(cfg.get("tags"))
    if method.evaluator.default_score is not None:
        metrics["default_score"] = method.evaluator.default_score
    if trainer.is_global_zero and (skipped := datamodule.write_bad_images(output_dir / "bad_images.txt")):
        log.warning("%d undecodable images were skipped (data.bad_images=skip); listed in %s", skipped,
                    output_dir / "bad_images.txt")
        metrics["data/bad_images_skipped"] = skipped
    if trainer.is_global_zero:
        atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        print_metrics(metrics, title="noisylab results", location=output_dir, log_file=output_dir / "train.log")
    return metrics
