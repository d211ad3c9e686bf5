"""Checkpoints a crash cannot tear: atomic saves, clear errors for damaged files, and saves within an epoch.

A run folder's checkpoints/ holds
- best.ckpt: the epoch with the best val/acc (the `model_checkpoint` callback),
- last.ckpt: the last completed epoch, rewritten after every epoch (the `last_checkpoint` callback),
- mid_epoch.ckpt: the latest save within an epoch, when `callbacks.mid_epoch_checkpoint` asks for one.
`resume=true` continues from whichever valid one of them is furthest along (see `newest_valid_checkpoint`).
"""

from __future__ import annotations

import errno
import logging
import pickle
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from noisylab.errors import CheckpointWriteError
from noisylab.utils.atomic import atomic_save

log = logging.getLogger(__name__)

RESUMABLE = ("mid_epoch.ckpt", "last.ckpt", "best.ckpt")  # preferred first when equally far along


class DamagedCheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, empty, not a checkpoint)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file in the checkpoint's own folder, then an atomic rename.

    Lightning's own save goes through fsspec, whose temporary file lies in $TMPDIR: when the run folder is
    on another filesystem the final step is a copy, and a kill or a full disk during it leaves a torn
    last.ckpt in place of the good one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        try:
            atomic_save(path, lambda f: torch.save(checkpoint, f))
        except (OSError, RuntimeError) as exc:  # torch's zip writer turns a full disk into a RuntimeError
            errno_ = getattr(exc, "errno", None)
            why = "the disk is full" if errno_ == errno.ENOSPC else f"{type(exc).__name__}: {str(exc)[:200]}"
            raise CheckpointWriteError(
                errno_, f"could not write checkpoint {path}: {why} ({_free_mib(Path(path).parent):.1f} MiB free "
                f"there now). The previous {Path(path).name} (if any) is intact; free space (or fix the folder's "
                "permissions) and continue with resume=true"
            ) from exc

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except READ_ERRORS as exc:
            raise damaged(Path(path), exc) from exc


def _free_mib(folder: Path) -> float:
    try:
        return shutil.disk_usage(folder).free / 2**20
    except OSError:
        return float("nan")


def damaged(path: Path, exc: BaseException) -> DamagedCheckpointError:
    size = path.stat().st_size if path.exists() else 0
    return DamagedCheckpointError(
        f"{path} ({size} bytes) is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}). It was "
        "probably cut short by a crash or a full disk outside noisylab's atomic saves. Delete it to continue "
        "from another checkpoint of the run (resume=true picks the furthest valid one), or give ckpt_path=<file>"
    )


READ_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load of a checkpoint (tensors and plain data only; mmap: weights are read when used), with a
    DamagedCheckpointError naming the file when it is no checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise
    except READ_ERRORS as exc:
        raise damaged(Path(path), exc) from exc
    if not isinstance(state, dict):
        raise damaged(Path(path), TypeError(f"holds a {type(state).__name__}, not a dict"))
    return state


def checkpoint_progress(path: Path) -> tuple[int, int]:
    """(global_step, epoch) stored in a checkpoint; raises DamagedCheckpointError when it cannot be read."""
    state = read_checkpoint(path)
    try:
        return int(state["global_step"]), int(state["epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(path, exc) from exc


def newest_valid_checkpoint(folder: Path) -> Path | None:
    """The readable checkpoint in `folder` that is furthest along (highest global step; mid_epoch.ckpt over
    last.ckpt over best.ckpt at a tie); damaged ones are reported and passed over. None when there is none;
    DamagedCheckpointError when every one present is damaged."""
    found: list[tuple[int, int, Path]] = []
    problems: list[DamagedCheckpointError] = []
    for preference, name in enumerate(RESUMABLE):
        path = folder / name
        if not path.is_file():
            continue
        try:
            step, _ = checkpoint_progress(path)
        except DamagedCheckpointError as exc:
            problems.append(exc)
            log.warning("%s", exc)
            continue
        found.append((step, -preference, path))
    if not found:
        if problems:
            raise DamagedCheckpointError("no checkpoint of this run can be read:\n" + "\n".join(map(str, problems)))
        return None
    return max(found)[2]


class MidEpochCheckpoint(ModelCheckpoint):
    """Saves checkpoints/mid_epoch.ckpt every `every_n_minutes` of training time or every `every_n_steps`
    optimiser steps, so a killed run on long epochs (ImageNet, WebVision, Clothing1M) loses at most that much.

    Off when both are null. Resuming from such a save continues the epoch where it stopped: the training
    loader skips the batches already seen and the global RNG state is restored (EpochSeed), so the run ends
    where an uninterrupted one ends. Methods that keep state inside an epoch (their own loaders or
    per-epoch sample selection) refuse it at the start of training: see `supports_mid_epoch_resume`.
    """

    def __init__(self, dirpath: str, every_n_minutes: float | None = None, every_n_steps: int | None = None) -> None:
        if every_n_minutes is not None and not float(every_n_minutes) > 0:
            raise ValueError(
                f"callbacks.mid_epoch_checkpoint.every_n_minutes must be > 0 or null, got {every_n_minutes}")
        if every_n_steps is not None and not int(every_n_steps) >= 1:
            raise ValueError(f"callbacks.mid_epoch_checkpoint.every_n_steps must be >= 1 or null, got {every_n_steps}")
        if every_n_minutes is not None and every_n_steps is not None:
            raise ValueError("callbacks.mid_epoch_checkpoint: set every_n_minutes or every_n_steps, not both")
        self.enabled = every_n_minutes is not None or every_n_steps is not None
        super().__init__(
            dirpath=dirpath, filename="mid_epoch", monitor=None, save_top_k=1, save_last=False,
            every_n_epochs=0, enable_version_counter=False,
            every_n_train_steps=int(every_n_steps) if every_n_steps is not None else None,
            train_time_interval=timedelta(minutes=float(every_n_minutes)) if every_n_minutes is not None else None,
        )


def check_mid_epoch_support(callbacks: list[Any], method: L.LightningModule) -> None:
    """Refuse mid-epoch checkpoints for methods whose state within an epoch a checkpoint does not carry
    (DivideMix's per-epoch selection and loaders, Meta-Weight-Net's meta loader): a resume from one would
    not continue exactly. Called before anything is written."""
    wanted = any(isinstance(c, MidEpochCheckpoint) and c.enabled for c in callbacks)
    if wanted and not getattr(method, "supports_mid_epoch_resume", False):
        raise ValueError(
            f"callbacks.mid_epoch_checkpoint: {type(method).__name__} keeps state within an epoch that a mid-epoch "
            "checkpoint cannot carry yet, so a resume from it would not continue exactly. Use epoch-end checkpoints "
            "(leave callbacks.mid_epoch_checkpoint.every_n_minutes and every_n_steps at null)"
        )
