"""The run folder: one run at a time, which checkpoint to continue from, whether a resume asks for the run
the folder holds, and files that must never be silently replaced."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path

from noisylab.noise.labels import NoisyLabels
from noisylab.utils.atomic import atomic_write_text
from noisylab.utils.checkpoints import checkpoint_progress, newest_valid_checkpoint, read_checkpoint

log = logging.getLogger(__name__)

LOCK_FILE = ".noisylab.lock"
FAILURE_FILE = "failed.json"

# Keys a resume may change: how long to train, where files go, what is logged and shown, how to test.
RESUMABLE_CHANGES = ("trainer.max_epochs", "paths.", "logger.", "resume", "ckpt_path", "test_on",
                     "callbacks.progress_bar", "callbacks.lr_monitor", "callbacks.mid_epoch_checkpoint.",
                     "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
                     "callbacks.model_summary", "callbacks.epoch_log", "print_config", "tags",
                     "data.num_workers", "data.root", "eval.plots", "retain_freed_memory")
# Keys that describe this launch, not the run: a resume takes them from its own command line (given or default).
PER_LAUNCH = ("resume", "ckpt_path", "test_on", "paths.", "retain_freed_memory")


class RunFolderBusyError(FileExistsError):
    """Another live process holds the run folder's lock."""


class ResumeMismatchError(ValueError):
    """A resume asks for another configuration than the one the run folder holds."""


@contextlib.contextmanager
def run_folder_lock(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `output_dir` for as long as the run lasts.

    An flock dies with its process, so a lock left by a killed run is never stale; the file's text (pid,
    host, start time) only names the holder in the error message.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderBusyError(
                f"{output_dir} is in use by another run ({holder}). Wait for it to finish, or start this run in "
                "another folder (leave hydra.run.dir at its default)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def has_results(output_dir: Path) -> bool:
    checkpoints = output_dir / "checkpoints"
    return (output_dir / "metrics.json").exists() or (checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")))


def checkpoint_to_resume(ckpt_path: str | None, resume: bool, output_dir: Path,
                         start_if_missing: bool = False) -> Path | None:
    """The checkpoint `trainer.fit` should continue from, checked before anything is built.

    - `resume=true`: the furthest-along readable checkpoint of this run folder (mid_epoch.ckpt, last.ckpt,
      best.ckpt), which must exist unless `start_if_missing` (a job of a resumed sweep that never wrote a
      checkpoint starts from scratch); damaged ones are named and passed over.
    - `ckpt_path=...` (without resume): that file, which must exist; the run folder must hold no results.
    - neither: None, and the run folder must not already hold results (they would be overwritten).
    """
    if resume:
        if ckpt_path:
            raise ValueError("give either resume=true (continue this run folder) or ckpt_path=<file> (start a new "
                             "run from another run's checkpoint), not both")
        newest = newest_valid_checkpoint(output_dir / "checkpoints")
        if newest is None and not start_if_missing:
            raise FileNotFoundError(
                f"resume=true but {output_dir / 'checkpoints' / 'last.ckpt'} does not exist. Re-run in the folder of "
                "the run to continue (hydra.run.dir=<run folder>), or give ckpt_path=<file>."
            )
        return newest
    if has_results(output_dir):
        raise FileExistsError(
            f"{output_dir} already holds the results of an earlier run (checkpoints or metrics.json). Continue it "
            "with resume=true, or start a new run in another folder (leave hydra.run.dir at its default)."
        )
    if ckpt_path:
        path = Path(to_absolute_path(str(ckpt_path)))
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint ({path})")
        checkpoint_progress(path)  # a damaged file is named now, before the new run writes anything
        return path
    return None


def saved_run_config(checkpoint: Path) -> dict[str, Any]:
    """The resolved config a checkpoint was trained with (StandardMethod stores it)."""
    return dict(read_checkpoint(checkpoint).get("hyper_parameters", {}).get("run_config") or {})


def _matches(key: str, names: Collection[str]) -> bool:
    """Whether dotted `key` is one of `names` or lies below one (`paths.` or `paths`: every key under paths)."""
    return any(key == name.rstrip(".") or key.startswith(name if name.endswith(".") else f"{name}.") for name in names)


_Path = tuple[Any, ...]
_ABSENT = object()


def _leaves(config: Any, path: _Path = ()) -> dict[_Path, Any]:
    """Key path -> value of every leaf (a scalar, a list, an empty mapping); paths keep int keys as ints."""
    if isinstance(config, Mapping) and config:
        return {leaf: value for key, child in config.items() for leaf, value in _leaves(child, (*path, key)).items()}
    return {path: config}


def _dotted(path: _Path) -> str:
    return ".".join(map(str, path))


def _set_leaf(config: dict, path: _Path, value: Any) -> None:
    node = config
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


def _drop_leaf(config: dict, path: _Path) -> None:
    """Remove the leaf at `path` and the mappings it leaves empty."""
    nodes = [config]
    for key in path[:-1]:
        child = nodes[-1].get(key)
        if not isinstance(child, dict):
            return
        nodes.append(child)
    nodes[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if nodes[depth]:
            break
        nodes[depth - 1].pop(path[depth - 1], None)


def _references(raw: Any) -> set[str]:
    """The dotted keys an interpolation (`${trainer.max_epochs}`, `${oc.select:a.b,0}`) reads; empty otherwise."""
    if not isinstance(raw, str) or "${" not in raw:
        return set()
    return {token for inner in re.findall(r"\$\{([^}]*)\}", raw) for token in re.findall(r"[A-Za-z_][\w.]*", inner)}


def resume_config(saved: Mapping[str, Any], requested: Mapping[str, Any], requested_raw: Mapping[str, Any],
                  baseline_raw: Mapping[str, Any] | None, named: Collection[str] = ()
                  ) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The config a resumed run trains with: the run's own, with what this command line gave.

    `saved` is the run's resolved config (from its checkpoint), `requested` this command line's config resolved
    and `requested_raw` unresolved; `baseline_raw` is the config composed without any command-line override, so a
    key is *given* where the two differ (a value, a group choice, an experiment preset), and where the command
    line names it or its group (`named`: `noise.rate`, `loss`), also with the default's value. None (no Hydra
    command line, e.g. the library API) counts every key as given: the requested config must then match the run's.

    Given keys and PER_LAUNCH keys come from the command line, every other key from the run. A key that follows
    a given one by interpolation (cosine's `sched.T_max: ${trainer.max_epochs}`) and so would change with it
    comes from the command line too, so that `check_resume_matches` names it. Returns (the config, [(key, value)
    taken from the run where this command line's defaults differ]).
    """
    new, raw, run = _leaves(requested), _leaves(requested_raw), _leaves(saved)
    base = _leaves(baseline_raw) if baseline_raw is not None else None

    def given(path: _Path) -> bool:
        name = _dotted(path)
        return base is None or _matches(name, PER_LAUNCH) or _matches(name, named) \
            or raw.get(path, _ABSENT) != base.get(path, _ABSENT)

    paths = list(dict.fromkeys([*new, *run, *raw, *(base or {})]))
    given_names = {_dotted(p) for p in paths if given(p) and not _matches(_dotted(p), PER_LAUNCH)}

    def follows_given(path: _Path) -> bool:
        return any(ref == name or name.startswith(f"{ref}.") or ref.startswith(f"{name}.")
                   for ref in _references(raw.get(path)) for name in given_names)

    effective = copy.deepcopy(dict(saved))
    taken: list[tuple[str, Any]] = []
    from_command_line = [p for p in paths if given(p) or (follows_given(p) and new.get(p, _ABSENT) != run.get(p))]
    for path in from_command_line:  # removals first: a given leaf may replace a removed subtree (logger=[])
        if path not in new:
            _drop_leaf(effective, path)
    for path in from_command_line:
        if path in new:
            _set_leaf(effective, path, new[path])
    chosen = set(from_command_line)
    for path in paths:
        if path not in chosen and path in run and new.get(path, _ABSENT) != run[path]:
            taken.append((_dotted(path), run[path]))
    return effective, taken


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(saved: Mapping[str, Any], requested: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, requested value) for every key whose value differs and may not change on resume."""
    old, new = _flatten(saved), _flatten(requested)
    missing = object()
    differences = []
    for key in sorted(old.keys() | new.keys()):
        if _matches(key, RESUMABLE_CHANGES):
            continue
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            differences.append((key, "(absent)" if before is missing else before,
                                "(absent)" if after is missing else after))
    return differences


def check_resume_matches(checkpoint: Path, requested: Mapping[str, Any],
                         saved: Mapping[str, Any] | None = None) -> None:
    """Refuse a resume whose config differs from the run's own beyond RESUMABLE_CHANGES, listing the keys.

    `saved` is the run's config when already read from `checkpoint`. A schedule whose horizon follows
    trainer.max_epochs (cosine's T_max) changes with it: continuing a run with more epochs would then jump to
    another learning-rate curve, so that is called out by name.
    """
    saved = saved_run_config(checkpoint) if saved is None else saved
    if not saved:
        return  # a checkpoint from outside noisylab's training: nothing to compare
    differences = config_differences(saved, requested)
    if not differences:
        return
    lines = "\n".join(f"  {key}: {before!r} in the run, {after!r} now" for key, before, after in differences)
    hint = ""
    if any(key == "sched.T_max" for key, _, _ in differences):
        old_t_max = next(before for key, before, _ in differences if key == "sched.T_max")
        hint = (f"\nsched.T_max follows trainer.max_epochs: the run's cosine schedule ended at epoch {old_t_max}. "
                f"To train on with the run's schedule give sched.T_max={old_t_max}; for a longer schedule start a "
                "new run.")
    raise ResumeMismatchError(
        f"resume=true in {checkpoint.parent.parent}, but this command line asks for another configuration than "
        f"the run's:\n{lines}\nA resume trains with the run's own config (stored in its checkpoint): leave these "
        f"keys out, or give the run's values. Only {', '.join(k.rstrip('.') for k in RESUMABLE_CHANGES)} may "
        f"change on resume. For other values start a new run in another folder (ckpt_path={checkpoint} starts it "
        f"from this run's weights).{hint}"
    )


def finished_metrics(output_dir: Path, max_epochs: int) -> dict | None:
    """The metrics of a run in `output_dir` that already trained `max_epochs` epochs and was tested, else
    None (a run stopped early, or asked now for more epochs, is not finished)."""
    path = output_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if int(metrics.get("epochs", -1)) >= max_epochs else None


def record_noisy_labels(labels: NoisyLabels, path: Path) -> None:
    """Save the run's noisy labels, or check that the ones already there (a resumed run) are identical."""
    if path.exists():
        saved = NoisyLabels.load(path)
        if not saved.same_as(labels):
            raise ValueError(
                f"{path} holds different noisy labels than this config produces; the run folder belongs to "
                "another configuration. Use its own config (or noise=file noise.path=" + str(path) + ")."
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    labels.save(path)


def record_failure(output_dir: Path, exc: BaseException) -> None:
    """Write failed.json (error, message, traceback, time) so the sweep summary and the report can list it."""
    atomic_write_text(output_dir / FAILURE_FILE, json.dumps({
        "error": type(exc).__name__, "message": str(exc), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "traceback": "".join(traceback.format_exception(exc)),
    }, indent=2) + "\n")


def clear_failure(output_dir: Path) -> None:
    """A new attempt of a job: an earlier failure record no longer describes the folder."""
    with contextlib.suppress(FileNotFoundError):
        (output_dir / FAILURE_FILE).unlink()
