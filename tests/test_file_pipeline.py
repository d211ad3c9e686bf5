"""The image-file pipeline decodes JPEGs at a reduced size where the crop allows it (decode.DraftDecoder): the
crop boxes are torchvision's, drawn on the full-size geometry, and the images it hands on are what a full
decode followed by the same transform gives: exactly when no reduction applies, within a fraction of a grey
level when one does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from noisylab.data.augment import BatchAugment
from noisylab.data.decode import DraftDecoder, jpeg_size, reduction
from noisylab.data.files import IMAGENET_MEAN, IMAGENET_STD, FileDataset, file_transform


def _photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth random colour image (JPEG quality 90, or PNG by suffix): a blurred grid, like a photo's
    low frequencies, so resampling differences stay realistic."""
    rng = np.random.default_rng(seed)
    grid = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    grid.resize((width, height), Image.BICUBIC).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jpegs")
    return {"small": _photo(folder / "small.jpg", 320, 270, 1), "large": _photo(folder / "large.jpg", 1000, 800, 2),
            "png": _photo(folder / "large.png", 600, 500, 3)}


def _full_decode(transform: v2.Compose, path: Path, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(decode_image(str(path), mode=ImageReadMode.RGB))


def _draft(transform: v2.Compose, path: Path, seed: int, views: int = 1) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return DraftDecoder(transform)(str(path), views)


@pytest.mark.parametrize("train", [True, False])
def test_without_a_reduction_the_output_is_the_full_decode_pipelines(images: dict[str, Path], train: bool) -> None:
    transform = file_transform(train)
    for seed in range(5):
        (ours,) = _draft(transform, images["small"], seed)
        assert ours.shape == (3, 224, 224) and ours.dtype == torch.uint8
        assert torch.equal(ours, _full_decode(transform, images["small"], seed))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kind", ["large", "png"])
def test_reduced_decoding_stays_within_a_grey_level_of_the_full_decode(images: dict[str, Path], train: bool,
                                                                       kind: str) -> None:
    """Same box and flip as the full decode (the same draws), the pixels resampled from the DCT-reduced image:
    a mean difference below one level of 255, no pixel off by more than a few (edges of the random grid)."""
    transform = file_transform(train)
    reduced = 0
    for seed in range(4):
        (ours,) = _draft(transform, images[kind], seed)
        theirs = _full_decode(transform, images[kind], seed)
        assert ours.shape == theirs.shape == (3, 224, 224) and ours.dtype == torch.uint8
        difference = (ours.float() - theirs.float()).abs()
        assert difference.mean() < 1.0 and difference.max() <= 24
        reduced += int(not torch.equal(ours, theirs))
    if kind == "large":
        assert reduced > 0  # the 1000 x 800 JPEG was decoded at 1/2 or 1/4 for some boxes
    else:
        assert reduced == 0  # PNG has no reduced decoding: Pillow decodes it in full


def test_the_crop_box_is_torchvisions_draw_on_the_full_size_geometry(images: dict[str, Path]) -> None:
    transform = file_transform(True)
    crop = transform.transforms[0]
    decoder = DraftDecoder(transform)
    with Image.open(images["large"]) as image:
        for seed in range(20):
            torch.manual_seed(seed)
            plan = decoder.planner(image.size)
            torch.manual_seed(seed)
            expected = crop.make_params([image])
            left, top, right, bottom = plan.box
            assert (left, top, right - left, bottom - top) == (expected["left"], expected["top"], expected["width"],
                                                               expected["height"])
            assert 0 <= left < right <= 1000 and 0 <= top < bottom <= 800 and plan.out == (224, 224)
            area, ratio = (right - left) * (bottom - top) / (1000 * 800), (right - left) / (bottom - top)
            assert 0.08 * 0.99 <= area <= 1.0 and 3 / 4 * 0.98 <= ratio <= 4 / 3 * 1.02


def test_the_reduction_keeps_the_box_at_least_the_output_size() -> None:
    assert reduction((0, 0, 447, 900), (224, 224)) == 1  # 447 / 224 < 2: a 1/2 decode would upsample
    assert reduction((0, 0, 448, 900), (224, 224)) == 2
    assert reduction((10, 10, 1000, 1000), (224, 224)) == 4
    assert reduction((0, 0, 4000, 3000), (224, 224)) == 8


def test_the_eval_box_is_resize_then_centre_crop_in_full_size_pixels(images: dict[str, Path]) -> None:
    decoder = DraftDecoder(file_transform(False))
    with Image.open(images["large"]) as image:  # 1000 x 800 -> 320 x 256, centre 224 x 224 at (48, 16)
        plan = decoder.planner(image.size)
    sx, sy = 1000 / 320, 800 / 256
    assert plan.box == pytest.approx((48 * sx, 16 * sy, 272 * sx, 240 * sy)) and plan.out == (224, 224)


def test_views_draw_their_own_boxes_and_grey_gives_one_channel(images: dict[str, Path]) -> None:
    first, second = _draft(file_transform(True), images["large"], 0, views=2)
    assert first.shape == second.shape == (3, 224, 224) and not torch.equal(first, second)
    torch.manual_seed(0)
    (grey,) = DraftDecoder(file_transform(True), "L")(str(images["large"]))
    assert grey.shape == (1, 224, 224) and grey.dtype == torch.uint8


def test_a_transform_without_a_leading_crop_gets_the_full_image(images: dict[str, Path]) -> None:
    (image,) = _draft(v2.Compose([v2.RandomHorizontalFlip()]), images["small"], 0)
    assert image.shape == (3, 270, 320) and image.dtype == torch.uint8


def test_batches_stay_uint8_until_normalised_on_the_device(images: dict[str, Path]) -> None:
    files = ["small.jpg", "large.jpg", "large.png"]
    labels = np.zeros(3, dtype=np.int64)
    dataset = FileDataset(images["small"].parent, files, labels, labels, np.arange(3), file_transform(True))
    images_u8, y, index, _ = next(iter(DataLoader(dataset, batch_size=3)))
    assert images_u8.shape == (3, 3, 224, 224) and images_u8.dtype == torch.uint8 and images_u8.is_contiguous()
    assert 0 <= int(images_u8.min()) < int(images_u8.max()) <= 255
    x = BatchAugment(IMAGENET_MEAN, IMAGENET_STD)(images_u8, train=False)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, (images_u8.float() / 255 - mean) / std, atol=1e-5)
    assert index.tolist() == [0, 1, 2]


def test_a_keyed_sample_is_seeded_by_its_key_on_the_cpu_generator_alone(images: dict[str, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Training loaders hand FileDataset (epoch, index) keys: each sample's crop and flip are drawn from the
    CPU generator seeded by the key, and nothing else is seeded. torch.manual_seed would also seed CUDA's
    generators (the training's, which fork_rng does not restore) and, before CUDA is initialised, queue that
    seeding with a formatted stack trace on every sample; the check is that it is never called."""
    labels = np.zeros(2, dtype=np.int64)
    dataset = FileDataset(images["small"].parent, ["small.jpg", "large.jpg"], labels, labels, np.arange(2),
                          file_transform(True))
    torch.manual_seed(123)
    training_state = torch.get_rng_state()
    seeded_accelerators: list[str] = []
    for name in ("cuda", "xpu", "mtia"):
        monkeypatch.setattr(getattr(torch, name), "manual_seed_all", lambda seed, n=name: seeded_accelerators.append(n))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda seed: seeded_accelerators.append("mps"))
    first = [dataset[(epoch, 1)][0] for epoch in (0, 1, 0)]
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])  # a function of the key
    assert torch.equal(torch.get_rng_state(), training_state)  # the main process's stream is left alone
    assert seeded_accelerators == []


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"mode": "L"}, {"exif": True}, {"subsampling": 0}])
def test_the_jpeg_frame_header_gives_pillows_size(tmp_path: Path, options: dict) -> None:
    """The decoder reads each file's size from its frame header instead of opening it with Pillow: the same
    (width, height) for baseline, progressive, grey and EXIF-tagged files; None for anything else, which is
    then decoded in full (and reported by the decoder when it is broken)."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    mode, exif = options.pop("mode", "RGB"), options.pop("exif", False)
    path = tmp_path / "image.jpg"
    tags = Image.Exif()
    tags[0x0112], tags[0x010F] = 6, "camera" * 200  # an orientation tag and a long APP1 segment
    extra = {"exif": tags} if exif else {}
    image.convert(mode).save(path, quality=90, **options, **extra)
    data = path.read_bytes()
    with Image.open(path) as opened:
        assert jpeg_size(data) == opened.size == (53, 37)
    assert jpeg_size(data[:2] + b"\xff" + data[2:]) == (53, 37)  # a fill byte before a marker
    assert jpeg_size(data[:20]) is None  # cut before the frame header
    image.save(tmp_path / "image.png")
    assert jpeg_size((tmp_path / "image.png").read_bytes()) is None and jpeg_size(b"") is None
