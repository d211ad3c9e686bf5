"""Class-conditional ("asymmetric") noise: a class is confused with one specific other class."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from noisylab.noise.base import NoiseModel

log = logging.getLogger(__name__)


class AsymmetricNoise(NoiseModel):
    """For each source class i in `class_map`, relabel exactly floor(rate * n_i) of its samples as class_map[i].

    floor, not round: the Drainage code flips int(rate * n_i) samples per class, so the counts (and
    the realised rate) are the reference's (tests/parity/test_drainage_noise_maps.py). The class map
    comes from the dataset's config (`data.asymmetric_map`); the realised overall rate is about `rate`
    times the share of samples whose class is a source in the map.
    """

    def __init__(self, rate: float, seed: int = 0, class_map: Mapping[int, int] | None = None) -> None:
        super().__init__(rate=rate, seed=seed)
        if not class_map:
            raise ValueError(
                "noise=asymmetric needs a class map, and this dataset defines none (data.asymmetric_map is "
                "empty). Pick a dataset that has one (mnist, cifar10, cifar100) or give a map, e.g. "
                "'+noise.class_map={3:5,5:3}'."
            )
        self.class_map = {_class_id(k, class_map): _class_id(v, class_map) for k, v in class_map.items()}

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Refuse a map naming a class id the dataset does not have: its pairs would be dropped silently."""
        bad = {s: d for s, d in self.class_map.items() if not (s < len(class_names) and d < len(class_names))}
        if bad:
            raise ValueError(
                f"noise.class_map={_show_map(self.class_map)}: {_show_map(bad)} name classes this dataset does not "
                f"have; it has {len(class_names)} classes, ids 0 to {len(class_names) - 1}"
                f"{_show_names(class_names)}. Map class ids to class ids, e.g. 'noise.class_map={{3:5,5:3}}'"
            )

    def noisy(self, clean: np.ndarray, images: np.ndarray | None, class_ids: np.ndarray,
              positions: np.ndarray | None) -> np.ndarray:
        position = {int(c): k for k, c in enumerate(class_ids)}
        # Pairs whose source or target class is held out (as OOD) do not apply.
        mapping = {position[s]: position[d] for s, d in self.class_map.items() if s in position and d in position}
        if 0 < len(mapping) < len(self.class_map):
            skipped = {s: d for s, d in self.class_map.items() if s not in position or d not in position}
            log.info("asymmetric noise: pairs %s of noise.class_map touch held-out classes and do not apply",
                     _show_map(skipped))
        if not mapping:
            raise ValueError(
                f"no pair of the asymmetric class map {self.class_map} applies to the training classes "
                f"{list(map(int, class_ids))}; check noise.class_map and the OOD hold-out classes"
            )
        rng = self.rng()
        noisy = clean.copy()
        for src in sorted(mapping):
            members = np.flatnonzero(clean == src)
            chosen = rng.choice(members, size=int(self.rate * len(members)), replace=False)
            noisy[chosen] = mapping[src]
        return noisy


def _class_id(entry: object, class_map: Mapping) -> int:
    """A class id of a map entry: a whole number >= 0 (a key written "3" in YAML counts as 3)."""
    try:
        value = int(entry)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        value = None
    if value is None or value < 0 or (isinstance(entry, float) and not entry.is_integer()):
        raise ValueError(
            f"noise.class_map={_show_map(class_map)}: {entry!r} is not a class id; the map takes class ids "
            "(whole numbers >= 0, the dataset's label numbers) to class ids, e.g. 'noise.class_map={3:5,5:3}'"
        )
    return value


def _show_map(class_map: Mapping) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in class_map.items()) + "}"


def _show_names(class_names: Sequence[str], most: int = 20) -> str:
    """' (0=airplane, 1=automobile, ...)', or nothing when the names are the ids themselves (digits)."""
    if all(name == str(k) for k, name in enumerate(class_names)):
        return ""
    shown = ", ".join(f"{k}={name}" for k, name in enumerate(class_names[:most]))
    return f" ({shown}{', ...' if len(class_names) > most else ''})"
