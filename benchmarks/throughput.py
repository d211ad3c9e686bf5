"""Training throughput of train.py's loop against a minimal hand-written PyTorch loop, measured in one run.

Both train the same model (built from the same config) on the same in-memory data with the same batch
size, optimizer, loss and batched augmentation, on the same device. The two loops take turns for
--rounds rounds (each round: one warm-up epoch, then --epochs timed epochs per loop), so drifts of a
shared machine hit both; the figures are the medians of the per-epoch images per second. Validation
and testing are off.

    python benchmarks/throughput.py                                   # MNIST (../shared/data) or digits, cnn4, CPU
    python benchmarks/throughput.py data=cifar10 model=preact_resnet18 trainer.precision=bf16-mixed \\
        trainer.accelerator=gpu --epochs 3                             # the GPU figure
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from noisylab.train import build_datamodule, build_method

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.durations: list[float] = []
        self.images: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.start, self.count = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.count += batch[0].shape[0]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.durations.append(time.perf_counter() - self.start)
        self.images.append(self.count)


def framework_throughput(cfg, epochs: int) -> tuple[list[float], dict]:  # noqa: ANN001
    """Per-epoch images/s of train.py's loop (Lightning, our datamodule and method) after one warm-up epoch."""
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=epochs + 1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(method, datamodule=datamodule)
    rates = [n / t for n, t in zip(timer.images[1:], timer.durations[1:], strict=True)]
    return rates, {"datamodule": datamodule, "method": method}


def hand_written_throughput(cfg, built: dict, epochs: int, device: torch.device) -> list[float]:  # noqa: ANN001
    """The loop a researcher would write: permute, index, augment, forward, loss, backward, step."""
    datamodule, method = built["datamodule"], built["method"]
    net = copy.deepcopy(method.net).to(device).train()
    criterion = copy.deepcopy(method.criterion).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay)
    augment = datamodule.augment.to(device)
    images, labels = datamodule.train_set.images.to(device), datamodule.train_set.labels.to(device)
    batch = cfg.data.batch_size
    dtype = torch.bfloat16 if "bf16" in str(cfg.trainer.precision) else None
    durations, counts = [], []
    for _ in range(epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, count = time.perf_counter(), 0
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(order) - (len(order) % batch == 1), batch):
            idx = order[i : i + batch]
            x, y = augment(images[idx], train=True), labels[idx]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
        counts.append(count)
    return [n / t for n, t in zip(counts[1:], durations[1:], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per loop and round (after a warm-up epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the two loops take turns")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    args = parser.parse_args()
    default_data = (["data=mnist", f"data.root={SHARED}"] if (SHARED / "MNIST").is_dir() else ["data=digits"])
    overrides = [*default_data, "model=cnn4", "loss=ce", "noise=symmetric", "ood=none", "sched=none",
                 "trainer.accelerator=cpu", "paths.output_dir=/tmp/noisylab-benchmark",
                 f"paths.data_dir={REPO / 'data'}", *args.overrides]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    L.seed_everything(0, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    ours_all, theirs_all = [], []
    for _ in range(args.rounds):
        rates, built = framework_throughput(cfg, args.epochs)
        ours_all += rates
        theirs_all += hand_written_throughput(cfg, built, args.epochs, device)
    ours, theirs = statistics.median(ours_all), statistics.median(theirs_all)
    print(f"setting: {' '.join(overrides)}")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device: {device} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"train.py loop:      {ours:10.0f} images/s (median of {len(ours_all)} epochs: "
          f"{', '.join(f'{r:.0f}' for r in ours_all)})")
    print(f"hand-written loop:  {theirs:10.0f} images/s (median of {len(theirs_all)} epochs: "
          f"{', '.join(f'{r:.0f}' for r in theirs_all)})")
    print(f"ratio:              {ours / theirs:10.3f}")


if __name__ == "__main__":
    main()
