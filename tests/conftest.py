"""Shared helpers: run train.py as a user would (subprocess) or compose its config in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

# Fewer epochs, no progress bar, no model summary: the same code path, less time and noise.
QUICK = ["trainer.max_epochs=2", "callbacks.progress_bar=null", "trainer.enable_model_summary=false"]


def run_train(args: list[str], cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in `cwd`; fails the test with the output when it fails and `check` is set."""
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def compose_config(output_dir: Path, overrides: list[str], quick: bool = True) -> DictConfig:
    """The config train.py would get for these overrides, with its run folder set to `output_dir`
    (and, with `quick`, fewer epochs and no progress bar)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", f"paths.data_dir={output_dir / 'data'}",
                                           *(QUICK if quick else []), *overrides])


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available here ({SHARED_DATA} is absent: it exists only on the project's "
                    "own machines)")
    return SHARED_DATA
