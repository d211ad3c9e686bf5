"""Train a classifier under label noise: `python train.py [group=option ...] [key=value ...]`.

See README.md; the configuration lives in conf/ (start with conf/train.yaml).
"""

import hydra
from omegaconf import DictConfig

from noisylab.cli import report_user_errors, run_sweep_job
from noisylab.train import run
from noisylab.utils.sweep import check_optimized_metric, optimized_value


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns `optimized_metric` (a validation metric) for Hydra sweepers such as Optuna, else None.

    In a sweep a failing job is recorded in its folder (failed.json) and the sweep goes on with the next
    job; the sweep ends with a summary and a non-zero status when any job failed."""
    metric = cfg.get("optimized_metric")
    check_optimized_metric(metric)  # before training: never a test metric
    metrics = run_sweep_job(cfg, run)
    if metrics is None:
        return float("nan") if metric is not None else None  # the sweeper marks this trial failed
    return optimized_value(metric, metrics)


if __name__ == "__main__":
    main()
