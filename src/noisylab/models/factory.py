"""Building networks from the model and loss configs, as many as a method needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from torch import nn

from noisylab.models.classifier import Classifier
from noisylab.models.init import init_backbone, zero_head


class NetworkFactory:
    """Calling it builds a new backbone (from `model`, sized for `image_shape`) with a new head (from
    the loss config's `head`). `model.weight_init` (a callable on the whole network, e.g.
    noisylab.models.init.drainage_init) re-initialises backbone and head as a reference code does; without
    it, modules keep PyTorch's and torchvision's defaults. With `init_from` the backbone starts from that
    checkpoint's backbone and the head from zero (Ghosh & Lan's recipe for fine-tuning a pre-trained encoder).

    Methods also read `image_shape` and `num_classes` from it to size their own parts (e.g. the
    generative model of InstanceGM). A plain class, not a dataclass: Hydra would turn a dataclass passed
    to `instantiate` into a config.
    """

    def __init__(self, model: dict[str, Any], head: dict[str, Any], image_shape: tuple[int, int, int],
                 num_classes: int, init_from: str | None = None) -> None:
        self.model = dict(model)
        self.weight_init: Callable[[nn.Module], None] | None = instantiate(self.model.pop("weight_init", None))
        if self.weight_init is not None and self.model.get("pretrained"):
            raise ValueError(f"model.weight_init and model.pretrained={self.model['pretrained']} both set the "
                             "weights; keep one (model.weight_init=null keeps the pretrained weights)")
        self.head = head
        self.image_shape = tuple(image_shape)
        self.num_classes = int(num_classes)
        self.init_from = init_from

    def __call__(self) -> Classifier:
        channels, size, _ = self.image_shape
        backbone = instantiate(self.model, in_channels=channels, image_size=size)
        head = instantiate(self.head, in_features=backbone.out_features, num_classes=self.num_classes)
        if self.weight_init is not None:
            self.weight_init(backbone)
            self.weight_init(head)
        if self.init_from:
            init_backbone(backbone, self.init_from)
            zero_head(head)
        return Classifier(backbone, head)
