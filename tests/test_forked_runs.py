"""The test harness itself: train.py runs forked from a pre-imported server behave as fresh interpreters do,
and parallel test workers share the cores instead of each taking all of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import run_train


def test_each_worker_gets_its_share_of_the_cores() -> None:
    """Under xdist, each worker (and every run it starts) has cores // workers threads: with a thread per core
    each, 2 workers on 2 cores ran training 2-4x slower. Pinned because xdist sets the worker count after
    conftest.py is imported, which once left every worker at a thread per core unnoticed."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("not under pytest-xdist (-n 0): torch keeps its default of a thread per core")
    expected = max(1, (os.cpu_count() or 1) // int(workers))
    if os.environ.get("OMP_NUM_THREADS") != str(expected):
        pytest.skip(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} was set outside the suite")
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize("args", [["--help"], ["no_such_key=1"]])
def test_a_forked_run_answers_as_a_fresh_interpreter(tmp_path: Path, args: list[str]) -> None:
    """Same exit status, same output (Hydra's help; the error naming the key), forked or fresh."""
    forked = run_train(args, cwd=tmp_path, check=False)
    fresh = run_train(args, cwd=tmp_path, check=False, fresh=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == (0 if args == ["--help"] else 1) and (forked.stdout or forked.stderr)
