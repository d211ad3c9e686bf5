"""Shared helpers: run train.py as a user would (subprocess) or compose its config in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests.forked_runs import EVAL, TRAIN, ForkedRuns

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """One thread pool per xdist worker, sized to its share of the cores, for this process and every train.py
    it starts. torch otherwise gives each process a thread per core: 2 workers x 2 threads on 2 cores ran
    the suite's training 2-4x slower than alone (benchmarks/README.md, "Fixed costs"). Set here, in the
    worker, because xdist tells a worker the worker count only after this file is imported; a variable
    the user set is kept, and a run without xdist keeps torch's default."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    threads = str(max(1, (os.cpu_count() or 1) // int(workerinput["workercount"])))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)
    if "torch" in sys.modules:  # already imported (it reads the variable once): set it directly
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Fewer epochs, no progress bar, no model summary, no figures (tests/test_evaluation.py and test_plots.py
# check those): the same code path, less time and noise.
QUICK = ["trainer.max_epochs=2", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
         "eval.plots=false"]


_FORKED_RUNS = ForkedRuns()


def run_train(args: list[str], cwd: Path, timeout: float = 300, check: bool = True,
              fresh: bool = False) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in `cwd`; fails the test with the output when it fails and `check` is set.

    The run is a fork of a process that has imported train.py's modules (tests/forked_runs.py); `fresh`
    (or NOISYLAB_TESTS_FRESH=1) starts a new interpreter instead, for tests of what happens while importing."""
    return _run_script(TRAIN, args, cwd, timeout, check, fresh)


def run_eval(args: list[str], cwd: Path, timeout: float = 300, check: bool = True,
             fresh: bool = False) -> subprocess.CompletedProcess:
    """`python eval.py ARGS` in `cwd`, as run_train runs train.py."""
    return _run_script(EVAL, args, cwd, timeout, check, fresh)


def _run_script(script: Path, args: list[str], cwd: Path, timeout: float, check: bool,
                fresh: bool) -> subprocess.CompletedProcess:
    forked = not fresh and os.environ.get("NOISYLAB_TESTS_FRESH") != "1" and _FORKED_RUNS.available
    proc = _FORKED_RUNS.run(args, Path(cwd), timeout, script) if forked else None
    if proc is None:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{script.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
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
