"""Where a run's time goes: `python benchmarks/run_phases.py [--repeat N] [train.py overrides ...]`.

Runs `train.py` (the offline default unless overrides are given) in a child process with timers around its
phases, and prints each phase's own time (time spent in a phase nested inside another counts once, for the inner
one), median over N runs:
- interpreter start and Hydra: the child's wall time not spent in any phase below (Python, `import hydra`,
  composing the config, writing .hydra/);
- imports: `noisylab.train` and what it pulls in (Lightning, torch, torchmetrics, torchvision);
- data and noise: building the datamodule, reading the data, drawing the noisy labels;
- model and trainer: building the network, the method and the Lightning Trainer;
- training: `Trainer.fit` (training and validation epochs, checkpoints) less the phases inside it;
- evaluation: the test-set evaluation less its plots and per-sample files;
- plots: every figure written (transition matrix, score histograms, risk-coverage, reliability);
- per-sample files: samples/train.csv and samples/test.csv;
- results: metrics.json, the results table and train.log.
The phases are timed by wrapping noisylab's own functions in the child; nothing is changed in the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ["interpreter start and Hydra", "imports", "data and noise", "model and trainer", "training", "evaluation",
          "plots", "per-sample files", "results"]


class NestedTimer:
    """Exclusive time per label: time spent in an inner timed call is taken off the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [label, started, time of the inner calls]

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self._stack.append([label, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                label_, started, inner = self._stack.pop()
                elapsed = time.perf_counter() - started
                self.seconds[label_] += elapsed - inner
                if self._stack:
                    self._stack[-1][2] += elapsed

        setattr(owner, name, timed)


def child(report: Path, argv: list[str]) -> None:
    """Runs train.py in this process with its phases timed; writes the seconds to `report`."""
    timer = NestedTimer()
    started = time.perf_counter()
    import lightning as L  # noqa: F401  (the imports phase: what noisylab.train pulls in)

    import noisylab.train
    from noisylab import plots, samples
    from noisylab.data.datamodule import NoisyLabelDataModule
    from noisylab.methods.evaluation import TestSetEvaluator

    timer.seconds["imports"] = time.perf_counter() - started
    timer.wrap(noisylab.train, "build_datamodule", "data and noise")
    for name in ("prepare_data", "setup"):
        timer.wrap(NoisyLabelDataModule, name, "data and noise")
    for name in ("build_method", "build_trainer"):
        timer.wrap(noisylab.train, name, "model and trainer")
    timer.wrap(noisylab.train.L.Trainer, "fit", "training")
    timer.wrap(noisylab.train.L.Trainer, "test", "evaluation")
    timer.wrap(TestSetEvaluator, "compute", "evaluation")
    for name in ("write_all", "transition_matrix"):
        timer.wrap(plots, name, "plots")
    for name in ("write_training_samples", "write_fold_samples", "write_test_samples"):
        timer.wrap(samples, name, "per-sample files")
    for name in ("print_metrics", "atomic_write_text"):
        timer.wrap(noisylab.train, name, "results")
    sys.argv = [str(REPO / "train.py"), *argv]
    import runpy

    runpy.run_path(str(REPO / "train.py"), run_name="__main__")
    report.write_text(json.dumps(timer.seconds))


def measure(overrides: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="noisylab-phases-") as scratch:
        report = Path(scratch) / "phases.json"
        argv = [*overrides, f"hydra.run.dir={Path(scratch) / 'run'}", "callbacks.progress_bar=null"]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", str(report), *argv], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"the run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        seconds = json.loads(report.read_text())
    seconds["interpreter start and Hydra"] = wall - sum(seconds.values())
    seconds["total"] = wall
    return seconds


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    opts, overrides = parser.parse_known_args()
    runs = [measure(overrides) for _ in range(opts.repeat)]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"python train.py {' '.join(overrides)}".rstrip() + f"; {os.cpu_count()} CPUs, load average {load}; "
          f"median of {opts.repeat}")
    print(f"{'phase':<30} {'seconds':>8} {'share':>6}")
    total = statistics.median(r["total"] for r in runs)
    for phase in [*PHASES, "total"]:
        value = statistics.median(r.get(phase, 0.0) for r in runs)
        print(f"{phase:<30} {value:>8.2f} {value / total:>6.0%}")


if __name__ == "__main__":
    main()
