"""Let glibc keep freed memory for reuse instead of handing it back to the kernel at every free.

Why: PyTorch's CPU allocator keeps no cache; every CPU tensor is a malloc and every release a free. glibc serves
blocks above its mmap threshold (128 KiB at start, adjusted as it goes, never above 32 MiB) with fresh pages from
the kernel and gives the top of its heap back once more than the trim threshold is free. A training step frees
and re-allocates the same image-, batch- and activation-sized blocks over and over, so it page-faults on every
page of them, every step: measured here, 15M faults with 37 s of system time (2.3 s with these settings) in a
CPU throughput benchmark, and ~440 minor faults per image in the image-file pipeline until its normalisation
stopped making batch-sized temporaries (benchmarks/README.md, "Memory allocator"). The usual advice is to
preload jemalloc or tcmalloc; two glibc settings give the reuse that matters here with nothing to install.

Both are set: setting either turns glibc's own adjustment off, and the trim threshold alone would leave large
blocks on mmap. The price is resident memory: up to RETAIN_BYTES of freed memory stays with each process
(DataLoader workers included) until it exits, where glibc would have returned it. The settings take effect for
allocations made after the call, in this process and in the processes forked from it (DataLoader workers); a
spawned process sets them again through the same call (DDP ranks and sweep jobs run the task function).
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Blocks below this come from the heap and are reused after free: covers batches of 224 px images as uint8
# (128 x 3 x 224 x 224 = 19 MB) and the activations of CIFAR-sized networks at batch 128 (33.5 MB).
MMAP_THRESHOLD_BYTES = 256 << 20
# Freed memory the heap keeps at its top before giving it back.
RETAIN_BYTES = 1 << 30

# A user who tuned glibc's allocator through its environment keeps those settings.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def _user_tuned_malloc() -> str | None:
    """The environment variable through which the user set glibc's malloc up, if any."""
    for name in USER_SETTINGS:
        if name in os.environ:
            return name
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def glibc_version() -> str | None:
    """"glibc 2.36" where the C library is glibc, else None (musl, macOS, Windows)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or None
    except (AttributeError, ValueError, OSError):
        return None


def retain_freed_memory(enabled: bool = True) -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring); True when they were set.

    `enabled` is the config key `retain_freed_memory` (train.py and eval.py): false keeps glibc's defaults,
    e.g. where memory is tighter than time. A no-op, logged at debug level, where the C library is not glibc or
    the user set malloc up through the environment; a preloaded jemalloc or tcmalloc serves the allocations
    itself, and the setting then changes nothing."""
    if not isinstance(enabled, bool):
        raise ValueError(f"retain_freed_memory={enabled!r}: must be true or false, e.g. retain_freed_memory=false "
                         "to keep glibc's default allocator settings")
    if not enabled:
        return False
    if (user := _user_tuned_malloc()) is not None:
        log.debug("retain_freed_memory: %s is set; glibc's malloc keeps the user's settings", user)
        return False
    glibc = glibc_version()
    if glibc is None:
        log.debug("retain_freed_memory: the C library is not glibc; nothing to set")
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, RETAIN_BYTES) == 1
    if applied:
        log.debug("retain_freed_memory: %s keeps up to %d MiB of freed memory (blocks below %d MiB from the heap)",
                  glibc, RETAIN_BYTES >> 20, MMAP_THRESHOLD_BYTES >> 20)
    else:
        log.debug("retain_freed_memory: %s's mallopt refused the thresholds; its defaults stay", glibc)
    return applied
