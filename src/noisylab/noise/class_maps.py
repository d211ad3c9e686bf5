"""Per-dataset class maps for asymmetric noise, as used in the robust-loss literature."""

from __future__ import annotations

# CIFAR-100 fine label -> superclass (coarse label), as stored in the dataset's own `coarse_labels`.
CIFAR100_SUPERCLASS = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip


def mnist() -> dict[int, int]:
    """7 -> 1, 2 -> 7, 5 <-> 6, 3 -> 8 (Patrini et al. 2017)."""
    return {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}


def cifar10() -> dict[int, int]:
    """truck -> automobile, bird -> airplane, cat <-> dog, deer -> horse (Patrini et al. 2017)."""
    return {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}


def cifar100(variant: str = "blocks") -> dict[int, int]:
    """Each class flips to the next class of its group, cyclically.

    variant="blocks" (default): groups are consecutive blocks of 5 class indices (0-4, 5-9, ...), the
    map the published robust-loss tables were made with (Drainage, APL, ANL and GCE code bases), so
    numbers from it can stand beside theirs (tests/parity/test_drainage_noise_maps.py).
    variant="superclass": groups are the 20 real CIFAR-100 superclasses (members in ascending order);
    semantically closer confusions, but not what those tables used.
    """
    if variant == "superclass":
        groups = [[f for f, c in enumerate(CIFAR100_SUPERCLASS) if c == s] for s in range(20)]
    elif variant == "blocks":
        groups = [list(range(start, start + 5)) for start in range(0, 100, 5)]
    else:
        raise ValueError(f"unknown CIFAR-100 asymmetric variant {variant!r}; use 'superclass' or 'blocks'")
    return {g[i]: g[(i + 1) % len(g)] for g in groups for i in range(len(g))}
