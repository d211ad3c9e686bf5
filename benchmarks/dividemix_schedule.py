"""DivideMix's two schedules at equal epochs: the reference's alternating one and the joint one.

MNIST subset (stratified, from ../shared/data), symmetric noise 0.2 and 0.5, two seeds, the same backbone,
optimiser, batch size (128: the alternating schedule's 64 labeled + 64 unlabeled per step), warm-up and
number of epochs for both schedules. Prints test accuracy (of the checkpoint with the best *noisy*
validation accuracy, and after the last epoch), minutes per run, and the mean per (schedule, noise).

    python benchmarks/dividemix_schedule.py                            # 6k samples, cnn4, 6 epochs (2 warm-up)
    python benchmarks/dividemix_schedule.py --train-size 5000 --epochs 6 --model small_cnn --out /tmp/b
    python benchmarks/dividemix_schedule.py trainer.accelerator=gpu    # extra train.py overrides at the end

Equal epochs are not equal work: an alternating epoch runs about 2 x |labeled| / 64 steps of 64 + 64 samples
(each network in turn), the joint one |train| / 128 steps of 128 samples for both networks at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def mnist_subset(root: str | Path, download: bool = False, train_size: int = 10000, subset_seed: int = 0):
    """MNIST with a stratified random subset of `train_size` training images (the test set is whole)."""
    from noisylab.data.sources import load_mnist

    source = load_mnist(root, download)
    rng = np.random.default_rng(subset_seed)
    labels = source.train_labels
    per_class = train_size // len(source.class_names)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                   for c in range(len(source.class_names))]))
    return dataclasses.replace(source, name="mnist_subset", train_images=source.train_images[keep],
                               train_labels=labels[keep])


def train(args: list[str], run: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={run}",
                           "callbacks.progress_bar=null", "trainer.enable_model_summary=false", "eval.plots=false"],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads((run / "metrics.json").read_text()), time.perf_counter() - started


def last_epoch_accuracy(run: Path) -> float:
    subprocess.run([sys.executable, str(REPO / "eval.py"), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                    "eval.plots=false"],
                   check=True, cwd=REPO, capture_output=True, text=True)
    return json.loads((run / "eval.json").read_text())["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(SHARED), help="folder holding MNIST/raw")
    parser.add_argument("--train-size", type=int, default=6000, help="training images (stratified subset)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", default="cnn4")
    parser.add_argument("--noise", default="0.2,0.5")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--schedules", default="alternating,joint")
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="further train.py overrides")
    opts = parser.parse_args()
    out = Path(opts.out or tempfile.mkdtemp(prefix="noisylab-dividemix-"))
    e = opts.epochs
    common = ["data=mnist", f"data.root={opts.root}", "data.source.path=benchmarks.dividemix_schedule.mnist_subset",
              f"+data.source_kwargs.train_size={opts.train_size}", "data.val_size=1000", f"model={opts.model}",
              "noise=symmetric", "ood=none", "method=dividemix", f"method.warmup_epochs={opts.warmup}",
              "data.batch_size=128", "optim.lr=0.02", f"trainer.max_epochs={e}", f"sched.T_max={e}",
              *opts.overrides]
    print(f"MNIST subset of {opts.train_size} ({opts.train_size - 1000} train + 1000 noisy validation), symmetric "
          f"noise, {opts.model}, batch 128, SGD lr 0.02 cosine, {e} epochs ({opts.warmup} warm-up), "
          f"lambda_u 25; runs in {out}", flush=True)
    header = f"{'schedule':<13}{'noise':>6}{'seed':>6}{'test/acc (best val)':>21}{'test/acc (last)':>17}{'minutes':>9}"
    print(header, flush=True)
    results: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for rate in map(float, opts.noise.split(",")):
        for schedule in opts.schedules.split(","):
            for seed in map(int, opts.seeds.split(",")):
                run = out / f"{schedule}_{rate}_{seed}"
                best, seconds = train([*common, f"method.schedule={schedule}", f"noise.rate={rate}", f"seed={seed}"],
                                      run)
                last = last_epoch_accuracy(run)
                results.setdefault((schedule, rate), []).append((best["test/acc"], last))
                print(f"{schedule:<13}{rate:>6.2f}{seed:>6}{best['test/acc']:>21.4f}{last:>17.4f}"
                      f"{seconds / 60:>9.1f}", flush=True)
    print("\nmean over seeds")
    print(f"{'schedule':<13}{'noise':>6}{'test/acc (best val)':>21}{'test/acc (last)':>17}")
    for (schedule, rate), values in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        best, last = np.mean(values, 0)
        print(f"{schedule:<13}{rate:>6.2f}{best:>21.4f}{last:>17.4f}")


if __name__ == "__main__":
    main()
