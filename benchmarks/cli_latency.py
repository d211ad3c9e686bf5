"""How long the command line takes to answer: `python benchmarks/cli_latency.py [--repeat N]`.

Prints the median (and min, max) wall time of N runs of each command, from the repository root:
- `python -c "import hydra, omegaconf"`: the floor, what any Hydra entry point pays;
- `python train.py --help`, `python train.py --cfg job` and a tab-completion query (Hydra's
  `-sc query=bash` with COMP_LINE set, what bash runs on every <TAB>): none of them imports torch or Lightning;
- the import share of a default `python train.py`: `import noisylab.train` (what the task function imports
  before it builds anything), beside `import lightning` alone, the part noisylab cannot cut.
The machine's load average is printed too: wall times from a busy machine are upper bounds; the CPU seconds
(user + system, of the command and its children) depend much less on what else runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(python: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """(label, argv, extra environment) of each measured command."""
    completion = {"COMP_LINE": "python train.py noise=", "COMP_POINT": str(len("python train.py noise="))}
    return [
        ('python -c "import hydra, omegaconf" (floor)', [python, "-c", "import hydra, omegaconf"], {}),
        ("python train.py --help", [python, "train.py", "--help"], {}),
        ("python train.py --cfg job", [python, "train.py", "--cfg", "job"], {}),
        ("tab completion: train.py -sc query=bash", [python, "train.py", "-sc", "query=bash"], completion),
        ("python eval.py --help", [python, "eval.py", "--help"], {}),
        ("import noisylab.train (a default run's imports)", [python, "-c", "import noisylab.train"], {}),
        ("import lightning (Lightning alone)", [python, "-c", "import lightning"], {}),
    ]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timings(argv: list[str], env: dict[str, str], repeat: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) per run; a failing command stops the benchmark with its output."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), _children_cpu()
        proc = subprocess.run(argv, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - start_cpu)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (the median is reported)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the environment to measure")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min); median of {args.repeat} runs")
    print(f"{'command':50} {'wall median':>11} {'min':>7} {'max':>7} {'CPU median':>11}")
    for label, argv, env in commands(args.python):
        wall, cpu = timings(argv, env, args.repeat)
        print(f"{label:50} {statistics.median(wall):10.2f}s {min(wall):6.2f}s {max(wall):6.2f}s "
              f"{statistics.median(cpu):10.2f}s", flush=True)


if __name__ == "__main__":
    main()
