"""Hydra callbacks (conf/train.yaml, hydra.callbacks): keep a run folder's Hydra record when a run is refused
there, and end a sweep with a summary of its finished and failed jobs.

Hydra writes .hydra/{config,hydra,overrides}.yaml into the run folder before the task starts, so a run that
noisylab then refuses (the folder holds another run, or is in use) would leave that folder describing a run
it never held. The callback reads the record before Hydra writes, and `restore_hydra_record` puts it back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from noisylab.utils.atomic import atomic_write_bytes

_RECORDS: dict[Path, dict[str, bytes]] = {}  # run folder -> its .hydra files as they were before this process
# Jobs of this process's sweep that failed, with why: also those refused in a folder whose own (finished) run
# must not be marked failed on disk.
FAILED_JOBS: dict[Path, str] = {}


def _remember(folder: Path) -> None:
    hydra_dir = folder / ".hydra"
    if hydra_dir.is_dir():
        _RECORDS[folder.resolve()] = {p.name: p.read_bytes() for p in hydra_dir.glob("*.yaml")}


def restore_hydra_record(output_dir: Path) -> None:
    """Put back the .hydra files `output_dir` had before Hydra rewrote them for a run that was refused."""
    record = _RECORDS.get(output_dir.resolve())
    for name, data in (record or {}).items():
        atomic_write_bytes(output_dir / ".hydra" / name, data)


class RunFolderRecord(Callback):
    """Remembers the .hydra record of the run folder (single run) or of every job folder (sweep)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _remember(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if sweep.is_dir():
            for job in sweep.iterdir():
                if job.is_dir():
                    _remember(job)


def _recorded_failure(job: Path) -> str:
    from noisylab.run_folder import FAILURE_FILE  # here: Hydra loads this module before Lightning is quieted

    try:
        failure = json.loads((job / FAILURE_FILE).read_text())
        return f"{failure['error']}: {failure['message']}"
    except (OSError, ValueError, KeyError):
        return "see its train.log"


class SweepSummary(Callback):
    """After the last job of a sweep: how many finished and which failed (each job's failed.json says why);
    exits with status 1 when any failed, so scripts and CI see it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from noisylab.run_folder import FAILURE_FILE

        sweep = Path(config.hydra.sweep.dir)
        jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name))
        failed = [job for job in jobs if job.resolve() in FAILED_JOBS or (job / FAILURE_FILE).is_file()]
        finished = [job for job in jobs if (job / "metrics.json").is_file() and job not in failed]
        lines = [f"sweep {sweep}: {len(finished)} of {len(jobs)} jobs finished, {len(failed)} failed"]
        for job in failed:
            why = FAILED_JOBS.get(job.resolve()) or _recorded_failure(job)
            lines.append(f"  failed: {job} ({why.splitlines()[0] if why else ''})")
        message = "\n".join(lines)
        print(message, file=sys.stderr)
        if failed:
            sys.exit(1)
