"""DivideMix (Li, Socher, Hoi, ICLR 2020): two networks, GMM co-divide, MixMatch on the split.

Each epoch after the warm-up, both networks score every training sample by its loss (one pass over
the un-augmented training set, split across DDP ranks and gathered); a two-component GMM per network
turns the losses into a probability of being clean. Each network then trains on the *other* network's
split (co-divide): the likely clean samples as labeled data with refined labels, the rest as unlabeled
data with labels co-guessed by both networks, mixed by MixUp. Test predictions average both networks.

Two schedules (`schedule`):

- ``alternating`` (the reference's, the default): each epoch trains network 1 on network 2's split, then
  network 2 on network 1's split. A network's phase iterates over its labeled set in batches of
  data.batch_size / 2 (64 in the presets), each step with a batch of the same size drawn from the unlabeled
  set (whose shuffled order restarts when it runs out); only that network (and its generative model, for
  InstanceGM) is updated, the other one co-guesses in eval mode. The warm-up trains each network on its own
  shuffle of the training set. The number of steps per epoch follows the division, so these steps are
  spread over the epoch's batches of the datamodule's loader (which only the warm-up reads): Lightning's
  epoch, checkpoints and validation stay as they are. Every order is a function of (data.shuffle_seed,
  epoch, stream, pass), and DDP ranks take disjoint shares of equal size of each shuffled order.
- ``joint``: each step splits one shuffled batch of the training set by the clean probabilities and
  updates both networks with one backward pass (cheaper per epoch; docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from noisylab.data.dataset import IndexedTensorDataset, keep_batch
from noisylab.data.sampler import EpochSeededDataLoader
from noisylab.methods.mixmatch import mixup, sharpen
from noisylab.methods.selection import LossHistory, clean_probability, selection_report
from noisylab.methods.standard import StandardMethod
from noisylab.metrics.gather import first_occurrence, gather_rows
from noisylab.models.classifier import Classifier
from noisylab.utils.loss_scaling import grad_scaler, step_after_one_backward

SCHEDULES = ("alternating", "joint")
# Streams of the alternating schedule (each has its own shuffles): the warm-up of network 2, and per
# network k its labeled set, its unlabeled set and (InstanceGM) the generative model's batches.
_WARMUP_NET2, _LABELED, _UNLABELED, _GENERATIVE = 1, 10, 20, 30


def _stream_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed from (seed, parts); distinct from the datamodule's (seed, epoch, rank) seeds."""
    return int(np.random.SeedSequence([int(seed), 0x444D, *map(int, parts)]).generate_state(1)[0] & 0x7FFFFFFF)


def shard_batches(positions: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> list[np.ndarray]:
    """One pass over `positions` in an order drawn from `seed`, as this rank's batches.

    The shuffled order is padded (by wrapping round) to a multiple of world_size and rank r takes every
    world_size-th entry from r on, as DistributedSampler does: every rank gets the same number of batches
    of the same sizes. A last batch of one sample is dropped (BatchNorm cannot train on it)."""
    n = len(positions)
    if n == 0:
        return []
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    total = -(-n // world_size) * world_size
    order = np.resize(order, total)  # wraps round
    local = np.asarray(positions)[order[rank::world_size]]
    batches = [local[i:i + batch_size] for i in range(0, len(local), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


class BatchStream:
    """Batches of a subset of the training set, pass after pass (each pass in a new shuffled order, from
    (seed, pass) only); `cycle=False` stops after one pass. Batches come from `fetch(loader)`'s loaders."""

    def __init__(self, positions: np.ndarray, batch_size: int, seed: int, rank: int, world_size: int,
                 make_loader: Callable[[list[np.ndarray], int], DataLoader], cycle: bool = True) -> None:
        self.positions, self.batch_size, self.seed = np.asarray(positions), int(batch_size), int(seed)
        self.rank, self.world_size, self.cycle = rank, world_size, cycle
        self.make_loader = make_loader
        self.passes = 0
        self._batches: Iterator[Any] | None = None

    def pass_batches(self, number: int) -> list[np.ndarray]:
        return shard_batches(self.positions, self.batch_size, _stream_seed(self.seed, number), self.rank,
                             self.world_size)

    def __len__(self) -> int:
        """Batches in one pass (the same on every rank)."""
        return len(self.pass_batches(0)) if len(self.positions) else 0

    def next(self) -> Any | None:
        """The next batch, or None when the subset is empty (or, without `cycle`, after its pass)."""
        for _ in range(2):
            if self._batches is None:
                if not len(self.positions) or (self.passes and not self.cycle):
                    return None
                self._batches = iter(self.make_loader(self.pass_batches(self.passes), self.passes))
                self.passes += 1
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None
        return None


@dataclass
class _Phase:
    """One network's part of an alternating epoch."""

    net: int          # the network trained (0 or 1); it learns from the other network's division
    steps: int        # optimisation steps in this epoch
    num_iter: int     # the reference's len(labeled) // batch + 1, the denominator of lambda_u's ramp
    labeled: BatchStream
    unlabeled: BatchStream


class DivideMix(StandardMethod):
    """Two networks co-trained with GMM sample selection and MixMatch.

    Args (besides StandardMethod's; `criterion` is the warm-up loss, CE in the paper):
        warmup_epochs: epochs of plain training on all noisy labels before the first division
            (paper: 10 for CIFAR-10, 30 for CIFAR-100).
        p_threshold: a sample is labeled when its clean probability exceeds this (0.5; 0.6 at 90% noise).
        sharpen_temperature: T of the sharpening of guessed and refined labels (0.5).
        mixup_alpha: MixUp's Beta(alpha, alpha) (4).
        lambda_u: weight of the unlabeled (MSE) loss, ramped up linearly over `rampup_epochs` after the
            warm-up (the paper picks it per setting from {0, 25, 50, 150}; see the presets).
        rampup_epochs: length of that ramp (16).
        confidence_penalty: add the negative entropy of the predictions to the warm-up loss (the paper
            does this for asymmetric noise, where plain CE warm-up becomes over-confident too fast).
        gmm: GaussianMixture settings (max_iter, tol, reg_covar).
        schedule: ``alternating`` (the reference's: network 1's epoch, then network 2's, labeled and
            unlabeled batches of data.batch_size / 2 each) or ``joint`` (both networks per step on one
            split batch of data.batch_size); see the module docstring.
        loss_history: the GMM fits the mean of the last this-many epochs' normalised losses (the reference
            uses 5 at 90% noise, 1 otherwise). Kept in the checkpoint.
    """

    # Its per-epoch sample selection and loaders are not in a checkpoint: no mid-epoch saves.
    supports_mid_epoch_resume = False

    automatic_optimization = False
    train_views = 2
    uses_generative_batches = False  # InstanceGM: its generative models train on batches of the whole set

    def __init__(
        self,
        network: Callable[[], Classifier],
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        warmup_epochs: int = 10,
        p_threshold: float = 0.5,
        sharpen_temperature: float = 0.5,
        mixup_alpha: float = 4.0,
        lambda_u: float = 25.0,
        rampup_epochs: int = 16,
        confidence_penalty: bool = False,
        gmm: dict[str, float] | None = None,
        schedule: str = "alternating",
        loss_history: int = 1,
        **kwargs: Any,
    ) -> None:
        if not 0 <= p_threshold <= 1:
            raise ValueError(f"method.p_threshold must be in [0, 1], got {p_threshold}")
        if sharpen_temperature <= 0 or mixup_alpha <= 0 or rampup_epochs <= 0 or warmup_epochs < 0:
            raise ValueError("method.sharpen_temperature, mixup_alpha and rampup_epochs must be > 0 and "
                             "warmup_epochs >= 0")
        if schedule not in SCHEDULES:
            raise ValueError(f"method.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if int(loss_history) < 1:
            raise ValueError(f"method.loss_history must be >= 1, got {loss_history}")
        super().__init__(network, criterion, optimizer, **kwargs)
        self.net2 = network()  # its own random initialisation
        if self.hparams.channels_last:
            self.net2 = self.net2.to(memory_format=torch.channels_last)
        self._run_net2 = torch.compile(self.net2.forward) if self.hparams.compile else self.net2.forward
        self.gmm_settings = {"max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4, **(gmm or {})}
        # Clean probability of every training sample under each network's GMM; row k is network k's view.
        self.register_buffer("clean_prob", torch.zeros(2, 0), persistent=False)
        self.loss_histories: list[LossHistory] | None = None
        self._pending_histories: list[torch.Tensor] | None = None
        # Alternating schedule: this epoch's phases and streams, and how many of its steps ran.
        self._phases: list[_Phase] = []
        self._warmup_stream: BatchStream | None = None
        self._generative_streams: list[BatchStream] = []
        self._steps_done = 0

    # ------------------------------------------------------------------ networks
    def networks(self) -> list[nn.Module]:
        return [self.net, self.net2]

    def trained_modules(self, k: int) -> list[nn.Module]:
        """What a step of network k updates (InstanceGM adds its generative model)."""
        return [self.networks()[k]]

    def _outputs(self, which: int, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        return self._run_net(x) if which == 0 else self._run_net2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The two networks' averaged outputs (the paper tests with the sum of their logits)."""
        return (self._outputs(0, x) + self._outputs(1, x)) / 2

    def suspicion_scores(self, positions: torch.Tensor, outputs: torch.Tensor,
                         labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """gmm_noisy: 1 - the two networks' mean GMM clean probability from the last division (the selection
        DivideMix trained with); nothing when no division is held (eval.py on a checkpoint: it is not saved)."""
        if self.clean_prob.shape[1] == 0:
            return {}
        return {"gmm_noisy": 1.0 - self.clean_prob.mean(0)[positions.to(self.clean_prob.device)].double().cpu()}

    def _class_logits(self, which: int, x: torch.Tensor) -> torch.Tensor:
        return self.head.class_logits(self._outputs(which, x)).float()

    @property
    def _alternating(self) -> bool:
        return self.hparams.schedule == "alternating"

    # ------------------------------------------------------------------ co-divide
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._steps_done = 0
        self._phases, self._warmup_stream, self._generative_streams = [], None, []
        if self.current_epoch >= self.hparams.warmup_epochs:
            self._divide()
        if self._alternating:
            self._plan_epoch()

    @torch.no_grad()
    def _training_set_losses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, per-sample CE of both networks (N, 2)) over the whole training set, un-augmented, in eval
        mode; each DDP rank takes every world_size-th sample and the results are gathered."""
        datamodule = self.trainer.datamodule
        shard = (self.global_rank, self.trainer.world_size)
        modes = [net.training for net in self.networks()]
        for net in self.networks():
            net.eval()
        indices, losses = [], []
        with self.trainer.precision_plugin.forward_context():
            for images, labels, index, _ in datamodule.sequential_loader(datamodule.test_sets["train"], shard):
                x = datamodule.augment(images.to(self.device), train=False)
                labels = labels.to(self.device)
                losses.append(torch.stack([F.cross_entropy(self._class_logits(k, x), labels, reduction="none")
                                           for k in (0, 1)], 1))
                indices.append(index.to(self.device))
        for net, mode in zip(self.networks(), modes, strict=True):
            net.train(mode)
        index, loss = gather_rows(self, torch.cat(indices)), gather_rows(self, torch.cat(losses))
        keep = first_occurrence(index)
        return index[keep].cpu(), loss[keep].cpu()

    def _histories(self) -> list[LossHistory]:
        if self.loss_histories is None:
            size = len(self.trainer.datamodule.labels.noisy)
            self.loss_histories = [LossHistory(self.hparams.loss_history, size) for _ in range(2)]
            for history, rows in zip(self.loss_histories, self._pending_histories or [], strict=False):
                history.load(rows)
            self._pending_histories = None
        return self.loss_histories

    def _divide(self) -> None:
        labels = self.trainer.datamodule.labels
        index, losses = self._training_set_losses()
        clean_prob = torch.zeros(2, len(labels.noisy))
        is_noisy = labels.is_noisy[index.numpy()]
        truth_known = bool(is_noisy.any())  # real-noise datasets carry no clean labels to compare with
        for k, history in enumerate(self._histories()):
            loss = losses[:, k].numpy()
            # The GMM sees the mean of the last loss_history epochs' min-max normalised losses.
            prob = clean_probability(history.add(index.numpy(), loss), **self.gmm_settings, normalise=False)
            clean_prob[k, index] = torch.from_numpy(prob).float()
            report = selection_report(prob > self.hparams.p_threshold, ~is_noisy if truth_known else None, loss)
            for name, value in report.items():
                self.log(f"select/net{k + 1}/{name}", value, on_step=False, on_epoch=True)
        self.clean_prob = clean_prob.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.loss_histories is not None:
            checkpoint["dividemix_loss_history"] = [h.state for h in self.loss_histories]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rows = checkpoint.get("dividemix_loss_history")
        self.loss_histories = None
        self._pending_histories = [torch.as_tensor(r) for r in rows] if rows is not None else None

    # ------------------------------------------------------------------ the alternating schedule's data
    def _stream(self, positions: np.ndarray, batch_size: int, stream: int, cycle: bool = True) -> BatchStream:
        datamodule = self.trainer.datamodule
        dataset = datamodule.train_set
        batched = isinstance(dataset, IndexedTensorDataset)
        seed = _stream_seed(datamodule.shuffle_seed, self.current_epoch, stream)

        def make_loader(batches: list[np.ndarray], number: int) -> DataLoader:
            return EpochSeededDataLoader(
                dataset, batch_sampler=[b.tolist() for b in batches], collate_fn=keep_batch if batched else None,
                num_workers=0 if batched else datamodule.num_workers, seed=seed, epoch=lambda: number,
                rank=lambda: self.global_rank)

        return BatchStream(positions, batch_size, seed, self.global_rank, self.trainer.world_size, make_loader,
                           cycle)

    def _fetch(self, stream: BatchStream, views: int = 2) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                    torch.Tensor] | None:
        """The stream's next batch on the device, augmented: ([view, ...], noisy labels, sample index)."""
        batch = stream.next()
        if batch is None:
            return None
        images, labels, index, _ = batch
        augment = self.trainer.datamodule.augment
        if isinstance(images, (list, tuple)):  # file datasets: views transformed per sample by the workers
            xs = [augment(view.to(self.device), train=True) for view in images[:views]]
        else:
            images = images.to(self.device)
            xs = [augment(images, train=True) for _ in range(views)]
        return xs, labels.to(self.device), index.to(self.device)

    def _epoch_fraction(self) -> float:
        """The share of the datamodule's batches this epoch runs (trainer.limit_train_batches)."""
        full = len(self.trainer.train_dataloader)
        return min(1.0, self.trainer.num_training_batches / full) if full else 1.0

    def _plan_epoch(self) -> None:
        datamodule = self.trainer.datamodule
        train_index = datamodule.train_set.index.cpu().numpy()
        positions = np.arange(len(train_index))
        half = max(1, datamodule.batch_size // 2)
        world = self.trainer.world_size
        if self.uses_generative_batches:
            self._generative_streams = [self._stream(positions, datamodule.batch_size, _GENERATIVE + k)
                                        for k in (0, 1)]
        if self.current_epoch < self.hparams.warmup_epochs:
            self._warmup_stream = self._stream(positions, datamodule.batch_size, _WARMUP_NET2)
            return
        fraction = self._epoch_fraction()
        clean = self.clean_prob[:, torch.as_tensor(train_index, device=self.clean_prob.device)].cpu().numpy()
        for k in (0, 1):
            labeled = clean[1 - k] > self.hparams.p_threshold  # co-divide: the other network's division
            labeled_stream = self._stream(positions[labeled], half, _LABELED + k, cycle=False)
            unlabeled_stream = self._stream(positions[~labeled], half, _UNLABELED + k)
            steps = len(labeled_stream)
            local = -(-int(labeled.sum()) // world)
            self._phases.append(_Phase(k, int(np.ceil(steps * fraction)), local // half + 1, labeled_stream,
                                       unlabeled_stream))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: tuple[Any, ...], batch_idx: int) -> torch.Tensor | None:
        if self._alternating:
            return self._alternating_tick(batch, batch_idx)
        views, y, index, _ = batch
        if self.current_epoch < self.hparams.warmup_epochs:
            loss = sum(self._warmup_loss(k, views[0], y) for k in (0, 1))
            trained = self.networks()
        else:
            ramp = (self.current_epoch + batch_idx / max(self.trainer.num_training_batches, 1)
                    - self.hparams.warmup_epochs) / self.hparams.rampup_epochs
            weight_u = self.hparams.lambda_u * float(np.clip(ramp, 0.0, 1.0))
            # Each network learns from the other's division (co-divide): network k reads row 1 - k.
            loss = sum(self._joint_mixmatch_loss(k, views, y, self.clean_prob[1 - k, index], weight_u)
                       for k in (0, 1))
            loss = loss + sum(self.generative_loss(k, views[0], y) for k in (0, 1))
            trained = [m for k in (0, 1) for m in self.trained_modules(k)]
        self._optimise(loss, trained)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _optimise(self, loss: torch.Tensor, trained: list[nn.Module]) -> None:
        """One optimiser step of the `trained` modules on `loss`; every other parameter stays as it is (no
        gradient, so neither momentum nor weight decay moves it)."""
        loss = loss + self.l1_penalty()
        self.check_finite(loss)
        trained_ids = {id(p) for module in trained for p in module.parameters()}
        frozen = [p for p in self.parameters() if p.requires_grad and id(p) not in trained_ids]
        if frozen and self.trainer.world_size > 1:
            # DDP's reducer waits for a gradient of every parameter it manages: give the frozen ones zeros.
            loss = loss + 0.0 * sum(p.sum() for p in frozen)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss)
        for p in frozen:
            p.grad = None
        step_after_one_backward(optimizers, grad_scaler(self.trainer))  # InstanceGM: the classifiers' and the VAE's

    def _alternating_tick(self, batch: tuple[Any, ...], batch_idx: int) -> torch.Tensor | None:
        """The alternating schedule's steps that fall on this batch of the datamodule's loader."""
        views, y, _, _ = batch
        if self.current_epoch < self.hparams.warmup_epochs:
            # Network 1 on the datamodule's batch, network 2 on its own shuffle of the training set: the
            # reference warms them up one after the other, on independent shuffles.
            loss = self._warmup_loss(0, views[0], y)
            other = self._fetch(self._warmup_stream, views=1)
            if other is not None:
                loss = loss + self._warmup_loss(1, other[0][0], other[1])
            self._optimise(loss, self.networks())
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
            return loss
        total = sum(phase.steps for phase in self._phases)
        ticks = max(int(self.trainer.num_training_batches), 1)
        end = total if batch_idx + 1 >= ticks else min(total, (batch_idx + 1) * total // ticks)
        losses = []
        while self._steps_done < end:
            losses.append(self._alternating_step(self._steps_done))
            self._steps_done += 1
        if not losses:
            return None
        loss = torch.stack(losses).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _alternating_step(self, step: int) -> torch.Tensor:
        first = self._phases[0].steps
        phase = self._phases[0] if step < first else self._phases[1]
        i = step if step < first else step - first
        k = phase.net
        labeled = self._fetch(phase.labeled)
        unlabeled = self._fetch(phase.unlabeled)
        (x1, x2), y_x, index_x = labeled
        w_x = self.clean_prob[1 - k, index_x]
        u1, u2 = (unlabeled[0] if unlabeled is not None else (x1[:0], x2[:0]))
        ramp = (self.current_epoch + i / phase.num_iter - self.hparams.warmup_epochs) / self.hparams.rampup_epochs
        weight_u = self.hparams.lambda_u * float(np.clip(ramp, 0.0, 1.0))
        temperature = self.hparams.sharpen_temperature
        with torch.no_grad():
            # Co-guessing (both networks, both views) of the unlabeled batch, then refinement of the labeled
            # one, in the reference's order (the trained network in train mode, the other in eval mode).
            own_u = [F.softmax(self._class_logits(k, u), 1) for u in (u1, u2)] if len(u1) else []
            other_u = self._eval_probs(1 - k, (u1, u2)) if len(u1) else []
            guess_u = sharpen(sum(own_u + other_u) / 4, temperature) if len(u1) else u1.new_zeros(
                0, self.head.num_classes)
            own_x = [F.softmax(self._class_logits(k, x), 1) for x in (x1, x2)]
            if k == 0:
                self.train_acc.update(own_x[0], y_x)
                if unlabeled is not None:
                    self.train_acc.update(own_u[0], unlabeled[1])
            refined_x = self._refine(own_x, y_x, w_x)
        loss = self._semi_loss(k, (x1, x2), refined_x, (u1, u2), guess_u, weight_u)
        if self.uses_generative_batches:
            full = self._fetch(self._generative_streams[k], views=1)
            if full is not None:
                loss = loss + self.generative_loss(k, full[0][0], full[1])
        self._optimise(loss, self.trained_modules(k))
        return loss.detach()

    def generative_loss(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | float:
        """Further terms of network k's step, on a batch of the training set (InstanceGM's generative
        model); none here. Not used in the warm-up."""
        return 0.0

    def _eval_probs(self, k: int, xs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """Network k's softmax outputs in eval mode (the fixed network of co-guessing)."""
        net = self.networks()[k]
        mode = net.training
        net.eval()
        probs = [F.softmax(self._class_logits(k, x), 1) for x in xs]
        net.train(mode)
        return probs

    def _refine(self, own: list[torch.Tensor], y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Label refinement: the given label, trusted by its clean probability, blended with the guess."""
        given = F.one_hot(y, self.head.num_classes).float()
        w = w.view(-1, 1)
        return sharpen(w * given + (1 - w) * (own[0] + own[1]) / 2, self.hparams.sharpen_temperature)

    def _warmup_loss(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = self._outputs(k, x)
        loss = self.criterion(outputs, y)
        if k == 0:
            self.train_acc.update(self.head.class_logits(outputs).detach(), y)
        if self.hparams.confidence_penalty:
            log_probs = F.log_softmax(self.head.class_logits(outputs).float(), 1)
            loss = loss + (log_probs.exp() * log_probs).sum(1).mean()  # negative entropy
        return loss

    def _joint_mixmatch_loss(self, k: int, views: tuple[torch.Tensor, ...], y: torch.Tensor,
                             clean_prob: torch.Tensor, weight_u: float) -> torch.Tensor:
        """Network k's loss on one batch: labeled = the other network's likely clean samples."""
        x1, x2 = views[0], views[1]
        labeled = clean_prob > self.hparams.p_threshold
        with torch.no_grad():
            own = [F.softmax(self._class_logits(k, x), 1) for x in (x1, x2)]  # train mode, as in the paper
            if k == 0:
                self.train_acc.update(own[0], y)
            other = self._eval_probs(1 - k, (x1[~labeled], x2[~labeled]))
            # Co-guessing: both networks, both views, for the unlabeled samples.
            guess_u = sharpen((own[0][~labeled] + own[1][~labeled] + other[0] + other[1]) / 4,
                              self.hparams.sharpen_temperature)
            refined_x = self._refine([own[0][labeled], own[1][labeled]], y[labeled], clean_prob[labeled])
        return self._semi_loss(k, (x1[labeled], x2[labeled]), refined_x, (x1[~labeled], x2[~labeled]), guess_u,
                               weight_u)

    def _semi_loss(self, k: int, xs: tuple[torch.Tensor, torch.Tensor], targets_x: torch.Tensor,
                   us: tuple[torch.Tensor, torch.Tensor], targets_u: torch.Tensor, weight_u: float) -> torch.Tensor:
        """MixUp over [x1, x2, u1, u2], soft CE on the labeled part, weight_u * MSE on the unlabeled part and
        a uniform prior on the mean prediction (which keeps the networks from collapsing onto few classes)."""
        inputs = torch.cat([xs[0], xs[1], us[0], us[1]])
        targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
        mixed_inputs, mixed_targets = mixup(inputs, targets, self.hparams.mixup_alpha)
        logits = self._class_logits(k, mixed_inputs)
        n_x = 2 * len(xs[0])
        loss = logits.new_zeros(())
        if n_x:
            loss = loss - (F.log_softmax(logits[:n_x], 1) * mixed_targets[:n_x]).sum(1).mean()
        if n_x < len(logits):
            loss = loss + weight_u * (F.softmax(logits[n_x:], 1) - mixed_targets[n_x:]).pow(2).mean()
        num_classes = self.head.num_classes
        prior = torch.full((num_classes,), 1.0 / num_classes, device=logits.device)
        mean_prediction = F.softmax(logits, 1).mean(0)
        return loss + (prior * (prior.log() - mean_prediction.clamp_min(1e-12).log())).sum()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._phases, self._warmup_stream, self._generative_streams = [], None, []
        self.step_schedulers_by_hand()
