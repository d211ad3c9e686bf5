"""The GPU suite's CPU dry run: every part of benchmarks/gpu_suite.py, through its shell wrapper, at tiny sizes,
so the suite is known to work before the first minute of a lent GPU is spent on it."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SMOKES = {"standard_drainage", "standard_dismax", "dividemix", "instancegm", "meta_weight_net", "simclr"}


def finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def write_fake_archive(folder: Path, n_train: int = 30, n_test: int = 10) -> Path:
    """make_cifar10.py's input at tiny size: {train,test}/<class>/<k>.jpg in cifar10-jpeg.tar.xz (k counting
    each class's occurrences in label order) and the label order in {train,test}_labels.npy."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with tarfile.open(folder / "cifar10-jpeg.tar.xz", "w:xz") as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            labels = rng.integers(0, 10, size=n)
            np.save(folder / f"{split}_labels.npy", labels)
            for c in range(10):
                for k in range(int((labels == c).sum())):
                    data = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data, "JPEG")
                    member = tarfile.TarInfo(f"{split}/{CLASSES[c]}/{k:04d}.jpg")
                    member.size = data.getbuffer().nbytes
                    data.seek(0)
                    tar.addfile(member, data)
    shutil.copy(SHARED_DATA / "cifar10" / "make_cifar10.py", folder)
    return folder


@pytest.mark.slow
def test_dry_run_reports_every_part_with_finite_figures(tmp_path: Path) -> None:
    """Archive build (a tiny fake archive through the real make_cifar10.py, when ../shared has it), the
    smoke of every method, the throughput ratios, the image-file pipeline (on JPEGs from that archive) and
    the drainage row: JSON and markdown, finite numbers."""
    args = ["--dry-run", "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")]
    have_builder = (SHARED_DATA / "cifar10" / "make_cifar10.py").is_file()
    if have_builder:
        args += ["--cifar-archive", str(write_fake_archive(tmp_path / "archive"))]
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), *args], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
    assert results["suite"]["mode"] == "dry-run"

    build = results["build_cifar10"]
    if have_builder:
        assert build["status"] == "ok", build
        assert (build["train_images"], build["test_images"]) == (30, 10)
    else:
        assert build["status"] == "skipped"

    smoke = results["smoke"]
    assert smoke["status"] == "ok", [r for r in smoke["runs"] if not r["passed"]]
    assert {r["smoke"] for r in smoke["runs"]} == SMOKES and all(r["passed"] for r in smoke["runs"])
    for run in smoke["runs"]:
        value = run["val/loss/best"] if run["smoke"] == "simclr" else run["test/acc"]
        assert math.isfinite(value) and run["last_losses"]
        assert all(math.isfinite(v) for v in run["last_losses"].values())

    throughput = results["throughput"]
    assert throughput["status"] == "ok", throughput.get("error")
    assert {(r["model"], r["channels_last"], r["compile"]) for r in throughput["rows"]} == {
        ("cnn8", False, False), ("cnn8", True, False)}
    for row in throughput["rows"]:
        assert all(math.isfinite(row[k]) and row[k] > 0
                   for k in ("noisylab_images_per_s", "hand_written_images_per_s", "ratio"))

    image_files = results["image_files"]
    if have_builder:  # the JPEG folder is built from the archive's tarball
        assert image_files["status"] == "ok", image_files.get("error")
        rows = {(r["setting"], r["pipeline"]): r for r in image_files["rows"]}
        assert {setting for setting, _ in rows} == {"train, 0 workers", "eval, 0 workers"}
        for (_, pipeline), row in rows.items():
            assert finite_positive(row["images_per_cpu_second"]) and finite_positive(row["x_torchvision_per_core"])
            if pipeline == image_files["baseline"]:
                assert row["x_torchvision_per_core"] == 1.0
        assert all(finite_positive(rate) for rate in image_files["decode_images_per_second"].values())
    else:
        assert image_files["status"] == "skipped"

    drainage = results["drainage"]
    assert drainage["status"] == "ok" and drainage["schedule_complete"], drainage
    for name, published in (("drainage", 82.23), ("ce", 77.92)):
        run = drainage["runs"][name]
        assert 0 <= run["test_acc_percent"] <= 100 and run["published_percent"] == published
        assert run["epochs_done"] == 1

    md = (tmp_path / "out" / "gpu_suite.md").read_text()
    assert "| dividemix | 32-true | yes |" in md and "82.23" in md and "| cnn8 | True | False |" in md
    assert ("| train, 0 workers | noisylab (reduced-size decode) |" in md) == have_builder


def test_a_gpu_run_without_the_archive_stops_before_anything_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--cifar-archive",
                           str(tmp_path / "nowhere"), "--scratch", str(tmp_path / "scratch"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--cifar-archive" in proc.stderr and "cifar10-jpeg.tar.xz" in proc.stderr and ".gpu_suite" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "scratch").exists()


@pytest.mark.slow
def test_image_files_keeps_the_figures_measured_before_a_run_is_stopped(tmp_path: Path) -> None:
    """The image_files part stops file_pipeline.py at its time budget; the passes it had measured by then
    still reach the results (file_pipeline.py writes its figures so far after each pass and worker count).
    Here the run stops at its second worker setting, 99 workers for 6 batches, which it refuses."""
    from PIL import Image

    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_suite

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 4)):
        for c in CLASSES[:2]:
            (tmp_path / "jpegs" / split / c).mkdir(parents=True)
            for k in range(n // 2):
                image = rng.integers(0, 256, (int(rng.integers(240, 300)), int(rng.integers(240, 300)), 3), np.uint8)
                Image.fromarray(image).save(tmp_path / "jpegs" / split / c / f"{k}.jpg", quality=90)
    out = tmp_path / "file_pipeline.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "file_pipeline.py"), "--folder",
                          str(tmp_path / "jpegs"), "--workers", "0", "99", "--rounds", "1", "--batches", "2",
                          "--batch-size", "4", "--allocators", "retain_freed_memory", "--json", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode != 0 and "99 workers" in run.stderr and not out.exists()
    rows = gpu_suite.partial_image_file_rows(out)
    assert {r["setting"] for r in rows} == {"train, 0 workers"}
    assert {r["pipeline"] for r in rows} == {"torchvision ImageFolder + PIL transforms",
                                             "noisylab, full decode (before)", "noisylab (reduced-size decode)"}
    assert {r["allocator"] for r in rows} == {"retain_freed_memory"}
    assert all(finite_positive(r["images_per_cpu_second"]) for r in rows)
