"""Decoding image files at the resolution their transform needs: PIL's reduced-size JPEG decoding.

A file dataset's transform (files.file_transform) starts with a geometric step: a random resized crop,
or a resize followed by a centre crop. Both map a box of the full-size image onto the output grid. Here
that box is chosen on the full-size geometry (the JPEG header gives it; nothing is decoded yet), with
torchvision's own parameter draw, and the JPEG is then decoded by libjpeg's DCT scaling at the coarsest
power-of-two reduction (1/2, 1/4, 1/8) that still leaves the box at least as large as the output in both
dimensions, so the resize after it still only shrinks. One PIL resize maps the box, divided by that
scale, straight onto the output grid (crop and resize in one pass, antialiased bilinear like
torchvision's). The file is read once; its size comes from the JPEG frame header, parsed here in a few
microseconds (opening the file with Pillow for its size cost about as much as resizing the crop). Files of
other formats (PNG, ...) have no reduced decoding: they are decoded in full and measured after.

What stays equal to applying the transform to the fully decoded image: for the same random state, the
crop box in full-size pixels (top, left, height, width: the same draws from torch's RNG, in the same
order), the flip and every later step's draws, the output size and dtype. What changes: the pixel values,
by resampling (DCT-domain reduction, then PIL's bilinear filter instead of torch's), typically by a few
levels of 255; tests/test_file_pipeline.py bounds the difference. Without a reduction (the box is less
than twice the output in a dimension) the file is decoded in full by torchvision.io and the transform's
own step crops and resizes it with the drawn box: the output is exactly the full-decode pipeline's.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import InterpolationMode, v2

Box = tuple[float, float, float, float]  # left, top, right, bottom, in full-size pixels
_REDUCTIONS = (8, 4, 2)  # the DCT scalings PIL's draft uses
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded): they carry
# the image's height and width. 0xC4 (Huffman tables), 0xC8 (reserved) and 0xCC (arithmetic coding
# conditioning) share the range and are not frames.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when `data` is not a well-formed JPEG up to its
    frame header (then the caller decodes it in full, and the decoder reports what is wrong with it)."""
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _FRAME_MARKERS:
            height, width = int.from_bytes(data[at + 5:at + 7], "big"), int.from_bytes(data[at + 7:at + 9], "big")
            return (width, height) if width and height else None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length (TEM, RSTn)
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


@dataclass(frozen=True)
class Plan:
    """One view's geometry: `box` (full-size pixels) onto an `out` (width, height) grid; `full` does the same
    on the fully decoded uint8 tensor, exactly as the transform's leading steps would."""

    box: Box
    out: tuple[int, int]
    full: Callable[[torch.Tensor], torch.Tensor]


class _RandomResizedCrop:
    def __init__(self, step: v2.RandomResizedCrop) -> None:
        self.step = step

    def __call__(self, size: tuple[int, int]) -> Plan:
        width, height = size
        shape_only = torch.empty((1, 1, 1), dtype=torch.uint8).expand(1, height, width)  # no pixels allocated
        p = self.step.make_params([shape_only])  # torchvision's own draw; it reads the size only
        box = (p["left"], p["top"], p["left"] + p["width"], p["top"] + p["height"])
        return Plan(box, (self.step.size[1], self.step.size[0]), lambda x: self.step.transform(x, p))


class _ResizeThenCentreCrop:
    def __init__(self, resize: v2.Resize, crop: v2.CenterCrop | None) -> None:
        self.resize, self.crop = resize, crop
        self.steps = v2.Compose([resize] + ([crop] if crop is not None else []))

    def __call__(self, size: tuple[int, int]) -> Plan:
        width, height = size
        new_w, new_h = _resized_size(self.resize, width, height)
        out_h, out_w = self.crop.size if self.crop is not None else (new_h, new_w)
        if out_w > new_w or out_h > new_h:  # torchvision would pad; not a case file_transform makes
            raise ValueError(f"centre crop {out_w}x{out_h} is larger than the resized image {new_w}x{new_h}")
        top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
        sx, sy = width / new_w, height / new_h
        return Plan((left * sx, top * sy, (left + out_w) * sx, (top + out_h) * sy), (out_w, out_h), self.steps)


def _resized_size(step: v2.Resize, width: int, height: int) -> tuple[int, int]:
    """(width, height) after v2.Resize: a pair is the size, one number is the short side (torchvision's
    rounding of the long side)."""
    if len(step.size) == 2:
        return step.size[1], step.size[0]
    short, long = sorted((width, height))
    new_short, new_long = step.size[0], int(step.size[0] * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def split_geometry(transform: v2.Compose) -> tuple[Callable[[tuple[int, int]], Plan] | None, v2.Compose]:
    """(a planner for the leading geometric step, the remaining steps), or (None, transform) when the
    transform starts with anything else (then the image is decoded in full and transformed as it is)."""
    steps = list(transform.transforms)
    head = steps[0] if steps else None
    if isinstance(head, (v2.RandomResizedCrop, v2.Resize)) and (
            InterpolationMode(head.interpolation) != InterpolationMode.BILINEAR or not head.antialias):
        return None, transform
    if isinstance(head, v2.RandomResizedCrop):
        return _RandomResizedCrop(head), _compose(steps[1:])
    if isinstance(head, v2.Resize) and head.max_size is None:
        crop = steps[1] if len(steps) > 1 and isinstance(steps[1], v2.CenterCrop) else None
        return _ResizeThenCentreCrop(head, crop), _compose(steps[2 if crop else 1:])
    return None, transform


def _compose(steps: list) -> v2.Compose:
    return v2.Compose(steps or [v2.Identity()])  # Compose refuses an empty list


def reduction(box: Box, out_size: tuple[int, int]) -> int:
    """The coarsest DCT reduction (8, 4, 2 or 1) that keeps `box` at least `out_size` in both dimensions."""
    factor = min((box[2] - box[0]) / out_size[0], (box[3] - box[1]) / out_size[1])
    return next((s for s in _REDUCTIONS if factor >= s), 1)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 CHW (a view of the HWC pixels: the loader's collation makes the one copy into the batch)."""
    array = np.array(image)
    return torch.from_numpy(array.reshape(*array.shape[:2], -1)).permute(2, 0, 1)


@dataclass
class DraftDecoder:
    """Reads `views` independently transformed views of one image file: each view's box is drawn on the
    full-size geometry, the file is decoded once at the finest reduction any view needs, and each box is
    resized from it; then the transform's remaining steps run on each view's uint8 tensor.

    Views draw their boxes first, then their later steps (flip, ...) view by view: each view is distributed
    as before, but with several views the sample-by-sample pairing with a full decode differs.
    """

    transform: v2.Compose
    mode: str = "RGB"  # or "L"

    def __post_init__(self) -> None:
        self.planner, self.rest = split_geometry(self.transform)
        self.read_mode = ImageReadMode.GRAY if self.mode == "L" else ImageReadMode.RGB

    def __call__(self, path: str, views: int = 1) -> list[torch.Tensor]:
        data = _read(path)
        if self.planner is None:
            full = self._decode_in_full(data)
            return [self.transform(full) for _ in range(views)]
        size = jpeg_size(data)
        if size is None:  # not a JPEG: no reduced decoding; the size of the decoded image
            full = self._decode_in_full(data)
            plans = [self.planner((full.shape[-1], full.shape[-2])) for _ in range(views)]
            return [self.rest(plan.full(full)) for plan in plans]
        plans = [self.planner(size) for _ in range(views)]
        scale = min(reduction(plan.box, plan.out) for plan in plans)
        if scale > 1:
            with Image.open(io.BytesIO(data)) as image:
                drafted = image.draft(self.mode, (size[0] // scale, size[1] // scale))
                scale = round(size[0] / drafted[1][2]) if drafted else 1
                if scale > 1:
                    pixels = image.convert(self.mode)
        if scale == 1:  # libjpeg-turbo through torchvision.io and torch's resize: faster than Pillow's at full size
            full = self._decode_in_full(data)
            return [self.rest(plan.full(full)) for plan in plans]
        crops = [pixels.resize(plan.out, Image.BILINEAR, box=_scaled(plan.box, scale, pixels.size)) for plan in plans]
        return [self.rest(_to_tensor(crop)) for crop in crops]

    def _decode_in_full(self, data: bytearray) -> torch.Tensor:
        # torch.frombuffer refuses an empty buffer (ValueError); torchvision reports an empty file as it reports
        # any undecodable one (RuntimeError), which the dataset turns into its bad-image error.
        buffer = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        return decode_image(buffer, mode=self.read_mode)


def _read(path: str) -> bytearray:
    """The file's bytes in a writable buffer, read once: torch.frombuffer wraps it without a copy."""
    with open(path, "rb", buffering=0) as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        read = file.readinto(data)
    return data if read == len(data) else data[:read]  # shorter: the file shrank while being read


def _scaled(box: Box, scale: int, size: Sequence[int]) -> Box:
    """A full-size box in the coordinates of the image decoded at 1/scale (clipped to it: libjpeg rounds
    the reduced size up, so the edge maps inside it)."""
    left, top, right, bottom = (v / scale for v in box)
    return left, top, min(right, size[0]), min(bottom, size[1])
