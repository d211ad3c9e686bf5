"""DivideMix's schedules: the reference's alternating one (network 1's epoch, then network 2's, labeled and
unlabeled batches of their own) and the joint one; exact resume (with the loss history) and DDP for both."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from noisylab.methods.dividemix import BatchStream, shard_batches
from noisylab.train import build_datamodule, build_method
from tests.conftest import QUICK, compose_config, read_metrics, run_train


# ---------------------------------------------------------------------------------------------- batches
def test_shard_batches_cover_the_subset_once_with_equal_shares_per_rank() -> None:
    positions = np.arange(100, 303)  # 203 samples
    one = shard_batches(positions, 16, seed=5)
    assert [len(b) for b in one] == [16] * 12 + [11]
    assert sorted(np.concatenate(one).tolist()) == positions.tolist()  # each sample exactly once
    assert [b.tolist() for b in shard_batches(positions, 16, seed=5)] == [b.tolist() for b in one]
    assert np.concatenate(shard_batches(positions, 16, seed=6)).tolist() != np.concatenate(one).tolist()
    ranks = [shard_batches(positions, 16, seed=5, rank=r, world_size=2) for r in (0, 1)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [16] * 6 + [6]  # 102 each (1 wrapped)
    shares = [np.concatenate(r) for r in ranks]
    assert not set(shares[0][:-1]) & set(shares[1][:-1])
    assert set(np.concatenate(shares)) == set(positions.tolist())
    assert [len(b) for b in shard_batches(np.arange(33), 16, seed=0)] == [16, 16]  # no batch of one
    assert shard_batches(np.arange(0), 16, seed=0) == []


def test_batch_stream_restarts_a_new_shuffle_when_it_runs_out() -> None:
    def make_loader(batches: list[np.ndarray], number: int) -> list[np.ndarray]:
        return list(batches)

    stream = BatchStream(np.arange(10), 4, seed=3, rank=0, world_size=1, make_loader=make_loader)
    assert len(stream) == 3
    first = [stream.next() for _ in range(3)]
    second = [stream.next() for _ in range(3)]
    assert sorted(np.concatenate(first).tolist()) == sorted(np.concatenate(second).tolist()) == list(range(10))
    assert np.concatenate(first).tolist() != np.concatenate(second).tolist()  # pass 2 has its own order
    assert stream.passes == 2
    once = BatchStream(np.arange(10), 4, seed=3, rank=0, world_size=1, make_loader=make_loader, cycle=False)
    assert [once.next() is None for _ in range(4)] == [False, False, False, True]
    empty = BatchStream(np.arange(0), 4, seed=3, rank=0, world_size=1, make_loader=make_loader)
    assert len(empty) == 0 and empty.next() is None


# ---------------------------------------------------------------------------------------------- one epoch
def _fit(tmp_path: Path, *overrides: str, epochs: int = 2):
    cfg = compose_config(tmp_path, ["method=dividemix", "method.warmup_epochs=1", "model=mlp", "data.batch_size=64",
                                    *overrides])
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    return method, datamodule, trainer


def test_alternating_epoch_trains_net1_on_net2s_division_then_net2(tmp_path: Path) -> None:
    method, datamodule, trainer = _fit(tmp_path)
    steps: list[dict] = []
    fetched: dict[int, list[int]] = {}
    original_fetch, original_step = method._fetch, method._alternating_step

    def fetch(stream, views=2):
        out = original_fetch(stream, views)
        if out is not None:
            fetched.setdefault(id(stream), []).extend(out[2].tolist())
        return out

    def step(number: int):
        before = [torch.cat([p.detach().flatten().clone() for p in net.parameters()]) for net in method.networks()]
        loss = original_step(number)
        after = [torch.cat([p.detach().flatten() for p in net.parameters()]) for net in method.networks()]
        changed = [not torch.equal(b, a) for b, a in zip(before, after, strict=True)]
        phase = method._phases[0] if number < method._phases[0].steps else method._phases[1]
        steps.append({"net": phase.net, "changed": changed, "phase": phase, "epoch": method.current_epoch})
        return loss

    method._fetch, method._alternating_step = fetch, step
    start_steps = {}

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            start_steps[trainer.current_epoch] = trainer.global_step

    trainer.callbacks.append(Record())
    trainer.fit(method, datamodule=datamodule)
    assert all(s["epoch"] == 1 for s in steps)  # epoch 0 is the warm-up
    nets = [s["net"] for s in steps]
    first = nets.count(0)
    assert nets == [0] * first + [1] * (len(nets) - first) and 0 < first < len(nets)  # net 1's phase, then net 2's
    for s in steps:
        assert s["changed"] == [s["net"] == 0, s["net"] == 1]  # only the network of the phase moves
    train_index = datamodule.train_set.index.numpy()
    clean = method.clean_prob.cpu().numpy()  # the last division (epoch 1's)
    half = datamodule.batch_size // 2
    for k in (0, 1):
        phase = next(s["phase"] for s in steps if s["net"] == k)
        labeled = set(train_index[clean[1 - k, train_index] > method.hparams.p_threshold].tolist())
        assert phase.steps == -(-len(labeled) // half) == nets.count(k)  # len(labeled) / 32 steps
        seen = fetched[id(phase.labeled)]
        assert sorted(seen) == sorted(labeled)  # co-divide: the labeled set of the *other* network, once
        unlabeled = set(fetched[id(phase.unlabeled)])
        assert unlabeled and not unlabeled & labeled
        assert len(fetched[id(phase.unlabeled)]) >= min(phase.steps * half, len(unlabeled))
    # Both networks' steps happened, one optimiser step each.
    assert trainer.global_step - start_steps[1] == len(steps)


def test_warmup_trains_both_networks_on_independent_shuffles(tmp_path: Path) -> None:
    method, datamodule, trainer = _fit(tmp_path, epochs=1)
    seen: list[list[int]] = []
    original = method._warmup_loss

    def warmup_loss(k, x, y):
        seen.append([k, len(y)])
        return original(k, x, y)

    method._warmup_loss = warmup_loss
    trainer.fit(method, datamodule=datamodule)
    assert [k for k, _ in seen] == [0, 1] * trainer.num_training_batches
    assert method._warmup_stream is None  # cleared at the end of the epoch


def test_schedule_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InstantiationException, match="method.schedule"):
        _fit(tmp_path, "method.schedule=other")
    with pytest.raises(InstantiationException, match="method.loss_history"):
        _fit(tmp_path, "method.loss_history=0")


# ---------------------------------------------------------------------------------------------- end to end
class RankWeights(L.Callback):
    """Writes a hash of the module's parameters per rank after training into <run>/rank_weights/ (tests that
    DDP ranks agree; BatchNorm statistics are per rank until DDP broadcasts rank 0's at the next forward)."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for key, value in sorted(pl_module.named_parameters()):
            digest.update(key.encode() + value.detach().cpu().numpy().tobytes())
        folder = Path(trainer.default_root_dir) / "rank_weights"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{trainer.global_rank}.txt").write_text(digest.hexdigest())


# A checkpoint after every epoch (<run>/epochs/epoch<N>.ckpt), kept, to resume from any of them.
EVERY_EPOCH = ["+callbacks.every_epoch._target_=lightning.pytorch.callbacks.ModelCheckpoint",
               "+callbacks.every_epoch.dirpath=${paths.output_dir}/epochs", "+callbacks.every_epoch.monitor=null",
               "+callbacks.every_epoch.save_top_k=-1", "+callbacks.every_epoch.filename='epoch{epoch}'",
               "+callbacks.every_epoch.auto_insert_metric_name=false",
               # Lightning keys a ModelCheckpoint's state by (monitor, mode, ...): another mode than
               # last_checkpoint's keeps the two apart.
               "+callbacks.every_epoch.mode=max"]


def _checkpoint(run: Path, epoch: int) -> dict:
    return torch.load(run / "epochs" / f"epoch{epoch}.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_resume_after_a_mixmatch_epoch_is_exact(tmp_path: Path, schedule: str) -> None:
    """Warm-up, then two MixMatch epochs with the GMM on the mean of the last 2 epochs' losses: resumed from
    the checkpoint of the first MixMatch epoch, the run ends bit-identical to an uninterrupted one (the loss
    history comes back from the checkpoint)."""
    common = ["method=dividemix", "method.warmup_epochs=1", f"method.schedule={schedule}", "method.loss_history=2",
              "trainer.deterministic=true", *QUICK[1:], "trainer.max_epochs=3", "sched.T_max=3", "eval.plots=false",
              "+trainer.limit_train_batches=0.5", *EVERY_EPOCH]  # half the batches: every phase, less time
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_train([*common, f"hydra.run.dir={full}"], cwd=tmp_path)
    stopped = _checkpoint(full, 1)
    assert [h.shape[0] for h in stopped["dividemix_loss_history"]] == [1, 1]  # epoch 1's losses
    run_train([*common, f"ckpt_path={full / 'epochs' / 'epoch1.ckpt'}", f"hydra.run.dir={resumed}"], cwd=tmp_path)
    reference, ours = _checkpoint(full, 2), _checkpoint(resumed, 2)
    assert reference["global_step"] == ours["global_step"]
    assert reference["state_dict"].keys() == ours["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.equal(value, ours["state_dict"][key]), key
    assert [h.shape[0] for h in ours["dividemix_loss_history"]] == [2, 2]
    for a, b in zip(reference["dividemix_loss_history"], ours["dividemix_loss_history"], strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_both_schedules_under_ddp_on_cpu_keep_the_ranks_identical(tmp_path: Path) -> None:
    """2 gloo processes: DivideMix's alternating schedule (steps spread over the loader's batches, only one
    network's gradients per step) and InstanceGM's joint one (its generative models idle in the warm-up, then
    trained), with the loss history; every rank ends with the same weights. (The other two pairings share
    these code paths: the schedule is the method's base class's, the generative models InstanceGM's.)"""
    callback = f"+callbacks.rank_weights._target_={__name__}.RankWeights"
    common = ["trainer=ddp_cpu", "++method.warmup_epochs=1", "++method.loss_history=2", *QUICK[1:],
              "trainer.max_epochs=2", "sched.T_max=2", "+trainer.limit_train_batches=0.5", callback]
    for method, schedule in (("dividemix", "alternating"), ("instancegm", "joint")):
        run = tmp_path / method
        run_train([f"method={method}", f"method.schedule={schedule}", f"hydra.run.dir={run}", *common],
                  cwd=tmp_path, timeout=900)
        assert read_metrics(run)["epochs"] == 2, method
        ranks = [(run / "rank_weights" / f"rank{r}.txt").read_text() for r in (0, 1)]
        assert ranks[0] == ranks[1], method
