"""Train a classifier under label noise: `python train.py [group=option ...] [key=value ...]`.

See README.md; the configuration lives in conf/ (start with conf/train.yaml).
"""

import hydra
from omegaconf import DictConfig

from noisylab.cli import report_user_errors
from noisylab.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    return metrics.get("test/acc")  # the value Hydra sweepers optimise when asked to


if __name__ == "__main__":
    main()
