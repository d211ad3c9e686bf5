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
from noisylab.utils.allocator import retain_freed_memory

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


BASE_OVERRIDES = ["loss=ce", "noise=symmetric", "ood=none", "sched=none", "paths.output_dir=/tmp/noisylab-benchmark",
                  f"paths.data_dir={REPO / 'data'}"]


def compose_config(overrides: list[str]):  # noqa: ANN201
    """train.py's config for these overrides (after BASE_OVERRIDES: CE, symmetric noise, no OOD, no schedule)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[*BASE_OVERRIDES, *overrides])


def device_of(cfg) -> torch.device:  # noqa: ANN001
    return torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")


def framework_throughput(cfg, epochs: int, steps: int | None = None) -> tuple[list[float], dict]:  # noqa: ANN001
    """Per-epoch images/s of train.py's loop (Lightning, our datamodule and method) after one warm-up epoch
    (which also absorbs torch.compile's compilation); `steps` caps the batches per epoch."""
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=epochs + 1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer], **({"limit_train_batches": steps} if steps else {}))
    trainer.fit(method, datamodule=datamodule)
    rates = [n / t for n, t in zip(timer.images[1:], timer.durations[1:], strict=True)]
    return rates, {"datamodule": datamodule, "method": method}


def _autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision flag; other flags than these three are refused (the
    hand-written loop would silently run another precision than the framework's)."""
    dtypes = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if str(precision) not in dtypes:
        raise ValueError(f"trainer.precision={precision}: the hand-written loop supports {', '.join(dtypes)}")
    return dtypes[str(precision)]


def hand_written_throughput(cfg, built: dict, epochs: int, device: torch.device,  # noqa: ANN001
                            steps: int | None = None) -> list[float]:
    """The loop a researcher would write: permute, index, augment, forward, loss, backward, step; with the
    framework's memory format (method.channels_last), torch.compile (method.compile) and precision (a
    gradient scaler under 16-mixed). `steps` caps the batches per epoch, as limit_train_batches does."""
    datamodule, method = built["datamodule"], built["method"]
    memory_format = torch.channels_last if cfg.method.get("channels_last") else torch.contiguous_format
    net = copy.deepcopy(method.net).to(device, memory_format=memory_format).train()
    run_net = torch.compile(net) if cfg.method.get("compile") else net
    criterion = copy.deepcopy(method.criterion).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay)
    augment = datamodule.augment.to(device)
    images, labels = datamodule.train_set.images.to(device), datamodule.train_set.labels.to(device)
    batch = cfg.data.batch_size
    dtype = _autocast_dtype(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    durations, counts = [], []
    for _ in range(epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, count = time.perf_counter(), 0
        order = torch.randperm(len(images), device=device)
        starts = range(0, len(order) - (len(order) % batch == 1), batch)
        for i in starts[:steps] if steps else starts:
            idx = order[i : i + batch]
            x, y = augment(images[idx], train=True), labels[idx]
            x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x  # as StandardMethod.forward
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(run_net(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            count += len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
        counts.append(count)
    return [n / t for n, t in zip(counts[1:], durations[1:], strict=True)]


def measure(cfg, epochs: int, rounds: int, steps: int | None = None) -> dict:  # noqa: ANN001
    """Both loops taking turns for `rounds` rounds: per-epoch images/s of each, their medians and the ratio
    train.py / hand-written (>= 1: the framework is as fast). Both run under the allocator setting train.py
    would use (`retain_freed_memory`, default true; give retain_freed_memory=false for glibc's defaults)."""
    retain_freed_memory(cfg.get("retain_freed_memory", True))
    device = device_of(cfg)
    ours_all: list[float] = []
    theirs_all: list[float] = []
    for _ in range(rounds):
        rates, built = framework_throughput(cfg, epochs, steps)
        ours_all += rates
        theirs_all += hand_written_throughput(cfg, built, epochs, device, steps)
    ours, theirs = statistics.median(ours_all), statistics.median(theirs_all)
    return {"noisylab_images_per_s": ours, "hand_written_images_per_s": theirs, "ratio": ours / theirs,
            "noisylab_epochs": ours_all, "hand_written_epochs": theirs_all}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per loop and round (after a warm-up epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the two loops take turns")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    args = parser.parse_args()
    default_data = (["data=mnist", f"data.root={SHARED}"] if (SHARED / "MNIST").is_dir() else ["data=digits"])
    overrides = [*default_data, "model=cnn4", "trainer.accelerator=cpu", *args.overrides]
    cfg = compose_config(overrides)
    L.seed_everything(0, verbose=False)
    device = device_of(cfg)
    result = measure(cfg, args.epochs, args.rounds)
    ours, theirs = result["noisylab_images_per_s"], result["hand_written_images_per_s"]
    ours_all, theirs_all = result["noisylab_epochs"], result["hand_written_epochs"]
    print(f"setting: {' '.join([*BASE_OVERRIDES, *overrides])}")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device: {device} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"train.py loop:      {ours:10.0f} images/s (median of {len(ours_all)} epochs: "
          f"{', '.join(f'{r:.0f}' for r in ours_all)})")
    print(f"hand-written loop:  {theirs:10.0f} images/s (median of {len(theirs_all)} epochs: "
          f"{', '.join(f'{r:.0f}' for r in theirs_all)})")
    print(f"ratio:              {ours / theirs:10.3f}")


if __name__ == "__main__":
    main()
