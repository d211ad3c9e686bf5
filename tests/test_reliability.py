"""Runs that a crash, a full disk or a second run cannot corrupt (docs/reliability.md lists the cases).

The fault cases run real train.py processes on digits: kill -9 at a random point, a run folder on another
filesystem than $TMPDIR, a small full filesystem (where this machine lets the test mount one), two runs in
one folder at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from noisylab.run_folder import run_folder_lock
from noisylab.train import run
from noisylab.utils.atomic import atomic_write_bytes, remove_torn_temporaries
from noisylab.utils.checkpoints import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    DamagedCheckpointError,
    newest_valid_checkpoint,
)
from tests.conftest import QUICK, REPO, compose_config, read_metrics, run_train
from tests.fixtures import write_image_folder

FAST = ["callbacks.progress_bar=null", "trainer.enable_model_summary=false", "eval.plots=false"]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _steps_per_epoch(run_dir: Path) -> int:
    last = _load(run_dir / "checkpoints" / "last.ckpt")
    return last["global_step"] // (last["epoch"] + 1)


# ------------------------------------------------------------------ last.ckpt is the last epoch
@pytest.mark.slow
def test_last_ckpt_holds_the_last_epoch_and_test_on_last_tests_it(tmp_path: Path) -> None:
    """Pins Lightning behaviour: with save_last on the best-checkpoint callback, Lightning 2.6 rewrote
    last.ckpt only on a new best; noisylab's own last-checkpoint callback writes it every epoch."""
    out = tmp_path / "run"
    run_train([*FAST, "trainer.max_epochs=6", "test_on=last", f"hydra.run.dir={out}"], cwd=tmp_path)
    last, best = _load(out / "checkpoints" / "last.ckpt"), _load(out / "checkpoints" / "best.ckpt")
    metrics = read_metrics(out)
    assert metrics["epochs"] == 6
    assert last["epoch"] == 5  # 0-based: the sixth and last epoch
    assert last["global_step"] == 6 * _steps_per_epoch(out)
    assert best["epoch"] == metrics["best_epoch"] <= 5
    assert metrics["tested_checkpoint"] == str(out / "checkpoints" / "last.ckpt")


def test_no_monitored_metric_still_writes_metrics(tmp_path: Path) -> None:
    """callbacks.model_checkpoint.monitor=null used to crash the run summary (float(None))."""
    out = tmp_path / "run"
    metrics = run(compose_config(out, ["trainer.max_epochs=1", "callbacks.model_checkpoint.monitor=null",
                                       "eval.plots=false"]))
    assert "val/best_acc" not in metrics and (out / "metrics.json").is_file()
    assert _load(out / "checkpoints" / "last.ckpt")["epoch"] == 0


# ------------------------------------------------------------------ atomic checkpoint files
def _checkpoint(step: int) -> dict:
    return {"global_step": step, "epoch": step // 10, "state_dict": {"w": torch.full((4,), float(step))}}


def test_a_checkpoint_is_written_beside_its_target_and_renamed(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file lies in the checkpoint's own folder (a rename there is atomic; fsspec's lay in
    $TMPDIR, which made the last step a cross-filesystem copy)."""
    renames: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((src, dst)), real_replace(src, dst)))
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(3), target)
    assert [Path(src).parent for src, _ in renames] == [target.parent]
    assert _load(target)["global_step"] == 3


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise OSError(28, "No space left on device")  # what a full disk raises half-way through a save


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(3), target)
    with pytest.raises(CheckpointWriteError, match="disk is full.*previous last.ckpt.*intact.*resume=true"):
        io.save_checkpoint({**_checkpoint(4), "bad": _Unpicklable()}, target)
    assert _load(target)["global_step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_only_the_temporaries_of_unfinished_atomic_writes_are_removed(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "last.ckpt", b"saved")
    torn = tmp_path / ".last.ckpt.abc123.tmp"
    torn.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("a user's file")  # not one of ours: no leading dot
    assert remove_torn_temporaries(tmp_path) == [torn]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.tmp"]


def test_atomic_write_keeps_file_permissions_like_a_plain_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode


# ------------------------------------------------------------------ damaged checkpoints at resume
def test_resume_passes_over_a_damaged_checkpoint_and_names_it(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "checkpoints"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(20), folder / "best.ckpt")
    io.save_checkpoint(_checkpoint(30), folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # cut short outside noisylab
    assert newest_valid_checkpoint(folder) == folder / "best.ckpt"
    assert "last.ckpt" in caplog.text and "bytes" in caplog.text
    (folder / "best.ckpt").write_bytes(b"")
    with pytest.raises(DamagedCheckpointError, match=r"best.ckpt \(0 bytes\).*Delete it"):
        newest_valid_checkpoint(folder)


def test_resume_takes_the_furthest_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(30), folder / "last.ckpt")
    io.save_checkpoint(_checkpoint(25), folder / "mid_epoch.ckpt")  # from before the last epoch ended
    assert newest_valid_checkpoint(folder) == folder / "last.ckpt"
    io.save_checkpoint(_checkpoint(34), folder / "mid_epoch.ckpt")
    assert newest_valid_checkpoint(folder) == folder / "mid_epoch.ckpt"


def test_a_damaged_checkpoint_given_as_ckpt_path_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_train([*QUICK, f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert f"{bad} (16 bytes) is not a readable checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "noisy_labels.npz").exists()  # refused before the new run wrote anything


# ------------------------------------------------------------------ kill -9 within an epoch
@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A folder on another filesystem than $TMPDIR (/dev/shm), where one exists."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("no folder on another filesystem than $TMPDIR here")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="noisylab-test-"))
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.mark.slow
def test_kill_9_within_an_epoch_then_resume_ends_where_an_uninterrupted_run_ends(
        tmp_path: Path, other_filesystem: Path) -> None:
    """Mid-epoch checkpoints every 3 steps, the run folder on another filesystem than $TMPDIR, kill -9 at a
    random moment of training; resume=true continues from the furthest checkpoint and ends bit-exact."""
    common = [*FAST, "trainer.deterministic=true", "trainer.max_epochs=8",
              "callbacks.mid_epoch_checkpoint.every_n_steps=3"]
    full, killed = tmp_path / "full", other_filesystem / "killed"
    run_train([*common, f"hydra.run.dir={full}"], cwd=tmp_path)
    steps = _load(full / "checkpoints" / "last.ckpt")["global_step"]

    for latest in (1.0, 0.3, 0.0):  # a busy machine may finish the run before the kill: kill sooner then
        subprocess.run(["rm", "-rf", str(killed)], check=True)
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *common, f"hydra.run.dir={killed}"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mid = killed / "checkpoints" / "mid_epoch.ckpt"
        deadline = time.monotonic() + 240
        while not mid.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.Random().uniform(0.0, latest))  # somewhere in the epochs that follow, often mid-save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (killed / "metrics.json").exists():
            break
    assert not (killed / "metrics.json").exists(), "the run finished before it was killed, three times"
    resumed_from = newest_valid_checkpoint(killed / "checkpoints")
    assert resumed_from is not None and _load(resumed_from)["global_step"] < steps

    run_train([*common, "resume=true", f"hydra.run.dir={killed}"], cwd=tmp_path)
    reference, resumed = _load(full / "checkpoints" / "last.ckpt"), _load(killed / "checkpoints" / "last.ckpt")
    assert (resumed["epoch"], resumed["global_step"]) == (reference["epoch"], steps)
    for key, value in reference["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    ours, theirs = read_metrics(killed), read_metrics(full)
    for key, value in theirs.items():
        if key.startswith(("test/", "val/")) or key == "best_epoch":
            assert ours[key] == value, key
    assert not list((killed / "checkpoints").glob(".*.tmp"))  # no temporary file survives the resume


@pytest.mark.slow
def test_image_files_resume_exactly_at_and_within_an_epoch_whatever_the_workers(tmp_path: Path) -> None:
    """An ImageNet-style folder of JPEGs, decoded and augmented (RandomResizedCrop) in persistent worker
    processes; 64 px crops, as the resolution plays no part here and 224 px made this test 3 minutes long.
    Each sample's augmentation is seeded by (seed, epoch, index), and the loader starts when the first batch
    is asked for (a resumed fit makes its first iterator before it restores the epoch, and workers
    prefetched that epoch's indices): resumed from epoch 0's end, or from within epoch 1, the run ends as an
    uninterrupted one; with 0 workers too."""
    write_image_folder(tmp_path / "datasets", classes=4, per_class=28)
    common = [*FAST, "data=imagenet_folder", f"data.root={tmp_path / 'datasets'}", "data.source_kwargs.image_size=64",
              "data.val_size=8", "noise=symmetric", "model=small_cnn", "data.batch_size=8",
              "trainer.deterministic=true", "trainer.max_epochs=2", "test_on=none"]
    workers = ["data.num_workers=2"]
    # The uninterrupted run also saves within epoch 1 (13 steps per epoch), at step 16: what a run killed
    # after that step leaves (a save changes nothing in the training that follows it).
    run_train([*common, *workers, "callbacks.mid_epoch_checkpoint.every_n_steps=16",
               f"hydra.run.dir={tmp_path / 'full'}"], cwd=tmp_path)
    mid = tmp_path / "full" / "checkpoints" / "mid_epoch.ckpt"
    assert (_load(mid)["epoch"], _load(mid)["global_step"]) == (1, 16)
    # Epoch 0 with no worker process, epoch 1 resumed with two.
    run_train([*common, "data.num_workers=0", "trainer.max_epochs=1", "sched.T_max=2",
               f"hydra.run.dir={tmp_path / 'split'}"], cwd=tmp_path)
    run_train([*common, *workers, "resume=true", f"hydra.run.dir={tmp_path / 'split'}"], cwd=tmp_path)
    # Continued from within epoch 1, from the mid-epoch checkpoint.
    run_train([*common, *workers, f"ckpt_path={mid}", f"hydra.run.dir={tmp_path / 'mid'}"], cwd=tmp_path)
    reference = _load(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    for name in ("split", "mid"):
        weights = _load(tmp_path / name / "checkpoints" / "last.ckpt")["state_dict"]
        assert all(torch.equal(value, weights[key]) for key, value in reference.items()), name


def test_mid_epoch_checkpoints_are_refused_where_a_resume_could_not_be_exact(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="mid_epoch_checkpoint: DivideMix keeps state within an epoch"):
        run(compose_config(out, ["method=dividemix", "method.warmup_epochs=1",
                                 "callbacks.mid_epoch_checkpoint.every_n_minutes=30"]))
    assert not (out / "noisy_labels.npz").exists()


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 700 KiB tmpfs: room for the run's first two checkpoints (about 250 KiB each), not a third."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("this machine does not let the tests mount a small filesystem")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_clearly_and_keeps_its_checkpoints(tmp_path: Path,
                                                                     small_filesystem: Path) -> None:
    out = small_filesystem / "run"
    proc = run_train([*FAST, "trainer.max_epochs=4", f"hydra.run.dir={out}"], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "could not write checkpoint" in proc.stderr and "MiB free there now" in proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("best.ckpt", "last.ckpt"):  # each still the complete file it was before
        state = _load(out / "checkpoints" / name)
        assert state["epoch"] == 0
    assert not list((out / "checkpoints").glob(".*.tmp"))


# ------------------------------------------------------------------ one run per folder
@pytest.mark.slow
def test_two_runs_in_one_folder_at_once(tmp_path: Path) -> None:
    """The second is refused while the first runs; the first finishes with its own config and results."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, str(REPO / "train.py"), *FAST, "trainer.max_epochs=3", "seed=1",
                              f"hydra.run.dir={out}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while not (out / "noisy_labels.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first run holds the lock before it writes any file of its own
    first.send_signal(signal.SIGSTOP)  # paused mid-run, lock held: however long the second takes to start
    try:
        second = run_train([*FAST, "trainer.max_epochs=1", "seed=2", f"hydra.run.dir={out}"], cwd=tmp_path,
                           check=False)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 1 and "is in use by another run (pid" in second.stderr
    assert read_metrics(out)["epochs"] == 3
    assert "seed=1" in yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["seed"] == 1


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A lock left by a killed run is not stale: the kernel drops an flock with its process."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from noisylab.run_folder import run_folder_lock\n"
                               f"with run_folder_lock(Path({str(tmp_path)!r})):\n"
                               "    print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(FileExistsError, match=f"pid {holder.pid}"), run_folder_lock(tmp_path):
        pass
    holder.kill()
    holder.wait()
    with run_folder_lock(tmp_path):
        pass


@pytest.mark.slow
def test_a_finished_runs_folder_is_never_written_by_another_run(tmp_path: Path) -> None:
    """ckpt_path=<other run> (and a plain re-run) in a finished run's folder: refused, and its metrics.json,
    checkpoints and Hydra record (which Hydra rewrites before the run starts) are as they were."""
    done, other = tmp_path / "done", tmp_path / "other"
    run_train([*QUICK, "eval.plots=false", "seed=1", f"hydra.run.dir={done}"], cwd=tmp_path)
    run_train([*QUICK, "eval.plots=false", "seed=2", f"hydra.run.dir={other}"], cwd=tmp_path)
    before = {p: p.read_bytes() for p in [done / "metrics.json", done / "checkpoints" / "last.ckpt",
                                          *(done / ".hydra").glob("*.yaml")]}
    for extra in ([f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}"], []):
        proc = run_train([*QUICK, "seed=2", *extra, f"hydra.run.dir={done}"], cwd=tmp_path, check=False)
        assert proc.returncode == 1 and "already holds the results of an earlier run" in proc.stderr
        assert {p: p.read_bytes() for p in before} == before


# ------------------------------------------------------------------ resume checks what it resumes
@pytest.mark.slow
def test_resume_refuses_another_config_and_calls_out_a_cosine_horizon(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_train([*QUICK, "eval.plots=false", "noise.rate=0.4", f"hydra.run.dir={out}"], cwd=tmp_path)
    metrics = (out / "metrics.json").read_bytes()
    proc = run_train([*QUICK, "resume=true", "noise.rate=0.2", f"hydra.run.dir={out}"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "noise.rate: 0.4 in the run, 0.2 now" in proc.stderr
    assert "nothing to resume" not in proc.stdout + proc.stderr
    proc = run_train([*QUICK, "resume=true", "trainer.max_epochs=3", f"hydra.run.dir={out}"], cwd=tmp_path,
                     check=False)
    assert proc.returncode == 1 and "sched.T_max follows trainer.max_epochs" in proc.stderr
    assert "give sched.T_max=2" in proc.stderr
    assert (out / "metrics.json").read_bytes() == metrics
    # With the run's own horizon it continues, and the logger and progress settings may change.
    run_train([*QUICK, "resume=true", "trainer.max_epochs=3", "sched.T_max=2", "logger=[]", "callbacks.lr_monitor=null",
               f"hydra.run.dir={out}"], cwd=tmp_path)
    assert read_metrics(out)["epochs"] == 3


@pytest.mark.slow
def test_a_sweep_with_a_failing_job_finishes_and_says_so(tmp_path: Path) -> None:
    """-m noise.rate=0.2,1.5,0.4: job 1 is refused and recorded, job 2 still runs, the sweep ends with a
    summary and status 1; resuming the sweep with its values reordered refuses each job's swap."""
    sweep = tmp_path / "sweep"
    command = ["-m", "noise.rate=0.2,1.5,0.4", "loss=ce", f"hydra.sweep.dir={sweep}", *QUICK[1:],
               "trainer.max_epochs=1", "eval.plots=false"]
    proc = run_train(command, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "2 of 3 jobs finished, 1 failed" in proc.stderr and f"failed: {sweep / '1'}" in proc.stderr
    assert json.loads((sweep / "1" / "failed.json").read_text())["message"].startswith("noise.rate must be in [0, 1)")
    assert read_metrics(sweep / "2")["epochs"] == 1

    report = subprocess.run([sys.executable, "-m", "noisylab.report", str(sweep)], capture_output=True, text=True,
                            check=False)
    assert "failed: ValueError: noise.rate must be in [0, 1)" in report.stdout + report.stderr

    metrics = {job: (sweep / job / "metrics.json").read_bytes() for job in ("0", "2")}
    reordered = ["-m", "noise.rate=0.4,1.5,0.2", *command[2:], "resume=true"]
    proc = run_train(reordered, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "0 of 3 jobs finished, 3 failed" in proc.stderr
    assert "noise.rate: 0.2 in the run, 0.4 now" in proc.stderr + proc.stdout
    assert {job: (sweep / job / "metrics.json").read_bytes() for job in ("0", "2")} == metrics


# ------------------------------------------------------------------ trainer settings, before any file
def test_an_unusable_trainer_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="trainer"):
        run(compose_config(out, ["trainer.precision=fp7"]))
    assert not (out / "noisy_labels.npz").exists() and not (out / "plots").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_trainer_gpu_without_a_gpu_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="trainer"):
        run(compose_config(out, ["trainer=gpu"]))
    assert not (out / "noisy_labels.npz").exists() and not (out / "plots").exists()
