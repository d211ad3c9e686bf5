"""Which score finds the mislabeled samples? Drainage's p_d, CE's 1 - p(label), DivideMix's GMM and
cleanlab's confident learning, side by side on the same noisy MNIST labels; then one clean-and-retrain round.

For each noise model (MNIST: asymmetric 0.4, instance 0.4; CIFAR-10N: the human "worst" labels, 40.2%
noise; the noisy labels are the same for every detector, a function of the seed):
- drainage, CE, DivideMix: train once; noisylab-issues on the run gives the noise-detection AUROC and the
  precision at the true noise rate of each suspicion score it wrote (the method's own first);
- cleanlab: --folds runs of CE, each leaving one fold out (data.num_folds), merged by
  `noisylab-issues --cleanlab`: cleanlab's self-confidence label quality on out-of-sample probabilities,
  and its find_label_issues set;
- the retrain: drainage's top suspects (as many as its threshold selects: p_d >= 0.5) dropped with
  data.exclude, the same run again; test accuracy before and after.
Detection is measured on the same samples for every detector: the training split (the validation split
is the same for every run and fold; DivideMix's GMM and cleanlab score only the training split), in sample
for drainage, CE and DivideMix, out of sample for cleanlab. The retrain drops the suspects of a user's
default `noisylab-issues <run>` (both splits). A rerun with the same --out reuses finished runs.

    python benchmarks/label_issues.py                          # MNIST from ../shared/data
    python benchmarks/label_issues.py --data cifar10n          # CIFAR-10N worst (builds CIFAR-10 first)
    python benchmarks/label_issues.py --epochs 2 --batches 50  # a quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NOISES = {
    "mnist": {
        "asymmetric 0.4": ["noise=asymmetric", "noise.rate=0.4"],
        "instance 0.4": ["noise=instance", "noise.rate=0.4"],
    },
    "cifar10n": {"human worst": ["noise.label_set=worst"]},
}
DETECTORS = {
    "drainage": ["loss=drainage"],
    "ce": ["loss=ce"],
    "dividemix": ["method=dividemix", "method.warmup_epochs=1"],
}


def run(args: list[str], cwd: Path = REPO) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def train(common: list[str], extra: list[str], where: Path, multirun: bool = False) -> float:
    """Seconds the run took (NaN: finished by an earlier call of this script, in the same --out, and reused)."""
    done = list(where.glob("*/metrics.json")) if multirun else [where / "metrics.json"]
    if all(path.is_file() for path in done) and done:
        return float("nan")
    folder = f"hydra.sweep.dir={where}" if multirun else f"hydra.run.dir={where}"
    return run([sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), *common, *extra, folder,
                "callbacks.progress_bar=null", "trainer.enable_model_summary=false", "eval.plots=false"])


def issues(target: Path, *options: str, out: Path | None = None) -> dict:
    run([sys.executable, "-m", "noisylab.issues", str(target), *options, *(["--out", str(out)] if out else [])])
    out = out or (target / "confident_learning" / "issues" if "--cleanlab" in options else target / "issues")
    return json.loads((out / "issues_summary.json").read_text())


def cifar10n_root(shared: Path, scratch: Path) -> Path:
    """A data.root holding cifar-10-batches-py/ (built from the shared JPEG archive) and cifar-n/."""
    root = scratch / "cifar10n-data"
    if not (root / "cifar-10-batches-py").is_dir():
        run([sys.executable, str(shared / "cifar10" / "make_cifar10.py"), str(root)])
    (root / "cifar-n").mkdir(parents=True, exist_ok=True)
    human = root / "cifar-n" / "CIFAR-10_human.pt"
    if not human.exists():
        human.symlink_to(shared / "cifar-n" / "CIFAR-10_human.pt")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(NOISES), default="mnist")
    parser.add_argument("--root", default=str(SHARED),
                        help="the shared data folder: MNIST/raw, or cifar10/ and cifar-n/ for --data cifar10n")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=100, help="training batches of 128 per epoch")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    opts = parser.parse_args()
    out = Path(opts.out or tempfile.mkdtemp(prefix="noisylab-label-issues-"))
    root = cifar10n_root(Path(opts.root), out) if opts.data == "cifar10n" else Path(opts.root)
    common = [f"data={opts.data}", f"data.root={root}", "model=cnn4", "optim.lr=0.01", "ood=none",
              f"trainer.max_epochs={opts.epochs}", f"+trainer.limit_train_batches={opts.batches}",
              f"seed={opts.seed}"]
    print(f"{opts.data}, cnn4, {opts.epochs} epochs x {opts.batches} batches of 128, seed {opts.seed}; runs in {out}\n")
    print("| noise | detector | score | AUROC | precision at the noise rate | suspects | their precision | seconds |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    retrain_rows = []
    for noise, noise_args in NOISES[opts.data].items():
        slug = noise.split()[0]
        for name, args in DETECTORS.items():
            where = out / slug / name
            seconds = train(common, [*noise_args, *args], where)
            scores = issues(where, "--split", "train", out=where / "issues_train")["auroc"]
            for score in scores:  # every score the run wrote, each ranked on its own
                found = issues(where, "--split", "train", "--score", score,
                               out=where / "issues_train" / score.removeprefix("suspicion/"))
                print(f"| {noise} | {name} | {score} | {found['auroc'][score]:.4f} | "
                      f"{found['precision_at_noise_rate']:.4f} | {found['suspects']} | {found['precision_at_k']:.4f} | "
                      f"{seconds:.0f} |")
            if name == "drainage":
                found = issues(where)  # a user's default: both splits, p_d >= 0.5
                before = json.loads((where / "metrics.json").read_text())["test/acc"]
                again = out / slug / "drainage_cleaned"
                train(common, [*noise_args, *args, f"data.exclude={where / 'issues' / 'exclude.csv'}"], again)
                after = json.loads((again / "metrics.json").read_text())
                retrain_rows.append((noise, found["suspects"], found["precision_at_k"], before, after["test/acc"],
                                     after["noise/realised_rate_after_cleaning"]))
        folds = out / slug / "cleanlab"
        seconds = train(common, [*noise_args, "loss=ce", f"data.num_folds={opts.folds}",
                                 f"data.fold={','.join(map(str, range(opts.folds)))}"], folds, multirun=True)
        found = issues(folds, "--cleanlab")
        print(f"| {noise} | cleanlab ({opts.folds} folds of CE) | suspicion/cleanlab | "
              f"{found['auroc']['suspicion/cleanlab']:.4f} | "
              f"{found['precision_at_noise_rate']:.4f} | {found['suspects']} | {found['precision_at_k']:.4f} | "
              f"{seconds:.0f} |")
    print("\nOne clean-and-retrain round: drainage's suspects (p_d >= 0.5) dropped, the same run again\n")
    print("| noise | dropped | of them mislabeled | test acc before | after | noise rate after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for noise, dropped, precision, before, after, rate in retrain_rows:
        print(f"| {noise} | {dropped} | {precision:.3f} | {before:.4f} | {after:.4f} | {rate:.3f} |")


if __name__ == "__main__":
    main()
