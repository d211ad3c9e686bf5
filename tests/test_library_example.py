"""docs/library.md's own-loop example runs as written, and what it prints is what it says it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

DOC = REPO / "docs" / "library.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


def test_the_library_doc_has_one_example_of_about_25_lines() -> None:
    blocks = python_blocks(DOC)
    assert len(blocks) == 1
    lines = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith(("import", "from"))]
    assert len(lines) <= 30, "the example should stay short enough to read at a glance"


def test_the_own_loop_example_trains_under_noise_and_measures_it(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest, and fair to the other test processes
    try:
        namespace: dict = {"__name__": "library_example"}
        exec(compile(python_blocks(DOC)[0], str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    finally:
        torch.set_num_threads(threads)
    results, noisy, clean = namespace["results"], namespace["noisy"], namespace["clean"]
    assert 0.35 < (noisy != clean).mean() < 0.45  # the noise model did flip 40% of the labels
    # What the text under the example promises: accuracy near 0.9 on clean test labels despite the noise, a
    # selective accuracy above it, and p_d ranking the mislabeled samples above the clean ones.
    assert results["acc"] > 0.8
    assert results["selective_acc"] > results["acc"]
    assert 0.0 < results["drainage_rate"] < 0.5
    assert results["noise_detection_auroc"] > 0.6
    assert results["auroc"] > 0.5  # uniform noise images score below digits
    assert {"ece", "nll", "aupr_in", "aupr_out", "fpr95_id_positive", "fpr95_ood_positive"} <= results.keys()
    printed = capsys.readouterr().out
    assert f"'acc': {round(results['acc'], 3)}" in printed
