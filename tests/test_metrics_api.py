"""noisylab.metrics as a library: every public metric is exported, and takes numpy arrays as well as tensors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

import noisylab.metrics as metrics
from noisylab.metrics.arrays import as_tensor

RNG = np.random.default_rng(0)
N, K = 300, 5
LOGITS = RNG.normal(size=(N, K)) * 3  # float64, as a numpy user's collected outputs usually are
LABELS = RNG.integers(0, K, size=N)
SCORES_A, SCORES_B = RNG.normal(1.0, 1.0, size=N), RNG.normal(0.0, 1.0, size=200)
CORRECT = RNG.random(N) < 0.7
DRAINED = RNG.random(N) < 0.2

# Every name of noisylab.metrics.__all__ -> numpy arguments it is called with.
CALLS: dict[str, tuple[Any, ...]] = {
    "ece": (LOGITS, LABELS),
    "fit_temperature": (LOGITS, LABELS),
    "classification_metrics": (LOGITS, LABELS),
    "brier_score": (LOGITS, LABELS),
    "drainage_metrics": (DRAINED, CORRECT),
    "risk_coverage": (SCORES_A, CORRECT),
    "selective_metrics": (SCORES_A, CORRECT),
    "auroc": (SCORES_A, SCORES_B),
    "fpr_at_tpr": (SCORES_A, SCORES_B),
    "ood_metrics": (SCORES_A, SCORES_B, CORRECT),
    "oscr": (SCORES_A, CORRECT, SCORES_B),
    "noise_detection_metrics": (SCORES_A, CORRECT, DRAINED),
    "precision_at_noise_rate": (SCORES_A, CORRECT),
    "one_minus_p_d": (LOGITS, K - 1),
    "display_value": ("msp", SCORES_A),
    **{name: (LOGITS,) for name in ("msp", "max_logit", "energy", "neg_entropy", "mmls", "mmles", "mmleps")},
}


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (tensors: same dtype and values), through dicts and tuples."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def test_every_public_metric_is_exported_and_covered_here() -> None:
    assert sorted(metrics.__all__) == sorted(metrics._EXPORTS) == sorted(CALLS)
    namespace: dict[str, Any] = {}
    exec("from noisylab.metrics import *", namespace)  # noqa: S102
    assert all(callable(namespace[name]) for name in metrics.__all__)
    assert set(metrics.__all__) <= set(dir(metrics))
    with pytest.raises(AttributeError, match="no attribute 'accuracy'"):
        metrics.accuracy  # noqa: B018


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_arrays_give_what_tensors_give(name: str) -> None:
    function = getattr(metrics, name)
    args = CALLS[name]
    from_numpy = function(*args)
    from_tensors = function(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args))
    assert _same(from_numpy, from_tensors)


def test_float64_stays_float64_and_labels_of_any_integer_width_work() -> None:
    assert metrics.energy(LOGITS).dtype == torch.float64
    assert torch.equal(metrics.energy(LOGITS), torch.logsumexp(torch.from_numpy(LOGITS), 1))
    reference = metrics.classification_metrics(torch.from_numpy(LOGITS), torch.from_numpy(LABELS))
    for dtype in (np.uint8, np.int16, np.int32):  # F.cross_entropy and one_hot take int64 only
        assert metrics.classification_metrics(LOGITS, LABELS.astype(dtype)) == reference
        assert metrics.brier_score(LOGITS, LABELS.astype(dtype)) == metrics.brier_score(LOGITS, LABELS)
    by_keyword = metrics.ood_metrics(id_scores=SCORES_A, ood_scores=SCORES_B)
    assert by_keyword == metrics.ood_metrics(torch.from_numpy(SCORES_A), torch.from_numpy(SCORES_B))


def test_read_only_and_reversed_arrays_are_copied_not_refused(tmp_path: Any) -> None:
    np.save(tmp_path / "logits.npy", LOGITS)
    mapped = np.load(tmp_path / "logits.npy", mmap_mode="r")  # read-only: torch.from_numpy would warn
    assert metrics.ece(mapped, LABELS) == metrics.ece(LOGITS, LABELS)
    reversed_scores = SCORES_A[::-1]  # a negative stride: torch.from_numpy refuses it
    assert metrics.auroc(reversed_scores, SCORES_B) == metrics.auroc(SCORES_A[::-1].copy(), SCORES_B)
    shared = np.ascontiguousarray(LOGITS)
    assert as_tensor(shared).data_ptr() == shared.ctypes.data  # ordinary arrays are not copied


def test_arrays_that_are_not_numbers_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"labels: a numpy array of <U1 values"):
        metrics.ece(LOGITS, np.array(list("ab" * (N // 2))))


def test_importing_the_scores_does_not_import_sklearn_scipy_or_torchmetrics() -> None:
    """The report and the model heads import noisylab.metrics.scores; the package imports the rest on first use."""
    code = ("import sys, noisylab.metrics.scores, noisylab.metrics; "
            "print(sorted(m for m in ('sklearn', 'scipy.optimize', 'torchmetrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
