"""Shuffling that depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from noisylab.utils.seeding import epoch_seed


class EpochPermutationSampler(Sampler[int]):
    """A fresh random permutation each epoch, drawn from its own generator seeded by (seed, epoch).

    torch's RandomSampler draws from the global RNG when its iterator is created, and Lightning
    creates the first iterator of a (resumed) fit before any epoch hook runs; the permutation would
    then depend on the process's history. `epoch` is read when iteration starts, from the trainer.
    Under DDP Lightning shards this sampler's output across ranks.

    With `keyed`, it yields (epoch, index) pairs instead of indices, for datasets that transform samples
    in DataLoader worker processes (FileDataset): persistent workers never see the trainer's epoch, and a
    worker's random stream depends on which samples it happened to get; with the epoch in the key each
    sample's augmentation is seeded by (seed, epoch, index) alone, so resuming (at an epoch's end or within
    one) continues exactly, whatever the number of workers.
    """

    def __init__(self, num_samples: int, seed: int, epoch: Callable[[], int], keyed: bool = False) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch
        self.keyed = keyed

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int]]:
        epoch = self.epoch()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 0))
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        return iter([(epoch, i) for i in order]) if self.keyed else iter(order)


class EpochSeededDataLoader(DataLoader):
    """A DataLoader whose own generator is re-seeded from (seed, epoch, rank) whenever an iterator starts,
    and which can continue an epoch where a mid-epoch checkpoint left it.

    A plain DataLoader draws its workers' base seed from torch's *global* RNG each time an iterator is
    created. Lightning creates the first training iterator of a resumed run before the epoch-start hooks
    (where noisylab seeds the global RNG) and later ones after them, so that draw would shift every random
    number of the epoch (augmentation, MixUp) between a resumed and an uninterrupted run. With its own
    generator the loader leaves the global RNG alone, and the workers' seeds depend on the epoch only.

    It is stateful for Lightning (`state_dict` / `load_state_dict`): a checkpoint records the epoch and
    how many batches this epoch's iterator has handed out, and after restoring one saved within that
    epoch, the next iterator skips those batches without loading them (the sampler's order is a function
    of the epoch, so the rest of the epoch is the same as in an uninterrupted run).
    """

    def __init__(self, *args: Any, seed: int = 0, epoch: Callable[[], int] = lambda: 0,
                 rank: Callable[[], int] = lambda: 0, **kwargs: Any) -> None:
        kwargs["generator"] = torch.Generator()
        super().__init__(*args, **kwargs)
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self._handed_out = (0, 0)  # (epoch, batches) of the current iterator
        self._restored: tuple[int, int] | None = None

    @property
    def _index_sampler(self) -> Any:
        """The batch sampler, less the batches a restored mid-epoch checkpoint had already trained on."""
        sampler = super()._index_sampler
        skip = self._batches_to_skip()
        return _SkipFirst(sampler, skip, self.epoch(), self.epoch) if skip else sampler

    def _batches_to_skip(self) -> int:
        if self._restored is None or self._restored[0] != self.epoch():
            return 0
        return self._restored[1]

    def __iter__(self) -> Any:
        return _LazyCounting(self)

    def _start(self) -> Any:
        """The real iterator, made when the first batch is asked for, not when Lightning calls iter(): a
        resumed fit makes its first iterator before it has restored the epoch, and worker processes
        would draw that epoch's indices at once."""
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch(), 1_000_003 + self.rank()))
        skip = self._batches_to_skip()
        iterator = super().__iter__()
        self._restored = None  # later iterators (next epochs) start at their first batch
        self._handed_out = (self.epoch(), skip)
        return iterator

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._handed_out
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._restored = (int(state["epoch"]), int(state["batches"]))


class _SkipFirst:
    """An index (batch) sampler without its first `skip` items while the epoch is still `epoch`; the same
    length, so Lightning's count of the epoch's batches (which it continues from the checkpoint) stays
    right. Tied to the epoch because a persistent-workers iterator keeps this object and iterates it again
    in the next epochs (and twice when it is made)."""

    def __init__(self, sampler: Any, skip: int, epoch: int, current_epoch: Callable[[], int]) -> None:
        self.sampler, self.skip, self.epoch, self.current_epoch = sampler, skip, epoch, current_epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.sampler)
        for _ in range(self.skip if self.current_epoch() == self.epoch else 0):
            next(iterator, None)
        return iterator


class _LazyCounting:
    """A DataLoader iterator that starts at its first batch and counts the batches it hands out
    (prefetched ones are not counted)."""

    def __init__(self, loader: EpochSeededDataLoader) -> None:
        self.loader = loader
        self.iterator: Any = None

    def __iter__(self) -> _LazyCounting:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.loader._start()
        batch = next(self.iterator)
        epoch, batches = self.loader._handed_out
        self.loader._handed_out = (epoch, batches + 1)
        return batch
