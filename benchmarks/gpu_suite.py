"""One command that spends a lent GPU's few minutes on every open GPU question, and writes every figure.

    bash benchmarks/gpu_suite.sh                      # on the lent GPU (see benchmarks/README.md, "GPU suite")
    python benchmarks/gpu_suite.py --dry-run          # the same code on CPU at tiny sizes (CI runs this)

Parts, each stopped at its own time budget (--budget-seconds PART=SECONDS), the results file rewritten after
each, so a run cut short still returns what it measured:

  build_cifar10  make_cifar10.py from --cifar-archive (the JPEG copy of CIFAR-10) into --scratch
  smoke          one epoch of every method through train.py (multirun: one process per precision), under
                 trainer=gpu with bf16-mixed and 16-mixed: finite training losses, metrics.json with a finite
                 test/acc (SimCLR, which tests nothing, its val/loss/best)
  throughput     images/s of train.py's loop against a hand-written loop (benchmarks/throughput.py), CE, for
                 preact_resnet18 and cnn8, with and without method.channels_last / method.compile, in one process
  image_files    benchmarks/file_pipeline.py on CIFAR-10 JPEGs upscaled to 256-500 px, with 0, 4 and 8 workers:
                 noisylab's image-file pipeline against torchvision's per CPU core, the pinned copy to the GPU,
                 decode_jpeg on the GPU
  drainage       the Drainage paper's CIFAR-10 asymmetric 0.45 row (experiment=drainage_cifar10 and _ce, two
                 processes at once on the one GPU), as many of its 120 epochs as the time left allows

Results: <--out>/gpu_suite.json and gpu_suite.md (--out defaults to $OUT when set, else benchmarks/results).
The dry run (trainer=cpu, 32-true, 2 batches, 1 epoch, no compile) trains on a tiny synthetic CIFAR-10
folder, because make_cifar10.py's fixed 10,000 images per batch file leaves a tiny archive's batches 2-5 empty.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PARTS = ("build_cifar10", "smoke", "throughput", "image_files", "drainage")
NEEDS_CIFAR10 = {"smoke", "throughput", "drainage"}  # the parts that train on the built CIFAR-10
# Seconds; 8 minutes in all.
# make_cifar10.py takes about 10 s on the 2-core VM; file_pipeline.py's GPU run (5 pipelines x 3 worker settings x
# 2 passes) about a minute after a 10 s build.
GPU_BUDGETS = {"build_cifar10": 40, "smoke": 140, "throughput": 150, "image_files": 90, "drainage": 60}
# Bounds for a loaded CI box.
DRY_BUDGETS = {"build_cifar10": 60, "smoke": 300, "throughput": 300, "image_files": 120, "drainage": 300}
ARCHIVE_FILES = ("make_cifar10.py", "cifar10-jpeg.tar.xz", "train_labels.npy", "test_labels.npy")
ARCHIVE_DEFAULTS = (REPO / ".gpu_suite" / "cifar10", REPO.parent / "shared" / "data" / "cifar10")
PUBLISHED = {"drainage": 82.23, "ce": 77.92}  # the Drainage paper, CIFAR-10, asymmetric 0.45 (docs/reproduce.md)
PRESETS = {"drainage": "drainage_cifar10", "ce": "drainage_cifar10_ce"}

# Each smoke is one option of a config group the suite writes (Hydra's sweeper has no zip of overrides): the
# method, its loss where the method takes one, and for DivideMix/InstanceGM no warm-up, so the single epoch
# runs their division and MixMatch phase.
SMOKES: dict[str, dict[str, str]] = {
    "standard_drainage": {"method": "standard", "loss": "drainage"},
    "standard_dismax": {"method": "standard", "loss": "dismax"},
    "dividemix": {"method": "dividemix", "body": "method:\n  warmup_epochs: 0\n"},
    "instancegm": {"method": "instancegm", "body": "method:\n  warmup_epochs: 0\n"},
    "meta_weight_net": {"method": "meta_weight_net"},
    "simclr": {"method": "simclr"},
}


@dataclass
class Settings:
    """What differs between the GPU run and its CPU dry run."""

    dry_run: bool
    trainer: str
    precisions: list[str]
    batches: int                 # training batches per smoke epoch (validation and test: half, at least 1)
    throughput_models: list[str]
    throughput_variants: list[tuple[bool, bool]]  # (channels_last, compile)
    throughput_steps: int
    throughput_epochs: int
    drainage_epochs: int | None  # None: as many of the preset's 120 as the budget allows
    image_files_build: list[str]  # benchmarks/file_pipeline.py's options: the JPEG folder it builds
    image_files_measure: list[str]  # and what it measures on it
    data_overrides: list[str] = field(default_factory=list)  # sizes for the tiny synthetic data
    smoke_overrides: list[str] = field(default_factory=list)


def settings_for(args: argparse.Namespace) -> Settings:
    if args.dry_run:
        # 32-true: on CPUs without native bf16, bf16 autocast convolutions run ~5x slower than float32.
        # Batches of 4, small_cnn in the smokes, cnn8 alone in the throughput part (preact_resnet18 costs
        # CPU seconds per step and goes through the same code): the dry run checks the suite, not the speed.
        return Settings(True, "cpu", args.precisions or ["32-true"], 2, ["cnn8"],
                        [(False, False), (True, False)], 1, 1, args.drainage_epochs or 1,
                        ["--images", "40", "--min-side", "32", "--max-side", "64"],
                        ["--workers", "0", "--rounds", "1", "--batches", "2", "--batch-size", "8"],
                        ["data.val_size=10", "data.batch_size=4"], ["model=small_cnn"])
    # Every model's uncompiled variants before any compiled one (each compile costs tens of seconds), cnn8
    # first: the drainage part plans its epochs from cnn8's uncompiled rate.
    variants = [(False, False), (True, False), (False, True), (True, True)]
    # The image-file pipeline on the lent machine's cores, with more workers than the 2-core VM can run.
    return Settings(False, "gpu", args.precisions or ["bf16-mixed", "16-mixed"], 20, ["cnn8", "preact_resnet18"],
                    variants, 100, 2, args.drainage_epochs, ["--images", "1000"],
                    ["--workers", "0", "4", "8", "--rounds", "1", "--batches", "20"])


class Clock:
    """Seconds since the suite started, for progress lines and the total budget."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        print(f"[gpu-suite {self.elapsed():6.1f}s] {message}", flush=True)


def child_env() -> dict[str, str]:
    """The environment of train.py and the workers: src/ importable even where noisylab is not installed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def run_bounded(commands: list[list[str]], budget: float, logs: list[Path]) -> list[int | None]:
    """Run the commands at once, each with its output in its log; kill what is still running when the budget
    is spent. Returns each exit status, None for a process stopped at the budget."""
    procs = []
    for command, log in zip(commands, logs, strict=True):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=child_env(),
                                          start_new_session=True))
    deadline = time.monotonic() + budget
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            codes.append(None)
    return codes


def tail(path: Path, chars: int = 1500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else f"({path} was not written)"


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------- part 1
def find_archive(given: Path | None) -> Path | None:
    """--cifar-archive, or the first default folder holding the archive (a carried copy, then ../shared)."""
    candidates = [given] if given is not None else list(ARCHIVE_DEFAULTS)
    return next((c for c in candidates if all((c / f).is_file() for f in ARCHIVE_FILES)), None)


def check_built(folder: Path, archive: Path) -> dict:
    """The rebuilt batches hold every image of the archive's label files, in their order, as uint8 rows."""
    def rows(name: str) -> tuple[np.ndarray, list[int]]:
        with (folder / name).open("rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data = batch["data"]
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{folder / name}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
        return data, batch["labels"]

    train = [rows(f"data_batch_{b}") for b in range(1, 6)]
    test_data, test_labels = rows("test_batch")
    train_labels = [y for _, labels in train for y in labels]
    if train_labels != np.load(archive / "train_labels.npy").tolist():
        raise ValueError(f"{folder}: the training labels differ from {archive / 'train_labels.npy'}")
    if test_labels != np.load(archive / "test_labels.npy").tolist():
        raise ValueError(f"{folder}: the test labels differ from {archive / 'test_labels.npy'}")
    return {"train_images": sum(len(d) for d, _ in train), "test_images": len(test_data),
            "mean_pixel": float(np.concatenate([d for d, _ in train]).mean())}


def part_build(ctx: Suite, budget: float) -> dict:
    archive = find_archive(ctx.args.cifar_archive)
    dest = ctx.args.scratch / "cifar10"
    folder = dest / "cifar-10-batches-py"
    if archive is None:
        # Only the dry run gets here: main() refuses a GPU run without the archive before anything runs.
        return {"status": "skipped", "reason": "no archive given (--cifar-archive) or found in "
                + ", ".join(map(str, ARCHIVE_DEFAULTS))}
    result = {"archive": str(archive), "folder": str(folder)}
    if (folder / "test_batch").is_file() and (folder / "data_batch_5").is_file():
        result["reused"] = True
    else:
        ctx.clock.say(f"building CIFAR-10 from {archive} into {dest}")
        start = time.monotonic()
        log = ctx.args.scratch / "logs" / "make_cifar10.log"
        (code,) = run_bounded([[sys.executable, str(archive / "make_cifar10.py"), str(dest)]], budget, [log])
        result["build_seconds"] = time.monotonic() - start
        if code != 0:
            state = "timeout" if code is None else "failed"
            return {**result, "status": state, "error": f"make_cifar10.py {state} ({code}):\n{tail(log)}"}
    result.update(check_built(folder, archive))
    if not ctx.settings.dry_run:
        ctx.data_root = dest
    return {**result, "status": "ok"}


def write_synthetic_cifar10(root: Path, per_batch: int = 16, test: int = 20) -> Path:
    """A tiny CIFAR-10 in the python-version layout (random pixels, every class in every batch) for the dry run."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{b}", per_batch) for b in range(1, 6)] + [("test_batch", test)]:
        labels = np.arange(n) % 10
        data = (rng.integers(0, 128, size=(n, 3072)) + labels[:, None] * 12).astype(np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist()}, f, protocol=2)
    return root


# ---------------------------------------------------------------------------------------------- part 2
def write_smoke_configs(conf: Path, dry_run: bool) -> None:
    """conf/gpu_smoke/<smoke>.yaml, a config group on train.py's search path (hydra.searchpath)."""
    group = conf / "gpu_smoke"
    group.mkdir(parents=True, exist_ok=True)
    for name, smoke in SMOKES.items():
        defaults = [f"  - override /method: {smoke['method']}"]
        defaults += [f"  - override /loss: {smoke['loss']}"] if "loss" in smoke else []
        body = smoke.get("body", "")
        if dry_run and name == "meta_weight_net":
            body += "data:\n  meta_size: 10\n"  # the tiny data has 80 training images
        (group / f"{name}.yaml").write_text("# @package _global_\ndefaults:\n" + "\n".join(defaults) + "\n" + body)


def smoke_command(ctx: Suite, precision: str, sweep_dir: Path) -> list[str]:
    s, evaluated = ctx.settings, max(ctx.settings.batches // 2, 1)
    return [sys.executable, str(REPO / "train.py"), "-m", f"hydra.searchpath=[file://{ctx.args.scratch / 'conf'}]",
            f"+gpu_smoke={','.join(SMOKES)}", f"trainer={s.trainer}", f"trainer.precision={precision}",
            "data=cifar10", f"data.root={ctx.data_root}", *s.data_overrides, *s.smoke_overrides, "ood=holdout",
            "trainer.max_epochs=1",
            f"++trainer.limit_train_batches={s.batches}", f"++trainer.limit_val_batches={evaluated}",
            f"++trainer.limit_test_batches={evaluated}", "eval.plots=false", "callbacks.progress_bar=null",
            "trainer.enable_model_summary=false", f"hydra.sweep.dir={sweep_dir}"]


def logged_losses(run: Path) -> dict[str, list[float]]:
    """Every logged training loss (train/...loss... columns of the CSV log), value by value."""
    losses: dict[str, list[float]] = {}
    for path in sorted(run.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            for key, value in row.items():
                if key.startswith("train/") and "loss" in key and value:
                    losses.setdefault(key, []).append(float(value))
    return losses


def check_smoke(run: Path, name: str) -> dict:
    """passed: no failed.json, finite logged training losses, metrics.json with a finite test/acc (SimCLR:
    val/loss/best)."""
    if (run / "failed.json").is_file():
        return {"passed": False, "error": tail(run / "failed.json", 3000)}
    if not (run / "metrics.json").is_file():
        return {"passed": False, "error": f"no metrics.json; end of train.log:\n{tail(run / 'train.log')}"}
    metrics = json.loads((run / "metrics.json").read_text())
    key = "val/loss/best" if name == "simclr" else "test/acc"
    losses = logged_losses(run)
    problems = [f"{key} is {metrics.get(key)!r}"] if not finite(metrics.get(key)) else []
    problems += ["no training loss was logged"] if not losses else []
    problems += [f"{k} has non-finite values {v}" for k, v in losses.items() if not all(map(math.isfinite, v))]
    row = {"passed": not problems, key: metrics.get(key), "epochs": metrics.get("epochs"),
           "last_losses": {k: v[-1] for k, v in losses.items()}}
    return {**row, "error": "; ".join(problems)} if problems else row


def job_name(run: Path) -> str | None:
    overrides = run / ".hydra" / "overrides.yaml"
    found = re.search(r"\+gpu_smoke=(\w+)", overrides.read_text()) if overrides.is_file() else None
    return found.group(1) if found else None


def part_smoke(ctx: Suite, budget: float) -> dict:
    write_smoke_configs(ctx.args.scratch / "conf", ctx.settings.dry_run)
    sweeps = {p: ctx.args.scratch / "smoke" / p for p in ctx.settings.precisions}
    ctx.clock.say(f"smoke: {len(SMOKES)} methods x {len(sweeps)} precisions ({', '.join(sweeps)}), "
                  f"one train.py multirun per precision, at once")
    # On CPU the processes would only share two cores: one after the other there, all at once on the GPU.
    groups = [[p] for p in sweeps] if ctx.settings.dry_run else [list(sweeps)]
    codes: dict[str, int | None] = {}
    deadline = time.monotonic() + budget
    for group in groups:
        logs = [ctx.args.scratch / "logs" / f"smoke_{p}.log" for p in group]
        results = run_bounded([smoke_command(ctx, p, sweeps[p]) for p in group],
                              max(deadline - time.monotonic(), 1), logs)
        codes.update(zip(group, results, strict=True))
    runs = []
    for precision, sweep in sweeps.items():
        found = {job_name(job): job for job in sweep.glob("[0-9]*") if job.is_dir()}
        for name in SMOKES:
            row = {"smoke": name, "precision": precision}
            if name in found:
                row.update(check_smoke(found[name], name))
            elif codes[precision] is None:
                row.update(passed=False, error="not run: the budget ran out")
            else:
                log = ctx.args.scratch / "logs" / f"smoke_{precision}.log"
                row.update(passed=False, error=f"no job folder; end of the sweep's log:\n{tail(log)}")
            runs.append(row)
            ctx.clock.say(f"smoke {name} {precision}: {'passed' if row['passed'] else 'FAILED ' + row['error'][:300]}")
    passed = sum(r["passed"] for r in runs)
    status = "ok" if passed == len(runs) else "timeout" if None in codes.values() else "failed"
    return {"status": status, "passed": passed, "failed": len(runs) - passed, "runs": runs}


# ---------------------------------------------------------------------------------------------- part 3
def throughput_worker(spec_path: Path) -> None:
    """One process, every configuration: after each, the rows so far go to spec['out'] (read at the budget)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import lightning as L
    import throughput
    import torch

    spec = json.loads(spec_path.read_text())
    out = Path(spec["out"])
    device = (torch.cuda.get_device_name() if torch.cuda.is_available() and spec["trainer"] == "gpu"
              else f"{os.cpu_count()} CPU cores")
    report: dict = {"device": device, "torch": torch.__version__, "lightning": L.__version__, "rows": []}
    for channels_last, compiled in spec["variants"]:  # variant by variant: the compiled ones come last
        for model in spec["models"]:
            cfg = throughput.compose_config([*spec["overrides"], f"model={model}",
                                             f"method.channels_last={str(channels_last).lower()}",
                                             f"method.compile={str(compiled).lower()}"])
            L.seed_everything(0, verbose=False)
            start = time.monotonic()
            row = throughput.measure(cfg, spec["epochs"], rounds=1, steps=spec["steps"])
            report["rows"].append({"model": model, "channels_last": channels_last, "compile": compiled,
                                   "batch_size": cfg.data.batch_size, "precision": cfg.trainer.precision,
                                   "steps_per_epoch": spec["steps"], "seconds": time.monotonic() - start, **row})
            print(f"throughput {model} channels_last={channels_last} compile={compiled}: ratio {row['ratio']:.3f} "
                  f"({row['noisylab_images_per_s']:.0f} vs {row['hand_written_images_per_s']:.0f} images/s)",
                  flush=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=1))
            tmp.replace(out)


def part_throughput(ctx: Suite, budget: float) -> dict:
    s = ctx.settings
    out = ctx.args.scratch / "throughput.json"
    out.unlink(missing_ok=True)
    spec = {"out": str(out), "trainer": s.trainer, "models": s.throughput_models, "steps": s.throughput_steps,
            "epochs": s.throughput_epochs, "variants": s.throughput_variants,
            "overrides": [f"trainer={s.trainer}", "data=cifar10", f"data.root={ctx.data_root}", *s.data_overrides]}
    spec_path = ctx.args.scratch / "throughput_spec.json"
    spec_path.write_text(json.dumps(spec))
    ctx.clock.say(f"throughput: {len(s.throughput_models)} models x {len(s.throughput_variants)} variants, "
                  f"{s.throughput_epochs} timed epochs of {s.throughput_steps} steps after a warm-up epoch, per loop")
    log = ctx.args.scratch / "logs" / "throughput.log"
    (code,) = run_bounded([[sys.executable, __file__, "--throughput-worker", str(spec_path)]], budget, [log])
    report = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    expected = len(s.throughput_models) * len(s.throughput_variants)
    status = "ok" if code == 0 and len(report["rows"]) == expected else "timeout" if code is None else "failed"
    result = {"status": status, **report, "measured": len(report["rows"]), "planned": expected}
    return result if status == "ok" else {**result, "error": f"exit status {code}; end of its log:\n{tail(log)}"}


# ---------------------------------------------------------------------------------------------- part 4
def part_image_files(ctx: Suite, budget: float) -> dict:
    """benchmarks/file_pipeline.py on CIFAR-10 JPEGs upscaled to 256-500 px: noisylab's image-file pipeline
    against torchvision's, per CPU core, with more workers than the 2-core VM allows, under train.py's
    allocator setting; where CUDA is present also the pinned copy to the GPU and decode_jpeg on the GPU."""
    archive = find_archive(ctx.args.cifar_archive)
    if archive is None:
        return {"status": "skipped", "reason": "no archive (see build_cifar10) to build the JPEG folder from"}
    s = ctx.settings
    script, folder = str(REPO / "benchmarks" / "file_pipeline.py"), ctx.args.scratch / "jpeg-files"
    out, logs = ctx.args.scratch / "file_pipeline.json", ctx.args.scratch / "logs"
    for stale in [out, *out.parent.glob(f"{out.name}.partial-*")]:
        stale.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # a folder left by a run stopped mid-build would be incomplete
    deadline = time.monotonic() + budget
    ctx.clock.say(f"image_files: building a JPEG folder ({' '.join(s.image_files_build)}) from {archive}")
    build = [sys.executable, script, "--build", str(folder), "--tarball", str(archive / "cifar10-jpeg.tar.xz"),
             *s.image_files_build]
    log = logs / "image_files_build.log"
    (code,) = run_bounded([build], budget, [log])
    if code == 0:
        ctx.clock.say(f"image_files: measuring ({' '.join(s.image_files_measure)})")
        measure = [sys.executable, script, "--folder", str(folder), *s.image_files_measure,
                   "--allocators", "retain_freed_memory", "--json", str(out)]
        log = logs / "image_files.log"
        (code,) = run_bounded([measure], max(deadline - time.monotonic(), 1), [log])
    if code != 0 or not out.is_file():
        state = "timeout" if code is None else "failed"
        return {"status": state, "rows": partial_image_file_rows(out),
                "error": f"file_pipeline.py {state} ({code}); end of its log:\n{tail(log)}"}
    report = json.loads(out.read_text())
    return {"status": "ok", "cpu_count": report["cpu_count"], "cuda": report["cuda"], "baseline": report["baseline"],
            "rows": image_file_rows(report["images_per_cpu_second"], report["baseline"]),
            "decode_images_per_second": report["decode_images_per_second"], "normalise": report["normalise"]}


def partial_image_file_rows(out: Path) -> list[dict]:
    """The rows a file_pipeline.py run stopped before writing `out` had finished: its measuring processes
    write their figures so far after each pass and worker count (file_pipeline.partial_path)."""
    rows = []
    for path in sorted(out.parent.glob(f"{out.name}.partial-*")):
        partial = json.loads(path.read_text())
        rows += image_file_rows({partial["allocator"]: partial["images_per_cpu_second"]}, partial["baseline"])
    return rows


def image_file_rows(by_allocator: dict[str, dict[str, dict[str, float]]], baseline: str) -> list[dict]:
    """One row per (allocator setting, pass and workers, pipeline) of file_pipeline.py's figures."""
    rows = []
    for allocator, settings in by_allocator.items():
        for setting, figures in settings.items():
            base = figures[baseline]
            rows += [{"setting": setting, "allocator": allocator, "pipeline": name, "images_per_cpu_second": rate,
                      "images_per_wall_second": figures[f"{name} (wall)"], "x_torchvision_per_core": rate / base}
                     for name, rate in figures.items() if not name.endswith("(wall)")]
    return rows


# ---------------------------------------------------------------------------------------------- part 5
def planned_epochs(ctx: Suite, budget: float) -> tuple[int, str]:
    """The preset's 120 epochs, or as many as part 3's cnn8 rate says fit (two processes share the GPU:
    counted 1.5x slower, plus validation), with the cosine schedule over those epochs."""
    if ctx.settings.drainage_epochs is not None:
        return ctx.settings.drainage_epochs, "--drainage-epochs"
    rates = [r["noisylab_images_per_s"] for r in ctx.results.get("throughput", {}).get("rows", [])
             if r["model"] == "cnn8" and not r["channels_last"] and not r["compile"]]
    if not rates:
        return 120, "the preset's (no cnn8 throughput measured to plan with); trainer.max_time stops it at the budget"
    epoch_seconds = 1.5 * 50_000 / rates[0] + 2.0
    fit = int((budget - 60) // epoch_seconds)  # 60 s: start-up, data, the final test
    if fit >= 120:
        return 120, "the preset's (they fit the budget)"
    return max(fit, 1), f"as many as fit the budget at about {epoch_seconds:.1f} s per epoch (of the preset's 120)"


def max_time(seconds: float) -> str:
    """Lightning's DD:HH:MM:SS for trainer.max_time, which ends training (then train.py tests) at that time."""
    total = max(int(seconds), 1)
    return f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def part_drainage(ctx: Suite, budget: float) -> dict:
    epochs, why = planned_epochs(ctx, budget)
    s = ctx.settings
    runs = {name: ctx.args.scratch / "drainage" / name for name in PRESETS}
    limits = [f"++trainer.limit_train_batches={s.batches}", f"++trainer.limit_val_batches={s.batches}",
              f"++trainer.limit_test_batches={s.batches}"] if s.dry_run else []
    commands = [[sys.executable, str(REPO / "train.py"), f"experiment={preset}", "noise=asymmetric", "noise.rate=0.45",
                 "seed=1", f"data.root={ctx.data_root}", *s.data_overrides, f"trainer={s.trainer}",
                 f"trainer.max_epochs={epochs}", f'++trainer.max_time="{max_time(budget - 45)}"',
                 *limits, "eval.plots=false", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
                 f"hydra.run.dir={runs[name]}"] for name, preset in PRESETS.items()]
    ctx.clock.say(f"drainage: CIFAR-10 asymmetric 0.45, drainage and CE at once, {epochs} epochs ({why})")
    logs = [ctx.args.scratch / "logs" / f"drainage_{name}.log" for name in PRESETS]
    codes = run_bounded(commands, budget, logs)
    result: dict = {"epochs_planned": epochs, "epochs_why": why, "runs": {}}
    for (name, run), code, log in zip(runs.items(), codes, logs, strict=True):
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        acc = metrics.get("test/acc")
        row = {"test_acc_percent": 100 * acc if finite(acc) else None, "published_percent": PUBLISHED[name],
               "epochs_done": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
               "realised_noise_rate": metrics.get("noise/realised_rate"), "exit_status": code}
        if not finite(acc):
            row["error"] = f"no finite test/acc; end of its log:\n{tail(log)}"
        result["runs"][name] = row
        ctx.clock.say(f"drainage {name}: test/acc {row['test_acc_percent']} after {row['epochs_done']} epochs "
                      f"(published {PUBLISHED[name]})")
    done = all(r["test_acc_percent"] is not None for r in result["runs"].values())
    complete = done and all(r["epochs_done"] == epochs for r in result["runs"].values())
    result["schedule_complete"] = complete
    result["status"] = "ok" if complete else "partial" if done else "timeout" if None in codes else "failed"
    return result


# ---------------------------------------------------------------------------------------------- results
def markdown(results: dict) -> str:
    """The figures as tables benchmarks/README.md can quote."""
    meta = results["suite"]
    lines = [f"# GPU suite ({meta['mode']}, {meta['started']})", "",
             f"Device: {results.get('throughput', {}).get('device', '?')}; torch "
             f"{results.get('throughput', {}).get('torch', '?')}; {meta['seconds']:.0f} s in all; "
             f"budgets (s): {meta['budgets']}", ""]
    for part in PARTS:
        lines.append(f"- {part}: {results.get(part, {}).get('status', 'not run')}")
    if "build_cifar10" in results and results["build_cifar10"].get("train_images"):
        b = results["build_cifar10"]
        lines += ["", f"CIFAR-10 built: {b['train_images']} training and {b['test_images']} test images "
                  f"in {b.get('build_seconds', 0):.1f} s{' (reused)' if b.get('reused') else ''}"]
    if results.get("smoke", {}).get("runs"):
        lines += ["", "| smoke | precision | passed | test/acc (SimCLR: val/loss/best) | last training loss |",
                  "| --- | --- | --- | ---: | ---: |"]
        for r in results["smoke"]["runs"]:
            value = r.get("test/acc", r.get("val/loss/best"))
            loss = next(iter(r.get("last_losses", {}).values()), None)
            lines.append(f"| {r['smoke']} | {r['precision']} | {'yes' if r['passed'] else 'NO'} | "
                         f"{'' if value is None else f'{value:.4f}'} | {'' if loss is None else f'{loss:.4f}'} |")
    if results.get("throughput", {}).get("rows"):
        lines += ["", "| model | channels_last | compile | precision | batch | train.py img/s | hand-written img/s "
                  "| ratio |", "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for r in results["throughput"]["rows"]:
            lines.append(f"| {r['model']} | {r['channels_last']} | {r['compile']} | {r['precision']} | "
                         f"{r['batch_size']} | {r['noisylab_images_per_s']:.0f} | "
                         f"{r['hand_written_images_per_s']:.0f} | {r['ratio']:.3f} |")
    if results.get("image_files", {}).get("rows"):
        f = results["image_files"]
        lines += ["", f"Image-file pipeline, {f['cpu_count']} CPU cores, CUDA {f['cuda']} (x: per core against "
                  f"{f['baseline']}, same allocator setting):", "",
                  "| pass, workers | pipeline | img/s per core | img/s wall | x |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for r in f["rows"]:
            lines.append(f"| {r['setting']} | {r['pipeline']} | {r['images_per_cpu_second']:.0f} | "
                         f"{r['images_per_wall_second']:.0f} | {r['x_torchvision_per_core']:.2f} |")
        lines += [""] + [f"- {name}: {rate:.0f} img/s" for name, rate in f["decode_images_per_second"].items()]
    if results.get("drainage", {}).get("runs"):
        d = results["drainage"]
        lines += ["", f"CIFAR-10, asymmetric 0.45, cnn8, seed 1: {d['epochs_planned']} epochs planned "
                  f"({d['epochs_why']}); schedule complete: {d['schedule_complete']}", "",
                  "| loss | test/acc % | published % | epochs done |", "| --- | ---: | ---: | ---: |"]
        for name, r in d["runs"].items():
            acc = r["test_acc_percent"]
            lines.append(f"| {name} | {'' if acc is None else f'{acc:.2f}'} | {r['published_percent']} | "
                         f"{r['epochs_done']} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_suite.json", json.dumps(results, indent=1) + "\n"), ("gpu_suite.md", markdown(results))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


@dataclass
class Suite:
    args: argparse.Namespace
    settings: Settings
    clock: Clock
    budgets: dict[str, float]
    results: dict = field(default_factory=dict)
    data_root: Path | None = None


def parse_budgets(items: list[str], dry_run: bool) -> dict[str, float]:
    budgets = dict(DRY_BUDGETS if dry_run else GPU_BUDGETS)
    for item in items:
        part, _, seconds = item.partition("=")
        if part not in budgets or not re.fullmatch(r"\d+(\.\d+)?", seconds):
            raise SystemExit(f"--budget-seconds {item}: expected PART=SECONDS with PART one of {', '.join(PARTS)}, "
                             "e.g. --budget-seconds drainage=240")
        budgets[part] = float(seconds)
    return budgets


def check_gpu_run(args: argparse.Namespace) -> None:
    """Before anything runs: the archive, Hydra (wheels on the lent machine) and a CUDA device are there."""
    if find_archive(args.cifar_archive) is None:
        where = args.cifar_archive or " or ".join(map(str, ARCHIVE_DEFAULTS))
        raise SystemExit(f"--cifar-archive: no folder with {', '.join(ARCHIVE_FILES)} at {where}. Copy it into the "
                         "repo first: mkdir -p .gpu_suite && cp -r ../shared/data/cifar10 .gpu_suite/ "
                         "(and carry .gpu_suite), or use --dry-run on a machine without GPU")
    try:
        import hydra  # noqa: F401
        import omegaconf  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc}: train.py needs hydra-core, omegaconf and antlr4; on a machine without network, "
                         "carry them as wheels in .whl/ and start with benchmarks/gpu_suite.sh (benchmarks/README.md)"
                         ) from exc
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: this suite is for a GPU; on CPU run it with --dry-run")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the suite itself (CI)")
    parser.add_argument("--cifar-archive", type=Path, help="folder with make_cifar10.py and cifar10-jpeg.tar.xz "
                        f"(default: the first of {', '.join(map(str, ARCHIVE_DEFAULTS))} that has them)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/noisylab-gpu-suite"),
                        help="built data, run folders and logs")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "benchmarks" / "results"),
                        help="folder for gpu_suite.json and gpu_suite.md (default: $OUT, else benchmarks/results)")
    parser.add_argument("--budget-seconds", action="append", default=[], metavar="PART=SECONDS",
                        help=f"a part's time budget; repeatable. GPU defaults {GPU_BUDGETS}, dry run {DRY_BUDGETS}")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of the parts to run")
    parser.add_argument("--precisions", type=lambda s: s.split(","), help="smoke precisions (default: "
                        "bf16-mixed,16-mixed; dry run: 32-true, as bf16 autocast is slow on CPUs without native bf16 "
                        "and Lightning runs 16-mixed as bf16 on CPU)")
    parser.add_argument("--drainage-epochs", type=int, help="epochs of part 5, the cosine schedule over them "
                        "(default: the preset's 120, or as many as the budget allows; dry run: 1)")
    parser.add_argument("--throughput-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.throughput_worker:
        return throughput_worker(args.throughput_worker)
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if not args.dry_run:
        check_gpu_run(args)
    args.scratch = args.scratch.resolve()
    args.scratch.mkdir(parents=True, exist_ok=True)
    ctx = Suite(args, settings_for(args), Clock(), parse_budgets(args.budget_seconds, args.dry_run))
    if args.dry_run:
        ctx.data_root = write_synthetic_cifar10(args.scratch / "synthetic")
    ctx.results["suite"] = {"mode": "dry-run" if args.dry_run else "gpu", "budgets": ctx.budgets, "seconds": 0.0,
                            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "parts": parts}
    steps: dict[str, Callable[[Suite, float], dict]] = {"build_cifar10": part_build, "smoke": part_smoke,
                                                        "throughput": part_throughput,
                                                        "image_files": part_image_files, "drainage": part_drainage}
    for part in parts:
        start = time.monotonic()
        if part in NEEDS_CIFAR10 and ctx.data_root is None:
            result = {"status": "skipped", "reason": "no CIFAR-10: part build_cifar10 did not build it"}
        else:
            budget = ctx.budgets[part]
            if part == "drainage":  # "if time remains": what the earlier parts left of their budgets, too
                budget += max(sum(ctx.budgets[p] for p in parts[: parts.index(part)]) - ctx.clock.elapsed(), 0)
            ctx.clock.say(f"part {part} (budget {budget:.0f} s)")
            try:
                result = steps[part](ctx, budget)
            except Exception as exc:  # one part's failure must not cost the figures of the others
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        ctx.results[part] = {**result, "seconds": time.monotonic() - start}
        ctx.results["suite"]["seconds"] = ctx.clock.elapsed()
        write_results(ctx.results, args.out)
        ctx.clock.say(f"part {part}: {result['status']} in {ctx.results[part]['seconds']:.1f} s; "
                      f"results in {args.out / 'gpu_suite.json'}")
    print(markdown(ctx.results), flush=True)


if __name__ == "__main__":
    main()
