"""Summarise a folder of runs (a sweep, or single runs side by side): one row per setting, mean ± std over seeds.

    python -m noisylab.report multirun/2024-05-01/12-00-00 [--out DIR] [--metrics test/acc,test/ece]

A setting is what the runs' configs say was trained, not how the runs were started: runs whose configs
differ only by the seed (and the seeds that follow it), by where they write or by how they were resumed
are seeds of one setting, whatever overrides built them. Writes summary.csv, summary.md and plots of
metrics against the noise rate; runs that did not finish are listed, never silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markdown import Markdown  # noqa: E402

from noisylab.utils.atomic import atomic_open, atomic_save, atomic_write_text  # noqa: E402

DEFAULT_METRICS = (
    "test/acc", "test/selective_acc", "test/drainage_rate", "test/ece", "test/ood/auroc",
    "train/noise_detection_auroc", "val/best_acc",
)  # fmt: skip
# Metrics (by the last part of their name) where a smaller value is the better one.
LOWER_IS_BETTER = frozenset({"ece", "nll", "brier", "fpr95", "aurc", "loss"})
# Config keys that say where a run read and wrote its files, or how it was started (a resumed run ends where
# an uninterrupted one does), not what it trained.
NOT_SETTING = (
    "seed", "paths.*", "hydra.*", "logger.*", "callbacks.*.dirpath", "trainer.default_root_dir", "data.root",
    "ckpt_path", "resume",
)  # fmt: skip
# Columns of config groups come first, in this order (then other groups by name, then single config keys).
GROUP_ORDER = ("experiment", "data", "model", "method", "loss", "noise")
# metric -> file stem of its plot against the swept numeric key.
PLOTS = {"test/acc": "acc", "test/ood/auroc": "ood_auroc", "test/drainage_rate": "drainage_rate"}
NOISE_RATE = "noise.rate"

Value = str | int | float | bool | None


class Marker(Enum):
    """Config values that are not values: the key is missing from a run, or follows the run's seed."""

    ABSENT = "—"
    FOLLOWS_SEED = "seed"


@dataclass(frozen=True)
class Run:
    """A finished run: what it trained (flat config), how its config groups were chosen, what it measured."""

    folder: Path
    config: dict[str, Value]
    choices: dict[str, str | None]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Incomplete:
    """A run folder without usable results, and why: reported so that a crashed job is noticed."""

    folder: Path
    reason: str


@dataclass
class Setting:
    """Runs with the same config up to the seed; `key` holds the config values that set it apart."""

    key: dict[str, Value | Marker]
    runs: list[Run]

    def choice(self, group: str) -> str:
        """The option chosen for a config group (several, joined by "/", if equal configs came from different
        options)."""
        options = {run.choices.get(group, Marker.ABSENT.value) for run in self.runs}
        return "/".join(sorted("null" if option is None else str(option) for option in options))

    def stats(self, metric: str) -> tuple[float, float | None] | None:
        """Mean and sample standard deviation (n - 1: the spread to expect between seeds) over the runs that
        report `metric`; the deviation is None for a single run, and the whole is None for none."""
        values = [v for run in self.runs if _is_number(v := run.metrics.get(metric))]
        if not values:
            return None
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def note(message: str) -> None:
    """Progress and skipped items go to stderr, so that stdout holds only the table."""
    print(message, file=sys.stderr)


# --- finding and reading runs -------------------------------------------------------------------------------


def find_run_folders(root: Path) -> list[Path]:
    """Every folder below `root` (itself included) that holds `.hydra/config.yaml`, in natural order
    (job 2 before job 10)."""
    folders = {p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"}
    return sorted(folders, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])


def flatten_config(node: DictConfig, prefix: str = "") -> dict[str, Value]:
    """Dotted key -> value, interpolations resolved where they can be outside Hydra (`${seed}`) and kept as
    written where they cannot (`${hydra:runtime.output_dir}`, `???`). Lists become one JSON value."""
    raw = OmegaConf.to_container(node, resolve=False)
    flat: dict[str, Value] = {}
    for key in node.keys():
        name = f"{prefix}{key}"
        try:
            value = node[key]
        except (InterpolationResolutionError, MissingMandatoryValue):
            flat[name] = raw[key]
            continue
        if isinstance(value, DictConfig) and len(value):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, DictConfig | ListConfig):
            flat[name] = json.dumps(_container(value, raw[key]))
        else:
            flat[name] = value
    return flat


def _container(value: DictConfig | ListConfig, raw: Any) -> Any:
    try:
        return OmegaConf.to_container(value, resolve=True)
    except InterpolationResolutionError:
        return raw


def read_choices(folder: Path) -> dict[str, str | None]:
    """Config group -> chosen option (`loss` -> `drainage`) from `.hydra/hydra.yaml`, which config.yaml lacks;
    Hydra's own groups are left out. Empty when the file is missing: columns then fall back to config keys."""
    try:
        hydra_cfg = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
        choices = hydra_cfg["hydra"]["runtime"]["choices"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return {}
    return {group: option for group, option in choices.items() if not group.startswith("hydra/")}


def load_run(folder: Path) -> Run | Incomplete:
    """The run in `folder`, or why it has no results."""
    try:
        cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
        if not isinstance(cfg, DictConfig):
            return Incomplete(folder, "config.yaml is not a mapping")
        config = flatten_config(cfg)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as exc:
        return Incomplete(folder, f"config.yaml unreadable: {exc}")
    path = folder / "metrics.json"
    if (failure := failure_reason(folder)) is not None:
        return Incomplete(folder, failure)
    if not path.is_file():
        return Incomplete(folder, f"no metrics.json; {checkpoint_progress(folder, config.get('trainer.max_epochs'))}")
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Incomplete(folder, f"metrics.json unreadable: {exc}")
    if not isinstance(metrics, dict):
        return Incomplete(folder, "metrics.json is not a JSON object")
    return Run(folder, config, read_choices(folder), metrics)


def failure_reason(folder: Path) -> str | None:
    """'failed: <error>' for a job whose last attempt failed (train.py wrote failed.json), else None."""
    path = folder / "failed.json"
    if not path.is_file():
        return None
    try:
        failure = json.loads(path.read_text())
        first_line = str(failure["message"]).splitlines()[0] if failure["message"] else ""
        return f"failed: {failure['error']}: {first_line}"
    except (OSError, ValueError, KeyError, TypeError):
        return "failed (failed.json unreadable; see train.log)"


def checkpoint_progress(folder: Path, max_epochs: Value) -> str:
    """How far an unfinished run got, from its last checkpoint."""
    last = folder / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return "no checkpoint"
    import torch  # only here: it takes seconds to import, and only unfinished runs need it

    try:
        epoch = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        return f"last.ckpt unreadable ({exc})"
    return f"last checkpoint epoch {epoch} (counted from 0)" + (f" of {max_epochs}" if max_epochs else "")


def load_runs(root: Path) -> tuple[list[Run], list[Incomplete]]:
    runs: list[Run] = []
    incomplete: list[Incomplete] = []
    for folder in find_run_folders(root):
        result = load_run(folder)
        (runs if isinstance(result, Run) else incomplete).append(result)
    return runs, incomplete


# --- settings ------------------------------------------------------------------------------------------------


def setting_config(run: Run) -> dict[str, Value | Marker]:
    """The part of a run's config that defines its setting: no output paths, no seed, and keys named `*seed`
    that equal the seed (data.split_seed, noise.seed, ...) marked as following it rather than by their value."""
    seed = run.config.get("seed")
    config: dict[str, Value | Marker] = {}
    for key, value in run.config.items():
        if any(fnmatch(key, pattern) for pattern in NOT_SETTING):
            continue
        follows = key.endswith("seed") and _is_number(value) and value == seed
        config[key] = Marker.FOLLOWS_SEED if follows else value
    return config


def group_runs(runs: Sequence[Run]) -> list[Setting]:
    """One setting per distinct config (up to the seed); `Setting.key` holds the keys that vary between runs."""
    configs = [setting_config(run) for run in runs]
    union = list(dict.fromkeys(key for config in configs for key in config))
    varying = [k for k in union if len({config.get(k, Marker.ABSENT) for config in configs}) > 1]
    settings: dict[tuple, Setting] = {}
    for run, config in zip(runs, configs, strict=True):
        key = {k: config.get(k, Marker.ABSENT) for k in varying}
        settings.setdefault(tuple(key.values()), Setting(key, [])).runs.append(run)
    return list(settings.values())


def setting_columns(settings: Sequence[Setting]) -> list[str]:
    """Readable columns that tell the settings apart: a config group's option (`loss`: ce) stands for all the
    keys under it that the option decides; keys that vary on their own (`noise.rate`) keep their dotted name.
    `experiment` (a global package) only claims what no other group decided."""
    remaining = list(settings[0].key)
    groups = sorted({g for s in settings for run in s.runs for g in run.choices}, key=lambda g: g == "experiment")
    columns = []
    for group in groups:
        package = "" if group == "experiment" else group.replace("/", ".") + "."
        decided = [k for k in remaining if k.startswith(package) and _decides(settings, group, k)]
        if decided:
            columns.append(group)
            remaining = [k for k in remaining if k not in decided]
    columns.sort(key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g))
    return columns + remaining


def _decides(settings: Sequence[Setting], group: str, key: str) -> bool:
    """Whether the option of `group` determines the value of `key` in every setting."""
    seen: dict[str, Value | Marker] = {}
    return all(seen.setdefault(s.choice(group), s.key[key]) == s.key[key] for s in settings)


def column_value(setting: Setting, column: str) -> Value | Marker:
    return setting.key[column] if column in setting.key else setting.choice(column)


def column_name(column: str) -> str:
    return column.removesuffix("._target_")


def display(column: str, value: Value | Marker) -> str:
    """A value as a person reads it: `true`/`null` as in YAML, a class path by its class name."""
    if isinstance(value, Marker):
        return value.value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if column.endswith("_target_") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    return str(value)


def _sort_key(value: Value | Marker) -> tuple:
    """Numbers in numeric order, then text, then markers (a missing key sorts last)."""
    if _is_number(value):
        return 0, value, ""
    return (2, 0, value.value) if isinstance(value, Marker) else (1, 0, str(value))


def sort_settings(settings: list[Setting], columns: Sequence[str]) -> list[Setting]:
    return sorted(settings, key=lambda s: [_sort_key(column_value(s, c)) for c in columns])


def warn_repeated_seeds(settings: Iterable[Setting]) -> None:
    """A setting run twice with one seed counts twice in n_seeds and shrinks the std; say so."""
    for setting in settings:
        seeds = [run.config.get("seed") for run in setting.runs]
        for seed in sorted({s for s in seeds if seeds.count(s) > 1}, key=str):
            folders = ", ".join(str(run.folder) for run in setting.runs if run.config.get("seed") == seed)
            note(f"note: seed {seed} ran {seeds.count(seed)} times in one setting ({folders}); each run counts")


# --- outputs -------------------------------------------------------------------------------------------------


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def choose_metrics(runs: Sequence[Run], requested: Sequence[str] | None) -> list[str]:
    """The requested metrics (default: the headline ones) that at least one run reports."""
    wanted = list(requested) if requested else list(DEFAULT_METRICS)
    present = [m for m in wanted if any(m in run.metrics for run in runs)]
    if requested and (missing := [m for m in wanted if m not in present]):
        note(f"note: no run reports {', '.join(missing)}")
    return present


def write_csv(path: Path, settings: Sequence[Setting], columns: Sequence[str], metrics: Sequence[str]) -> None:
    """Full precision, one row per setting; an empty cell where a metric (or its std, for one seed) is missing."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        stat_columns = [f"{metric}_{stat}" for metric in metrics for stat in ("mean", "std")]
        writer.writerow([*map(column_name, columns), "n_seeds", *stat_columns])
        for setting in settings:
            cells: list[Any] = [display(c, column_value(setting, c)) for c in columns] + [len(setting.runs)]
            for metric in metrics:
                mean, std = setting.stats(metric) or (None, None)
                cells += ["" if mean is None else repr(mean), "" if std is None else repr(std)]
            writer.writerow(cells)


def best_means(settings: Sequence[Setting], metrics: Sequence[str]) -> dict[str, float]:
    """The best mean of each metric over the settings (max, or min for lower-is-better metrics)."""
    best = {}
    for metric in metrics:
        means = [stats[0] for s in settings if (stats := s.stats(metric)) is not None]
        if means:
            best[metric] = min(means) if lower_is_better(metric) else max(means)
    return best


def _cell(stats: tuple[float, float | None] | None, best: float | None) -> str:
    if stats is None:
        return "—"
    mean, std = stats
    text = f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"
    return f"**{text}**" if mean == best else text


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown_table(settings: Sequence[Setting], columns: Sequence[str], metrics: Sequence[str]) -> str:
    best = best_means(settings, metrics)
    lines = [
        _md_row([*map(column_name, columns), "n_seeds", *metrics]),
        _md_row(["---"] * len(columns) + ["---:"] * (1 + len(metrics))),
    ]
    for setting in settings:
        cells = [display(c, column_value(setting, c)) for c in columns] + [str(len(setting.runs))]
        lines.append(_md_row(cells + [_cell(setting.stats(m), best.get(m)) for m in metrics]))
    return "\n".join(lines)


BEST_RULE = (
    "Mean ± sample standard deviation (n - 1) over seeds. **Bold**: the best mean in its column, the highest "
    f"except for {', '.join(sorted(LOWER_IS_BETTER))} (by the last part of the metric's name), where lowest is best."
)


def incomplete_section(root: Path, incomplete: Sequence[Incomplete]) -> str:
    rows = [_md_row([_relative(i.folder, root), i.reason]) for i in incomplete]
    return "\n".join(["## Incomplete runs", "", _md_row(["folder", "reason"]), _md_row(["---", "---"]), *rows])


def _relative(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def summary_markdown(root: Path, table: str, counts: str, incomplete: Sequence[Incomplete]) -> str:
    parts = [f"# Runs below `{root}`", "", f"{counts}.", "", table, "", BEST_RULE]
    if incomplete:
        parts += ["", incomplete_section(root, incomplete)]
    return "\n".join(parts) + "\n"


def plot_axis(settings: Sequence[Setting], columns: Sequence[str]) -> str | None:
    """What to plot against: noise.rate if it varies, else the one numeric column that varies, else nothing."""
    if NOISE_RATE in columns:
        return NOISE_RATE
    numeric = [c for c in columns if _numeric_column([column_value(s, c) for s in settings])]
    return numeric[0] if len(numeric) == 1 else None


def _numeric_column(values: Sequence[Value | Marker]) -> bool:
    """Numbers, some possibly missing (a key that only some settings have)."""
    return any(map(_is_number, values)) and all(_is_number(v) or v is Marker.ABSENT for v in values)


def plot_metric(path: Path, settings: Sequence[Setting], columns: Sequence[str], x: str, metric: str) -> bool:
    """Metric against `x`, one line per combination of the other columns, error bars = std over seeds.
    False (and nothing written) when no setting has both the metric and a numeric `x`."""
    others = [c for c in columns if c != x]
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for setting in settings:
        stats, xv = setting.stats(metric), column_value(setting, x)
        if stats is not None and _is_number(xv):
            label = ", ".join(display(c, column_value(setting, c)) for c in others) or metric
            lines.setdefault(label, []).append((xv, stats[0], stats[1] or 0.0))
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        xs, means, stds = zip(*sorted(points), strict=True)
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set(xlabel=column_name(x), ylabel=metric, title=f"{metric} (mean ± std over seeds)")
    ax.legend(title=", ".join(map(column_name, others)) or None)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return True


def write_plots(out: Path, settings: Sequence[Setting], columns: Sequence[str]) -> list[Path]:
    x = plot_axis(settings, columns)
    if x is None:
        note(f"note: no plots: {NOISE_RATE} does not vary and no other single numeric key does")
        return []
    suffix = "noise" if x == NOISE_RATE else re.sub(r"\W+", "_", column_name(x))
    written = []
    for metric, stem in PLOTS.items():
        path = out / f"{stem}_vs_{suffix}.png"
        if plot_metric(path, settings, columns, x, metric):
            written.append(path)
        else:
            note(f"note: {path.name} skipped: no run reports {metric} with a numeric {column_name(x)}")
    return written


def print_table(table: str) -> None:
    """Rendered on a terminal; piped or redirected, the markdown itself (to paste elsewhere)."""
    console = Console()
    if console.is_terminal:
        console.print(Markdown(table))
    else:
        print(table)


def print_incomplete(root: Path, incomplete: Sequence[Incomplete]) -> None:
    if incomplete:
        note(f"{len(incomplete)} incomplete run(s):")
        for item in incomplete:
            note(f"  {_relative(item.folder, root)}: {item.reason}")


# --- entry point ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="noisylab-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep (multirun/<date>/<time>), outputs/, or any folder of runs")
    parser.add_argument("--out", type=Path, help="where to write summary.csv, summary.md and plots (default: folder)")
    parser.add_argument("--metrics", type=lambda s: [m for m in s.split(",") if m],
                        help=f"comma-separated metric names (default: those of {','.join(DEFAULT_METRICS)} present)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report; exit status 1 when the folder holds no complete run."""
    args = parse_args(argv)
    root: Path = args.folder
    if not root.is_dir():
        note(f"error: {root} is not a folder")
        return 1
    runs, incomplete = load_runs(root)
    print_incomplete(root, incomplete)
    if not runs:
        note(f"error: no complete run below {root} (a run is a folder with .hydra/config.yaml and metrics.json)")
        return 1
    settings = group_runs(runs)
    columns = setting_columns(settings)
    settings = sort_settings(settings, columns)
    warn_repeated_seeds(settings)
    metrics = choose_metrics(runs, args.metrics)
    out: Path = args.out or root
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(settings, columns, metrics)
    write_csv(out / "summary.csv", settings, columns, metrics)
    counts = f"{len(runs)} complete runs, {len(settings)} settings"
    atomic_write_text(out / "summary.md", summary_markdown(root, table, counts, incomplete))
    plots = write_plots(out, settings, columns)
    print_table(table)
    note(f"{counts}; wrote summary.csv, summary.md"
         + "".join(f", {p.name}" for p in plots) + f" to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
