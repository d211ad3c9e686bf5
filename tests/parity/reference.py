"""Figures produced by running the reference code itself, stored as small JSON fixtures.

Each fixture in `fixtures/` was made by running a reference repository's function, in a scratch folder
outside this project, on fixed inputs. It holds only those inputs and the reference's outputs (values and
gradients), never its code, plus where they came from:

    {"reference": {"repo": "owner/name", "commit": "<40 hex>", "file": "path/in/repo.py",
                   "function": "name", "note": "how it was called, what was patched (device placement only)"},
     "cases": [{"name": "...", "params": {...}, "inputs": {...}, "outputs": {...}}, ...]}

Numbers are nested lists; `tensor()` turns them into float64/int64 tensors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).with_name("fixtures")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def load_fixture(name: str) -> dict[str, Any]:
    """The fixture `fixtures/<name>.json`, after checking that it names its source."""
    path = FIXTURES / f"{name}.json"
    data = json.loads(path.read_text())
    ref = data.get("reference", {})
    for key in ("repo", "commit", "file", "function"):
        if not ref.get(key):
            raise AssertionError(f"{path}: reference.{key} is missing: a fixture must name its source")
    if not _COMMIT.match(ref["commit"]):
        raise AssertionError(f"{path}: reference.commit must be a full 40-hex commit, got {ref['commit']!r}")
    return data


def tensor(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A fixture's nested list as a tensor: integers as int64, everything else as float64."""
    t = torch.tensor(value)
    if t.is_floating_point():  # build floats in float64 directly: no rounding through float32 on the way
        t = torch.tensor(value, dtype=torch.float64)
    return t if dtype is None else t.to(dtype)
