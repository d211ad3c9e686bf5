"""Parity of `ood_metrics` with the OOD-metric conventions of OpenOOD, pytorch-ood and scikit-learn.

`fixtures/ood_conventions.json` holds fixed inputs (`id_scores`, `ood_scores`, higher = more
in-distribution) and the outputs of the reference functions run on exactly those inputs, in a scratch
folder outside this project; `sources` names each repository, commit or version, function, and how the
scores were fed (negated for pytorch-ood, which takes outlier scores). It also holds OpenOOD v1.5's
near/far OOD groups per in-distribution dataset (`openood_groups`).

What the references show:
- AUROC is the same everywhere.
- FPR@95 of OpenOOD and pytorch-ood treats OOD as the positive class: the share of in-distribution samples
  flagged as OOD at the threshold that detects 95% of the OOD samples (our `fpr95_ood_positive`). The
  classic ID-positive value (`fpr95_id_positive`) differs, by a lot in the `conventions_differ` case.
- OpenOOD's and pytorch-ood's AUPR is the trapezoidal area under the precision-recall curve, not
  scikit-learn's step-wise average precision, which is what our `aupr_in` / `aupr_out` are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from noisylab.metrics.ood import ood_metrics

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "ood_conventions.json").read_text())
CASES = FIXTURE["cases"]
# Ours, OpenOOD, pytorch-ood 0.4.0 and scikit-learn work in float64: they agree to rounding.
EXACT = 1e-12
# pytorch-ood's GitHub version 0.2.0 goes through torchmetrics, which computes the curves in float32.
FLOAT32 = 1e-6


@pytest.fixture(scope="module", params=CASES, ids=[c["name"] for c in CASES])
def case(request):
    c = request.param
    ours = ood_metrics(torch.tensor(c["id_scores"], dtype=torch.float64),
                       torch.tensor(c["ood_scores"], dtype=torch.float64))
    return c, ours


def test_fixture_names_its_sources():
    sources = FIXTURE["sources"]
    assert len(sources["openood"]["commit"]) == 40
    assert len(sources["pytorch_ood_github"]["commit"]) == 40
    assert sources["pytorch_ood"]["version"]
    assert sources["sklearn"]["version"]
    assert {c["name"] for c in CASES} == {"overlapping_normals", "many_ties", "hand_sized", "conventions_differ"}
    for c in CASES:
        assert all(round(x, 6) == x for x in c["id_scores"] + c["ood_scores"])


def test_auroc_matches_all_references(case):
    c, ours = case
    assert ours["auroc"] == pytest.approx(c["sklearn"]["roc_auc_score"], abs=EXACT)
    assert ours["auroc"] == pytest.approx(c["openood"]["auroc"], abs=EXACT)
    assert ours["auroc"] == pytest.approx(c["pytorch_ood"]["auroc"], abs=EXACT)
    assert ours["auroc"] == pytest.approx(c["pytorch_ood_github"]["auroc"], abs=FLOAT32)


def test_aupr_is_sklearn_average_precision(case):
    c, ours = case
    assert ours["aupr_in"] == pytest.approx(c["sklearn"]["average_precision_id_positive"], abs=EXACT)
    assert ours["aupr_out"] == pytest.approx(c["sklearn"]["average_precision_ood_positive"], abs=EXACT)


def test_fpr95_ood_positive_is_openood_and_pytorch_ood(case):
    c, ours = case
    assert ours["fpr95_ood_positive"] == pytest.approx(c["openood"]["fpr95"], abs=EXACT)
    assert ours["fpr95_ood_positive"] == pytest.approx(c["pytorch_ood"]["fpr95"], abs=EXACT)
    assert ours["fpr95_ood_positive"] == pytest.approx(c["pytorch_ood_github"]["fpr95"], abs=FLOAT32)
    assert ours["fpr95_ood_positive"] == pytest.approx(c["sklearn"]["fpr95_ood_positive"], abs=EXACT)


def test_fpr95_id_positive_is_the_classic_value(case):
    c, ours = case
    assert ours["fpr95_id_positive"] == pytest.approx(c["sklearn"]["fpr95_id_positive"], abs=EXACT)
    assert ours["fpr95_id_positive"] == pytest.approx(c["sklearn"]["fpr95_id_positive_roc_curve"], abs=EXACT)


def test_the_two_fpr95_conventions_differ():
    c = next(c for c in CASES if c["name"] == "conventions_differ")
    ours = ood_metrics(torch.tensor(c["id_scores"], dtype=torch.float64),
                       torch.tensor(c["ood_scores"], dtype=torch.float64))
    assert ours["fpr95_id_positive"] == pytest.approx(0.1, abs=EXACT)
    assert ours["fpr95_ood_positive"] == pytest.approx(0.5533333333333333, abs=EXACT)


def test_reference_aupr_is_the_trapezoid_not_average_precision(case):
    """OpenOOD and pytorch-ood agree with each other; ours (average precision) differs from theirs by
    exactly the gap between scikit-learn's average precision and their trapezoid, and that gap is not 0."""
    c, ours = case
    for key, ap_key in (("aupr_in", "average_precision_id_positive"),
                        ("aupr_out", "average_precision_ood_positive")):
        openood = c["openood"][key]
        assert c["pytorch_ood"][key] == pytest.approx(openood, abs=EXACT)
        assert c["pytorch_ood_github"][key] == pytest.approx(openood, abs=FLOAT32)
        gap = c["sklearn"][ap_key] - openood
        assert abs(gap) > 5e-5
        assert ours[key] - openood == pytest.approx(gap, abs=EXACT)
        assert ours[key] != pytest.approx(openood, abs=1e-5)


def test_aupr_gap_on_tied_scores():
    """With many ties the trapezoid overestimates average precision (here by about 0.004 / 0.007)."""
    c = next(c for c in CASES if c["name"] == "many_ties")
    ours = ood_metrics(torch.tensor(c["id_scores"], dtype=torch.float64),
                       torch.tensor(c["ood_scores"], dtype=torch.float64))
    assert c["openood"]["aupr_in"] - ours["aupr_in"] == pytest.approx(
        c["openood"]["aupr_in"] - c["sklearn"]["average_precision_id_positive"], abs=EXACT)
    assert c["openood"]["aupr_in"] - ours["aupr_in"] > 3e-3
    assert c["openood"]["aupr_out"] - ours["aupr_out"] > 3e-3


def test_openood_groups():
    groups = FIXTURE["openood_groups"]
    assert set(groups) == {"cifar10", "cifar100", "imagenet200", "imagenet", "mnist"}
    assert groups["cifar10"]["near"] == ["cifar100", "tin"]
    assert groups["cifar100"]["near"] == ["cifar10", "tin"]
    for name in ("cifar10", "cifar100"):
        assert groups[name]["far"] == ["mnist", "svhn", "texture", "places365"]
    for name in ("imagenet200", "imagenet"):
        assert groups[name]["near"] == ["ssb_hard", "ninco"]
        assert groups[name]["far"] == ["inaturalist", "textures", "openimage_o"]
    for g in groups.values():
        assert g["source"].rsplit("@", 1)[1] == FIXTURE["sources"]["openood"]["commit"]
