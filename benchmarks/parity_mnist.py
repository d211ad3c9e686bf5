"""The Drainage paper's qualitative claims at CPU scale, on MNIST with the paper's 4-layer CNN.

Two sweeps through Hydra's multirun, summarised by noisylab-report (mean +- std over seeds):
1. closed set: CE, GCE, SCE, NCE+RCE, ANL-CE and the drainage loss under asymmetric 0.4 and instance 0.4
   noise, every class trained, test accuracy of the best-validation checkpoint (validation on noisy labels);
2. open set: the drainage loss and CE with 2 held-out classes (ood=holdout): the AUROC of 1 - p_d (the
   drainage head's default score) against MSP, for the drainage run, and MSP for CE.

Each epoch is capped at --batches batches of 128 (shuffled anew every epoch), so a run sees
epochs x batches x 128 samples; the noise is made on all 60,000 training labels.

    python benchmarks/parity_mnist.py                          # MNIST from ../shared/data, 3 seeds
    python benchmarks/parity_mnist.py --seeds 1 --epochs 2     # a quicker look
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
LOSSES = "ce,gce,sce,nce_rce,anl_ce,drainage"


def sweep(overrides: list[str], folder: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "train.py"), "-m", *overrides, f"hydra.sweep.dir={folder}",
                    "callbacks.progress_bar=null", "trainer.enable_model_summary=false"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def report(folder: Path, metrics: str) -> None:
    subprocess.run([sys.executable, "-m", "noisylab.report", str(folder), "--metrics", metrics], check=True)
    print((folder / "summary.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(SHARED), help="folder holding MNIST/raw")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=100, help="training batches per epoch")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default=None, help="where the sweeps go (default: a temporary folder)")
    opts = parser.parse_args()
    out = Path(opts.out or tempfile.mkdtemp(prefix="noisylab-parity-mnist-"))
    common = ["data=mnist", f"data.root={opts.root}", "model=cnn4", "optim.lr=0.01", "data.batch_size=128",
              f"trainer.max_epochs={opts.epochs}", f"+trainer.limit_train_batches={opts.batches}",
              f"seed={opts.seeds}"]
    print(f"MNIST, cnn4 (reference init), SGD lr 0.01 cosine, {opts.epochs} epochs x {opts.batches} batches of 128, "
          f"seeds {opts.seeds}; sweeps in {out}\n")
    print("## Closed set: test accuracy (best validation epoch, noisy validation labels)\n")
    sweep([*common, f"loss={LOSSES}", "noise=asymmetric,instance", "noise.rate=0.4", "ood=none"], out / "closed")
    report(out / "closed", "test/acc,val/best_acc")
    print("## Open set: 2 held-out classes, instance noise 0.4; AUROC of each score\n")
    sweep([*common, "loss=drainage,ce", "noise=instance", "noise.rate=0.4", "ood=holdout"], out / "open")
    report(out / "open", "test/acc,test/ood/holdout/*/auroc")


if __name__ == "__main__":
    main()
