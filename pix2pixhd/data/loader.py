"""The DataLoader: worker processes, pinned memory, reproducible order, exact resume.

The sampler yields ``(index, epoch)`` keys, so each sample's crop and flip are drawn from
(seed, epoch, index) inside whichever worker loads it: workers may be persistent (they keep a
stale copy of the dataset) and results stay identical for any ``num_workers``. An epoch's order
is a permutation seeded by (seed, epoch); ``set_epoch(epoch, skip_batches=k)`` reproduces it and
starts after k batches, which is how a resumed run continues mid-epoch.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler):
    """Seeded per-epoch order over ``n`` samples, shardable over ``world_size`` ranks.

    Yields ``(index, epoch)``. ``set_epoch(epoch, skip=k)`` skips the first k samples of this
    rank's order (k = batches_done * batch_size). The skip applies to the next iteration only.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def order(self, epoch: int) -> list[int]:
        """This rank's full index order for ``epoch`` (before any skip)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        if self.world_size > 1:     # equal shares, as DistributedSampler: pad or trim
            per = self.n // self.world_size if self.drop_last else math.ceil(self.n / self.world_size)
            total = per * self.world_size
            idx = (idx + idx[:max(0, total - len(idx))])[:total]
            idx = idx[self.rank:total:self.world_size]
        return idx

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        return iter([(i, epoch) for i in self.order(epoch)[skip:]])

    def __len__(self) -> int:
        return len(self.order(self.epoch)) - self.skip


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive numpy/random from it so any
    # other randomness in a worker is reproducible too. One thread per worker: the workers are
    # the parallelism, and oversubscribed cores slow PIL and torch down.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)


def create_dataloader(dataset, batch_size: int, *, shuffle: bool, num_workers: int, seed: int = 0,
                      drop_last: bool = False, sampler=None, pin_memory: bool | None = None,
                      prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over ``dataset`` with batches of uint8/int32 tensors and 'path' lists.

    With no ``sampler`` a :class:`ResumableSampler` is made (``loader.sampler``); call
    ``loader.sampler.set_epoch(epoch, skip=batches_done * batch_size)`` before each epoch.
    ``pin_memory`` defaults to whether CUDA is available; workers are persistent when
    ``num_workers > 0``.
    """
    if sampler is None:
        sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kw = {}
    if num_workers > 0:
        kw = dict(persistent_workers=True, prefetch_factor=prefetch_factor,
                  worker_init_fn=_worker_init)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), **kw)
