"""How networks start: a reference code's weight initialisation, or the backbone of an earlier run (e.g. SimCLR)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from noisylab.utils.checkpoints import read_checkpoint

BACKBONE = "backbone."


def backbone_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The backbone weights in a noisylab checkpoint (of any method: `net.backbone.*` for one network,
    `net1.backbone.*` for the first of two), or a plain state dict of a backbone."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from={checkpoint}: no such file ({path.resolve()})")
    state = read_checkpoint(path)
    state = state.get("state_dict", state)
    prefixes = sorted({key[: key.index(BACKBONE)] for key in state if BACKBONE in key}, key=lambda p: (len(p), p))
    if not prefixes:
        return dict(state)
    prefix = prefixes[0] + BACKBONE
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def init_backbone(backbone: nn.Module, checkpoint: str | Path) -> None:
    """Load the backbone weights of `checkpoint` into `backbone`; every weight must match."""
    state = backbone_state_dict(checkpoint)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or resized:
        raise ValueError(
            f"model.init_from={checkpoint} does not fit this backbone ({type(backbone).__name__}): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {resized[:5]}. Pre-train with the "
            "same model=... and data (input channels and size decide the stem)."
        )
    backbone.load_state_dict(state)


def zero_head(head: nn.Module) -> None:
    """Zero the head's linear layers (Ghosh & Lan start fine-tuning a pre-trained encoder this way, so the
    first updates do not have to undo a random projection of good features)."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def drainage_init(network: nn.Module) -> None:
    """Conv2d weights kaiming_uniform_ (fan_in, relu), Linear weights xavier_uniform_; biases and BatchNorm
    keep PyTorch's defaults. This is how the Drainage code starts its CNNs and ResNets (head included);
    PyTorch's and torchvision's defaults start the weights about 2.4x smaller, which matters with the L1
    penalty (loss.l1) those presets use (tests/parity/test_drainage_init.py)."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
