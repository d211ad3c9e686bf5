"""Metrics against independent references: sklearn for OOD/AUROC, numpy for FPR95, ECE, NLL and accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from noisylab.metrics import classification_metrics, drainage_metrics, noise_detection_metrics, ood_metrics
from noisylab.metrics.gather import first_occurrence


# --------------------------------------------------------------------------------------------- OOD
def _fpr95(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Highest threshold that still accepts >= 95% of ID scores (score >= t), then the share of OOD >= t."""
    for t in np.unique(id_scores)[::-1]:
        if (id_scores >= t).mean() >= 0.95:
            return float((ood_scores >= t).mean())
    raise AssertionError("unreachable: the lowest ID score accepts all ID samples")


def _reference(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> dict[str, float]:
    ids, oods = id_scores.double().numpy(), ood_scores.double().numpy()
    scores = np.concatenate([ids, oods])
    is_id = np.concatenate([np.ones(len(ids)), np.zeros(len(oods))])
    return {
        "auroc": roc_auc_score(is_id, scores),
        "aupr_in": average_precision_score(is_id, scores),
        "aupr_out": average_precision_score(1 - is_id, -scores),
        "fpr95_id_positive": _fpr95(ids, oods),  # ID positive: OOD accepted while 95% of ID are kept
        "fpr95_ood_positive": _fpr95(-oods, -ids),  # OOD positive: ID rejected while 95% of OOD are detected
    }


def _assert_matches(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == {"auroc", "aupr_in", "aupr_out", "fpr95_id_positive", "fpr95_ood_positive"}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def _scores(seed: int, n_id: int = 300, n_ood: int = 200, shift: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_id, generator=g) + shift, torch.randn(n_ood, generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ood_metrics_continuous_scores(seed):
    """auroc, aupr_in, aupr_out and both fpr95 conventions equal sklearn / numpy on overlapping continuous scores."""
    id_scores, ood_scores = _scores(seed)
    _assert_matches(ood_metrics(id_scores, ood_scores), _reference(id_scores, ood_scores))


def test_ood_metrics_probability_scores():
    """Scores in [0, 1] (MSP, 1 - drainage probability) match the references too."""
    g = torch.Generator().manual_seed(3)
    id_scores = torch.rand(400, generator=g) ** 0.5
    ood_scores = torch.rand(250, generator=g) ** 2
    _assert_matches(ood_metrics(id_scores, ood_scores), _reference(id_scores, ood_scores))


@pytest.mark.parametrize("seed", [0, 1])
def test_ood_metrics_heavy_ties(seed):
    """Scores rounded to one decimal (many ties across ID and OOD) are handled like sklearn."""
    id_scores, ood_scores = _scores(seed, n_id=500, n_ood=400, shift=0.5)
    id_scores, ood_scores = torch.round(id_scores, decimals=1), torch.round(ood_scores, decimals=1)
    assert len(torch.unique(torch.cat([id_scores, ood_scores]))) < 100
    _assert_matches(ood_metrics(id_scores, ood_scores), _reference(id_scores, ood_scores))


def test_ood_metrics_fpr95_with_tied_threshold():
    """A tie at the 95% threshold: every OOD sample tied with it is accepted too (score >= t)."""
    id_scores = torch.tensor([5.0] * 10 + [1.0] * 10)  # t = 1.0 keeps 100% (5.0 keeps only 50%)
    ood_scores = torch.tensor([1.0, 1.0, 0.0, 0.0])
    got = ood_metrics(id_scores, ood_scores)
    assert got["fpr95_id_positive"] == pytest.approx(0.5)
    _assert_matches(got, _reference(id_scores, ood_scores))


def test_ood_metrics_perfect_separation():
    """Every ID score above every OOD score: auroc 1, both AUPRs 1, both fpr95 0; the reverse gives 0 and 1."""
    g = torch.Generator().manual_seed(4)
    id_scores = 2 + torch.rand(100, generator=g)
    ood_scores = -3 + torch.rand(80, generator=g)
    got = ood_metrics(id_scores, ood_scores)
    assert got["auroc"] == pytest.approx(1.0)
    assert got["aupr_in"] == pytest.approx(1.0)
    assert got["aupr_out"] == pytest.approx(1.0)
    assert got["fpr95_id_positive"] == got["fpr95_ood_positive"] == 0.0
    reverse = ood_metrics(ood_scores, id_scores)
    assert reverse["auroc"] == pytest.approx(0.0)
    assert reverse["fpr95_id_positive"] == reverse["fpr95_ood_positive"] == pytest.approx(1.0)


def test_ood_metrics_large_energy_like_scores():
    """Energy scores (logsumexp of logits) of confident models are often > 17; a shift must not matter."""
    id_scores, ood_scores = _scores(5, shift=5.0)
    id_scores, ood_scores = id_scores + 30.0, ood_scores + 30.0
    _assert_matches(ood_metrics(id_scores, ood_scores), _reference(id_scores, ood_scores))


# ---------------------------------------------------------------------------------- classification
def _ece15(logits: np.ndarray, labels: np.ndarray) -> float:
    """15 equal-width bins (i/15, (i+1)/15] on max-softmax confidence, |acc - conf| weighted by bin share."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == labels).astype(np.float64)
    ece = 0.0
    for i in range(15):
        in_bin = (conf > i / 15) & (conf <= (i + 1) / 15)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return ece


def _nll(logits: np.ndarray, labels: np.ndarray) -> float:
    m = logits.max(axis=1, keepdims=True)
    log_probs = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize(("k", "scale", "seed"), [(10, 2.0, 0), (10, 5.0, 1), (3, 1.0, 2), (100, 3.0, 3)])
def test_classification_metrics_match_numpy(k, scale, seed):
    """acc = argmax accuracy, ece = 15-bin L1 ECE, nll = mean negative log softmax, all against numpy."""
    g = torch.Generator().manual_seed(seed)
    n = 1000
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) * scale
    logits[torch.arange(n), labels] += scale  # better than chance, so bins hold a mix of right and wrong
    got = classification_metrics(logits, labels)
    z, y = logits.double().numpy(), labels.numpy()
    assert set(got) == {"acc", "ece", "nll"}
    assert got["acc"] == pytest.approx((z.argmax(1) == y).mean(), abs=1e-6)
    assert got["ece"] == pytest.approx(_ece15(z, y), abs=1e-5)
    assert got["nll"] == pytest.approx(_nll(z, y), rel=1e-5)


def test_classification_metrics_accepts_half_precision_logits():
    """bfloat16 logits (mixed precision) are scored like their float32 values."""
    g = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 5, (200,), generator=g)
    logits = (torch.randn(200, 5, generator=g) * 3).bfloat16()
    got = classification_metrics(logits, labels)
    z, y = logits.double().numpy(), labels.numpy()
    assert got["acc"] == pytest.approx((z.argmax(1) == y).mean(), abs=1e-6)
    assert got["ece"] == pytest.approx(_ece15(z, y), abs=1e-5)
    assert got["nll"] == pytest.approx(_nll(z, y), rel=1e-5)


def test_ece_with_saturated_confidence():
    """Confidence exactly 1.0 belongs to the last of the 15 bins, (14/15, 1]."""
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])  # the saturated sample is wrong, the 0.98-confident one right
    conf2 = 1.0 / (1.0 + 3.0 * np.exp(-5.0))
    expected = abs(0.5 - (1.0 + conf2) / 2)  # one bin: accuracy 1/2, mean confidence (1 + 0.980) / 2
    assert _ece15(logits.double().numpy(), labels.numpy()) == pytest.approx(expected)
    assert classification_metrics(logits, labels)["ece"] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------------------------------- drainage
def test_drainage_metrics_by_hand():
    """drainage_rate = share drained; selective_acc = accuracy on the samples that were kept."""
    drained = torch.tensor([True, False, False, True, False, False])
    correct = torch.tensor([True, True, False, False, True, False])
    got = drainage_metrics(drained, correct)
    assert got == pytest.approx({"drainage_rate": 2 / 6, "selective_acc": 2 / 4})


def test_drainage_metrics_all_drained_leaves_out_selective_acc():
    """Nothing kept: selective accuracy is undefined and left out."""
    got = drainage_metrics(torch.ones(5, dtype=torch.bool), torch.zeros(5, dtype=torch.bool))
    assert got == {"drainage_rate": 1.0}


def test_drainage_metrics_nothing_drained():
    """Nothing drained: rate 0 and selective accuracy is plain accuracy."""
    correct = torch.tensor([True, False, True, True])
    got = drainage_metrics(torch.zeros(4, dtype=torch.bool), correct)
    assert got == pytest.approx({"drainage_rate": 0.0, "selective_acc": 0.75})


# --------------------------------------------------------------------------------- noise detection
@pytest.mark.parametrize("seed", [0, 1])
def test_noise_detection_auroc_matches_sklearn(seed):
    """AUROC of mislabel scores (probabilities, with ties) against the known mislabeled samples."""
    g = torch.Generator().manual_seed(seed)
    is_noisy = torch.rand(600, generator=g) < 0.3
    scores = torch.rand(600, generator=g) * 0.7 + 0.3 * is_noisy.float()
    scores = torch.round(scores, decimals=2)
    got = noise_detection_metrics(scores, is_noisy)
    assert set(got) == {"noise_detection_auroc", "noise_detection_precision"}
    want = roc_auc_score(is_noisy.numpy(), scores.double().numpy())
    assert got["noise_detection_auroc"] == pytest.approx(want, abs=1e-5)
    k = int(is_noisy.sum())  # precision among the k top-scored; ties at the cut may go either way
    cut = np.sort(scores.numpy())[::-1][k - 1]
    above, at = scores.numpy() > cut, scores.numpy() == cut
    low = is_noisy.numpy()[above].sum() / k
    high = (is_noisy.numpy()[above].sum() + min(is_noisy.numpy()[at].sum(), k - above.sum())) / k
    assert low - 1e-9 <= got["noise_detection_precision"] <= high + 1e-9


def test_noise_detection_accepts_integer_is_noisy():
    """is_noisy may come as 0/1 integers (noisy != clean cast to long)."""
    scores = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.2])
    is_noisy = torch.tensor([1, 0, 0, 1, 0])
    got = noise_detection_metrics(scores, is_noisy)
    # Positive/negative pairs: (0.9 vs .1 .8 .2) all right, (0.3 vs .1 .8 .2): 2 of 3 -> 5/6.
    assert got["noise_detection_auroc"] == pytest.approx(5 / 6)


def test_noise_detection_auroc_with_loss_like_scores():
    """Scores on any scale (e.g. per-sample loss, higher = more likely mislabeled) give the same AUROC."""
    g = torch.Generator().manual_seed(2)
    is_noisy = torch.rand(400, generator=g) < 0.4
    scores = 20.0 + torch.rand(400, generator=g) * 5 + 5 * is_noisy.float()
    got = noise_detection_metrics(scores, is_noisy)
    want = roc_auc_score(is_noisy.numpy(), scores.double().numpy())
    assert got["noise_detection_auroc"] == pytest.approx(want, abs=1e-5)


def test_drainage_precision_recall_by_hand():
    """precision = noisy share of drained samples, recall = drained share of noisy samples."""
    is_noisy = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1]).bool()
    drained = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0]).bool()
    scores = torch.linspace(0, 1, 8)
    got = noise_detection_metrics(scores, is_noisy, drained)
    assert got["drainage_rate"] == pytest.approx(3 / 8)
    assert got["drainage_precision"] == pytest.approx(2 / 3)
    assert got["drainage_recall"] == pytest.approx(2 / 4)
    assert "noise_detection_auroc" in got


def test_noise_detection_leaves_out_undefined_metrics():
    """Nothing drained -> no precision; no noisy sample -> no auroc/recall; all noisy -> no auroc."""
    scores = torch.tensor([0.1, 0.5, 0.9, 0.2])
    nothing_drained = noise_detection_metrics(scores, torch.tensor([True, False, True, False]),
                                              torch.zeros(4, dtype=torch.bool))
    assert "drainage_precision" not in nothing_drained
    assert nothing_drained["drainage_recall"] == 0.0 and nothing_drained["drainage_rate"] == 0.0

    drained = torch.tensor([True, False, False, True])
    no_noise = noise_detection_metrics(scores, torch.zeros(4, dtype=torch.bool), drained)
    assert "noise_detection_auroc" not in no_noise and "drainage_recall" not in no_noise
    assert no_noise["drainage_precision"] == 0.0

    all_noisy = noise_detection_metrics(scores, torch.ones(4, dtype=torch.bool), drained)
    assert "noise_detection_auroc" not in all_noisy
    assert all_noisy["drainage_precision"] == 1.0 and all_noisy["drainage_recall"] == 0.5

    assert noise_detection_metrics(scores, torch.zeros(4, dtype=torch.bool)) == {}


# ------------------------------------------------------------------------------------------ gather
def test_first_occurrence_by_hand():
    """One row per index value, and it is the first row that carries it."""
    index = torch.tensor([3, 1, 3, 0, 1, 2, 3])
    keep = first_occurrence(index)
    assert sorted(keep.tolist()) == [0, 1, 3, 5]
    assert sorted(index[keep].tolist()) == [0, 1, 2, 3]


def test_first_occurrence_on_padded_gather():
    """Rows gathered from ranks with a DistributedSampler-style pad (repeated samples) count once each."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(103, generator=g)
    padded = torch.cat([perm, perm[:5]])  # 108 rows for 4 ranks of 27
    gathered = torch.cat([padded[r::4] for r in range(4)])
    keep = first_occurrence(gathered)
    assert len(keep) == 103
    assert torch.equal(torch.sort(gathered[keep]).values, torch.arange(103))
    firsts = {}
    for pos, value in enumerate(gathered.tolist()):
        firsts.setdefault(value, pos)
    assert sorted(keep.tolist()) == sorted(firsts.values())


def test_first_occurrence_without_duplicates_keeps_all():
    """No duplicates: every row is kept."""
    index = torch.tensor([4, 2, 0, 1, 3])
    assert sorted(first_occurrence(index).tolist()) == [0, 1, 2, 3, 4]
