"""Small experiments must not silently become other experiments (issue 15): a meta set sized from the data, no
DivideMix run that is only its CE warm-up, a warning when the validation split is too small to select by, and
held-out classes that stay the same task across training seeds and are named in every run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import noisylab.data.sources
import noisylab.noise
from noisylab.config_checks import ConfigError, check_config
from noisylab.data import HeldOutClasses, ImageSource, NoisyLabelDataModule
from noisylab.train import build_datamodule
from tests.conftest import QUICK, compose_config, read_metrics, run_train

DIGITS_TRAIN = 1437  # scikit-learn's digits: 1797 images, 20% of them the fixed test split
DATAMODULE_LOG = "noisylab.data.datamodule"


def _datamodule(tmp_path: Path, **overrides) -> NoisyLabelDataModule:
    kwargs = dict(name="digits", source=noisylab.data.sources.load_digits, root=str(tmp_path),
                  noise=noisylab.noise.SymmetricNoise(0.4, seed=0), val_size=0.1)
    kwargs.update(overrides)
    return NoisyLabelDataModule(**kwargs)


def _large_source(root=None, download=False) -> ImageSource:
    """20000 random 1x4x4 images of 10 classes: enough training samples for the paper's 1000-sample meta set."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20000, 1, 4, 4), dtype=np.uint8)
    return ImageSource("large", images, np.arange(20000) % 10, images[:100], np.arange(100) % 10,
                       tuple(map(str, range(10))), (0.5,), (0.25,))


# ------------------------------------------------------------------------------------------- meta set
def test_meta_weight_net_sizes_its_meta_set_from_the_data_on_digits(tmp_path: Path, caplog) -> None:
    """On digits 1000 would leave 437 of 1437 samples to train on: auto takes 10% and says so."""
    cfg = compose_config(tmp_path, ["method=meta_weight_net", "ood=none"])
    assert cfg.data.meta_size == "auto"
    check_config(cfg)  # "auto" is a value data.meta_size accepts
    with caplog.at_level(logging.INFO, logger=DATAMODULE_LOG):
        datamodule = build_datamodule(cfg)
    expected = round(0.1 * DIGITS_TRAIN)
    assert len(datamodule.meta_set) == expected
    assert len(datamodule.labels.noisy) == DIGITS_TRAIN - expected
    assert datamodule.run_record["data/meta_size"] == expected
    assert any("data.meta_size=auto" in r.message and f"{expected} clean meta samples" in r.message
               for r in caplog.records)


def test_auto_meta_set_keeps_the_papers_1000_where_they_fit(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger=DATAMODULE_LOG):
        datamodule = _datamodule(tmp_path, source=_large_source, meta_size="auto")
        datamodule.build()
    assert len(datamodule.meta_set) == 1000 and datamodule.run_record["data/meta_size"] == 1000
    assert not any("data.meta_size=auto" in r.message for r in caplog.records)  # nothing changed: nothing to say


def test_an_explicit_meta_size_is_used_as_given(tmp_path: Path) -> None:
    datamodule = _datamodule(tmp_path, meta_size=200)
    datamodule.build()
    assert len(datamodule.meta_set) == 200 and datamodule.run_record["data/meta_size"] == 200


def test_a_meta_size_that_is_neither_a_count_nor_auto_is_refused_by_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.meta_size=some: must be a whole number or auto"):
        check_config(compose_config(tmp_path, ["method=meta_weight_net", "data.meta_size=some"]))


# ------------------------------------------------------------------------------------------- warm-up
@pytest.mark.parametrize("method", ["dividemix", "instancegm"])
def test_training_no_epoch_past_the_warm_up_is_refused_naming_both_keys(tmp_path: Path, method: str) -> None:
    cfg = compose_config(tmp_path, [f"method={method}", "method.warmup_epochs=10", "trainer.max_epochs=10"])
    with pytest.raises(ConfigError) as refused:
        check_config(cfg)
    message = str(refused.value)
    for words in ("trainer.max_epochs=10 <= method.warmup_epochs=10", "only run its warm-up", "test_on=none"):
        assert words in message


def test_a_run_past_the_warm_up_or_a_warm_up_stage_to_resume_later_is_allowed(tmp_path: Path) -> None:
    check_config(compose_config(tmp_path, ["method=dividemix", "method.warmup_epochs=10", "trainer.max_epochs=11"]))
    check_config(compose_config(tmp_path, ["method=dividemix", "method.warmup_epochs=10", "trainer.max_epochs=10",
                                           "test_on=none"]))


# ------------------------------------------------------------------------------------------- validation size
def test_a_validation_split_too_small_to_select_by_is_warned_about_once(tmp_path: Path, caplog) -> None:
    """Digits: 10% of the training set is ~115 samples; the warning names the options."""
    with caplog.at_level(logging.WARNING, logger=DATAMODULE_LOG):
        datamodule = build_datamodule(compose_config(tmp_path, []))
        datamodule.build()  # idempotent: says it once
    warnings = [r.message for r in caplog.records if "validation split has only" in r.message]
    assert len(warnings) == 1
    assert f"only {len(datamodule.val_set)} samples" in warnings[0]
    for option in ("data.val_size", "test_on=last", "data.clean_val=true"):
        assert option in warnings[0]
    assert datamodule.run_record["data/val_samples"] == len(datamodule.val_set)


def test_a_validation_split_of_500_samples_is_not_warned_about(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=DATAMODULE_LOG):
        build_datamodule(compose_config(tmp_path, ["ood=none", "data.val_size=500"]))
    assert not any("validation split has only" in r.message for r in caplog.records)


# ------------------------------------------------------------------------------------------- held-out classes
def test_held_out_classes_are_one_task_for_every_training_seed(tmp_path: Path) -> None:
    held = {tuple(build_datamodule(compose_config(tmp_path, [f"seed={seed}"])).run_record["data/holdout_classes"])
            for seed in (0, 1, 2)}
    assert held == {tuple(HeldOutClasses().choose(10).tolist())}


def test_held_out_classes_can_still_follow_the_seed(tmp_path: Path) -> None:
    """ood.holdout.seed=${seed}: one draw per training seed (the drainage paper's average over splits)."""
    draws = [HeldOutClasses(seed=seed).choose(10).tolist() for seed in range(4)]
    assert len({tuple(d) for d in draws}) > 1
    for seed in (1, 3):
        cfg = compose_config(tmp_path, [f"seed={seed}", "ood.holdout.seed=${seed}"])
        assert build_datamodule(cfg).run_record["data/holdout_classes"] == draws[seed]


@pytest.mark.slow
def test_every_run_names_its_held_out_classes_in_its_log_and_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train([*QUICK, "trainer.max_epochs=1", "eval.plots=false", "seed=3", f"hydra.run.dir={run}"],
                     cwd=tmp_path)
    held = HeldOutClasses().choose(10).tolist()
    metrics = read_metrics(run)
    assert metrics["data/holdout_classes"] == held and metrics["data/holdout_class_names"] == [str(c) for c in held]
    logged = f"held-out classes (OOD set holdout, not trained on): {', '.join(map(str, held))}"
    assert logged in proc.stdout + proc.stderr
    assert np.load(run / "noisy_labels.npz")["class_ids"].tolist() == sorted(set(range(10)) - set(held))
