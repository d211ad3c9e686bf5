"""Summarise a folder of runs (a sweep, or single runs side by side): one row per setting, mean ± std over seeds.

    python -m noisylab.report multirun/2024-05-01/12-00-00 [--out DIR] [--metrics test/acc,test/ece]

A setting is what the runs' configs say was trained, not how the runs were started: runs whose configs
differ only by the seed (and the seeds that follow it), by where they write or by how they were resumed
are seeds of one setting, whatever overrides built them. Writes summary.csv, summary.md and plots of
metrics against the noise rate; runs that did not finish are listed, never silently dropped.

Metrics are named by key or by fnmatch pattern ("test/ood_near/*/auroc": one column per matching key, so
one per OOD score: a head's default score differs by head, and a column never mixes scores).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatch, fnmatchcase
from pathlib import Path
from typing import Any, Literal, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markdown import Markdown  # noqa: E402

from noisylab.score_names import score_label  # noqa: E402
from noisylab.utils.atomic import atomic_open, atomic_save, atomic_write_text  # noqa: E402

# Keys or fnmatch patterns (`*` spans "/" too); a pattern stands for every key it matches in any run, in
# sorted order: one column per OOD score.
DEFAULT_METRICS = (
    "test/acc", "test/selective_acc", "test/drainage_rate", "test/ece", "test/ood_near/*/auroc",
    "test/ood_far/*/auroc", "test/ood_other/*/auroc", "test/selective/*/aurc", "train/noise_detection_auroc",
    "val/best_acc",
)  # fmt: skip
# Which mean is the best, by the last part of the metric's name (fnmatch patterns: fpr95_id_positive matches
# fpr95*). A metric in neither set (drainage_rate, temperature, realised_rate, best_epoch, anything unknown)
# has no better direction and no best.
HIGHER_IS_BETTER = frozenset({
    "acc", "clean_acc", "best_acc", "selective_acc", "acc_at_*", "auroc", "aupr*", "oscr", "noise_detection_*",
    "drainage_precision", "drainage_recall",
})  # fmt: skip
LOWER_IS_BETTER = frozenset({"ece", "nll", "brier", "fpr95*", "aurc", "loss"})
# The range of a metric's values, by the last part of its name: error bars in plots stop at its ends.
UNIT_INTERVAL = frozenset({
    "acc", "clean_acc", "best_acc", "selective_acc", "acc_at_*", "auroc", "aupr*", "oscr", "fpr95*", "ece",
    "aurc", "*_rate", "noise_detection_*", "drainage_precision", "drainage_recall",
})  # fmt: skip
RANGES: tuple[tuple[frozenset[str], tuple[float, float]], ...] = (
    (UNIT_INTERVAL, (0.0, 1.0)),
    (frozenset({"brier"}), (0.0, 2.0)),  # multi-class Brier: sum over classes of squared errors
    (frozenset({"nll", "loss", "temperature"}), (0.0, math.inf)),
)
# Config keys that say where a run read and wrote its files, or how it was started (a resumed run ends where
# an uninterrupted one does), not what it trained.
NOT_SETTING = (
    "seed", "paths.*", "hydra.*", "logger.*", "callbacks.*.dirpath", "trainer.default_root_dir", "data.root",
    "ckpt_path", "resume", "tags", "print_config",
)  # fmt: skip
# Columns of config groups come first, in this order (then other groups by name, then single config keys).
GROUP_ORDER = ("experiment", "data", "model", "method", "loss", "noise")
# metric key or pattern -> file stem of its plot against the swept numeric key; a pattern gives a plot per
# matching key, its stem's "{}" filled with what the pattern's "*" matched (the score: ood_near_auroc_msp).
PLOTS = {
    "test/acc": "acc", "test/ood_near/*/auroc": "ood_near_auroc_{}", "test/ood_far/*/auroc": "ood_far_auroc_{}",
    "test/ood_other/*/auroc": "ood_other_auroc_{}", "test/drainage_rate": "drainage_rate",
}  # fmt: skip
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

    def stats(self, metric: str) -> Stats | None:
        """Mean and sample standard deviation (n - 1: the spread to expect between seeds) over the runs that
        report `metric` as a finite number, and how many do; the deviation is None for a single run, and the
        whole is None for none. A NaN (an undefined AUROC, say) counts as not reported: n says so."""
        values = [v for run in self.runs if _is_number(v := run.metrics.get(metric)) and math.isfinite(v)]
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return Stats(float(np.mean(values)), std, len(values))


class Stats(NamedTuple):
    mean: float
    std: float | None
    n: int  # runs (seeds) that reported the metric


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


def _last_part(metric: str) -> str:
    return metric.rsplit("/", 1)[-1]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def direction(metric: str) -> Literal["higher", "lower"] | None:
    """Which way a metric gets better, by the last part of its name; None: no better direction (no best)."""
    name = _last_part(metric)
    if _matches(name, LOWER_IS_BETTER):
        return "lower"
    return "higher" if _matches(name, HIGHER_IS_BETTER) else None


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values a metric can take ((0, 1) for accuracies, AUROC, rates, ...); None when unknown."""
    name = _last_part(metric)
    return next((bounds for patterns, bounds in RANGES if _matches(name, patterns)), None)


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def expand_metrics(wanted: Sequence[str], runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """(the metrics that `wanted`'s keys and patterns stand for, without repeats; the entries that stand for
    none). A key counts when a run reports it; a pattern stands for the keys, sorted, that it matches and that
    some run reports as a number."""
    present = dict.fromkeys(key for run in runs for key in run.metrics)
    chosen: list[str] = []
    missing: list[str] = []
    for entry in wanted:
        if entry in present:
            found = [entry]
        elif is_pattern(entry):
            found = sorted(key for key in present if fnmatchcase(key, entry)
                           and any(_is_number(run.metrics.get(key)) for run in runs))
        else:
            found = []
        chosen += found
        if not found:
            missing.append(entry)
    return list(dict.fromkeys(chosen)), missing


def choose_metrics(runs: Sequence[Run], requested: Sequence[str] | None) -> list[str]:
    """The requested metrics (default: the headline ones), patterns expanded, that at least one run reports."""
    present, missing = expand_metrics(list(requested) if requested else list(DEFAULT_METRICS), runs)
    if requested and missing:
        note(f"note: no run reports {', '.join(missing)}")
    if not requested:  # by default, the scores that are some run's default score (each head's own), not all
        defaults = {run.metrics.get("default_score") for run in runs} - {None}
        present = [key for key in present if defaults == set() or _score_of(key) in (None, *defaults)]
    return present


def _score_of(metric: str) -> str | None:
    """The score a metric key names (test/ood_near/msp/auroc -> msp), None for keys without one."""
    for pattern, _ in _SCORED:
        if found := pattern.fullmatch(metric):
            return found["score"]
    return None


# Keys whose columns name a score: test/ood_<group>/<score>/<metric>, test/ood/<set>/<score>/<metric>,
# test/selective/<score>/<metric>.
_SCORED = (
    (re.compile(r"(?P<prefix>.*/)?ood_(?P<group>[^/]+)/(?P<score>[^/]+)/(?P<name>[^/]+)"), "{group}-OOD {name}"),
    (re.compile(r"(?P<prefix>.*/)?ood/(?P<set>[^/]+)/(?P<score>[^/]+)/(?P<name>[^/]+)"), "OOD {set} {name}"),
    (re.compile(r"(?P<prefix>.*/)?selective/(?P<score>[^/]+)/(?P<name>[^/]+)"), "{name}"),
)
METRIC_NAMES = {
    "auroc": "AUROC", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "fpr95_id_positive": "FPR95 ID-positive",
    "fpr95_ood_positive": "FPR95 OOD-positive", "oscr": "OSCR", "aurc": "AURC",
}  # fmt: skip


def metric_label(metric: str) -> str:
    """A column's header in summary.md and plots: a key that names a score reads with the score's label
    ("test/ood_near/one_minus_p_d/auroc" -> "near-OOD AUROC (1 - p_d)"); other keys as they are."""
    for pattern, template in _SCORED:
        if (found := pattern.fullmatch(metric)) is None:
            continue
        parts = found.groupdict()
        name = parts["name"]
        at = re.fullmatch(r"acc_at_(\d+)", name)
        parts["name"] = f"acc at {at[1]}% coverage" if at else METRIC_NAMES.get(name, name)
        prefix = "" if parts["prefix"] in (None, "test/") else parts["prefix"]
        return f"{prefix}{template.format(**parts)} ({score_label(parts['score'])})"
    return metric


def write_csv(path: Path, settings: Sequence[Setting], columns: Sequence[str], metrics: Sequence[str]) -> None:
    """Full precision, one row per setting, keys as in metrics.json; per metric its mean, std and n (how many
    of the setting's n_seeds runs report it). An empty cell where a metric (or its std, for one seed) is
    missing."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        stat_columns = [f"{metric}_{stat}" for metric in metrics for stat in ("mean", "std", "n")]
        writer.writerow([*map(column_name, columns), "n_seeds", *stat_columns])
        for setting in settings:
            cells: list[Any] = [display(c, column_value(setting, c)) for c in columns] + [len(setting.runs)]
            for metric in metrics:
                stats = setting.stats(metric)
                if stats is None:
                    cells += ["", "", 0]
                else:
                    cells += [repr(stats.mean), "" if stats.std is None else repr(stats.std), stats.n]
            writer.writerow(cells)


def best_means(settings: Sequence[Setting], metrics: Sequence[str]) -> dict[str, float]:
    """The best mean of each metric that has a better direction, over the settings."""
    best = {}
    for metric in metrics:
        if (way := direction(metric)) is None:
            continue
        means = [stats.mean for s in settings if (stats := s.stats(metric)) is not None]
        if means:
            best[metric] = min(means) if way == "lower" else max(means)
    return best


def _cell(stats: Stats | None, seeds: int, best: float | None) -> str:
    """mean ± std, bold if best, and "(k/n seeds)" when only k of the setting's n seeds report the metric."""
    if stats is None:
        return "—"
    text = f"{stats.mean:.4f}" if stats.std is None else f"{stats.mean:.4f} ± {stats.std:.4f}"
    if best is not None and stats.mean == best:
        text = f"**{text}**"
    return text if stats.n == seeds else f"{text} ({stats.n}/{seeds} seeds)"


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown_table(settings: Sequence[Setting], columns: Sequence[str], metrics: Sequence[str]) -> str:
    best = best_means(settings, metrics)
    lines = [
        _md_row([*map(column_name, columns), "n_seeds", *map(metric_label, metrics)]),
        _md_row(["---"] * len(columns) + ["---:"] * (1 + len(metrics))),
    ]
    for setting in settings:
        seeds = len(setting.runs)
        cells = [display(c, column_value(setting, c)) for c in columns] + [str(seeds)]
        lines.append(_md_row(cells + [_cell(setting.stats(m), seeds, best.get(m)) for m in metrics]))
    return "\n".join(lines)


def legend(metrics: Sequence[str]) -> str:
    """What the cells mean, which columns have no best, and the csv keys of the columns that were renamed."""
    paragraphs = [
        "Mean ± sample standard deviation (n - 1) over seeds; \"(k/n seeds)\": only k of the setting's n seeds "
        "report the metric. **Bold**: the best mean in its column, by the last part of the metric's name the "
        f"highest for {', '.join(sorted(HIGHER_IS_BETTER))} and the lowest for {', '.join(sorted(LOWER_IS_BETTER))}."
    ]
    if no_best := [metric_label(m) for m in metrics if direction(m) is None]:
        paragraphs.append(f"No best (no better direction): {', '.join(no_best)}.")
    if renamed := [f"{metric_label(m)}: `{m}`" for m in metrics if metric_label(m) != m]:
        paragraphs.append(f"Keys in summary.csv: {'; '.join(renamed)}.")
    return "\n\n".join(paragraphs)


def incomplete_section(root: Path, incomplete: Sequence[Incomplete]) -> str:
    rows = [_md_row([_relative(i.folder, root), i.reason]) for i in incomplete]
    return "\n".join(["## Incomplete runs", "", _md_row(["folder", "reason"]), _md_row(["---", "---"]), *rows])


def _relative(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def summary_markdown(root: Path, table: str, counts: str, incomplete: Sequence[Incomplete],
                     metrics: Sequence[str] = ()) -> str:
    parts = [f"# Runs below `{root}`", "", f"{counts}.", "", table, "", legend(metrics)]
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


def _line_label(setting: Setting, others: Sequence[str]) -> str:
    return ", ".join(display(c, column_value(setting, c)) for c in others)


def setting_colours(settings: Sequence[Setting], columns: Sequence[str], x: str) -> dict[str, str]:
    """Line label (the values of the columns other than `x`) -> colour, assigned once in the settings' order,
    so that a setting has the same colour in every plot of a report, whichever metrics it lacks."""
    others = [c for c in columns if c != x]
    labels = list(dict.fromkeys(_line_label(s, others) for s in settings))
    if len(labels) <= 20:
        cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
        colours = [cmap(i) for i in range(len(labels))]
    else:
        colours = [plt.get_cmap("turbo")(i / (len(labels) - 1)) for i in range(len(labels))]
    return {label: to_hex(colour) for label, colour in zip(labels, colours, strict=True)}


def metric_figure(settings: Sequence[Setting], columns: Sequence[str], x: str, metric: str,
                  colours: dict[str, str] | None = None) -> Figure | None:
    """Metric against `x`, one line per combination of the other columns (coloured by `colours`), error bars
    = std over seeds cut at the ends of the metric's range, x ticks at the x values of the points. None when
    no setting has both the metric and a numeric `x`."""
    others = [c for c in columns if c != x]
    colours = colours if colours is not None else setting_colours(settings, columns, x)
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for setting in settings:
        stats, xv = setting.stats(metric), column_value(setting, x)
        if stats is not None and _is_number(xv):
            lines.setdefault(_line_label(setting, others), []).append((float(xv), stats.mean, stats.std or 0.0))
    if not lines:
        return None
    low, high = metric_range(metric) or (-math.inf, math.inf)
    label = metric_label(metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    for line, points in lines.items():
        xs, means, stds = (np.array(v) for v in zip(*sorted(points), strict=True))
        below = np.maximum(means - np.maximum(means - stds, low), 0.0)
        above = np.maximum(np.minimum(means + stds, high) - means, 0.0)
        ax.errorbar(xs, means, yerr=np.vstack([below, above]), color=colours[line], marker="o", capsize=3,
                    label=line or label)
    ticks = sorted({point[0] for points in lines.values() for point in points})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=45 if len(ticks) > 8 else 0)
    ax.set(xlabel=column_name(x), ylabel=label, title=f"{label} (mean ± std over seeds)")
    ax.legend(title=", ".join(map(column_name, others)) or None)
    fig.tight_layout()
    return fig


def plot_metric(path: Path, settings: Sequence[Setting], columns: Sequence[str], x: str, metric: str,
                colours: dict[str, str] | None = None) -> bool:
    """`metric_figure` saved to `path`; False (and nothing written) when there is nothing to plot."""
    fig = metric_figure(settings, columns, x, metric, colours)
    if fig is None:
        return False
    atomic_save(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return True


def _wildcards(pattern: str, key: str) -> list[str]:
    """What each `*` of `pattern` matched in `key`."""
    regex = "".join("(.*)" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    found = re.fullmatch(regex, key)
    return list(found.groups()) if found else []


def plot_files(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """(metric, file stem) of each plot that PLOTS asks for and the runs have data for."""
    files = []
    for pattern, stem in PLOTS.items():
        for metric in expand_metrics([pattern], runs)[0]:
            files.append((metric, stem.format(*(re.sub(r"\W+", "_", p) for p in _wildcards(pattern, metric)))))
    return files


def write_plots(out: Path, settings: Sequence[Setting], columns: Sequence[str]) -> list[Path]:
    x = plot_axis(settings, columns)
    if x is None:
        note(f"note: no plots: {NOISE_RATE} does not vary and no other single numeric key does")
        return []
    suffix = "noise" if x == NOISE_RATE else re.sub(r"\W+", "_", column_name(x))
    runs = [run for setting in settings for run in setting.runs]
    colours = setting_colours(settings, columns, x)
    written = []
    for pattern, stem in PLOTS.items():
        if not expand_metrics([pattern], runs)[0]:
            note(f"note: {stem.format('*')}_vs_{suffix}.png skipped: no run reports {pattern}")
    for metric, stem in plot_files(runs):
        path = out / f"{stem}_vs_{suffix}.png"
        if plot_metric(path, settings, columns, x, metric, colours):
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
                        help="comma-separated metric keys or fnmatch patterns, e.g. 'test/acc,test/ood_near/*/auroc' "
                             f"(default: those of {','.join(DEFAULT_METRICS)} present)")
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
    atomic_write_text(out / "summary.md", summary_markdown(root, table, counts, incomplete, metrics))
    plots = write_plots(out, settings, columns)
    print_table(table)
    note(f"{counts}; wrote summary.csv, summary.md"
         + "".join(f", {p.name}" for p in plots) + f" to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
