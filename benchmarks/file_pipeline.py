"""Images per second per CPU core of noisylab's image-file pipeline against torchvision's ImageFolder with the
standard PIL transforms, on a folder of real JPEGs.

Training: decode + RandomResizedCrop(224) + horizontal flip; evaluation: decode + Resize(256) + CenterCrop(224).
torchvision's pipeline ends with ToTensor + Normalize in the workers (the ImageNet example's); noisylab's hands
uint8 batches to the main process, which normalises them (on the device; on the CPU here, and that time counts).
"Per core" is images per CPU second of all processes (main + workers, from getrusage): a shared machine's
contention changes the wall time far more than the CPU time. Figures are of the steady state: from the end of
an epoch's batch 1 + 2 x workers (worker start-up, and the workers' decoding ahead into the loader's prefetch,
left out). Pipelines take turns for --rounds rounds; the figures are medians. Each runs under glibc's default
allocator settings and under retain_freed_memory (what train.py sets, src/noisylab/utils/allocator.py), each
setting in a process of its own (--allocators: a subset). Where CUDA is present, two more pipelines copy their
batches, pinned, to the GPU (noisylab's normalised there, as in training), and the decode figures include
decode_jpeg on the GPU. --json writes every figure to a file (benchmarks/gpu_suite.py's image_files part reads
it), and each allocator setting's figures so far, after each pass and worker count, to <json>.partial-<setting>
(what a run stopped at its time budget leaves).

    python benchmarks/file_pipeline.py --build /tmp/jpeg-folder        # 2000 CIFAR-10 JPEGs at 256-500 px
    python benchmarks/file_pipeline.py --build /tmp/jpeg-large --min-side 640 --max-side 1200 --images 600
    python benchmarks/file_pipeline.py --folder /tmp/jpeg-folder --workers 0 2 --rounds 5

The folder is built from ../shared/data/cifar10/cifar10-jpeg.tar.xz: the first --images/10 images of each
class, upscaled (bicubic) to a random width and height in [--min-side, --max-side] (seed --seed), saved as
JPEG quality 90 in ImageFolder's layout (<folder>/train/<class>/<file>.jpg, and a copy of each
class's 1st, 11th, 21st, ... image in val/, so that even a tiny folder has one). Both passes read train/,
the evaluation pass with the evaluation transform: val/ holds a tenth of the images, too few batches for a
steady figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from noisylab.data.augment import BatchAugment
from noisylab.data.files import IMAGENET_MEAN, IMAGENET_STD, FileDataset
from noisylab.data.folders import load_image_folder
from noisylab.data.sampler import EpochPermutationSampler
from noisylab.utils.allocator import retain_freed_memory
from noisylab.utils.atomic import atomic_write_text

TARBALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.xz"


def build_folder(dest: Path, images: int, min_side: int, max_side: int, seed: int, tarball: Path = TARBALL) -> None:
    """CIFAR-10 JPEGs upscaled to web-image sizes, in ImageFolder's layout under dest/{train,val}."""
    if not tarball.is_file():
        raise SystemExit(f"{tarball} not found: --build needs the CIFAR-10 JPEG tarball (../shared/data, or "
                         "--tarball)")
    rng = np.random.default_rng(seed)
    per_class = max(1, images // 10)
    seen: dict[str, int] = {}
    with tarfile.open(tarball, "r:xz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            split, name, file = member.name.split("/")
            if seen.get(name, 0) >= per_class:
                if len(seen) == 10 and min(seen.values()) >= per_class:
                    break
                continue
            k = seen[name] = seen.get(name, 0) + 1
            image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
            width, height = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
            image = image.resize((width, height), Image.BICUBIC)
            for part in ("train",) + (("val",) if k % 10 == 1 else ()):
                (dest / part / name).mkdir(parents=True, exist_ok=True)
                image.save(dest / part / name / f"{split}_{file}", quality=90)
    print(f"wrote {sum(seen.values())} images ({min_side}-{max_side} px) to {dest}/train")


class FullDecodeDataset(FileDataset):
    """noisylab's pipeline before reduced-size decoding: torchvision.io decodes the whole file, then the
    transform's steps run on the uint8 tensor (kept here as the reference the new decoder is measured by)."""

    def _load(self, i: int) -> tuple[list[torch.Tensor], int]:
        image = decode_image(str(self.root / self.files[i]), mode=ImageReadMode.RGB)
        return [self.transform(image) for _ in range(self.views)], i


def torchvision_dataset(folder: Path, train: bool) -> Dataset:
    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    steps = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    return ImageFolder(str(folder / "train"), T.Compose(steps + normalise))


def noisylab_dataset(folder: Path, train: bool, cls: type[FileDataset] = FileDataset) -> Dataset:
    source = load_image_folder(folder.parent, name=folder.name)
    labels = source.train_labels
    positions = np.arange(len(labels))
    base = source.dataset("train", positions, labels, labels, augment=train)
    return cls(base.root, base.files, labels, labels, positions, base.transform)


def cpu_seconds(workers: list[int]) -> float:
    """CPU time of this process and of the running DataLoader workers `workers` (pids, read from /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    seconds = own.ru_utime + own.ru_stime
    for pid in workers:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return seconds


def measure(dataset: Dataset, train: bool, workers: int, batch_size: int, batches: int,
            normalise: BatchAugment | None, device: str = "cpu") -> tuple[float, float]:
    """(images per CPU second, images per wall second) in the steady state: over `batches` batches after the
    first 1 + 2 x `workers` (worker start-up and the first fetch are a fixed cost of an epoch, and until the
    first batch arrives each worker decodes ahead into the loader's prefetch of 2 batches: work the clock
    would not see). On "cuda" the loader pins its batches (as the datamodule does) and each is copied to the
    GPU, and normalised there."""
    cuda = device == "cuda"
    # noisylab's training loader draws (epoch, index) keys, each sample's augmentation seeded by its key
    # (datamodule._loader): that seeding is part of the per-sample cost a training run pays.
    keyed = train and isinstance(dataset, FileDataset)
    sampler = EpochPermutationSampler(len(dataset), 0, lambda: 0, keyed=True) if keyed else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=not keyed, sampler=sampler, num_workers=workers,
                        pin_memory=cuda, generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)

    def step(batches: Iterator) -> int:
        images = next(batches)[0].to(device, non_blocking=cuda)
        if normalise is not None:
            images = normalise(images, train=False)  # uint8 -> normalised float, as on the device
        if cuda:
            torch.cuda.synchronize()
        return len(images)

    warm_up = 1 + 2 * workers  # DataLoader's default prefetch_factor
    if len(loader) <= warm_up:
        raise SystemExit(f"{len(loader)} batches of {batch_size} leave none to measure after {warm_up} to warm "
                         f"up {workers} workers: build a larger folder (--images)")
    for _ in range(warm_up):
        step(iterator)
    pids = [worker.pid for worker in getattr(iterator, "_workers", [])]
    if len(pids) != workers:  # the loader's private list of workers moved: their CPU time would go uncounted
        raise SystemExit(f"found {len(pids)} of the {workers} DataLoader workers to measure; this torch "
                         f"{torch.__version__} keeps them elsewhere than _MultiProcessingDataLoaderIter._workers")
    cpu, wall = cpu_seconds(pids), time.perf_counter()
    count = sum(step(iterator) for _ in range(min(batches, len(loader) - warm_up)))
    cpu, wall = cpu_seconds(pids) - cpu, time.perf_counter() - wall
    del iterator
    return count / cpu, count / wall


def decode_rates(files: list[str], rounds: int) -> dict[str, float]:
    """Full-size decodes per second: torchvision.io one by one, batched decode_jpeg, Pillow, Pillow at 1/2."""
    data = [read_file(f) for f in files]

    def pil(f: str, scale: int = 1) -> None:
        with Image.open(f) as image:
            if scale > 1:
                image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
            image.convert("RGB")

    runs: dict[str, Callable[[], object]] = {
        "decode_image (torchvision.io, per file)": lambda: [decode_image(d, mode=ImageReadMode.RGB) for d in data],
        "decode_jpeg (torchvision.io, batched list)": lambda: decode_jpeg(data, mode=ImageReadMode.RGB),
        "Pillow, full size": lambda: [pil(f) for f in files],
        "Pillow draft, 1/2 size": lambda: [pil(f, 2) for f in files],
    }
    if torch.cuda.is_available():
        try:  # a torchvision built without nvjpeg says so here, and the other figures still count
            decode_jpeg(data, device="cuda")  # warm-up: nvjpeg's start and its buffers for the whole list
            runs["decode_jpeg on the GPU (batched)"] = lambda: (decode_jpeg(data, device="cuda"),
                                                                torch.cuda.synchronize())
        except RuntimeError as error:
            print(f"decode_jpeg on the GPU is not measured: {error}", file=sys.stderr)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            rates[name].append(len(files) / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def normalise_times(batch_size: int, rounds: int) -> dict[str, dict[str, float]]:
    """{form: {"ms": milliseconds, "faults": minor page faults}} per uint8 batch (batch_size x 3 x 224 x 224,
    one thread) of BatchAugment's evaluation pass (one float copy, normalised in place) and of the
    out-of-place form it replaced (a batch-sized float tensor for each step): the main process's share of the
    pipeline. Under glibc's defaults the freed temporaries exceed its trim threshold, so their pages fault
    again on every batch."""
    torch.set_num_threads(1)
    augment = BatchAugment(IMAGENET_MEAN, IMAGENET_STD)
    images = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    runs: dict[str, Callable[[], object]] = {
        "BatchAugment(train=False), in place": lambda: augment(images, train=False),
        "out of place (before)": lambda: augment.normalise(images.float().div_(255.0)),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[int]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run()
            start, first = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(20):
                run()
            times[name].append((time.perf_counter() - start) / 20 * 1000)
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - first) / 20)
    return {name: {"ms": statistics.median(times[name]), "faults": statistics.median(faults[name])} for name in runs}


ALLOCATORS = {"glibc default": False, "retain_freed_memory": True}  # as train.py runs with retain_freed_memory=...
BASELINE = "torchvision ImageFolder + PIL transforms"


def partial_path(json_path: Path, allocator: str) -> Path:
    """Where the process measuring under `allocator` keeps its figures so far (--json given)."""
    return json_path.with_name(f"{json_path.name}.partial-{allocator.replace(' ', '_')}")


def partial_writer(json_path: Path, allocator: str) -> Callable[[dict], None]:
    """Writes the figures so far to partial_path(json_path, allocator), atomically."""
    path = partial_path(json_path, allocator)
    return lambda figures: atomic_write_text(path, json.dumps({"allocator": allocator, "baseline": BASELINE,
                                                               "images_per_cpu_second": figures}))


def measure_pipelines(args: argparse.Namespace,
                      progress: Callable[[dict], None] = lambda figures: None) -> dict[str, dict[str, float]]:
    """{"train, 0 workers": {pipeline: median images per CPU second, pipeline + " (wall)": per wall second}};
    `progress` gets the figures so far after each pass and worker count."""
    torch.set_num_threads(1)  # the loader's main process, as in a training run with workers busy decoding
    normalise = BatchAugment(IMAGENET_MEAN, IMAGENET_STD)
    pipelines: dict[str, Callable[[bool], tuple[Dataset, BatchAugment | None, str]]] = {
        BASELINE: lambda train: (torchvision_dataset(args.folder, train), None, "cpu"),
        "noisylab, full decode (before)": lambda train: (noisylab_dataset(args.folder, train, FullDecodeDataset),
                                                         normalise, "cpu"),
        "noisylab (reduced-size decode)": lambda train: (noisylab_dataset(args.folder, train), normalise, "cpu"),
    }
    if torch.cuda.is_available():  # what a GPU run does: pinned batches copied to the GPU (and normalised there)
        on_gpu = BatchAugment(IMAGENET_MEAN, IMAGENET_STD).to("cuda")
        pipelines[f"{BASELINE} -> GPU"] = lambda train: (torchvision_dataset(args.folder, train), None, "cuda")
        pipelines["noisylab (reduced-size decode) -> GPU"] = lambda train: (noisylab_dataset(args.folder, train),
                                                                            on_gpu, "cuda")
    figures: dict[str, dict[str, float]] = {}
    for train in (True, False):
        for workers in args.workers:
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
            for _ in range(args.rounds):
                for name, make in pipelines.items():
                    dataset, norm, device = make(train)
                    results[name].append(measure(dataset, train, workers, args.batch_size, args.batches, norm, device))
            figures[f"{'train' if train else 'eval'}, {workers} workers"] = {
                **{name: statistics.median(r[0] for r in runs) for name, runs in results.items()},
                **{f"{name} (wall)": statistics.median(r[1] for r in runs) for name, runs in results.items()}}
            progress(figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, help="write the JPEG folder here and exit")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--min-side", type=int, default=256)
    parser.add_argument("--max-side", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tarball", type=Path, default=TARBALL, help=f"for --build (default {TARBALL})")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--folder", type=Path, help="an ImageFolder layout with train/ and val/")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--allocators", nargs="+", choices=ALLOCATORS, default=list(ALLOCATORS),
                        help="allocator settings to measure under (default both; x is against the first's baseline)")
    parser.add_argument("--allocator", choices=ALLOCATORS, help=argparse.SUPPRESS)  # one child's setting
    args = parser.parse_args()
    if args.build is not None:
        build_folder(args.build, args.images, args.min_side, args.max_side, args.seed, args.tarball)
        return
    if args.folder is None:
        parser.error("give --folder (or --build to make one)")
    if args.allocator is not None:
        retain_freed_memory(ALLOCATORS[args.allocator])
        progress = partial_writer(args.json, args.allocator) if args.json is not None else (lambda figures: None)
        print(json.dumps({"pipelines": measure_pipelines(args, progress),
                          "normalise": normalise_times(args.batch_size, args.rounds)}))
        return
    # glibc's settings are per process and cannot be undone: each allocator setting measures in its own child.
    by_allocator = {}
    for allocator in args.allocators:
        print(f"measuring with the {allocator} allocator settings ...", flush=True)
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--allocator", allocator],
                               stdout=subprocess.PIPE, text=True, check=True)  # its errors reach stderr
        by_allocator[allocator] = json.loads(child.stdout.strip().splitlines()[-1])
    pipelines = {allocator: figures["pipelines"] for allocator, figures in by_allocator.items()}
    first = args.allocators[0]
    for setting in pipelines[first]:
        phase = "train (RRC 224 + flip)" if setting.startswith("train") else "eval (resize 256, centre crop 224)"
        base = pipelines[first][setting][BASELINE]
        print(f"\n{phase}, {setting.split(', ')[1]}, steady state, medians of {args.rounds} rounds "
              f"(x: per core against {BASELINE} with the {first} settings):")
        for allocator, figures in pipelines.items():
            for name in (n for n in figures[setting] if not n.endswith("(wall)")):
                per_core, wall = figures[setting][name], figures[setting][f"{name} (wall)"]
                print(f"  {name:42s} {allocator:20s} {per_core:7.1f} img/s per core  {wall:7.1f} img/s wall  "
                      f"x{per_core / base:.2f}")
    files = sorted(str(p) for p in (args.folder / "train").rglob("*.jpg"))[:256]
    print(f"\nfull-size decoding only ({len(files)} files, one process, medians of {args.rounds} rounds):")
    decoding = decode_rates(files, args.rounds)
    for name, rate in decoding.items():
        print(f"  {name:42s} {rate:7.1f} img/s")
    print(f"\nnormalising one uint8 batch of {args.batch_size} (one thread, medians of {args.rounds} rounds):")
    for allocator, figures in by_allocator.items():
        for name, figure in figures["normalise"].items():
            print(f"  {name:42s} {allocator:20s} {figure['ms']:7.2f} ms per batch  {figure['faults']:6.0f} minor "
                  "faults per batch")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({
            "baseline": BASELINE, "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "allocators": args.allocators, "batch_size": args.batch_size, "batches": args.batches,
            "rounds": args.rounds, "workers": args.workers,
            "images_per_cpu_second": pipelines, "decode_images_per_second": decoding,
            "normalise": {allocator: figures["normalise"] for allocator, figures in by_allocator.items()}}, indent=1))
        for allocator in args.allocators:  # the whole run is in --json now
            partial_path(args.json, allocator).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
