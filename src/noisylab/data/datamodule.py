"""NoisyLabelDataModule: source -> held-out classes -> noise -> splits -> batched loaders."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset

from noisylab.data.augment import BatchAugment
from noisylab.data.cleaning import LabelCleaning
from noisylab.data.dataset import IndexedTensorDataset, keep_batch
from noisylab.data.errors import BadDataFileError, DatasetNotFoundError
from noisylab.data.files import BAD_IMAGE_MODES, FileDataset
from noisylab.data.ood import HeldOutClasses, OODSet
from noisylab.data.sampler import EpochPermutationSampler, EpochSeededDataLoader
from noisylab.data.source import ImageSource
from noisylab.noise.base import NoiseModel, NoNoise
from noisylab.noise.labels import NoisyLabels
from noisylab.utils.atomic import atomic_write_text

OOD_GROUPS = ("near", "far", "other")
# data.meta_size=auto (method=meta_weight_net): the paper's 1000 clean samples where they are at most
# AUTO_META_FRACTION of the training set, else that fraction, so a small dataset keeps most of its samples to train.
AUTO_META_SIZE = 1000
AUTO_META_FRACTION = 0.1
# Below this many validation samples val/acc moves by >0.2 points per sample (standard error >2 points): too
# coarse to pick a checkpoint by, so the run says so.
MIN_SELECTION_VAL = 500

log = logging.getLogger(__name__)


class NoisyLabelDataModule(L.LightningDataModule):
    """Training data with noisy labels, a validation split, the test set and OOD sets.

    `build()` does all the work eagerly and identically on every process (the noise is a pure
    function of config and seed), so the model can be sized from `num_classes`/`image_shape` and
    errors surface before training. Batches are (uint8 images, label, index, clean label); images
    are converted, augmented and normalised on the device in `on_after_batch_transfer`.

    Args:
        source: called with (root, download, **source_kwargs) it returns an ImageSource.
        download: let the source fetch missing files (torchvision's downloaders; needs network).
        noise: the noise model applied to the training labels.
        asymmetric_map: the dataset's conventional class confusion map (read by `noise=asymmetric`).
        human_labels: {path, default_set} of the dataset's human label file (read by `noise=human`).
        val_size: samples split off the noisy training set for validation (fraction if < 1).
        clean_val: validate on the clean labels of that split instead (an oracle setting; off by default).
        official_val: datasets that come with a validation split of their own (Clothing1M's clean
            validation set) use it instead of a split of the training set.
        split_seed, shuffle_seed: seed the validation split and the per-epoch shuffling.
        on_device: on a GPU, keep in-memory datasets (uint8) in GPU memory, so batches are gathered there
            and nothing is copied per step.
        ood: named OOD specs: `holdout` (HeldOutClasses) removes classes from training; each OODSet adds
            the test set "ood/<name>".
        num_folds, fold: K-fold cross-validation over the training split (0: off): fold `fold` is left out of
            training and predicted as the test set "fold", so the folds of a multirun give out-of-sample
            probabilities for every training sample (confident learning, `noisylab-issues --cleanlab`).
        exclude, relabel: CSV files of an earlier run's suspected label issues (`noisylab-issues`): samples
            to drop, or to train with another label (see noisylab.data.cleaning).
        ood_groups: {near: [set names], far: [...]}: which OOD sets are near and which far for this
            in-distribution dataset (OpenOOD v1.5's grouping where it has one); the test reports each
            group's mean, never one mean over near and far sets together.
        meta_size: samples split off the training set *before* noise is applied, kept with their clean
            labels as the meta set of meta-learning methods (Meta-Weight-Net); 0 = none; "auto" = the paper's
            1000 where that is at most 10% of the training samples, else 10% (logged, and recorded in
            metrics.json as data/meta_size).
        bad_images: image files that cannot be decoded while training or testing: "stop" (an error naming
            the file) or "skip" (the next image is used instead; each bad file is logged, and `bad_images`
            lists them for the run folder).

    Methods that train on several augmented views of each image (DivideMix, SimCLR) set
    `train_views = 2` on the LightningModule; training batches then hold a tuple of views instead of
    one image tensor.
    """

    def __init__(
        self,
        name: str,
        source: Callable[..., ImageSource],
        root: str | None,
        noise: NoiseModel,
        download: bool = False,
        source_kwargs: Mapping[str, Any] | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        val_size: float = 0.1,
        clean_val: bool = False,
        official_val: bool = True,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        augment: Mapping[str, Any] | None = None,
        asymmetric_map: Mapping[int, int] | None = None,
        human_labels: Mapping[str, str] | None = None,
        ood: Mapping[str, HeldOutClasses | OODSet] | None = None,
        num_workers: int = 0,
        on_device: bool = True,
        meta_size: int | Literal["auto"] = 0,
        bad_images: str = "stop",
        ood_groups: Mapping[str, Sequence[str]] | None = None,
        exclude: str | None = None,
        relabel: str | None = None,
        num_folds: int = 0,
        fold: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("data.batch_size and data.eval_batch_size must be >= 1")
        if val_size < 0:
            raise ValueError(f"data.val_size must be >= 0, got {val_size}")
        self.name = name
        self.source_fn = source
        self.download = bool(download)
        self.source_kwargs = dict(source_kwargs or {})
        self.root = None if root is None else Path(root).expanduser()  # None (data.root=null): digits needs none
        self.noise = noise
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.val_size = val_size
        self.clean_val = bool(clean_val)
        self.official_val = bool(official_val)
        self.split_seed = int(split_seed)
        self.shuffle_seed = int(shuffle_seed)
        self.augment_kwargs = dict(augment or {})
        self.asymmetric_map = asymmetric_map
        self.human_labels = human_labels
        self.ood_specs = dict(ood or {})
        self.cleaning = LabelCleaning(exclude=exclude, relabel=relabel)
        if num_folds == 1 or num_folds < 0 or (num_folds and not 0 <= fold < num_folds):
            raise ValueError(f"data.num_folds={num_folds}, data.fold={fold}: cross-validation needs num_folds >= 2 "
                             "and 0 <= fold < num_folds (num_folds=0: off); run the folds as a multirun, e.g. "
                             "-m data.num_folds=5 data.fold=0,1,2,3,4")
        self.num_folds, self.fold = int(num_folds), int(fold)
        self.cleaning_record: dict[str, object] = {}
        self.setting_record: dict[str, object] = {}  # what build() decided from the data (see run_record)
        self.ood_groups = {group: list(names) for group, names in (ood_groups or {}).items()}
        unknown_groups = sorted(set(self.ood_groups) - set(OOD_GROUPS))
        if unknown_groups:
            raise ValueError(f"data.ood_groups has groups {unknown_groups}; the groups are {', '.join(OOD_GROUPS)}")
        self.num_workers = int(num_workers)
        self.on_device = bool(on_device)
        if meta_size != "auto" and (isinstance(meta_size, str) or meta_size < 0):
            raise ValueError(f"data.meta_size={meta_size}: must be a whole number of samples >= 0 or auto (the "
                             f"paper's {AUTO_META_SIZE} where it is at most {AUTO_META_FRACTION:.0%} of the training "
                             "set), e.g. data.meta_size=auto")
        self.meta_size: int | Literal["auto"] = meta_size if meta_size == "auto" else int(meta_size)
        if bad_images not in BAD_IMAGE_MODES:
            raise ValueError(f"data.bad_images={bad_images!r}; choose one of {', '.join(BAD_IMAGE_MODES)}")
        self.bad_images_mode = bad_images
        self.bad_images_record: Path | None = None
        self.meta_set: Dataset | None = None
        self.labels: NoisyLabels | None = None
        self.val_labels_kind = "noisy_val"  # which labels the validation split carries (set by build)
        self._source_real_noise = False
        self.augment: BatchAugment | None = None

    # ------------------------------------------------------------------ building
    def build(self) -> NoisyLabels:
        """Load, hold out OOD classes, apply noise and split. Idempotent."""
        if self.labels is not None:
            return self.labels
        source = self.source_fn(root=self.root, download=self.download, **self.source_kwargs)
        self._check_label_range(source)
        self.noise.check_classes(source.class_names)  # e.g. an asymmetric map naming classes the data lacks
        self.class_names = source.class_names
        self._source_real_noise = bool(source.real_noise)
        self.image_shape = source.image_shape
        self.augment = BatchAugment(source.mean, source.std, **self.augment_kwargs)

        held = self._hold_out(source)
        class_ids = np.setdiff1d(np.arange(source.num_classes), held)
        to_contiguous = np.full(source.num_classes, -1, dtype=np.int64)
        to_contiguous[class_ids] = np.arange(len(class_ids))

        if source.real_noise and not isinstance(self.noise, NoNoise):
            warnings.warn(
                f"{self.name} already has real label noise; {self.noise!r} adds synthetic noise on top of it",
                stacklevel=2,
            )
        kept = np.flatnonzero(np.isin(source.train_labels, class_ids))
        meta_size = self._meta_count(len(kept))
        if meta_size:
            kept, meta = self._split_meta(kept, meta_size)
            meta_labels = to_contiguous[source.train_labels[meta]]
            self.meta_set = source.dataset("train", meta, meta_labels, meta_labels, augment=True)
        clean = to_contiguous[source.train_labels[kept]]
        noisy = np.asarray(self.noise(clean, source.noise_images(kept), class_ids, kept), dtype=np.int64)
        if noisy.shape != clean.shape or noisy.min(initial=0) < 0 or noisy.max(initial=0) >= len(class_ids):
            raise ValueError(f"noise model {self.noise!r} returned invalid labels")
        excluded = np.zeros(len(kept), dtype=bool)
        if self.cleaning.active:  # after the noise: every other label is the earlier run's
            noisy, excluded, self.cleaning_record = self.cleaning.apply(kept, noisy, to_contiguous,
                                                                        len(source.train_labels))
        self.labels = NoisyLabels(noisy=noisy, clean=clean, num_classes=len(class_ids), class_ids=class_ids,
                                  index=kept)
        self.source_index = kept  # position in NoisyLabels -> position in the source's training set

        use_official_val = self.official_val and source.val_labels is not None
        train_pos, val_pos = (np.arange(len(clean)), None) if use_official_val else self._split(len(clean))
        if self.cleaning.active:  # after the split: the validation split is the earlier run's, less what is dropped
            train_pos = train_pos[~excluded[train_pos]]
            val_pos = None if val_pos is None else val_pos[~excluded[val_pos]]
            kept_mask = ~excluded
            self.cleaning_record["noise/realised_rate_after_cleaning"] = float(
                (noisy[kept_mask] != clean[kept_mask]).mean()) if kept_mask.any() else 0.0
        self.train_set = source.dataset("train", kept[train_pos], noisy[train_pos], clean[train_pos],
                                        index=train_pos, augment=True)
        if use_official_val:
            val_in = np.flatnonzero(np.isin(source.val_labels, class_ids))
            val_labels = to_contiguous[source.val_labels[val_in]]
            self.val_set = source.dataset("val", val_in, val_labels, val_labels)
            self.val_labels_kind = "official_val"
        else:
            val_labels = clean[val_pos] if self.clean_val else noisy[val_pos]
            self.val_labels_kind = "clean_val_oracle" if self.clean_val and not source.real_noise else "noisy_val"
            self.val_set = source.dataset("train", kept[val_pos], val_labels, clean[val_pos], index=val_pos)

        test_in = np.flatnonzero(np.isin(source.test_labels, class_ids))
        test_labels = to_contiguous[source.test_labels[test_in]]
        self.test_sets = {"test": source.dataset("test", test_in, test_labels, test_labels)}
        # test set name -> its samples' positions in the source's test set (per-sample outputs name them so)
        self.test_source_index: dict[str, np.ndarray] = {"test": test_in}
        for name, labels in source.extra_test_sets.items():
            inside = np.flatnonzero(np.isin(labels, class_ids))
            extra_labels = to_contiguous[labels[inside]]
            self.test_sets[f"test/{name}"] = source.dataset(name, inside, extra_labels, extra_labels)
        if len(held):
            test_out = np.flatnonzero(~np.isin(source.test_labels, class_ids))
            unknown = np.full(len(test_out), -1, dtype=np.int64)
            self.test_sets[f"ood/{HeldOutClasses.name}"] = source.dataset("test", test_out, unknown, unknown)
            self.test_source_index[f"ood/{HeldOutClasses.name}"] = test_out
        self._add_ood_sets(source)
        self.setting_record["data/val_samples"] = len(self.val_set)
        self._warn_small_validation(len(clean))
        # The validation split (temperature fitting) and the training split, un-augmented (noise
        # detection and drainage of mislabeled samples), evaluated after training.
        if self.num_folds:  # cross-validation: this fold's samples are predicted, not trained on
            train_pos, fold_pos = self._fold_split(train_pos)
            self.train_set = source.dataset("train", kept[train_pos], noisy[train_pos], clean[train_pos],
                                            index=train_pos, augment=True)
            self.test_sets["fold"] = source.dataset("train", kept[fold_pos], noisy[fold_pos], clean[fold_pos],
                                                    index=fold_pos)
        self.test_sets["val"] = self.val_set
        self.test_sets["train"] = source.dataset("train", kept[train_pos], noisy[train_pos], clean[train_pos],
                                                 index=train_pos)
        self._set_bad_image_handling()
        return self.labels

    @property
    def run_record(self) -> dict[str, object]:
        """What metrics.json records about the data: the held-out classes, the meta set's and the validation
        split's sizes, and what data.exclude / data.relabel changed."""
        return {**self.setting_record, **self.cleaning_record}

    def _hold_out(self, source: ImageSource) -> np.ndarray:
        """The source class ids held out as the OOD set `holdout` (none without ood.holdout), logged and recorded:
        which classes a run held out defines its task, so it must be visible in every run."""
        holdout = self.ood_specs.get("holdout")
        if holdout is None:
            return np.zeros(0, dtype=np.int64)
        held = holdout.choose(source.num_classes)
        names = [source.class_names[c] for c in held]
        self.setting_record["data/holdout_classes"] = held.tolist()
        self.setting_record["data/holdout_class_names"] = names
        shown = ", ".join(str(c) if source.class_names[c] == str(c) else f"{c} ({source.class_names[c]})" for c in held)
        log.info("held-out classes (OOD set holdout, not trained on): %s; %s", shown, holdout.describe())
        return held

    def _meta_count(self, n: int) -> int:
        """The size of the clean meta set for `n` trainable samples; data.meta_size=auto sized from the data."""
        size = AUTO_META_SIZE if self.meta_size == "auto" else self.meta_size
        if self.meta_size == "auto" and AUTO_META_SIZE > AUTO_META_FRACTION * n:
            size = int(round(AUTO_META_FRACTION * n))
            log.info("data.meta_size=auto: %d clean meta samples (%.0f%% of the %d training samples); the paper's %d "
                     "would leave %d to train on. Give data.meta_size=<count> to choose", size,
                     100 * AUTO_META_FRACTION, n, AUTO_META_SIZE, max(n - AUTO_META_SIZE, 0))
        if size:
            self.setting_record["data/meta_size"] = size
        return size

    def _warn_small_validation(self, n_train: int) -> None:
        """Say once (rank 0) when the validation split is too small to pick a checkpoint by val/acc."""
        n_val = len(self.val_set)
        if n_val >= MIN_SELECTION_VAL or rank_zero_only.rank != 0:
            return
        where = "the dataset's validation set" if self.val_labels_kind == "official_val" else \
            f"data.val_size={self.val_size} of {n_train} training samples"
        log.warning(
            "the validation split has only %d samples (%s): val/acc moves %.2f points per sample (standard error up "
            "to %.1f points), so best.ckpt (test_on=best), val/best_acc and hyperparameter searches select by noise. "
            "Give a larger split (data.val_size=<count>, at least %d), test the last epoch (test_on=last), or "
            "validate on clean labels (data.clean_val=true, an oracle)", n_val, where, 100 / n_val,
            50 / np.sqrt(n_val), MIN_SELECTION_VAL)

    def _check_label_range(self, source: ImageSource) -> None:
        """Labels outside the source's classes would be dropped silently below (they are in no class to keep);
        the loaders refuse them naming their file, and this makes sure no source lets one through."""
        sets = {"training": source.train_labels, "test": source.test_labels, "validation": source.val_labels,
                **{f"test set {name}": labels for name, labels in source.extra_test_sets.items()}}
        for split, labels in sets.items():
            if labels is None or not len(labels):
                continue
            if labels.min() < 0 or labels.max() >= source.num_classes:
                raise BadDataFileError(
                    f"dataset '{self.name}' ({self.root}): its {split} labels range over {labels.min()}..{labels.max()}"
                    f" but it has {source.num_classes} classes (0..{source.num_classes - 1}). To fix: re-download "
                    "the dataset; its files are damaged or belong to another dataset."
                )

    def _set_bad_image_handling(self) -> None:
        """Give every image-file dataset the data.bad_images mode and, when skipping, the file where the DataLoader
        workers record the files they skipped."""
        datasets = [self.train_set, self.val_set, self.meta_set, *self.test_sets.values()]
        file_sets = [d for d in datasets if isinstance(d, FileDataset)]
        if self.bad_images_mode == "skip" and file_sets:
            handle, name = tempfile.mkstemp(prefix="noisylab-bad-images-", suffix=".txt")
            os.close(handle)
            self.bad_images_record = Path(name)
            # The record lives as long as this datamodule (workers append to it; write_bad_images reads it).
            weakref.finalize(self, _remove_in_process, self.bad_images_record, os.getpid())
        for dataset in file_sets:
            dataset.bad_images, dataset.bad_images_record = self.bad_images_mode, self.bad_images_record

    @property
    def bad_images(self) -> list[str]:
        """The image files skipped so far as undecodable (data.bad_images=skip), sorted, each once."""
        if self.bad_images_record is None or not self.bad_images_record.is_file():
            return []
        return sorted(set(self.bad_images_record.read_text().split("\n")) - {""})

    def write_bad_images(self, path: str | Path) -> int:
        """Write the skipped image files to `path` (one per line) when there are any; returns their count."""
        bad = self.bad_images
        if bad:
            atomic_write_text(path, "\n".join(bad) + "\n")
        return len(bad)

    def _add_ood_sets(self, source: ImageSource) -> None:
        """Each OOD dataset as test set "ood/<name>"; optional ones whose files are missing are skipped.

        One line says which sets are used and which were not found, so a default OOD list (the
        dataset's standard sets) never changes what is evaluated without saying so.
        """
        used, missing = [], []
        for name, spec in self.ood_specs.items():
            if not isinstance(spec, OODSet):
                continue
            try:
                self.test_sets[f"ood/{name}"] = spec.dataset(self.root, source.image_shape,
                                                             in_memory=isinstance(source, ImageSource))
                used.append(name)
            except DatasetNotFoundError as err:
                if not spec.optional:
                    raise
                missing.append(f"{name} ({err.looked_in})")
        if "holdout" in self.ood_specs:
            used.insert(0, "holdout")
        if used or missing:
            log.info("OOD sets: %s; not found, skipped: %s", ", ".join(used) or "none",
                     ", ".join(missing) or "none")

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n_val = int(round(self.val_size * n)) if self.val_size < 1 else int(self.val_size)
        if n_val >= n:
            raise ValueError(
                f"data.val_size={self.val_size} asks for {n_val} validation samples but the training set has "
                f"only {n}; use a fraction below 1 or a smaller count"
            )
        if n_val == 0:
            raise ValueError("data.val_size gives an empty validation split; model selection needs one")
        order = np.random.default_rng(self.split_seed).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _fold_split(self, train_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the other folds, this fold) of the training split: a seeded permutation dealt into num_folds parts,
        the same for every fold of one seed, so the folds of a multirun partition the training split."""
        order = np.random.default_rng([self.split_seed, 2]).permutation(len(train_pos))
        chosen = np.zeros(len(train_pos), dtype=bool)
        chosen[order[self.fold::self.num_folds]] = True
        return train_pos[~chosen], train_pos[chosen]

    def _split_meta(self, kept: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(rest, meta): a seeded random subset of `size` training samples for the clean meta set."""
        if size >= len(kept):
            raise ValueError(f"data.meta_size={size} is not smaller than the training set ({len(kept)} samples); "
                             "give a smaller count or data.meta_size=auto")
        order = np.random.default_rng([self.split_seed, 1]).permutation(len(kept))
        return np.sort(kept[order[size:]]), np.sort(kept[order[:size]])

    # ------------------------------------------------------------------ facts for the model
    @property
    def num_classes(self) -> int:
        assert self.labels is not None, "call build() first"
        return self.labels.num_classes

    @property
    def test_set_names(self) -> list[str]:
        return list(self.test_sets)

    @property
    def clean_labels_known(self) -> bool:
        """Whether the training split's clean labels are known (synthetic noise, CIFAR-N); for datasets with
        real noise of their own (WebVision, Clothing1M's noisy set) the "clean" labels are the noisy ones."""
        return not self._source_real_noise

    def ood_group(self, set_name: str) -> str:
        """near, far or other for an OOD set name (without "ood/"): held-out classes of the training
        dataset are near OOD (the closest semantic shift there is); other sets as data.ood_groups says
        (OpenOOD v1.5's grouping for the datasets it covers), "other" where it says nothing."""
        if set_name == HeldOutClasses.name:
            return "near"
        return next((group for group, names in self.ood_groups.items() if set_name in names), "other")

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        self.build()
        self._check_same_labels_on_every_rank()
        if self.on_device and self.trainer is not None and self.trainer.strategy.root_device.type == "cuda":
            device = self.trainer.strategy.root_device
            for dataset in {id(d): d for d in (self.train_set, self.val_set, *self.test_sets.values())}.values():
                if isinstance(dataset, IndexedTensorDataset):
                    dataset.to(device)

    def _check_same_labels_on_every_rank(self) -> None:
        """Noise is a pure function of config and seed; this makes sure no rank saw other data or labels."""
        if self.trainer is None or self.trainer.world_size == 1:
            return
        assert self.labels is not None
        digest = hashlib.sha256(self.labels.noisy.tobytes() + self.labels.clean.tobytes()).hexdigest()
        if self.trainer.strategy.broadcast(digest, src=0) != digest:
            raise RuntimeError(
                f"rank {self.trainer.global_rank} built different noisy labels than rank 0; every process must "
                "see the same data and config (check data.root and environment variables on all nodes)"
            )

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        drop_last = shuffle and len(dataset) % batch_size == 1  # a batch of one breaks BatchNorm
        keyed = isinstance(dataset, FileDataset)  # augmented per sample in the workers: seeded by (epoch, index)
        if keyed:
            dataset.augment_seed = self.shuffle_seed
        sampler = EpochPermutationSampler(len(dataset), self.shuffle_seed, self._epoch, keyed) if shuffle else None
        batched = isinstance(dataset, IndexedTensorDataset)  # fetches whole batches itself, in this process
        return EpochSeededDataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
            collate_fn=keep_batch if batched else None, num_workers=0 if batched else self.num_workers,
            persistent_workers=not batched and self.num_workers > 0,
            pin_memory=not batched and torch.cuda.is_available(),
            seed=self.shuffle_seed, epoch=self._epoch, rank=self._rank)

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def sequential_loader(self, dataset: Dataset, shard: tuple[int, int] = (0, 1)) -> DataLoader:
        """Batches of `dataset` in order (for passes over the training set inside a training epoch).

        `shard=(rank, world_size)` keeps every world_size-th sample starting at `rank`, so DDP ranks can
        split such a pass between them and gather the results.
        """
        rank, world_size = shard
        if world_size > 1:
            if isinstance(dataset, IndexedTensorDataset):
                dataset = IndexedTensorDataset(dataset.images[rank::world_size], dataset.labels[rank::world_size],
                                               dataset.clean[rank::world_size], dataset.index[rank::world_size])
            else:
                dataset = Subset(dataset, range(rank, len(dataset), world_size))
        return self._loader(dataset, self.eval_batch_size, shuffle=False)

    def meta_loader(self, batch_size: int, seed: int, pass_number: Callable[[], int]) -> DataLoader:
        """Shuffled batches of the clean meta set; each pass's shuffle depends on (seed, pass_number()) only,
        so a resumed run draws the same meta batches."""
        if self.meta_set is None:
            raise ValueError("this method needs a clean meta set: set data.meta_size (e.g. data.meta_size=auto)")
        batched = isinstance(self.meta_set, IndexedTensorDataset)
        sampler = EpochPermutationSampler(len(self.meta_set), seed, pass_number)
        return EpochSeededDataLoader(self.meta_set, batch_size=min(batch_size, len(self.meta_set)), sampler=sampler,
                                     drop_last=True, collate_fn=keep_batch if batched else None,
                                     num_workers=0 if batched else self.num_workers, seed=seed, epoch=pass_number)

    def _train_views(self) -> int:
        return int(getattr(self.trainer.lightning_module, "train_views", 1)) if self.trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        if isinstance(self.train_set, FileDataset):
            self.train_set.views = self._train_views()  # decoded once, transformed per view by the workers
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size, shuffle=False) for d in self.test_sets.values()]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, *rest = batch
        training = self.trainer is not None and self.trainer.training
        if isinstance(images, (list, tuple)):  # views transformed per sample by the workers (file datasets)
            return (tuple(self.augment(view, train=True) for view in images), *rest)
        views = self._train_views() if training else 1
        if views > 1:
            return (tuple(self.augment(images, train=True) for _ in range(views)), *rest)
        return (self.augment(images, train=training), *rest)


def _remove_in_process(path: Path, owner: int) -> None:
    """Remove `path` when called in the process that made it (not in a forked DataLoader worker)."""
    if os.getpid() == owner:
        path.unlink(missing_ok=True)
