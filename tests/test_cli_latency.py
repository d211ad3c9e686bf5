"""The command line answers without importing torch or Lightning (benchmarks/cli_latency.py measures how fast),
and a missing Hydra plugin or GPU is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from noisylab.cli import missing_plugins
from tests.conftest import REPO

HEAVY = ("torch", "lightning")


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _imported_heavy_modules(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run an entry point as `python <argv>` does; (exit status, stdout, heavy modules it imported)."""
    code = ("import runpy, sys\n"
            "sys.argv = sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as exc:\n"
            "    status = exc.code or 0\n"
            "else:\n"
            "    status = 0\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
            "sys.exit(status)\n")
    proc = _python(code, *argv, env=env)
    heavy = proc.stdout.rsplit("HEAVY=", 1)[-1].strip()
    return proc.returncode, proc.stdout + proc.stderr, [m for m in heavy.split(",") if m]


@pytest.mark.parametrize("entry", ["train.py", "eval.py"])
def test_entry_points_import_no_torch_or_lightning_at_module_level(entry: str) -> None:
    code = (f"import runpy, sys; runpy.run_path({entry!r}, run_name='not_main'); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["train.py", "--help"], ["train.py", "--cfg", "job"], ["eval.py", "--help"]])
def test_help_and_cfg_answer_without_torch(argv: list[str]) -> None:
    status, output, heavy = _imported_heavy_modules(argv)
    assert status == 0, output
    assert heavy == []
    assert ("Powered by Hydra" in output) if "--help" in argv else ("noise:" in output and "seed: 0" in output)


def test_tab_completion_answers_without_torch() -> None:
    line = "python train.py noise="
    status, output, heavy = _imported_heavy_modules(["train.py", "-sc", "query=bash"],
                                                    env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert status == 0, output
    assert heavy == []
    assert "noise=symmetric" in output and "noise=instance" in output


def test_plugin_overrides_are_recognised() -> None:
    assert missing_plugins(["hparams_search=null", "hydra/launcher=basic", "seed=1", "-m"]) == []
    needed = {arg: missing_plugins([arg]) for arg in
              ["hparams_search=drainage_ab", "+hydra/sweeper=optuna", "hydra/launcher=slurm",
               "hydra/launcher=submitit_local"]}
    for arg, messages in needed.items():  # empty where the plugin is installed
        assert all(arg in message and "pip install" in message for message in messages)


# Hide the plugins even where they are installed: the test then shows what a user without them sees.
BLOCK_PLUGINS = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("hydra_plugins.hydra_optuna_sweeper", "hydra_plugins.hydra_submitit_launcher")):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("args", "extra"), [(["hparams_search=drainage_ab"], "optuna"),
                                             (["-m", "hydra/launcher=slurm", "seed=1,2"], "slurm")])
def test_a_missing_plugin_names_its_pip_extra_in_one_line(args: list[str], extra: str, tmp_path: Path) -> None:
    proc = _python(BLOCK_PLUGINS, "train.py", *args, f"hydra.run.dir={tmp_path / 'run'}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f'pip install "noisylab[{extra}]"' in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_a_gpu_trainer_without_a_gpu_stops_in_one_line_before_writing(trainer: str, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), f"trainer={trainer}", f"hydra.run.dir={run}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: trainer.accelerator=gpu"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    written = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    hydra_record = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log"}
    assert written <= hydra_record  # only what Hydra writes before any noisylab code runs
    assert (run / "train.log").read_text() == ""
