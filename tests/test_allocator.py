"""retain_freed_memory: glibc keeps freed memory for reuse, so re-allocating a batch-sized tensor does not fault
on its pages again (benchmarks/README.md, "Memory allocator", for what this is worth in training time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from noisylab.utils.allocator import glibc_version, retain_freed_memory
from tests.conftest import QUICK, run_train

needs_glibc = pytest.mark.skipif(glibc_version() is None,
                                 reason="retain_freed_memory sets glibc's malloc; this C library is not glibc")

# Each step in one fresh interpreter (glibc's settings are per process and cannot be undone), in this order:
# the calls that must leave glibc alone first, then the one that sets it.
PROBE = """
import json, os
from noisylab.utils.allocator import retain_freed_memory
from tests.helpers import allocation_faults
steps = []
for enabled, env in [(False, {}), (True, {"MALLOC_ARENA_MAX": "2"}),
                     (True, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4096"}), (True, {})]:
    os.environ.update(env)
    steps.append({"applied": retain_freed_memory(enabled), "faults": allocation_faults(40 << 20, 10)})
    for name in env:
        del os.environ[name]
print(json.dumps(steps))
"""


@needs_glibc
def test_freed_blocks_are_reused_without_page_faults_unless_off_or_tuned_by_the_user() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=environ,
                         cwd=Path(__file__).resolve().parents[1])
    off, arena_max, tunables, on = json.loads(out.stdout.strip().splitlines()[-1])
    pages = (40 << 20) // os.sysconf("SC_PAGE_SIZE")
    for left_alone in (off, arena_max, tunables):  # glibc's default: every allocation faults on each page
        assert left_alone["applied"] is False and left_alone["faults"] >= 9 * pages
    assert on["applied"] is True
    assert on["faults"] <= 5 * pages  # kept for reuse: the first faults, and a few while the heap settles


def test_a_value_that_is_no_flag_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"retain_freed_memory='yes please': must be true or false"):
        retain_freed_memory("yes please")  # type: ignore[arg-type]


@needs_glibc
@pytest.mark.parametrize("setting", ["retain_freed_memory=true", "retain_freed_memory=false"])
def test_train_py_runs_with_the_setting(tmp_path: Path, setting: str) -> None:
    """What a user gets from `python train.py`: on by default (true), glibc's own behaviour with false."""
    probe = tmp_path / "faults.json"
    args = [*QUICK, "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
            "test_on=none", f"hydra.run.dir={tmp_path / 'run'}", setting,
            "+callbacks.probe._target_=tests.helpers.PageFaultProbe", f"+callbacks.probe.path={probe}"]
    if setting.endswith("true"):
        args.remove(setting)  # the default
    run_train(args, cwd=tmp_path)
    pages = (40 << 20) // os.sysconf("SC_PAGE_SIZE")
    faults = json.loads(probe.read_text())["faults"]
    # On: the first allocation faults, and a few more where small blocks the run allocated in between keep a
    # freed block from taking the next aligned request (the heap settles after some). Off: every one faults.
    assert (faults <= 10 * pages if setting.endswith("true") else faults >= 18 * pages), faults
