"""Instance-dependent noise (noisylab.noise.InstanceNoise) against Xia et al.'s tools.get_instance_noisy_label.

Fixture: xia_instance_noise.json: 20 images of 3 x 2 x 2 uint8 pixels, 4 classes, rate 0.4, std 0.1,
seed 1. The reference draws from numpy's global RandomState (flip rates from the truncated normal, then
W ~ N(0, 1) of shape (K, S, K), then one uniform per sample inside np.random.choice); the fixture holds
those draws, the per-sample flip distributions P the reference built, and its labels. Case "raw_pixels"
is the reference as its data.py calls it (x = the stored 0..255 pixel values); "unit_pixels" is the
same function fed x / 255.

Only "unit_pixels" is compared: like the Drainage repository's copy of this generator (its dataset.py
applies ToTensor to each image first; tests/parity/test_drainage_noise_maps.py pins that), we project
pixels scaled to [0, 1] (README, "Noise"). Xia et al.'s original projects the raw 0..255 values, which
makes the softmax over the other classes nearly one-hot (each sample's flips go to one class); the
"raw_pixels" case keeps the original's figures on record.

We draw from our own seeded numpy Generator (the same config gives the same labels everywhere, but not
the reference's labels), so the random part is not compared. The deterministic part is: our generator
is run with its truncated-normal draw, its W and its uniforms replaced by the reference's, and must then
give the reference's labels; and, for a grid of uniforms, the labels that the reference's P gives
(label = first class whose cumulative probability exceeds u, which is how np.random.choice samples):
this compares the whole flip distribution of every sample to within 0.05 in probability.
"""

from __future__ import annotations

import numpy as np
import pytest

import noisylab.noise.instance as instance_module
from noisylab.noise import InstanceNoise
from tests.parity.reference import load_fixture

FIXTURE = load_fixture("xia_instance_noise")
CASES = {c["name"]: c for c in FIXTURE["cases"]}
GRID = np.linspace(0.025, 0.975, 39)


class ReferenceDraws:
    """Stands in for scipy's truncnorm and for our numpy Generator, handing out the reference's draws."""

    def __init__(self, case: dict, uniforms: np.ndarray) -> None:
        out, params = case["outputs"], case["params"]
        self.q = np.asarray(out["flip_rate"])
        self.w = np.asarray(out["W"])
        self.uniforms = uniforms
        self.rate, self.std = params["rate"], params["norm_std"]

    # scipy.stats.truncnorm
    def rvs(self, a, b, loc, scale, size, random_state=None):
        assert (a, b, loc, scale) == pytest.approx(((0 - self.rate) / self.std, (1 - self.rate) / self.std,
                                                    self.rate, self.std))
        assert size == len(self.q)
        return self.q.copy()

    # numpy.random.Generator
    def standard_normal(self, shape):
        assert tuple(shape) == self.w.shape, f"W of shape {shape}, the reference's is {self.w.shape}"
        return self.w.copy()

    def random(self, size):
        assert size == len(self.uniforms)
        return self.uniforms.copy()


def our_labels(case: dict, uniforms: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    params, inputs = case["params"], case["inputs"]
    draws = ReferenceDraws(case, uniforms)
    noise = InstanceNoise(rate=params["rate"], seed=params["seed"], std=params["norm_std"])
    monkeypatch.setattr(instance_module, "truncnorm", draws)
    monkeypatch.setattr(noise, "rng", lambda: draws)
    images = np.asarray(inputs["images_uint8"], dtype=np.uint8)
    clean = np.asarray(inputs["clean_labels"], dtype=np.int64)
    return noise(clean, images, np.arange(params["num_classes"]))


def reference_labels(case: dict, u: np.ndarray) -> np.ndarray:
    cdf = np.asarray(case["outputs"]["probabilities"]).cumsum(1)
    cdf /= cdf[:, -1:]
    return np.array([np.searchsorted(cdf[i], u[i], side="right") for i in range(len(u))])


def test_labels_from_the_reference_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES["unit_pixels"]
    u = np.asarray(case["outputs"]["uniforms"])
    assert reference_labels(case, u).tolist() == case["outputs"]["noisy_labels"]  # the fixture is consistent
    ours = our_labels(case, u, monkeypatch)
    assert ours.tolist() == case["outputs"]["noisy_labels"], (
        f"{case['params']['pixel_scale']}: {int((ours != np.asarray(case['outputs']['noisy_labels'])).sum())} of "
        f"{len(ours)} labels differ")


def test_flip_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our per-sample flip distributions are the reference's P (sampled on a grid of uniforms)."""
    case = CASES["unit_pixels"]
    n = len(case["inputs"]["clean_labels"])
    wrong = []
    for u in GRID:
        uniforms = np.full(n, u)
        ours = our_labels(case, uniforms, monkeypatch)
        theirs = reference_labels(case, uniforms)
        pairs = enumerate(zip(ours, theirs, strict=True))
        wrong += [(i, round(float(u), 3), int(a), int(b)) for i, (a, b) in pairs if a != b]
    assert not wrong, (f"{case['params']['pixel_scale']}: {len(wrong)} (sample, u, ours, reference) differ, "
                       f"e.g. {wrong[:5]}")
