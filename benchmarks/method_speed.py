"""Seconds per training epoch of each method against method=standard, on the same data, model and batch size.

Each method trains --epochs epochs through train.py's own builders (Lightning, NoisyLabelDataModule) with
validation and testing off; the figure is the median duration of the epochs after the first (DivideMix and
InstanceGM warm up for exactly that first epoch, so the timed epochs include their GMM division). Methods take
turns for --rounds rounds, so drifts of a shared machine hit all of them.

    python benchmarks/method_speed.py                                # digits (offline), its default model, CPU
    python benchmarks/method_speed.py data=mnist data.root=../shared/data --rounds 2

The "passes" column is what each algorithm needs per training sample and epoch, counted from the code, in
forward-equivalents (a backward pass counted as two forwards), with p the share of samples the GMM keeps as
labeled (DivideMix/InstanceGM; printed):
- standard: 1 forward + 1 backward = 3.
- dividemix: a no-grad forward of both networks over the training set for the GMM (2); then per network's
  phase, for each labeled sample (p of them), the step's batch holds it and one unlabeled sample, each in 2
  views: 6 no-grad forwards (co-guessing and refinement) and 4 forwards + backwards on the mixed batch: per phase
  p * (6 + 4 * 3), two phases: 2 + 36 p.
- instancegm: dividemix + per step a batch of data.batch_size training samples for the generative model,
  through the classifier with gradient (per phase 2 p samples per training sample): 2 + 36 p + 12 p, plus the
  generative model's own passes.
- meta_weight_net: a differentiable virtual step (forward + backward with create_graph: ~3), the meta batch's
  forward through the virtual parameters and the backward through the virtual step (~1 + ~4, second-order), and
  the real step (3): about 11.
- simclr: 2 views, each forward + backward through backbone and projection head: 6.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from noisylab.train import build_datamodule, build_method
from noisylab.utils.allocator import retain_freed_memory

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "standard": [],
    "dividemix": ["method=dividemix", "method.warmup_epochs=1"],
    "instancegm": ["method=instancegm", "method.warmup_epochs=1"],
    "meta_weight_net": ["method=meta_weight_net", "data.meta_size=100"],
    "simclr": ["method=simclr"],
}
PASSES = {"standard": "3", "dividemix": "2 + 36p", "instancegm": "2 + 48p + gen.", "meta_weight_net": "~11",
          "simclr": "6"}


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.durations: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self.start)


def epoch_seconds(overrides: list[str], epochs: int) -> tuple[list[float], float | None]:
    """Durations of the epochs after the first, and DivideMix's labeled share p of the last division."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    retain_freed_memory(cfg.retain_freed_memory)  # as train.py runs it
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    timer = EpochTimer()
    trainer = L.Trainer(default_root_dir=cfg.paths.output_dir,  # where SimCLR writes encoder.pt, not the cwd
                        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(method, datamodule=datamodule)
    labeled = None
    if getattr(method, "clean_prob", None) is not None and method.clean_prob.numel():
        labeled = float((method.clean_prob > method.hparams.p_threshold).float().mean())
    return timer.durations[1:], labeled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the methods take turns")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every method, as for train.py")
    args = parser.parse_args()
    common = ["noise=symmetric", "noise.rate=0.4", "ood=none", "sched=none", "trainer.accelerator=cpu",
              "paths.output_dir=/tmp/noisylab-method-speed", f"paths.data_dir={REPO / 'data'}",
              *args.overrides]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    labeled: dict[str, float | None] = {}
    for _ in range(args.rounds):
        for name in args.methods:
            durations, labeled[name] = epoch_seconds(common + METHODS[name], args.epochs)
            times[name] += durations
    base = statistics.median(times["standard"]) if "standard" in times else None
    print(f"setting: {' '.join(common)}; {args.epochs - 1} timed epochs x {args.rounds} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'method':16s} {'s/epoch':>8s} {'x standard':>10s} {'passes/sample':>15s} {'p':>5s}  epochs")
    for name, runs in times.items():
        median = statistics.median(runs)
        ratio = f"{median / base:10.2f}" if base else f"{'':10s}"
        p = f"{labeled[name]:5.2f}" if labeled.get(name) is not None else f"{'':5s}"
        print(f"{name:16s} {median:8.3f} {ratio} {PASSES[name]:>15s} {p}  {', '.join(f'{t:.2f}' for t in runs)}")


if __name__ == "__main__":
    main()
