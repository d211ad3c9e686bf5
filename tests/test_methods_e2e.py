"""DivideMix, InstanceGM, Meta-Weight-Net and SimCLR end to end through train.py, as a user runs them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import QUICK, read_metrics, run_train
from tests.fixtures import write_cifar10

pytestmark = pytest.mark.slow

# A few steps of every phase: warm-up (epoch 0), then division + MixMatch (epoch 1); a small meta set.
METHODS = {
    "dividemix": ["method=dividemix", "method.warmup_epochs=1"],
    "instancegm": ["method=instancegm", "method.warmup_epochs=1"],
    "meta_weight_net": ["method=meta_weight_net", "data.meta_size=100"],
    "simclr": ["method=simclr"],
}


def _logged(run: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for row in csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()):
        for key, value in row.items():
            if value:
                values.setdefault(key, []).append(float(value))
    return values


def _check_diagnostics(name: str, run: Path) -> None:
    metrics, logged = read_metrics(run), _logged(run)
    if name == "simclr":
        assert "val/loss/best" in metrics and "test/acc" not in metrics  # pre-training: nothing to test
        return
    assert 0 <= metrics["test/acc"] <= 1 and f"test/ood_near/{metrics['default_score']}/auroc" in metrics
    if name in ("dividemix", "instancegm"):
        for k in (1, 2):
            assert 0 < logged[f"select/net{k}/selected_fraction"][-1] <= 1
            assert 0 <= logged[f"select/net{k}/precision"][-1] <= 1
            assert 0 <= logged[f"select/net{k}/recall"][-1] <= 1
            assert logged[f"select/net{k}/loss_threshold"][-1] > 0
    if name == "instancegm":
        assert all(key in logged for key in ("train/generative/reconstruction", "train/generative/kl"))
    if name == "meta_weight_net":
        assert all(0 < w < 1 for w in logged["meta/weight_clean"] + logged["meta/weight_mislabeled"])
    # Each method's own evidence of a wrong label goes into the per-sample outputs, beside the head's.
    own = {"dividemix": "gmm_noisy", "instancegm": "gmm_noisy", "meta_weight_net": "one_minus_mwn_weight"}
    rows = list(csv.DictReader((run / "samples" / "train.csv").open()))
    if name in own:
        scores = [float(r[f"suspicion/{own[name]}"]) for r in rows if r["split"] == "train"]
        assert all(0 <= v <= 1 for v in scores) and len(set(scores)) > 1
        assert all(r[f"suspicion/{own[name]}"] == "" for r in rows if r["split"] == "val")


@pytest.mark.parametrize("name", list(METHODS))
def test_method_runs_on_digits_logs_its_diagnostics_and_resumes_exactly(tmp_path: Path, name: str) -> None:
    """Two epochs (warm-up, then the method's main phase) uninterrupted, and stopped after the first then
    resumed with resume=true: the same weights, weight for weight, and the same test accuracy."""
    # Half of each epoch's batches (every phase still runs; the GMM division still scores every sample).
    common = [*METHODS[name], "trainer.deterministic=true", *QUICK[1:], "sched.T_max=2", "eval.plots=false",
              "+trainer.limit_train_batches=0.5"]
    full, split = tmp_path / "full", tmp_path / "split"
    run_train([*common, "trainer.max_epochs=2", f"hydra.run.dir={full}"], cwd=tmp_path)
    _check_diagnostics(name, full)
    run_train([*common, "trainer.max_epochs=1", "test_on=none", f"hydra.run.dir={split}"], cwd=tmp_path)
    run_train([*common, "trainer.max_epochs=2", "resume=true", f"hydra.run.dir={split}"], cwd=tmp_path)
    reference = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    resumed = torch.load(split / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert reference.keys() == resumed.keys()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
    if name != "simclr":
        assert read_metrics(split)["test/acc"] == read_metrics(full)["test/acc"]


def test_methods_on_a_tiny_cifar10_in_its_download_layout(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", n_per_batch=40, n_test=50)  # 200 training images: 3 batches an epoch
    root = tmp_path / "data"
    common = ["data=cifar10", f"data.root={root}", "model=small_cnn", "data.meta_size=30", "data.batch_size=48",
              "data.val_size=0.1", "eval.plots=false", *QUICK]
    # ++: the sweep's first composition uses the default method, which has no warmup_epochs.
    run_train(["-m", "method=dividemix,instancegm", "++method.warmup_epochs=1", f"hydra.sweep.dir={tmp_path / 'a'}",
               *common], cwd=tmp_path, timeout=600)
    run_train(["-m", "method=meta_weight_net,simclr", f"hydra.sweep.dir={tmp_path / 'b'}", *common], cwd=tmp_path,
              timeout=600)
    for job in (tmp_path / "a" / "0", tmp_path / "a" / "1", tmp_path / "b" / "0"):
        assert 0 <= read_metrics(job)["test/acc"] <= 1
    assert "val/loss/best" in read_metrics(tmp_path / "b" / "1")


def test_simclr_pretraining_then_fine_tuning_from_its_encoder(tmp_path: Path) -> None:
    pretrain, finetune = tmp_path / "simclr", tmp_path / "finetune"
    run_train(["method=simclr", f"hydra.run.dir={pretrain}", *QUICK], cwd=tmp_path)
    encoder = pretrain / "checkpoints" / "last.ckpt"
    plain = torch.load(pretrain / "encoder.pt", map_location="cpu", weights_only=True)  # the backbone alone
    last = torch.load(encoder, map_location="cpu", weights_only=True)["state_dict"]
    assert plain.keys() and all(torch.equal(v, last[f"net.backbone.{k}"]) for k, v in plain.items())
    # One epoch at learning rate 0: the fine-tuned network is exactly the encoder with a zero head (only
    # BatchNorm's running statistics move).
    run_train(["loss=gce", f"model.init_from={encoder}", "optim.lr=0", "trainer.max_epochs=1", "test_on=none",
               f"hydra.run.dir={finetune}", *QUICK[1:]], cwd=tmp_path)
    pretrained = torch.load(encoder, map_location="cpu", weights_only=True)["state_dict"]
    started = torch.load(finetune / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    weights = {k: v for k, v in started.items() if k.startswith("net.backbone.") and "running_" not in k
               and "num_batches" not in k}
    assert weights and all(torch.equal(v, pretrained[k]) for k, v in weights.items())
    assert all(torch.count_nonzero(v) == 0 for k, v in started.items() if k.startswith("net.head."))


def test_meta_weight_net_and_simclr_run_under_ddp_on_cpu(tmp_path: Path) -> None:
    """2 gloo processes: the weight network kept out of DDP's reducer (its meta gradients averaged by hand),
    NT-Xent against the negatives of both ranks. DivideMix and InstanceGM (the gathered GMM pass, both
    schedules) run under DDP in tests/test_dividemix_schedule.py, which also checks that the ranks end with
    the same weights."""
    run_train(["-m", "method=meta_weight_net,simclr", f"hydra.sweep.dir={tmp_path / 'b'}", "trainer=ddp_cpu",
               "data.meta_size=100", *QUICK], cwd=tmp_path, timeout=900)
    for job in ("b/0", "b/1"):
        assert (tmp_path / job / "metrics.json").is_file(), job
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# trainer.precision=16-mixed on the CPU: Lightning's own MixedPrecision plugin with a CPU GradScaler, the
# loss-scaling code a GPU's 16-mixed runs (Lightning itself maps 16-mixed to bf16 on the CPU).
FP16_LOSS_SCALING_ON_CPU = [
    "trainer.precision=null",
    "++trainer.plugins=[{_target_:lightning.pytorch.plugins.precision.MixedPrecision,precision:16-mixed,"
    "device:cpu,scaler:{_target_:torch.amp.GradScaler,device:cpu}}]",
]


def test_meta_weight_net_under_fp16_loss_scaling_takes_the_float32_meta_step(tmp_path: Path) -> None:
    """Under 16-mixed the meta gradients come from autograd.grad, outside the scaled backward that the loss
    scaler unscales: the first step stopped with GradScaler's "unscale_ but _scale is None", and later ones
    would have divided them by the scale. The meta step runs in float32 and hands the scaler its gradients
    scaled, so after one batch the weight network is exactly the float32 run's (the meta step comes before
    the classifier's, whose float16 arithmetic differs), and the scaler stepped it (Adam's count is 1)."""
    common = ["method=meta_weight_net", "data.meta_size=100", "trainer.max_epochs=1", "++trainer.limit_train_batches=1",
              "++trainer.limit_val_batches=1", "test_on=none", *QUICK[1:]]
    fp32, fp16 = tmp_path / "fp32", tmp_path / "fp16"
    run_train([*common, f"hydra.run.dir={fp32}"], cwd=tmp_path)
    run_train([*common, *FP16_LOSS_SCALING_ON_CPU, f"hydra.run.dir={fp16}"], cwd=tmp_path)
    reference = torch.load(fp32 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    scaled = torch.load(fp16 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert scaled["MixedPrecision"]["scale"] > 1  # the loss scaler was at work
    weight_net = [k for k in reference["state_dict"] if k.startswith("weight_net.")]
    assert weight_net and all(torch.equal(reference["state_dict"][k], scaled["state_dict"][k]) for k in weight_net)
    meta_adam = scaled["optimizer_states"][1]["state"]
    assert meta_adam and all(float(s["step"]) == 1 for s in meta_adam.values())


def test_instancegm_trains_under_fp16_loss_scaling(tmp_path: Path) -> None:
    """InstanceGM (two classifiers and the continuous-Bernoulli VAE, two optimisers after one backward) under
    16-mixed's loss scaler: a warm-up epoch (the VAE's optimiser has no gradients: stepping it stopped the run
    with GradScaler's "No inf checks were recorded"), then a few batches of its division and MixMatch phase,
    every logged loss finite."""
    run = tmp_path / "fp16"
    run_train(["method=instancegm", "method.warmup_epochs=1", "trainer.max_epochs=2",
               "++trainer.limit_train_batches=3", "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1",
               "trainer.log_every_n_steps=1", *FP16_LOSS_SCALING_ON_CPU, *QUICK[1:], f"hydra.run.dir={run}"],
              cwd=tmp_path)
    logged = _logged(run)
    losses = [v for key in ("train/loss_step", "train/generative/reconstruction", "train/generative/kl")
              for v in logged.get(key, [])]
    assert losses and all(math.isfinite(v) for v in losses), logged.keys()
    assert math.isfinite(read_metrics(run)["test/acc"])
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["MixedPrecision"]


@pytest.mark.parametrize("overrides", [["loss=drainage"], ["loss=dismax"],
                                       ["method=dividemix", "method.warmup_epochs=1"], ["method=simclr"]],
                         ids=["drainage", "dismax", "dividemix", "simclr"])
def test_method_trains_under_fp16_loss_scaling(tmp_path: Path, overrides: list[str]) -> None:
    """Two epochs of two batches under 16-mixed's loss scaler (DivideMix: warm-up, then division and
    MixMatch): every logged step loss finite, and a finite result (SimCLR tests nothing: its validation loss)."""
    run = tmp_path / "fp16"
    run_train([*overrides, "trainer.max_epochs=2", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
               "++trainer.limit_test_batches=1", "trainer.log_every_n_steps=1", "sched.T_max=2",
               *FP16_LOSS_SCALING_ON_CPU, *QUICK[1:], f"hydra.run.dir={run}"], cwd=tmp_path)
    losses = _logged(run)["train/loss_step"]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    metrics = read_metrics(run)
    assert math.isfinite(metrics["val/loss/best"] if "simclr" in overrides[0] else metrics["test/acc"])
    scaler = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["MixedPrecision"]
    assert scaler["scale"] > 1  # the loss scaler was at work
