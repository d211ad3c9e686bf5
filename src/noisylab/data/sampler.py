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
    """

    def __init__(self, num_samples: int, seed: int, epoch: Callable[[], int]) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch(), 0))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


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
        return _SkipFirst(sampler, skip) if skip else sampler

    def _batches_to_skip(self) -> int:
        if self._restored is None or self._restored[0] != self.epoch():
            return 0
        return self._restored[1]

    def __iter__(self) -> Any:
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch(), 1_000_003 + self.rank()))
        skip = self._batches_to_skip()
        iterator = super().__iter__()
        self._restored = None  # later iterators (next epochs) start at their first batch
        self._handed_out = (self.epoch(), skip)
        return _Counting(iterator, self)

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._handed_out
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._restored = (int(state["epoch"]), int(state["batches"]))


class _SkipFirst:
    """An index (batch) sampler without its first `skip` items; the same length, so Lightning's count of
    the epoch's batches (which it continues from the checkpoint) stays right."""

    def __init__(self, sampler: Any, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.sampler)
        for _ in range(self.skip):
            next(iterator, None)
        return iterator


class _Counting:
    """A DataLoader iterator that counts the batches it hands out (prefetched ones are not counted)."""

    def __init__(self, iterator: Any, loader: EpochSeededDataLoader) -> None:
        self.iterator, self.loader = iterator, loader

    def __iter__(self) -> _Counting:
        return self

    def __len__(self) -> int:
        return len(self.iterator)

    def __next__(self) -> Any:
        batch = next(self.iterator)
        epoch, batches = self.loader._handed_out
        self.loader._handed_out = (epoch, batches + 1)
        return batch
