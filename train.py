"""Train a classifier under label noise: `python train.py [group=option ...] [key=value ...]`.

See README.md; the configuration lives in conf/ (start with conf/train.yaml). Only Hydra and light modules are
imported here: `--help`, `--cfg job` and tab completion answer without loading torch and Lightning.
"""

import sys

import hydra
from omegaconf import DictConfig

from noisylab.cli import report_user_errors, require_plugins, run_sweep_job
from noisylab.utils.sweep import check_optimized_metric, optimized_value


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns `optimized_metric` (a validation metric) for Hydra sweepers such as Optuna, else None.

    In a sweep a failing job is recorded in its folder (failed.json) and the sweep goes on with the next
    job; the sweep ends with a summary and a non-zero status when any job failed."""
    metric = cfg.get("optimized_metric")
    check_optimized_metric(metric)  # before training: never a test metric
    from noisylab.quiet import quiet_lightning

    quiet_lightning()
    from noisylab.train import run

    metrics = run_sweep_job(cfg, run)
    if metrics is None:
        return float("nan") if metric is not None else None  # the sweeper marks this trial failed
    return optimized_value(metric, metrics)


if __name__ == "__main__":
    require_plugins(sys.argv[1:])  # Hydra would fail on a missing sweeper or launcher without naming the extra
    main()
