"""Our asymmetric and instance noise against the Drainage reference's dataset.py.

Fixtures: drainage_class_maps.json (the transition matrices get_asym_T_{mnist,cifar10,cifar100}(eta) and
the flip counts create_noisy_labels realises) and drainage_instance_noise.json (the per-sample flip
distribution P of get_instance_noisy_label for fixed images, labels, flip rates q and projection W).
Class maps and counts are compared exactly; P to 1e-5 (the reference computes it in float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from noisylab.noise import class_maps
from noisylab.noise.asymmetric import AsymmetricNoise
from tests.conftest import compose_config
from tests.parity.reference import load_fixture

MAPS = load_fixture("drainage_class_maps")
PRESETS = {"mnist": ["data=mnist"], "cifar10": ["experiment=drainage_cifar10"],
           "cifar100": ["experiment=drainage_cifar100"]}


def reference_map(dataset: str) -> dict[int, int]:
    """source -> target class of the reference's T (its non-zero off-diagonal entries, at any eta)."""
    case = next(c for c in MAPS["cases"] if c["inputs"]["dataset"] == dataset)
    pairs = {i: j for i, j, _ in case["outputs"]["off_diagonal"]}
    assert len(pairs) == len(case["outputs"]["off_diagonal"]), "each source class has one target in the reference"
    return pairs


def transition_matrix(class_map: dict[int, int], num_classes: int, eta: float) -> np.ndarray:
    """The class-conditional T our asymmetric noise realises in expectation: 1 - eta on a source's diagonal."""
    t = np.eye(num_classes)
    for src, dst in class_map.items():
        t[src, src], t[src, dst] = 1.0 - eta, eta
    return t


def reference_matrix(case: dict) -> np.ndarray:
    out = case["outputs"]
    t = np.diag(out["diagonal"])
    for i, j, v in out["off_diagonal"]:
        t[i, j] = v
    return t


@pytest.mark.parametrize("case", MAPS["cases"], ids=lambda c: c["name"])
def test_preset_class_map_gives_reference_transition_matrix(case: dict, tmp_path: Path) -> None:
    """The map the preset's data config instantiates (data.asymmetric_map) gives the reference's T."""
    dataset, eta = case["inputs"]["dataset"], case["params"]["eta"]
    cfg = compose_config(tmp_path, PRESETS[dataset])
    ours = {int(k): int(v) for k, v in instantiate(cfg.data.asymmetric_map).items()}
    ref = reference_map(dataset)
    wrong = sorted((s, ours.get(s), d) for s, d in ref.items() if ours.get(s) != d)
    assert set(ours) == set(ref) and not wrong, (
        f"{dataset}: {len(wrong)} of {len(ref)} source classes flip elsewhere than in the reference "
        f"(source, ours, reference): {wrong[:8]}; sources only ours: {sorted(set(ours) - set(ref))[:8]}")
    np.testing.assert_array_equal(transition_matrix(ours, case["outputs"]["num_classes"], eta),
                                  reference_matrix(case))


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_class_map_functions_match_reference(dataset: str) -> None:
    assert getattr(class_maps, dataset)() == reference_map(dataset)


def test_cifar100_blocks_variant_matches_reference() -> None:
    """The reference's CIFAR-100 map: cyclic within 20 blocks of 5 consecutive class ids."""
    assert class_maps.cifar100("blocks") == reference_map("cifar100")


def test_cifar100_default_map_matches_reference() -> None:
    """What noise=asymmetric with data=cifar100 uses unless told otherwise."""
    ours = class_maps.cifar100()
    ref = reference_map("cifar100")
    wrong = [s for s in ref if ours.get(s) != ref[s]]
    assert not wrong, f"class_maps.cifar100() differs from the reference for {len(wrong)} of 100 classes"


@pytest.mark.parametrize("case", MAPS["count_cases"], ids=lambda c: c["name"])
def test_asymmetric_noise_flips_the_reference_counts(case: dict) -> None:
    """create_noisy_labels flips int(eta * n_i) samples per source class (floor); with the reference's own
    map (so only the counting rule is tested), ours must flip as many."""
    counts, eta = case["inputs"]["class_counts"], case["params"]["eta"]
    clean = np.repeat(np.arange(len(counts)), counts)
    noise = AsymmetricNoise(rate=eta, seed=0, class_map=reference_map(case["inputs"]["class_map"]))
    noisy = noise(clean, None, np.arange(len(counts)))
    realised = np.zeros((len(counts), len(counts)), dtype=int)
    np.add.at(realised, (clean, noisy), 1)
    ours = {(i, j): int(realised[i, j]) for i in range(len(counts)) for j in range(len(counts))
            if i != j and realised[i, j]}
    ref = {(i, j): n for i, j, n in case["outputs"]["flips"]}
    diff = {k: (ours.get(k, 0), ref.get(k, 0)) for k in set(ours) | set(ref) if ours.get(k, 0) != ref.get(k, 0)}
    assert not diff, f"flip counts (source, target): (ours, reference) differ: {dict(sorted(diff.items())[:8])}"
    assert int((noisy != clean).sum()) == case["outputs"]["num_flipped"]


# ---------------------------------------------------------------- instance-dependent noise


class _FixedDraws:
    """Stands in for the noise model's numpy Generator: returns the reference's W and the given u."""

    def __init__(self, w: np.ndarray, u: np.ndarray) -> None:
        self.w, self.u = w, u

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        assert tuple(shape) == self.w.shape, f"projection of shape {shape}, reference's is {self.w.shape}"
        return self.w.copy()

    def random(self, n: int) -> np.ndarray:
        assert n == len(self.u)
        return self.u.copy()


class _FixedTruncnorm:
    def __init__(self, q: np.ndarray) -> None:
        self.q = q

    def rvs(self, a: float, b: float, loc: float, scale: float, size: int, random_state: object) -> np.ndarray:
        assert size == len(self.q)
        return self.q.copy()


def test_instance_noise_flip_distribution_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the reference's flip rates q and projection W (our generator's two draws, replaced), our
    InstanceNoise must sample from the reference's per-sample distribution P: with u set just below and just
    above each boundary of P's cumulative sums, the label drawn (first class whose cumsum exceeds u, the rule
    of both codes) must be the one P gives. This pins P to ~1e-5 through the public __call__. It patches the
    module's `truncnorm` and the model's `rng`: it needs InstanceNoise to draw q with truncnorm.rvs, W with
    standard_normal and u with random."""
    import noisylab.noise.instance as instance

    case = load_fixture("drainage_instance_noise")["cases"][0]
    images = np.array(case["inputs"]["images_chw_uint8"], dtype=np.uint8)
    labels = np.array(case["inputs"]["labels"], dtype=np.int64)
    q = np.array(case["inputs"]["flip_rate"])
    w = np.array(case["inputs"]["W"])
    cdf = np.array(case["outputs"]["P"]).cumsum(axis=1)
    noise = instance.InstanceNoise(rate=case["params"]["noise_rate"], seed=0, std=case["params"]["norm_std"])
    monkeypatch.setattr(instance, "truncnorm", _FixedTruncnorm(q))
    eps = 1e-5
    num_classes = cdf.shape[1]
    for boundary in range(num_classes - 1):
        for side in (-eps, eps):
            u = np.clip(cdf[:, boundary] + side, 0.0, 1.0 - 1e-9)
            monkeypatch.setattr(instance.InstanceNoise, "rng", lambda self, u=u: _FixedDraws(w, u))
            ours = noise(labels, images, np.arange(num_classes))
            expected = (cdf > u[:, None]).argmax(axis=1)
            assert ours.tolist() == expected.tolist(), (
                f"u = cumsum(P)[:, {boundary}] {'+' if side > 0 else '-'} {eps}: labels {ours.tolist()}, "
                f"reference's P gives {expected.tolist()}")
