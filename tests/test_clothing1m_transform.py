"""The Drainage Clothing1M presets train on the reference's transform: resize to 256 x 256, centre crop 224,
Cutout 112 (the mean colour, i.e. 0 after normalisation), no flip; evaluation resizes and centre-crops alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from noisylab.data.files import IMAGENET_MEAN, Cutout, file_transform
from noisylab.train import build_datamodule
from tests.conftest import CONF, compose_config
from tests.fixtures import write_clothing1m

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("drainage_clothing1m*.yaml"))


@pytest.mark.parametrize("experiment", PRESETS)
def test_clothing1m_presets_use_the_reference_transform(tmp_path: Path, experiment: str) -> None:
    write_clothing1m(tmp_path / "data")
    datamodule = build_datamodule(compose_config(tmp_path, [f"experiment={experiment}"]))
    train = datamodule.train_set.transform.transforms
    assert [type(t) for t in train] == [v2.Resize, v2.CenterCrop, Cutout]
    assert list(train[0].size) == [256, 256] and list(train[1].size) == [224, 224] and train[2].length == 112
    test = datamodule.test_sets["test"].transform.transforms
    assert [type(t) for t in test] == [v2.Resize, v2.CenterCrop] and list(test[0].size) == [256, 256]
    image = datamodule.train_set[0][0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.uint8


def test_cutout_covers_a_clipped_square_with_the_mean_colour() -> None:
    cutout = Cutout(112, IMAGENET_MEAN)
    image = torch.full((3, 224, 224), 7, dtype=torch.uint8)
    torch.manual_seed(0)
    out = cutout(image)
    covered = (out != 7).all(0)
    rows, cols = covered.any(1).nonzero().view(-1), covered.any(0).nonzero().view(-1)
    # The square: 112 px a side unless clipped at the border, centred at a uniformly drawn pixel.
    assert 56 <= len(rows) <= 112 and 56 <= len(cols) <= 112
    assert covered.sum() == len(rows) * len(cols)
    fill = out[:, rows[0], cols[0]].tolist()
    assert fill == [round(255 * m) for m in IMAGENET_MEAN]
    assert (image == 7).all()  # the input is not modified


def test_default_file_transform_is_unchanged() -> None:
    train = [type(t) for t in file_transform(True).transforms]
    assert train == [v2.RandomResizedCrop, v2.RandomHorizontalFlip]
    with pytest.raises(ValueError, match="data.source_kwargs.crop"):
        file_transform(True, crop="centre")
