"""`resume=true hydra.run.dir=<run>` trains with the run's own config (stored in its checkpoint): nothing needs
retyping, a key given on the command line that differs and may not change is refused by name (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from noisylab.run_folder import resume_config
from tests.conftest import QUICK, compose_config, read_metrics, run_train

RUN = {"seed": 3, "loss": {"name": "ce"}, "noise": {"rate": 0.2, "seed": 3},
       "trainer": {"max_epochs": 1}, "sched": {"T_max": 1}, "logger": {"csv": {"save_dir": "/r"}},
       "paths": {"output_dir": "/r"}, "test_on": "none"}
DEFAULTS = {"seed": 0, "loss": {"name": "drainage"}, "noise": {"rate": 0.4, "seed": "${seed}"},
            "trainer": {"max_epochs": 30}, "sched": {"T_max": "${trainer.max_epochs}"},
            "logger": {"csv": {"save_dir": "${paths.output_dir}"}}, "paths": {"output_dir": "/r"}, "test_on": "best"}


def _resolved(raw: dict) -> dict:
    return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)


def _resume(overrides: dict) -> tuple[dict, list]:
    """resume_config for a command line that gave `overrides` (dotted key -> value) over DEFAULTS."""
    raw = OmegaConf.create(DEFAULTS)
    for key, value in overrides.items():
        OmegaConf.update(raw, key, value, merge=False, force_add=True)
    return resume_config(RUN, _resolved(OmegaConf.to_container(raw)), OmegaConf.to_container(raw), DEFAULTS,
                         named=set(overrides))


def test_keys_not_given_come_from_the_run_and_are_listed() -> None:
    effective, taken = _resume({})
    assert effective["loss"] == {"name": "ce"} and effective["noise"] == {"rate": 0.2, "seed": 3}
    assert effective["trainer"]["max_epochs"] == 1  # a resume without more epochs continues to the run's own end
    assert effective["test_on"] == "best"  # this launch's: the run stopped untested, its continuation is tested
    assert dict(taken)["noise.rate"] == 0.2 and "test_on" not in dict(taken)


def test_given_keys_come_from_the_command_line() -> None:
    effective, _ = _resume({"trainer.max_epochs": 2, "sched.T_max": 1, "noise.rate": 0.4})
    assert effective["trainer"]["max_epochs"] == 2 and effective["sched"]["T_max"] == 1
    assert effective["noise"]["rate"] == 0.4  # named, though the default's value: check_resume_matches refuses it


def test_a_key_that_follows_a_given_one_changes_with_it() -> None:
    """Cosine's T_max follows trainer.max_epochs: more epochs would move the schedule, so it is not hidden."""
    effective, _ = _resume({"trainer.max_epochs": 2})
    assert effective["sched"]["T_max"] == 2
    assert effective["noise"]["seed"] == 3  # follows `seed`, which was not given: the run's


def test_a_removed_group_is_removed() -> None:
    effective, _ = _resume({"logger": {}})
    assert effective["logger"] == {}


def test_without_a_hydra_command_line_every_key_is_the_command_lines() -> None:
    requested = _resolved(DEFAULTS)
    effective, taken = resume_config(RUN, requested, DEFAULTS, None)
    assert effective == requested and not taken


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_resume_needs_no_override_retyped_and_refuses_a_differing_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    display = QUICK[1:]
    run_train(["loss=ce", "noise.rate=0.2", "sched.T_max=2", "trainer.max_epochs=1", "eval.plots=false",
               "test_on=none", *display, f"hydra.run.dir={run}"], cwd=tmp_path)
    refused = run_train(["resume=true", f"hydra.run.dir={run}", "trainer.max_epochs=2", "loss=gce", *display],
                        cwd=tmp_path, check=False)
    assert refused.returncode == 1
    assert "loss.criterion._target_: 'noisylab.losses.CrossEntropy' in the run" in refused.stderr
    assert "GeneralizedCrossEntropy" in refused.stderr and "leave these keys out" in refused.stderr
    assert "loss=ce" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())  # the record is the run's

    torn = run / "checkpoints" / ".last.ckpt.k_x91eun.tmp"  # what a kill -9 during a save leaves
    torn.write_bytes(b"half a checkpoint")
    proc = run_train(["resume=true", f"hydra.run.dir={run}", "trainer.max_epochs=2", *display], cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert not torn.exists() and f"removed {torn}" in output
    assert "continues with its own config" in output and "noise.rate=0.2" in output
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = last["hyper_parameters"]["run_config"]
    assert trained["loss"]["criterion"]["_target_"] == "noisylab.losses.CrossEntropy"
    assert trained["noise"]["rate"] == 0.2 and trained["sched"]["T_max"] == 2 and trained["eval"]["plots"] is False
    metrics = read_metrics(run)
    assert metrics["epochs"] == 2 == last["epoch"] + 1  # epochs are counted from 0 in the checkpoint
    assert "test/acc" in metrics  # test_on is this launch's: the resumed run is tested
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["noise"]["rate"] == 0.2 and config["trainer"]["max_epochs"] == 2
    assert config["loss"]["criterion"]["_target_"] == "noisylab.losses.CrossEntropy"
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert {"loss=ce", "noise.rate=0.2", "trainer.max_epochs=2", "resume=true"} <= set(overrides)
    assert "trainer.max_epochs=1" not in overrides
    assert compose_config(tmp_path, overrides).noise.rate == 0.2  # the record rebuilds the run
