"""Meta-Weight-Net under trainer=ddp: SyncBatchNorm has no double backward, so the method turns it off
(each GPU normalises its own batch) and refuses a command line that turns it back on, before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from noisylab.train import build_datamodule, build_method
from tests.conftest import compose_config


def test_ddp_preset_runs_meta_weight_net_without_sync_batchnorm(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["method=meta_weight_net", "trainer=ddp"])
    assert cfg.trainer.sync_batchnorm is False and cfg.method.sync_batchnorm is False
    assert compose_config(tmp_path, ["trainer=ddp"]).trainer.sync_batchnorm is True  # other methods keep it


def test_sync_batchnorm_forced_on_is_refused_naming_the_key(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["method=meta_weight_net", "data.meta_size=100", "trainer.sync_batchnorm=true",
                                    "data.val_size=0.1"])
    datamodule = build_datamodule(cfg)
    with pytest.raises(Exception, match=r"trainer\.sync_batchnorm=false"):  # Hydra wraps the ValueError
        build_method(cfg, datamodule)


def test_the_meta_gradient_is_a_double_backward_through_batchnorm() -> None:
    """Why: the weight network's gradient flows through the gradient of the BatchNorm layer, which plain
    BatchNorm supports (and SyncBatchNorm's autograd function does not)."""
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    scale = torch.ones(6, requires_grad=True)  # stands in for the per-sample weights
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    loss = (scale * nn.functional.cross_entropy(net(x), y, reduction="none")).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
    meta = sum((g * g).sum() for g in grads)
    (meta_grad,) = torch.autograd.grad(meta, scale)
    assert torch.isfinite(meta_grad).all() and meta_grad.abs().sum() > 0
