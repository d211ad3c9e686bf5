"""numpy arrays as well as tensors, for the public metric functions: converted once, at the boundary.

A library user's own loop often ends in numpy (`np.concatenate` of collected outputs, scikit-learn), and the metrics
compute in torch. `accepts_arrays` converts every numpy array argument of a function to a tensor before the call:
floats keep their precision (float64 stays float64, so the metrics that compute in float64 lose nothing), booleans
stay booleans, and integers (labels, indices, in any width, uint8 included) become int64, the type torch's losses
and indexing need. Tensors pass through untouched; what a function returns is unchanged (tensors or floats).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

TensorOrArray = torch.Tensor | np.ndarray  # what the public metric functions take
F = TypeVar("F", bound=Callable[..., Any])


def as_tensor(value: Any, name: str = "value") -> Any:
    """`value` as a tensor if it is a numpy array (see the module docstring), else `value` itself.

    Read-only or non-contiguous arrays (np.load with mmap, `a[::-1]`) are copied; others share their memory."""
    if not isinstance(value, np.ndarray):
        return value
    kind = value.dtype.kind
    if kind in "iu":
        value = value.astype(np.int64, copy=False)
    elif kind not in "fb":
        raise TypeError(f"{name}: a numpy array of {value.dtype} values; the metrics take numbers (float labels or "
                        "scores, integer labels, boolean masks), e.g. np.asarray({name}, dtype=np.float64)")
    return torch.from_numpy(np.require(value, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def accepts_arrays(fn: F) -> F:
    """Decorate a public metric function so that its numpy array arguments arrive as tensors."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not any(isinstance(value, np.ndarray) for value in (*args, *kwargs.values())):
            return fn(*args, **kwargs)  # tensors only (every call inside noisylab): nothing to convert
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            bound.arguments[name] = as_tensor(value, name)
        return fn(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]
