"""Evaluate a checkpoint: `python eval.py ckpt_path=<run>/checkpoints/best.ckpt ood=[svhn,cifar100]`.

See README.md; the configuration lives in conf/evaluate.yaml. Only Hydra and light modules are imported here:
`--help` and tab completion answer without loading torch and Lightning.
"""

import hydra
from omegaconf import DictConfig

from noisylab.cli import report_user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from noisylab.quiet import quiet_lightning

    quiet_lightning()
    from noisylab.evaluate import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
