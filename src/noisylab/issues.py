"""Find the likely mislabeled samples of a finished run: rank its training samples by a suspicion score.

    noisylab-issues <run> [--score NAME] [--top K | --threshold T] [--split train|val|all] [--show N]
                          [--out DIR] [--data-root DIR]                  # or python -m noisylab.issues

Reads `<run>/samples/train.csv` (one row per noisy training sample, the validation split included: `index`,
`split`, `given_label`/`given_class`, `clean_label`/`clean_class` (empty when unknown), `predicted_label`/
`predicted_class`, `p_given`, one or more `suspicion/<name>` columns (higher = more suspicious; the first is
the method's default) and, for drainage heads, `drained`). Labels are the source dataset's class ids.

The suspects are the top K samples by the score (`--top`), or those scoring at least T (`--threshold`); by
default those scoring at least 0.5 when the score is a probability (all the scores runs write are: p_d,
1 - p_given, DivideMix's GMM posterior), else `--top` or `--threshold` must be given. Ties are ranked by
index, so the ranking is the same on every call. Writes into `<run>/issues/` (or `--out`):

- `label_issues.csv`: rank, index, split, given_label, given_class, suggested_label, suggested_class (the
  model's prediction), score, and is_noisy (1/0; empty when the clean labels are unknown), one row per suspect.
- `issues_summary.json`: the selection, and when the clean labels are known precision_at_k and recall_at_k of
  the suspects (k = their number), precision_at_noise_rate (k = the number of mislabeled samples; ties at the
  k-th score averaged, as train/noise_detection_precision) and the noise-detection AUROC of every score.
- `per_class.csv`: per given class: samples, suspects, and when known suspects_mislabeled (suspects that are
  truly mislabeled) and mislabeled (all truly mislabeled samples given that class).
- `top_suspects.png` (`--show N`): the N top suspects' images, titled "#rank index given→predicted".
- The two files of the retrain loop, both CSV with a header, one row per suspect, indices into the source
  dataset's training set (the `index` column, stable across held-out classes and splits):
    `exclude.csv`  column `index`: samples to drop (data.exclude=<file>);
    `relabel.csv`  columns `index,label`: samples to relabel, `label` = the suggested source class id
                   (data.relabel=<file>). A suspect whose prediction is its given label keeps its label.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from noisylab.confident_learning import ConfidentLearningError, cleanlab_issues, merge_folds  # noqa: E402
from noisylab.utils.atomic import atomic_open, atomic_save, atomic_write_text  # noqa: E402

SAMPLES = Path("samples") / "train.csv"
SCORE_PREFIX = "suspicion/"
REQUIRED = ("index", "split", "given_label", "given_class", "predicted_label", "predicted_class", "p_given")
SPLITS = ("train", "val", "all")
DEFAULT_THRESHOLD = 0.5  # for probability scores when neither --top nor --threshold is given
PRINTED_ROWS = 20  # suspects shown in the table; all of them go to label_issues.csv
TILE_INCHES, TILE_DPI, MAX_TILE_COLUMNS = 1.6, 100, 8
RECREATE = ("is the run finished? The file is written by noisylab >= 0.1 at the end of training; for an older run "
            "re-create it with eval.py ckpt_path=<run>/checkpoints/<checkpoint>.ckpt")


class IssuesError(Exception):
    """A user error: printed as one message, exit status 1."""


def note(message: str) -> None:
    """Progress and skipped items go to stderr, so that stdout holds only the tables."""
    print(message, file=sys.stderr)


# --- reading the samples ---------------------------------------------------------------------------------------


@dataclass
class Samples:
    """The columns of samples/train.csv; clean labels -1 where unknown."""

    index: np.ndarray
    split: np.ndarray
    given_label: np.ndarray
    given_class: np.ndarray
    clean_label: np.ndarray
    clean_class: np.ndarray
    predicted_label: np.ndarray
    predicted_class: np.ndarray
    p_given: np.ndarray
    scores: dict[str, np.ndarray]  # suspicion column name (without the prefix) -> values, the default first

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, keep: np.ndarray) -> Samples:
        fields = {name: value[keep] for name, value in vars(self).items() if name != "scores"}
        return Samples(**fields, scores={name: values[keep] for name, values in self.scores.items()})

    @property
    def clean_known(self) -> np.ndarray:
        return self.clean_label >= 0

    @property
    def is_noisy(self) -> np.ndarray:
        return self.clean_known & (self.given_label != self.clean_label)


def read_samples(path: Path) -> Samples:
    """samples/train.csv, checked: the columns needed are there and every number parses."""
    if not path.is_file():
        raise IssuesError(f"{path} not found: {RECREATE}.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IssuesError(f"{path}: cannot be read as CSV ({exc}).") from None
    if not rows:
        raise IssuesError(f"{path} is empty; expected a header and one row per training sample. {RECREATE}.")
    header, body = rows[0], rows[1:]
    score_columns = [c for c in header if c.startswith(SCORE_PREFIX) and len(c) > len(SCORE_PREFIX)]
    missing = [c for c in REQUIRED if c not in header] + ([f"{SCORE_PREFIX}<name>"] if not score_columns else [])
    if missing:
        raise IssuesError(f"{path}: missing column(s) {', '.join(missing)} (columns found: {', '.join(header)}). "
                          f"Expected the columns noisylab writes; {RECREATE}.")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise IssuesError(f"{path}, line {number}: {len(row)} cells, the header has {len(header)}; the file is "
                              f"damaged or truncated. {RECREATE}.")
    columns = dict(zip(header, zip(*body, strict=True), strict=True)) if body else {c: () for c in header}

    def parse(name: str, kind: type, empty: Any = None) -> np.ndarray:
        cells = columns.get(name)
        if cells is None:  # an optional column (clean labels) that is absent: unknown
            return np.full(len(body), empty, dtype=kind)
        values = np.empty(len(cells), dtype=kind)
        for i, cell in enumerate(cells):
            try:
                values[i] = empty if cell.strip() == "" and empty is not None else kind(cell)
            except ValueError:
                raise IssuesError(f"{path}, line {i + 2}, column {name}: {cell!r} is not a "
                                  f"{'number' if kind is float else 'whole number'}.") from None
        return values

    def text(name: str) -> np.ndarray:
        return np.array(columns.get(name, ("",) * len(body)), dtype=object)

    samples = Samples(
        index=parse("index", int), split=text("split"),
        given_label=parse("given_label", int), given_class=text("given_class"),
        clean_label=parse("clean_label", int, empty=-1), clean_class=text("clean_class"),
        predicted_label=parse("predicted_label", int), predicted_class=text("predicted_class"),
        p_given=parse("p_given", float),
        # a method scores only the samples it ranks (DivideMix's GMM: the training split): empty cells are NaN
        scores={c.removeprefix(SCORE_PREFIX): parse(c, float, empty=np.nan) for c in score_columns},
    )  # fmt: skip
    bad_splits = sorted(set(samples.split) - {"train", "val"})
    if bad_splits:
        raise IssuesError(f"{path}: column split holds {', '.join(map(repr, bad_splits))}; expected train or val.")
    return samples


# --- ranking and selection ---------------------------------------------------------------------------------------


def rank(scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Row order from most to least suspicious: by score descending, ties by index ascending; NaN scores last."""
    key = np.where(np.isnan(scores), np.inf, -scores)
    return np.lexsort((index, key))


def select(scores_ranked: np.ndarray, top: int | None, threshold: float | None) -> int:
    """How many of the ranked samples are suspects: the first `top`, or those scoring at least `threshold`."""
    if top is not None:
        return min(top, len(scores_ranked))
    return int(np.sum(scores_ranked >= threshold))  # ranked descending, NaN last: a prefix


def default_threshold(scores: np.ndarray, score: str) -> float:
    finite = scores[np.isfinite(scores)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise IssuesError(f"score {score} ranges over {finite.min():g}..{finite.max():g}, not 0..1, so it has no "
                          f"default threshold; give --top K or --threshold T.")
    return DEFAULT_THRESHOLD


# --- noise-detection metrics -----------------------------------------------------------------------------------


def precision_at_noise_rate(scores: np.ndarray, is_noisy: np.ndarray) -> float:
    """Share of mislabeled samples among the k highest-scored, k = the number mislabeled; ties at the k-th
    score averaged (the expected precision over every order of the tied samples), as the run's
    train/noise_detection_precision."""
    k = int(is_noisy.sum())
    if k == 0:
        return math.nan
    scores = np.where(np.isnan(scores), -np.inf, scores)  # no score: the least suspicious
    threshold = np.sort(scores)[::-1][k - 1]
    above, tied = scores > threshold, scores == threshold
    return float((is_noisy[above].sum() + (k - above.sum()) * is_noisy[tied].mean()) / k)


def detection_metrics(samples: Samples, score: str, order: np.ndarray, selected: int) -> dict[str, Any]:
    """precision/recall of the suspects, precision at the noise rate (the chosen score) and every score's AUROC;
    None for what is undefined (no mislabeled or no clean sample, no suspect)."""
    is_noisy = samples.is_noisy
    noisy = int(is_noisy.sum())
    found = int(is_noisy[order[:selected]].sum())
    both = 0 < noisy < len(samples)
    return {
        "mislabeled": noisy,
        "noise_rate": noisy / len(samples) if len(samples) else None,
        "suspects_mislabeled": found,
        "precision_at_k": found / selected if selected else None,
        "recall_at_k": found / noisy if noisy else None,
        "precision_at_noise_rate": _number(precision_at_noise_rate(samples.scores[score], is_noisy)),
        "auroc": {f"{SCORE_PREFIX}{name}": _auroc(is_noisy, values) if both else None
                  for name, values in samples.scores.items()},
    }


def _auroc(is_noisy: np.ndarray, scores: np.ndarray) -> float | None:
    """sklearn's AUROC; a sample without a score counts as the least suspicious."""
    from sklearn.metrics import roc_auc_score

    finite = scores[np.isfinite(scores)]
    low = finite.min() - 1 if finite.size else 0.0
    return float(roc_auc_score(is_noisy, np.where(np.isnan(scores), low, scores)))


# --- per class -------------------------------------------------------------------------------------------------


def per_class(samples: Samples, suspect: np.ndarray, clean_known: bool) -> list[dict[str, Any]]:
    """One row per given class, by class id."""
    rows = []
    for label in np.unique(samples.given_label):
        mine = samples.given_label == label
        row = {"given_label": int(label), "given_class": samples.given_class[mine][0],
               "samples": int(mine.sum()), "suspects": int((mine & suspect).sum())}
        if clean_known:
            row["suspects_mislabeled"] = int((mine & suspect & samples.is_noisy).sum())
            row["mislabeled"] = int((mine & samples.is_noisy).sum())
        rows.append(row)
    return rows


# --- images ----------------------------------------------------------------------------------------------------


def load_run_config(run: Path) -> DictConfig:
    """`.hydra/config.yaml` with `${hydra:...}` (the run's cwd, its output folder) resolvable outside Hydra:
    read from `.hydra/hydra.yaml` beside it."""
    folder = run / ".hydra"
    path = folder / "config.yaml"
    if not path.is_file():
        raise IssuesError(f"{path} not found: --show needs the run's config to find its images.")
    try:
        cfg = OmegaConf.create(path.read_text().replace("${hydra:", "${hydra."))
        if (folder / "hydra.yaml").is_file():
            cfg = OmegaConf.merge(cfg, OmegaConf.load(folder / "hydra.yaml"))
    except (OSError, OmegaConfBaseException, ValueError) as exc:
        raise IssuesError(f"{path}: cannot be read ({exc}).") from None
    if not isinstance(cfg, DictConfig) or "data" not in cfg:
        raise IssuesError(f"{path}: no data section; expected the config a noisylab run writes.")
    return cfg


def data_root(cfg: DictConfig, override: Path | None) -> Path | None:
    if override is not None:
        return override.expanduser()
    try:
        root = cfg.data.get("root")
    except OmegaConfBaseException as exc:
        raise IssuesError(f"the run's data.root cannot be resolved here ({exc}); give --data-root DIR.") from None
    if root is None:
        return None
    root = Path(str(root)).expanduser()
    cwd = OmegaConf.select(cfg, "hydra.runtime.cwd", default=None)
    return root if root.is_absolute() or cwd is None else Path(cwd) / root


def load_images(run: Path, positions: np.ndarray, override_root: Path | None) -> list[np.ndarray]:
    """The training images at `positions` of the run's source dataset, as uint8 HWC (or HW) arrays."""
    from hydra.utils import instantiate

    cfg = load_run_config(run)
    root = data_root(cfg, override_root)
    try:
        source_fn = instantiate(cfg.data.source)
        kwargs = cfg.data.get("source_kwargs")
        kwargs = {} if kwargs is None else OmegaConf.to_container(kwargs, resolve=True)
    except Exception as exc:  # hydra wraps import errors in its own kinds
        raise IssuesError(f"the run's data.source cannot be built here ({exc}).") from None
    from noisylab.data.errors import BadDataFileError, DataRootNotSetError

    try:
        source = source_fn(root=root, download=False, **kwargs)
    except (OSError, DataRootNotSetError, BadDataFileError) as exc:
        raise IssuesError(f"images of dataset '{cfg.data.get('name')}' not found under data.root={root}: {exc}\n"
                          "To fix (for --show): point --data-root at the folder holding the datasets.") from None
    count = len(source.train_labels)
    if len(positions) and positions.max() >= count:
        raise IssuesError(f"sample index {positions.max()} is beyond the {count} training images found under "
                          f"data.root={root}: not the dataset the run trained on? Point --data-root at it.")
    labels = np.zeros(len(positions), dtype=np.int64)
    dataset = source.dataset("train", positions, labels, labels)
    images = []
    for k in range(len(positions)):
        image = dataset[k][0].cpu().numpy()  # uint8 (C, H, W)
        images.append(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
    return images


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str]) -> Figure:
    """One tile per image, titled; up to MAX_TILE_COLUMNS per row, TILE_INCHES square each."""
    columns = max(1, min(len(images), MAX_TILE_COLUMNS))
    rows = max(1, math.ceil(len(images) / columns))
    fig = plt.figure(figsize=(columns * TILE_INCHES, rows * TILE_INCHES), dpi=TILE_DPI)
    for i, (image, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.25 / rows, wspace=0.1, hspace=0.3)
    return fig


# --- writing ---------------------------------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


# --- entry point -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="noisylab-issues", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder (holding samples/train.csv); with --cleanlab, the "
                                               "folder of a cross-validation's fold runs")
    parser.add_argument("--cleanlab", action="store_true", help="confident learning: merge the fold runs' "
                        "out-of-sample probabilities (data.num_folds), run cleanlab's find_label_issues, and rank "
                        "by its label quality; the suspects are cleanlab's issues unless --top/--threshold")
    parser.add_argument("--score", help="suspicion column, with or without the 'suspicion/' prefix "
                                        "(default: the first, the method's own)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--top", type=int, metavar="K", help="the K most suspicious samples are suspects")
    chosen.add_argument("--threshold", type=float, metavar="T", help="samples scoring at least T are suspects "
                        f"(default: {DEFAULT_THRESHOLD} for a score within 0..1)")
    parser.add_argument("--split", choices=SPLITS, default="all", help="which part of the noisy training data "
                        "(default: all, the training and validation splits)")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="draw the N top suspects into "
                        "top_suspects.png")
    parser.add_argument("--out", type=Path, help="where to write the files (default: <run>/issues)")
    parser.add_argument("--data-root", type=Path, help="where the run's dataset is now, if not at its data.root "
                        "(for --show)")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 0:
        parser.error("--top must be >= 0")
    if args.show < 0:
        parser.error("--show must be >= 0")
    return args


def choose_score(samples: Samples, name: str | None, path: Path) -> str:
    if name is None:
        return next(iter(samples.scores))
    name = name.removeprefix(SCORE_PREFIX)
    if name not in samples.scores:
        raise IssuesError(f"no score {name!r} in {path}; it has {', '.join(samples.scores)}.")
    return name


def print_suspects(console: Console, samples: Samples, order: np.ndarray, selected: int, score: str,
                   clean_known: bool) -> None:
    table = Table(title=f"{selected} suspect(s) by {SCORE_PREFIX}{score}"
                  + (f" (top {PRINTED_ROWS} shown)" if selected > PRINTED_ROWS else ""))
    for column in ("rank", "index", "split", "given", "predicted", "p_given", "score", *(["clean"] * clean_known)):
        table.add_column(column, justify="right" if column in ("rank", "index", "p_given", "score") else "left")
    for rank_, row in enumerate(order[:min(selected, PRINTED_ROWS)], start=1):
        cells = [str(rank_), str(samples.index[row]), samples.split[row], samples.given_class[row],
                 samples.predicted_class[row], f"{samples.p_given[row]:.3f}", f"{samples.scores[score][row]:.3f}"]
        if clean_known:
            noisy = samples.is_noisy[row]
            cells.append(f"[red]{samples.clean_class[row]}[/red]" if noisy else samples.clean_class[row])
        table.add_row(*cells)
    console.print(table)


def print_per_class(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title="per given class")
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "given_class" else "right")
    for row in rows:
        table.add_row(*map(str, row.values()))
    console.print(table)


def run(args: argparse.Namespace) -> None:
    run_dir: Path = args.run
    path = run_dir / SAMPLES
    samples = read_samples(path)
    score = choose_score(samples, args.score, path)
    if args.split != "all":
        samples = samples.subset(samples.split == args.split)
    if not len(samples):
        raise IssuesError(f"{path}: no samples of split {args.split}.")
    scores = samples.scores[score]
    if np.isnan(scores).any():
        note(f"note: {int(np.isnan(scores).sum())} sample(s) without a {score} score rank last")
    threshold = args.threshold
    flagged = getattr(args, "flagged", None)  # --cleanlab without --top/--threshold: cleanlab's own issues
    if args.top is None and threshold is None and flagged is None:
        threshold = default_threshold(scores, score)
    order = rank(scores, samples.index)
    if flagged is not None:
        is_flagged = np.isin(samples.index[order], flagged)
        order = np.concatenate([order[is_flagged], order[~is_flagged]])  # each part still by score
        selected = int(is_flagged.sum())
    else:
        selected = select(scores[order], args.top, threshold)
    suspect = np.zeros(len(samples), dtype=bool)
    suspect[order[:selected]] = True
    known = samples.clean_known
    clean_known = bool(known.all())
    if known.any() and not clean_known:
        note(f"note: {int((~known).sum())} of {len(samples)} samples have no clean label; no detection metrics")

    out: Path = args.out or run_dir / "issues"
    out.mkdir(parents=True, exist_ok=True)
    top_rows = order[:selected]
    issues = []
    for rank_, row in enumerate(top_rows, start=1):
        is_noisy = (int(samples.is_noisy[row]) if known[row] else "")
        issues.append([rank_, samples.index[row], samples.split[row], samples.given_label[row],
                       samples.given_class[row], samples.predicted_label[row], samples.predicted_class[row],
                       repr(float(scores[row])), is_noisy])
    write_csv(out / "label_issues.csv", ["rank", "index", "split", "given_label", "given_class", "suggested_label",
                                         "suggested_class", "score", "is_noisy"], issues)
    write_csv(out / "exclude.csv", ["index"], [[samples.index[row]] for row in top_rows])
    write_csv(out / "relabel.csv", ["index", "label"],
              [[samples.index[row], samples.predicted_label[row]] for row in top_rows])
    classes = per_class(samples, suspect, clean_known)
    write_csv(out / "per_class.csv", list(classes[0]), [list(row.values()) for row in classes])

    summary: dict[str, Any] = {
        "run": str(run_dir), "score": f"{SCORE_PREFIX}{score}", "split": args.split,
        "selection": ({"top": args.top} if args.top is not None else {"threshold": threshold} if flagged is None
                      else {"cleanlab": "find_label_issues(filter_by=prune_by_noise_rate)"}),
        "samples": len(samples), "suspects": selected, "clean_labels_known": clean_known,
    }  # fmt: skip
    if clean_known:
        summary.update(detection_metrics(samples, score, order, selected))
    atomic_write_text(out / "issues_summary.json", json.dumps(summary, indent=2) + "\n")

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    print_suspects(console, samples, order, selected, score, clean_known)
    print_per_class(console, classes)
    if clean_known:
        console.print(f"{summary['mislabeled']} of {len(samples)} mislabeled (noise rate "
                      f"{_fmt(summary['noise_rate'], 3)}); suspects: precision@{selected} "
                      f"{_fmt(summary['precision_at_k'])}, recall@{selected} {_fmt(summary['recall_at_k'])}; "
                      f"precision at the noise rate {_fmt(summary['precision_at_noise_rate'])}")
        console.print("noise-detection AUROC: " + ", ".join(f"{name} {_fmt(value)}"
                                                            for name, value in summary["auroc"].items()))
    kept = int((samples.predicted_label[top_rows] == samples.given_label[top_rows]).sum())
    if kept:
        note(f"note: {kept} suspect(s) are predicted as their given label; relabel.csv keeps their label")

    written = ["label_issues.csv", "per_class.csv", "issues_summary.json", "exclude.csv", "relabel.csv"]
    if args.show:
        shown = top_rows[:args.show]
        if len(shown) < args.show:
            note(f"note: --show {args.show}: only {len(shown)} suspect(s) to show")
        if len(shown):
            images = load_images(run_dir, samples.index[shown], args.data_root)
            titles = [f"#{r} {samples.index[row]} {samples.given_class[row]}→{samples.predicted_class[row]}"
                      for r, row in enumerate(shown, start=1)]
            fig = contact_sheet(images, titles)
            atomic_save(out / "top_suspects.png", lambda f: fig.savefig(f, format="png", dpi=TILE_DPI))
            plt.close(fig)
            written.append("top_suspects.png")
    note(f"{selected} suspect(s) of {len(samples)} samples by {SCORE_PREFIX}{score}; wrote {', '.join(written)} "
         f"to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 1 on a user error (missing or malformed file, data not found), with its message."""
    args = parse_args(argv)
    try:
        if args.cleanlab:
            args.run = merge_folds(args.run)
            flagged = cleanlab_issues(args.run)
            if args.top is None and args.threshold is None:
                args.flagged = flagged
            note(f"confident learning: cleanlab flags {len(flagged)} samples; merged into {args.run}")
        run(args)
    except (IssuesError, ConfidentLearningError) as exc:
        note(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
